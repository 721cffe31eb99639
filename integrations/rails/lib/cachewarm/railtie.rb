# frozen_string_literal: true

require "rails/railtie"
require "cachewarm"
require "cachewarm/store"
require "cachewarm/protocol"
require "cachewarm/warm"
require "cachewarm/access_log"

module Cachewarm
  # Configuration (`config.cachewarm`), the access log, and the rake tasks.
  class Railtie < Rails::Railtie
    config.cachewarm = ActiveSupport::OrderedOptions.new
    # The JSON lines access log; off unless set (default: CACHEWARM_ACCESS_LOG).
    config.cachewarm.access_log = nil
    # The warmer binary (default: CACHEWARM_WARMER, else `warmer` on the PATH).
    config.cachewarm.warmer = nil
    # The manifest when MANIFEST= is not given (else the warmer's CACHEWARM_MANIFEST/config).
    config.cachewarm.manifest = nil
    # Where run directories go (default: the warmer's, `cachewarm-runs/` under Rails.root).
    config.cachewarm.runs_dir = nil
    # true/false to override the warmer's environment rules (off in development and test).
    config.cachewarm.enabled = nil
    # The loader command, when `ruby bin/rails cachewarm:loader` is not how the app is run
    # (`"bundle exec rails cachewarm:loader"`).
    config.cachewarm.loader_command = nil
    # More `warmer run` flags (`["--timeout", "3m", "--rate", "5000"]`).
    config.cachewarm.warmer_args = []

    config.after_initialize do |app|
      path = app.config.cachewarm.access_log.presence || ENV["CACHEWARM_ACCESS_LOG"].presence
      Cachewarm::AccessLog.install(path: path, store: Rails.cache) if path && !Cachewarm.loader_process?
    end

    rake_tasks do
      load File.expand_path("../tasks/cachewarm.rake", __dir__)
    end
  end

  class << self
    # The warmer's `warm` for this app.
    def warm_for(app = Rails.application)
      Warm.new(store: Store.new(Rails.cache), settings: app.config.cachewarm, root: Rails.root, rails_env: Rails.env)
    end

    # Whether this process is a loader the warmer started (its cache writes are captured, its
    # stdout is the protocol).
    def loader_process?
      @loader_process == true
    end

    # Makes this process a loader: keeps the real stdout for the protocol and points $stdout
    # (and file descriptor 1) at stderr, so nothing the app prints while booting or loading
    # can corrupt the protocol. Returns the protocol's output.
    def become_loader!
      @loader_process = true
      protocol = STDOUT.dup
      STDOUT.reopen(STDERR)
      $stdout = STDERR
      protocol
    end
  end
end
