# frozen_string_literal: true

require "json"
require "time"

module Cachewarm
  # Appends every operation of one cache store to a JSON lines file in cachewarm's canonical
  # access log format (AccessEvent fields: ts, key, op, hit, value_size, ttl_s, latency_us,
  # namespace), for `analyzer ingest`.
  #
  # A request pays for a hash pushed onto an in-memory buffer and nothing else: a background
  # thread formats and writes the lines. When the buffer is full, events are dropped and
  # counted; when formatting or writing fails, the error is counted. Neither ever reaches the
  # request. After a fork (Puma, Unicorn) the child starts its own writer.
  #
  # `fetch` is logged as one read: a hit when Rails answers from the cache, a miss whose
  # latency includes computing the value (the cost a warm entry saves), followed by the write.
  class AccessLog
    # The ActiveSupport::Notifications events of cache stores, and the op each one logs.
    OPS = {
      "cache_read.active_support" => "get",
      "cache_read_multi.active_support" => "get",
      "cache_write.active_support" => "set",
      "cache_write_multi.active_support" => "set",
      "cache_delete.active_support" => "delete",
      "cache_delete_multi.active_support" => "delete",
      "cache_increment.active_support" => "incr",
      "cache_decrement.active_support" => "decr",
      "cache_exist?.active_support" => "other",
      "cache_fetch_hit.active_support" => nil,
      "cache_generate.active_support" => nil,
    }.freeze

    DEFAULT_BUFFER = 10_000
    DEFAULT_FLUSH_INTERVAL = 1.0

    # Counters since the log was installed.
    Stats = Struct.new(:written, :dropped, :errors)

    class << self
      # The installed log, if any.
      attr_reader :current

      # Subscribes a log for `store` writing to `path`; returns it. One log per process:
      # installing again replaces the earlier one.
      def install(path:, store:, namespace: nil, buffer: DEFAULT_BUFFER, flush_interval: DEFAULT_FLUSH_INTERVAL)
        @current&.uninstall
        @current = new(path: path, store: store, namespace: namespace, buffer: buffer, flush_interval: flush_interval).tap(&:subscribe)
      end

      # Runs the block without logging the cache operations it makes in this thread (the
      # loader's captured writes are not traffic).
      def quietly
        previous = Thread.current[:cachewarm_quiet]
        Thread.current[:cachewarm_quiet] = true
        yield
      ensure
        Thread.current[:cachewarm_quiet] = previous
      end

      # Where the store's code reports the bytes of the value it serialized or read, for
      # `value_size` (set by the hooks in `SizeOfRedisEntries` and `SizeOfDalliValues`).
      def value_size=(bytes)
        Thread.current[:cachewarm_value_size] = bytes
      end
    end

    attr_reader :path, :stats

    def initialize(path:, store:, namespace:, buffer:, flush_interval:)
      @path = path.to_s
      @store = store
      @store_class = store.class.name
      @namespace = namespace || default_namespace(store)
      @capacity = buffer
      @flush_interval = flush_interval
      @stats = Stats.new(0, 0, 0)
      @lock = Mutex.new
      @buffer = []
      @pid = nil
      @subscriptions = []
    end

    def subscribe
      hook_value_sizes
      @subscriptions = OPS.keys.map { |name| ActiveSupport::Notifications.subscribe(name, self) }
      at_exit { flush }
      self
    end

    def uninstall
      @subscriptions.each { |s| ActiveSupport::Notifications.unsubscribe(s) }
      @subscriptions = []
      flush
    end

    # ActiveSupport::Notifications calls these around each event, in the request's thread.
    def start(_name, _id, payload)
      return if Thread.current[:cachewarm_quiet] || payload[:store] != @store_class

      starts.push(Process.clock_gettime(Process::CLOCK_REALTIME), Process.clock_gettime(Process::CLOCK_MONOTONIC))
      Thread.current[:cachewarm_value_size] = nil
    rescue StandardError
      count_error
    end

    def finish(name, _id, payload)
      return if Thread.current[:cachewarm_quiet] || payload[:store] != @store_class

      started_mono = starts.pop
      started_at = starts.pop
      return unless started_mono

      latency_us = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started_mono) * 1_000_000).round
      record(name, payload, started_at, latency_us)
    rescue StandardError
      count_error
    end

    # Writes out what is buffered (called by the writer thread, and at exit).
    def flush
      lines = @lock.synchronize { @buffer.slice!(0..) }
      return if lines.empty?

      text = +""
      lines.each do |event|
        text << JSON.generate(line(event)) << "\n"
      rescue StandardError
        count_error
      end
      File.open(@path, "a") { |file| file.write(text) }
      @lock.synchronize { @stats.written += lines.size }
    rescue StandardError
      count_error
    end

    private

    def starts
      Thread.current[:cachewarm_access_starts] ||= []
    end

    def pending_fetches
      Thread.current[:cachewarm_pending_fetches] ||= {}
    end

    def record(name, payload, started_at, latency_us)
      size = Thread.current[:cachewarm_value_size]
      case name
      when "cache_read.active_support"
        event = [started_at, key(payload[:key], payload), "get", payload[:hit] ? true : false, size, nil, latency_us]
        if payload[:super_operation] == :fetch && !payload[:hit]
          # The miss is logged once the value is computed, with the time it took.
          pending_fetches[event[1]] = event
        else
          push(event)
        end
      when "cache_generate.active_support"
        event = pending_fetches.delete(key(payload[:key], payload))
        if event
          event[6] += latency_us
          push(event)
        end
      when "cache_fetch_hit.active_support"
        nil
      when "cache_read_multi.active_support"
        hits = Array(payload[:hits])
        Array(payload[:key]).each do |name_|
          push([started_at, key(name_, payload), "get", hits.include?(name_), nil, nil, nil])
        end
      when "cache_write.active_support"
        op = payload[:unless_exist] ? "add" : "set"
        push([started_at, key(payload[:key], payload), op, nil, size, ttl(payload), latency_us])
      when "cache_write_multi.active_support"
        names = payload[:key].is_a?(Hash) ? payload[:key].keys : Array(payload[:key])
        names.each { |name_| push([started_at, key(name_, payload), "set", nil, nil, ttl(payload), nil]) }
      when "cache_delete_multi.active_support"
        # delete_multi instruments names it has already normalized.
        Array(payload[:key]).each { |store_key| push([started_at, text(store_key), "delete", nil, nil, nil, nil]) }
      else
        push([started_at, key(payload[:key], payload), OPS.fetch(name), nil, nil, nil, latency_us])
      end
    end

    def push(event)
      ensure_writer
      @lock.synchronize do
        if @buffer.size >= @capacity
          @stats.dropped += 1
        else
          @buffer << event
        end
      end
    end

    # The store key, as the store itself normalizes the name (namespace, escaping, digests).
    def key(name, options)
      text(@store.send(:normalize_key, name, options))
    end

    # Key text as the analyzer spells keys: UTF-8, with each invalid byte as `\xNN`.
    def text(key)
      key = key.to_s.dup.force_encoding(Encoding::UTF_8)
      key.valid_encoding? ? key : key.scrub { |bytes| bytes.unpack("C*").map { |b| format("\\x%02X", b) }.join }
    end

    def ttl(payload)
      expires_in = payload[:expires_in]
      expires_in&.to_i
    end

    def line(event)
      ts, key, op, hit, size, ttl_s, latency_us = event
      line = { "ts" => Time.at(ts).utc.iso8601(6), "key" => key, "op" => op }
      line["hit"] = hit unless hit.nil?
      line["value_size"] = size if size
      line["ttl_s"] = ttl_s if ttl_s
      line["latency_us"] = latency_us if latency_us
      line["namespace"] = @namespace if @namespace
      line
    end

    # The writer thread, started on first use in each process (a forked child has none).
    def ensure_writer
      return if @pid == Process.pid && @writer&.alive?

      @lock.synchronize do
        return if @pid == Process.pid && @writer&.alive?

        @pid = Process.pid
        @writer = Thread.new do
          Thread.current.name = "cachewarm-access-log" if Thread.current.respond_to?(:name=)
          loop do
            sleep @flush_interval
            flush
          end
        end
      end
    end

    def count_error
      @lock.synchronize { @stats.errors += 1 }
    rescue StandardError
      nil
    end

    def default_namespace(store)
      namespace = store.options[:namespace]
      namespace = namespace.call if namespace.respond_to?(:call)
      namespace&.to_s || store.class.name.demodulize.underscore
    end

    # value_size comes from the bytes the store's own code produced or received, so logging
    # it costs no serialization of its own.
    def hook_value_sizes
      if defined?(ActiveSupport::Cache::RedisCacheStore) && @store.is_a?(ActiveSupport::Cache::RedisCacheStore)
        @store.singleton_class.prepend(SizeOfRedisEntries) unless @store.singleton_class.include?(SizeOfRedisEntries)
      elsif defined?(::Dalli::Protocol::ValueMarshaller)
        ::Dalli::Protocol::ValueMarshaller.prepend(SizeOfDalliValues) unless ::Dalli::Protocol::ValueMarshaller.include?(SizeOfDalliValues)
      end
    end

    # RedisCacheStore: the serialized entry written or read.
    module SizeOfRedisEntries
      private

      def serialize_entry(*args, **kwargs)
        super.tap { |payload| AccessLog.value_size = payload.bytesize if payload.is_a?(String) }
      end

      def deserialize_entry(payload, *args, **kwargs)
        AccessLog.value_size = payload.bytesize if payload.is_a?(String)
        super
      end
    end

    # Dalli (MemCacheStore): the bytes sent to or received from memcached.
    module SizeOfDalliValues
      def store(*args)
        super.tap { |(bytes, _flags)| AccessLog.value_size = bytes.bytesize if bytes.is_a?(String) }
      end

      def retrieve(value, flags)
        AccessLog.value_size = value.bytesize if value.is_a?(String)
        super
      end
    end
  end
end
