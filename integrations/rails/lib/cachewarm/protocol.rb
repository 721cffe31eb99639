# frozen_string_literal: true

require "json"

module Cachewarm
  # Loader protocol v1, the application's side (`bin/rails cachewarm:loader`): a hello line,
  # then for every request line of manifest keys one answer line per key and a done line.
  # The warmer decides everything else (order, budget, add semantics, TTL rules, undo); this
  # side only computes values with the app's loaders and serializes them with the store's own
  # write path.
  class Protocol
    PROTOCOL_VERSION = 1

    # Errors worth a retry: the database or a service the loader reads went away for a moment.
    TRANSIENT_ERRORS = %w[
      ActiveRecord::ConnectionNotEstablished
      ActiveRecord::ConnectionTimeoutError
      ActiveRecord::StatementTimeout
      ActiveRecord::LockWaitTimeout
      ActiveRecord::Deadlocked
      ActiveRecord::QueryCanceled
      Timeout::Error
      Errno::ECONNREFUSED
      Errno::ECONNRESET
    ].freeze

    def initialize(store:, loaders:, input:, output:, log: $stderr)
      @store = store
      @loaders = loaders
      @input = input
      @output = output
      @log = log
    end

    # The hello line's object.
    def hello
      {
        "protocol" => PROTOCOL_VERSION,
        "framework" => "rails #{Rails.version}",
        "store_kind" => @store.store_kind,
        "alias" => "Rails.cache",
        "key_prefix" => @store.namespace ? "#{@store.namespace}:" : "",
        "namespace" => @store.namespace,
        "cache_format_version" => @store.format_version,
        "serializer" => @store.serializer,
        "fingerprint" => @store.fingerprint,
      }
    end

    # Answers requests until the warmer closes stdin.
    def run
      write("hello" => hello)
      @output.flush
      @input.each_line do |line|
        next if line.strip.empty?

        request = parse_request(line)
        next unless request

        id = request["id"]
        wrap do
          # Each answer is flushed as it is made: the warmer takes a loader that writes
          # nothing for a while (--loader-timeout) for a stalled one.
          request["keys"].each do |key|
            write(answer(id, key))
            @output.flush
          end
        end
        write("id" => id, "done" => true)
        @output.flush
      end
    end

    # The answer line for one manifest key.
    def answer(id, key)
      app_key, why = @store.app_key(key)
      return { "id" => id, "key" => key, "miss" => why } unless app_key

      loader, match = @loaders.find(app_key)
      return { "id" => id, "key" => key, "miss" => "no loader matches the key" } unless loader

      if loader.render
        entries = @store.capture_rendering { loader.call(match) }
        return { "id" => id, "key" => key, "miss" => "rendering wrote no fragment (is perform_caching on?)" } if entries.empty?

        return { "id" => id, "key" => key, "entries" => entries }
      end

      result = loader.call(match)
      return { "id" => id, "key" => key, "miss" => "the loader returned nil" } if result.nil?

      value, options = result.is_a?(Value) ? [result.value, loader.write_options.merge(result.options)] : [result, loader.write_options]
      { "id" => id, "key" => key, "entries" => @store.capture(app_key, value, **options) }
    rescue Skip => e
      { "id" => id, "key" => key, "miss" => e.message }
    rescue StandardError => e
      # The warmer counts misses and errors by reason: a reason names the kind of failure,
      # the key and the details go to stderr (the run's log).
      @log.puts("cachewarm loader: #{key}: #{e.class}: #{e.message}")
      return { "id" => id, "key" => key, "miss" => "record not found (#{e.class})" } if record_not_found?(e)

      { "id" => id, "key" => key, "error" => "#{e.class}: #{e.message.lines.first.to_s.strip}", "retryable" => transient?(e) }
    end

    private

    def parse_request(line)
      request = JSON.parse(line)
      unless request.is_a?(Hash) && request.key?("id") && request["keys"].is_a?(Array)
        raise JSON::ParserError, "a request is {\"id\": N, \"keys\": [...]}"
      end

      request
    rescue JSON::ParserError => e
      @log.puts("cachewarm loader: ignoring a request line that is not a request (#{e.message}): #{line[0, 200].inspect}")
      nil
    end

    # Each request runs like a unit of work in the app (connections returned, query cache and
    # per-request state reset afterwards), as a web request or a job does.
    def wrap(&block)
      if defined?(Rails.application) && Rails.application.respond_to?(:executor)
        Rails.application.executor.wrap(&block)
      else
        yield
      end
    end

    def write(object)
      @output.write(JSON.generate(object), "\n")
    end

    def record_not_found?(error)
      defined?(ActiveRecord::RecordNotFound) && error.is_a?(ActiveRecord::RecordNotFound)
    end

    def transient?(error)
      error.class.ancestors.any? { |ancestor| TRANSIENT_ERRORS.include?(ancestor.name) }
    end
  end
end
