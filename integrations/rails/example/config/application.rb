# frozen_string_literal: true

# A small shop: products in SQLite, cached in Rails.cache (Redis or memcached, chosen by the
# environment so one app serves both test setups), warmed by cachewarm.
require_relative "boot"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "cachewarm"

module Shop
  class Application < Rails::Application
    config.load_defaults 6.1
    config.eager_load = false
    config.root = File.expand_path("..", __dir__)
    config.secret_key_base = ENV.fetch("SECRET_KEY_BASE") { "example-app-only-" * 4 }
    config.logger = ActiveSupport::Logger.new($stderr)
    config.log_level = ENV.fetch("LOG_LEVEL", "warn").to_sym
    config.action_controller.perform_caching = true
    config.hosts.clear

    config.cache_store =
      case ENV.fetch("CACHE_STORE", "redis")
      when "redis"
        [:redis_cache_store, { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0"), namespace: "shop" }]
      when "memcached"
        [:mem_cache_store, *ENV.fetch("MEMCACHED_SERVERS", "127.0.0.1:11211").split(","), { namespace: "shop" }]
      else
        raise "CACHE_STORE is redis or memcached, got #{ENV['CACHE_STORE'].inspect}"
      end
  end
end
