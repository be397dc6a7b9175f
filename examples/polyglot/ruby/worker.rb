#!/usr/bin/env ruby
# frozen_string_literal: true

# Runs one team's Ruby worker: `ruby worker.rb customer_success|payments` (or
# TASKER_NAMESPACE), against TASKER_AMQP_URL / TASKER_AMQP_PREFIX. SIGTERM: running steps
# finish, then it exits.
$LOAD_PATH.unshift File.expand_path('../../../sdks/ruby/lib', __dir__)
require_relative 'customer_success'
require_relative 'payments'

TEAMS = { 'customer_success' => CustomerSuccess::StepHandlers::ALL, 'payments' => Payments::ALL }.freeze

namespace = ARGV[0] || ENV.fetch('TASKER_NAMESPACE', '')
abort "usage: worker.rb #{TEAMS.keys.join('|')}" unless TEAMS.key?(namespace)
TaskerWorker::Worker.new(namespace: namespace, handlers: TEAMS[namespace], concurrency: 10).run
