# frozen_string_literal: true

# cachewarm for Rails: loaders that compute cache values with the application's own code, the
# loader protocol the warmer speaks to them, the `cachewarm:warm` task, and the access log.
#
# Layout:
# - `cachewarm/loaders.rb`    the registry behind `Cachewarm.loader`
# - `cachewarm/store.rb`      what `Rails.cache` is: kind, namespace, warmer URLs, and the
#                             capture of the store's own write path (key, bytes, flags, TTL)
# - `cachewarm/protocol.rb`   loader protocol v1 over stdin/stdout (`bin/rails cachewarm:loader`)
# - `cachewarm/warm.rb`       the warmer command line and environment (`cachewarm:warm`, `:undo`)
# - `cachewarm/access_log.rb` the ActiveSupport::Notifications subscriber
# - `cachewarm/railtie.rb`    configuration (`config.cachewarm`) and the rake tasks
require "cachewarm/version"
require "cachewarm/loaders"

module Cachewarm
  # Raised by a loader block when there is nothing to warm for a key (the record is gone, the
  # key is not worth computing): the warmer counts it as a source miss with the message.
  class Skip < StandardError; end

  # A value with options of its own, for a loader block that knows them only once it has the
  # record (`version: product.cache_version`, an `expires_in` that depends on the record).
  Value = Struct.new(:value, :options)

  class << self
    # Registers a loader for the keys `pattern` matches; the key is the store key without the
    # store's namespace (and, for memcached, with MemCacheStore's %XX escaping undone). The
    # block is called with the named groups as keyword arguments and returns the value to
    # cache. Options are those of `Rails.cache.write`: `expires_in:`, `race_condition_ttl:`,
    # `version:`, `compress:`; `category:` labels it in `bin/rails cachewarm:loaders`.
    #
    #   Cachewarm.loader(%r{\Aproducts/(?<id>\d+)\z}, expires_in: 1.hour) do |id:|
    #     Product.find(id).as_json
    #   end
    def loader(pattern, category: nil, **write_options, &block)
      loaders.register(pattern, category: category, write_options: write_options, &block)
    end

    # Registers a loader for view fragments: the block renders what contains the fragment
    # (`ApplicationController.render(...)`), and the entries are what Rails' own `cache`
    # helper writes while it renders, keys with the current template digest included. A key
    # whose digest changed since the manifest was made is warmed under its new key.
    #
    #   Cachewarm.fragment_loader(%r{\Aviews/products/page:\h+/products/(?<id>\d+)\z}) do |id:|
    #     ApplicationController.render(template: "products/page", assigns: { product: Product.find(id) })
    #   end
    def fragment_loader(pattern, category: nil, &block)
      loaders.register(pattern, category: category, render: true, &block)
    end

    # Wraps a loader block's result with per-key write options:
    # `Cachewarm.value(product.card, version: product.cache_version)`.
    def value(value, **write_options)
      Value.new(value, write_options)
    end

    # The loaders registered so far.
    def loaders
      @loaders ||= Loaders.new
    end
  end
end

require "cachewarm/railtie" if defined?(Rails::Railtie)
