# frozen_string_literal: true

require "base64"
require "digest"
require "uri"

module Cachewarm
  # A cache store cachewarm cannot warm, or a setting of it the warmer cannot reproduce.
  class UnsupportedStore < StandardError; end

  # What `Rails.cache` is, from the warmer's side: its kind, its namespace, the URLs the warmer
  # writes to, and the bytes, flags and TTL the store itself would write for a value.
  #
  # The bytes are never re-implemented here: `capture` runs the store's own `write` (key
  # normalization, `Entry` with `expires_in` and `version`, the coder of whatever
  # `cache_format_version` is in force, compression, `race_condition_ttl`'s extra physical
  # TTL) on a copy of the store whose client records the call instead of sending it. Rails
  # changes these details between versions; its own code keeps the copy faithful.
  class Store
    attr_reader :cache

    def initialize(cache)
      @cache = cache
      @kind = kind_of(cache)
    end

    # `:redis` or `:memcached`.
    attr_reader :kind

    # The warmer's `store_kind` for this store.
    def store_kind
      @kind.to_s
    end

    # The store's namespace (a Proc is called, as the store calls it for every key), or nil.
    def namespace
      namespace = @cache.options[:namespace]
      namespace = namespace.call if namespace.respond_to?(:call)
      namespace&.to_s
    end

    # The Rails version and the cache format in force: Rails 6.1 always writes Marshal'd
    # `Entry` objects ("6.1"); 7.0 and later follow `config.active_support.cache_format_version`.
    def format_version
      if ActiveSupport::Cache.respond_to?(:format_version)
        ActiveSupport::Cache.format_version.to_s
      else
        "6.1"
      end
    end

    # How the app's client decodes what is written, for the loader's hello.
    def serializer
      coder = @cache.instance_variable_get(:@coder)
      coder_name = coder.is_a?(Module) ? coder.name : coder.class.name
      case @kind
      when :redis then "rails-cache-#{format_version}/#{coder_name}"
      when :memcached then "rails-cache-#{format_version}/#{coder_name}+dalli-#{dalli_serializer_name}"
      end
    end

    # Changes when anything that decides the bytes changes (Rails, the coder, Dalli's
    # serializer, the namespace): the warmer records it in the report beside the run.
    def fingerprint
      Digest::SHA256.hexdigest([Rails.version, @cache.class.name, serializer, namespace.to_s].join("\0"))[0, 16]
    end

    # The application's key for a store key: without the namespace, and for MemCacheStore with
    # its %XX escaping undone. Returns [key, nil], or [nil, why] when the key cannot be mapped
    # back (another namespace, or a long key the store replaced by a digest).
    def app_key(store_key)
      key = store_key
      prefix = namespace && "#{namespace}:"
      if prefix
        return [nil, "key is not in the store's namespace `#{namespace}`"] unless key.start_with?(prefix)

        key = key.delete_prefix(prefix)
      end
      if @kind == :memcached
        return [nil, "MemCacheStore replaced this long key by a digest; the original key is unknown"] if store_key.match?(/:(?:md5|hash):\h{32,64}\z/)

        key = key.b.gsub(/%(\h\h)/) { Regexp.last_match(1).hex.chr }.force_encoding(Encoding::UTF_8)
      # 6.1 suffixes `:sha2:`, later versions `:hash:` with ActiveSupport::Digest's digest.
      elsif store_key.bytesize >= 1024 && store_key.match?(/:(?:sha2|hash):\h{32,64}\z/)
        return [nil, "RedisCacheStore replaced this long key by a digest; the original key is unknown"]
      end
      [key, nil]
    end

    # The entries the store writes for `Rails.cache.write(name, value, **options)`, as loader
    # protocol entries: `{"key", "value_b64", "ttl_ms"}` and, for memcached, `"flags"`.
    def capture(name, value, **options)
      store, recorder = recording_copy
      AccessLog.quietly { store.write(name, value, **options) }
      raise UnsupportedStore, "#{@cache.class.name}#write sent nothing to its client for `#{name}`" if recorder.writes.empty?

      recorder.writes
    end

    # The entries the block's rendering writes to the cache: the block renders with
    # ActionController's cache store and `Rails.cache` replaced by a recording copy of this
    # one, on which every read misses, so Rails' own fragment helpers build the keys (template
    # digest included) and the values, and nothing reaches the real store. (The loader is
    # single-threaded: nothing else sees the swap.)
    def capture_rendering
      store, recorder = recording_copy
      previous = [ActionController::Base.cache_store, Rails.cache]
      ActionController::Base.cache_store = store
      Rails.cache = store
      begin
        AccessLog.quietly { yield }
      ensure
        ActionController::Base.cache_store, Rails.cache = previous
      end
      recorder.writes
    end

    # The warmer's URL for this store. It may hold a password: give it to the warmer through
    # the environment (`CACHEWARM_TARGETS`), never on its command line.
    def target_url
      @kind == :redis ? redis_url : memcached_url
    end

    private

    # A copy of the store whose client records what it is sent instead of sending it.
    def recording_copy
      store = @cache.dup
      # The copy must not share the original's per-request local cache (LocalCache keys it by
      # the store object).
      store.remove_instance_variable(:@local_cache_key) if store.instance_variable_defined?(:@local_cache_key)
      if @kind == :redis
        recorder = RedisRecorder.new
        store.instance_variable_set(:@redis, recorder)
        store.define_singleton_method(:redis) { recorder }
      else
        recorder = DalliRecorder.new(dalli_options)
        store.instance_variable_set(:@data, recorder)
      end
      [store, recorder]
    end

    def kind_of(cache)
      if defined?(ActiveSupport::Cache::RedisCacheStore) && cache.is_a?(ActiveSupport::Cache::RedisCacheStore)
        :redis
      elsif defined?(ActiveSupport::Cache::MemCacheStore) && cache.is_a?(ActiveSupport::Cache::MemCacheStore)
        :memcached
      else
        raise UnsupportedStore,
              "Rails.cache is a #{cache.class.name}; cachewarm warms RedisCacheStore and MemCacheStore " \
              "(config.cache_store = :redis_cache_store or :mem_cache_store)"
      end
    end

    def redis_url
      options = @cache.redis_options
      urls = Array(options[:url])
      if options[:redis] || urls.empty?
        client = @cache.redis
        client = client.with { |c| c } if client.respond_to?(:checkout) # a ConnectionPool
        return url_from_redis_client(client)
      end
      raise UnsupportedStore, "RedisCacheStore over several URLs (Redis::Distributed) is not supported: the warmer does not hash keys the way Redis::Distributed does" if urls.size > 1

      url = URI.parse(urls.first.to_s)
      url.password = options[:password] if options[:password] && !url.password
      url.to_s
    end

    def url_from_redis_client(client)
      raise UnsupportedStore, "Redis::Distributed is not supported" if defined?(::Redis::Distributed) && client.is_a?(::Redis::Distributed)

      config = client.respond_to?(:_client) ? client._client : client.instance_variable_get(:@client)
      if config.respond_to?(:path) && config.path
        raise UnsupportedStore, "Redis over a Unix socket (#{config.path}) is not supported by the warmer"
      end
      scheme = config.respond_to?(:ssl?) && config.ssl? ? "rediss" : "redis"
      auth = ""
      if config.password
        user = config.respond_to?(:username) ? config.username.to_s : ""
        auth = "#{URI.encode_www_form_component(user)}:#{URI.encode_www_form_component(config.password)}@"
      end
      "#{scheme}://#{auth}#{config.host}:#{config.port}/#{config.db}"
    end

    def memcached_url
      servers = dalli_servers.map { |server| memcached_server(server) }
      "memcached://#{servers.join(',')}?hashing=dalli"
    end

    # "host:port" as the warmer takes it, from Dalli's spelling of one server. Dalli's ring
    # hashes this text, so it is kept exactly (same host name, same order).
    def memcached_server(server)
      text = server.to_s
      if text.start_with?("memcached://")
        uri = URI.parse(text)
        raise UnsupportedStore, "memcached server `#{uri.host}` has SASL credentials; the warmer does not speak SASL" if uri.user

        return "#{uri.host}:#{uri.port || 11_211}"
      end
      raise UnsupportedStore, "memcached over a Unix socket (#{text}) is not supported by the warmer" if text.start_with?("/")

      host, port, weight = text.split(":")
      raise UnsupportedStore, "memcached server `#{text}` has a weight; the warmer routes unweighted servers only" if weight && weight.to_i != 1

      "#{host}:#{port || 11_211}"
    end

    def dalli_client
      data = @cache.instance_variable_get(:@data)
      data.respond_to?(:checkout) ? data.with { |c| c } : data
    end

    def dalli_servers
      Array(dalli_client.instance_variable_get(:@servers))
    end

    def dalli_options
      dalli_client.instance_variable_get(:@options) || {}
    end

    def dalli_serializer_name
      serializer = dalli_options[:serializer] || Marshal
      serializer.is_a?(Module) ? serializer.name : serializer.class.name
    end
  end

  # Stands in for the redis-rb client during a captured write: records SET and refuses
  # anything else, so a store that starts writing differently is noticed, not mis-copied.
  class RedisRecorder
    attr_reader :writes

    def initialize
      @writes = []
    end

    # ConnectionPool's and Rails 7.1's ways to reach the client.
    def with
      yield self
    end

    def then
      yield self
    end

    # Reads miss: a captured render computes every fragment.
    def get(_key)
      nil
    end

    def mget(*keys)
      Array.new(keys.flatten.size)
    end

    def set(key, value, ex: nil, px: nil, nx: nil, xx: nil, **_other)
      ttl_ms = px || (ex && ex * 1000)
      @writes << Cachewarm.entry(key, value, ttl_ms: ttl_ms&.to_i)
      true
    end

    def method_missing(name, *_args, **_kwargs)
      raise UnsupportedStore, "RedisCacheStore called redis.#{name} while writing; cachewarm captures only GET, MGET and SET"
    end

    def respond_to_missing?(_name, _include_private = false)
      false
    end
  end

  # Stands in for the Dalli client during a captured write: records SET/ADD, then runs Dalli's
  # own key manager and value marshaller with the app client's options, as Dalli does before
  # it sends the value, so the key, bytes and flags are the ones the app's client writes.
  class DalliRecorder
    attr_reader :writes

    def initialize(client_options)
      unless defined?(::Dalli::KeyManager) && defined?(::Dalli::Protocol::ValueMarshaller)
        raise UnsupportedStore, "cachewarm needs Dalli 3 (Dalli::KeyManager, Dalli::Protocol::ValueMarshaller)"
      end

      @keys = ::Dalli::KeyManager.new(client_options)
      @marshaller = ::Dalli::Protocol::ValueMarshaller.new(client_options)
      @writes = []
    end

    def with
      yield self
    end

    # Reads miss: a captured render computes every fragment.
    def get(_key, _options = nil)
      nil
    end

    def get_multi(*_keys)
      {}
    end

    def set(key, value, ttl = nil, options = nil, **keywords)
      record(key, value, ttl, (options || {}).merge(keywords))
    end

    def add(key, value, ttl = nil, options = nil, **keywords)
      record(key, value, ttl, (options || {}).merge(keywords))
    end

    def method_missing(name, *_args, **_kwargs)
      raise UnsupportedStore, "MemCacheStore called dalli.#{name} while writing; cachewarm captures only get, get_multi, set and add"
    end

    def respond_to_missing?(_name, _include_private = false)
      false
    end

    private

    def record(key, value, ttl, options)
      key = @keys.validate_key(key)
      bytes, flags = @marshaller.store(key, value, options)
      # memcached's 0 is "no expiry"; Dalli turns TTLs over 30 days into timestamps itself.
      ttl_s = ttl.to_i
      @writes << Cachewarm.entry(key, bytes, ttl_ms: ttl_s.positive? ? ttl_s * 1000 : nil, flags: flags)
      true
    end
  end

  class << self
    # One loader protocol entry.
    def entry(key, bytes, ttl_ms:, flags: nil)
      key = key.to_s.dup.force_encoding(Encoding::UTF_8)
      raise UnsupportedStore, "store key #{key.inspect} is not UTF-8; the loader protocol carries keys as JSON text" unless key.valid_encoding?

      entry = { "key" => key, "value_b64" => Base64.strict_encode64(bytes.to_s), "ttl_ms" => ttl_ms }
      entry["flags"] = flags unless flags.nil?
      entry
    end
  end
end
