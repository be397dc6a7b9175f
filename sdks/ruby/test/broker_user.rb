# frozen_string_literal: true

require 'json'
require 'net/http'
require 'securerandom'
require 'tasker_worker'

# A RabbitMQ user of its own for one test, created through the management HTTP API
# (TASKER_RABBITMQ_MANAGEMENT_URL, default http://guest:guest@127.0.0.1:15672, an
# administrator's) and deleted by #delete. Its name and password hold characters an
# amqp:// URL must percent-encode, and a `+`, which the URL keeps as it is (RFC 3986
# allows it in the user information): the URL's decoding is what the test is about.
class BrokerUser
  MANAGEMENT_URL = ENV['TASKER_RABBITMQ_MANAGEMENT_URL'] || 'http://guest:guest@127.0.0.1:15672'

  attr_reader :name, :password

  # `prefix`: the only names (and server-named queues) it may configure, write and read.
  def initialize(prefix, tag)
    @name = "#{tag}-#{SecureRandom.hex(3)} a@b:c/d+é"
    @password = "pw+#{SecureRandom.hex(6)}/@:%"
    @vhost = vhost_of(AMQP_URL)
    names = "^(#{Regexp.escape(prefix)}\\..*|amq\\.gen-.*)$"
    request(Net::HTTP::Put, "/api/users/#{path_segment(@name)}", { password: @password, tags: '' })
    begin
      request(Net::HTTP::Put, "/api/permissions/#{path_segment(@vhost)}/#{path_segment(@name)}", { configure: names, write: names, read: names })
    rescue StandardError
      delete
      raise
    end
  end

  # AMQP_URL with this user's credentials in it.
  def url
    uri = URI(AMQP_URL)
    uri.userinfo = "#{userinfo_encode(@name)}:#{userinfo_encode(@password)}"
    uri.to_s
  end

  def delete
    request(Net::HTTP::Delete, "/api/users/#{path_segment(@name)}", nil)
  end

  private

  # Percent-encodes all but unreserved characters and `+`.
  def userinfo_encode(text)
    text.b.gsub(/[^A-Za-z0-9\-._~+]/n) { |c| format('%%%02X', c.ord) }
  end

  def path_segment(text)
    text.b.gsub(/[^A-Za-z0-9\-._~]/n) { |c| format('%%%02X', c.ord) }
  end

  def vhost_of(amqp_url)
    path = URI(amqp_url).path
    path.nil? || path.empty? || path == '/' ? '/' : TaskerWorker::AmqpUrl.decode(path[1..])
  end

  def request(kind, path, body)
    api = URI(MANAGEMENT_URL)
    req = kind.new(URI.join(api, path).request_uri)
    req.basic_auth(TaskerWorker::AmqpUrl.decode(api.user || 'guest'), TaskerWorker::AmqpUrl.decode(api.password || 'guest'))
    if body
      req['content-type'] = 'application/json'
      req.body = JSON.generate(body)
    end
    res = Net::HTTP.start(api.host, api.port, use_ssl: api.scheme == 'https') { |http| http.request(req) }
    raise "management API #{kind::METHOD} #{path}: HTTP #{res.code} #{res.body}" unless res.is_a?(Net::HTTPSuccess)
  end
end
