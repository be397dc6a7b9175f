# frozen_string_literal: true

require 'uri'

module TaskerWorker
  # The broker credentials of an amqp:// URL, percent-decoded as RFC 3986 (and the
  # TypeScript worker's `amqpUsername`) decode them: `%40` is `@`, and `+` is a plus sign.
  #
  # Bunny decodes them as form data instead, where `+` is a space: a password with a `+`
  # left as is (base64 has them) fails to log in, and a user named `a+b` would log in, and
  # sign its results, as `a b`. The worker passes these credentials to Bunny itself, and the
  # same user is the `user_id` of every result it publishes (docs/protocol.md, section 2).
  module AmqpUrl
    # RabbitMQ's defaults, and Bunny's, for a URL that names no user or password.
    DEFAULT_USER = 'guest'
    DEFAULT_PASSWORD = 'guest'

    # `{ user:, pass: }`: what the URL names, percent-decoded (binary strings); a part it
    # leaves out is guest. Raises ArgumentError, without the URL (it holds a password), when it is not a URL.
    def self.credentials(url)
      uri = begin
        URI.parse(url)
      rescue URI::InvalidURIError
        raise ArgumentError, 'the AMQP URL is not a valid URL (percent-encode reserved characters of the user and password)'
      end
      { user: uri.user ? decode(uri.user) : DEFAULT_USER, pass: uri.password ? decode(uri.password) : DEFAULT_PASSWORD }
    end

    # %XX escapes only (URI::DEFAULT_PARSER.unescape leaves `+` alone). Binary: the bytes
    # go on the wire as they are (RabbitMQ names are UTF-8), and Bunny's frame encoder
    # cannot append a UTF-8 string holding other than ASCII to its binary buffer.
    def self.decode(text)
      URI::DEFAULT_PARSER.unescape(text).b
    end
  end
end
