# frozen_string_literal: true

require 'minitest/autorun'
require 'tasker_worker'

class AmqpUrlTest < Minitest::Test
  C = TaskerWorker::AmqpUrl

  def test_a_url_without_credentials_is_guest
    assert_equal({ user: 'guest', pass: 'guest' }, C.credentials('amqp://127.0.0.1:5672'))
  end

  def test_percent_escapes_are_decoded_to_the_bytes_they_stand_for
    assert_equal({ user: 'a@b:c/d eé'.b, pass: 'p%w' }, C.credentials('amqp://a%40b%3Ac%2Fd%20e%C3%A9:p%25w@127.0.0.1:5672/%2F'))
    assert_equal 'é', C.credentials('amqp://%C3%A9:x@h')[:user].dup.force_encoding(Encoding::UTF_8)
  end

  def test_a_plus_is_a_plus_not_a_space
    assert_equal({ user: 'tasker-ns+a', pass: 'ab+c/d=' }, C.credentials('amqp://tasker-ns+a:ab+c%2Fd=@127.0.0.1'))
  end

  def test_a_user_without_a_password_gets_the_default_password
    assert_equal({ user: 'tasker-ns-payments', pass: 'guest' }, C.credentials('amqp://tasker-ns-payments@127.0.0.1'))
  end

  def test_a_url_that_does_not_parse_is_refused_without_repeating_it
    e = assert_raises(ArgumentError) { C.credentials('amqp://user:secret with space@127.0.0.1') }
    refute_includes e.message, 'secret'
  end

  def test_the_worker_refuses_such_a_url_among_its_option_problems
    e = assert_raises(ArgumentError) { TaskerWorker::Worker.new(namespace: 'payments', handlers: { 'x' => ->(_c) { 1 } }, amqp_url: 'amqp://u:bad pw@h') }
    assert_match(/invalid worker options: .*not a valid URL/, e.message)
  end
end
