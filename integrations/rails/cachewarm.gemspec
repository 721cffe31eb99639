# frozen_string_literal: true

# The Rails side of cachewarm: a Railtie with `bin/rails cachewarm:warm`, the loader task the
# warmer starts (`exec:bin/rails cachewarm:loader`), and an access-log subscriber.
require_relative "lib/cachewarm/version"

Gem::Specification.new do |spec|
  spec.name = "cachewarm"
  spec.version = Cachewarm::VERSION
  spec.summary = "Warm Rails.cache across deploys with cachewarm's warmer, through Rails' own cache code"
  spec.description = <<~TEXT
    A Railtie for cachewarm: `bin/rails cachewarm:warm` runs the warmer against Rails.cache
    (RedisCacheStore, or MemCacheStore with Dalli's ring), `bin/rails cachewarm:loader` computes
    values with the application's own code and serializes them with the store's own write path
    (loader protocol v1), and an ActiveSupport::Notifications subscriber appends the cache's
    accesses to a JSON lines log for `analyzer ingest`.
  TEXT
  spec.authors = ["cachewarm contributors"]
  spec.license = "Apache-2.0"
  spec.required_ruby_version = ">= 2.7"
  spec.files = Dir["lib/**/*.rb", "lib/tasks/*.rake"]
  spec.require_paths = ["lib"]

  # Tested against Debian 12's packages (Rails 6.1.7, Dalli 3.0.6, redis 4.8); written for the
  # 7.x cache coders too, which the loader reaches through the store's own `write`.
  spec.add_dependency "railties", ">= 6.1", "< 9"
  spec.add_dependency "activesupport", ">= 6.1", "< 9"
  spec.add_development_dependency "minitest", ">= 5"
  spec.add_development_dependency "rake", ">= 13"
end
