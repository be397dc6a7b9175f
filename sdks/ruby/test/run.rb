# frozen_string_literal: true

# The Ruby SDK's tests: `ruby sdks/ruby/test/run.rb` (unit tests, then the worker against
# the real RabbitMQ at TASKER_AMQP_URL, default the local one).
$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
$LOAD_PATH.unshift __dir__
require 'minitest/autorun'
Dir[File.join(__dir__, '*_test.rb')].sort.each { |f| require f }
