# frozen_string_literal: true

module Cachewarm
  # The loaders an application registered, tried in registration order: the first whose
  # pattern matches a key computes its value.
  class Loaders
    # One registered loader.
    # `render`: the block renders through the app and its fragment cache writes are the
    # entries (Cachewarm.fragment_loader); otherwise it returns the value.
    Loader = Struct.new(:pattern, :category, :write_options, :block, :render) do
      # Calls the block with the match's named groups as keyword arguments (a block without
      # named groups gets the match itself).
      def call(match)
        names = match.names
        if names.empty?
          block.call(match)
        else
          block.call(**names.to_h { |name| [name.to_sym, match[name]] })
        end
      end
    end

    include Enumerable

    def initialize
      @loaders = []
    end

    def register(pattern, category: nil, write_options: {}, render: false, &block)
      raise ArgumentError, "Cachewarm.loader needs a block that returns the value to cache" unless block
      raise ArgumentError, "Cachewarm.loader takes a Regexp, got #{pattern.inspect}" unless pattern.is_a?(Regexp)

      @loaders << Loader.new(pattern, category, write_options.freeze, block, render)
      self
    end

    def each(&block)
      @loaders.each(&block)
    end

    # The first loader whose pattern matches `key`, with the match; nil when none does.
    def find(key)
      @loaders.each do |loader|
        match = loader.pattern.match(key)
        return [loader, match] if match
      end
      nil
    end

    # Forgets every loader (tests, and code reloading in development).
    def clear
      @loaders.clear
    end
  end
end
