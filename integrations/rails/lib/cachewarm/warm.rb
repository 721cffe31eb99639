# frozen_string_literal: true

require "rbconfig"
require "shellwords"

module Cachewarm
  # The warmer's command line and environment for `Rails.cache`, and running it.
  #
  # The target URL can carry a password, so it goes to the warmer in `CACHEWARM_TARGETS`,
  # never in argv (which every user of the machine can read). The environment profile is
  # Rails'; the warmer's own rules then keep warming off in development and test unless
  # `config.cachewarm.enabled` (or the warmer's config) turns it on.
  class Warm
    # Exit code for a usage or configuration error, as the warmer's own.
    USAGE_ERROR = 2

    def initialize(store:, settings:, root:, rails_env:, env: ENV)
      @store = store
      @settings = settings
      @root = root.to_s
      @rails_env = rails_env.to_s
      @env = env
    end

    # The warmer binary: `CACHEWARM_WARMER`, else `config.cachewarm.warmer`, else `warmer` on
    # the PATH.
    def warmer
      @env["CACHEWARM_WARMER"].presence || @settings[:warmer].presence || "warmer"
    end

    # The loader command the warmer starts, as an `exec:` source.
    def source
      command = @settings[:loader_command].presence ||
                Shellwords.join([RbConfig.ruby, File.join(@root, "bin", "rails"), "cachewarm:loader"])
      "exec:#{command}"
    end

    # The environment the warmer runs with, on top of the caller's.
    def environment
      env = {
        "CACHEWARM_TARGETS" => @store.target_url,
        "CACHEWARM_ENV" => @env["CACHEWARM_ENV"].presence || @rails_env,
        # The loader processes the warmer starts boot this same environment.
        "RAILS_ENV" => @rails_env,
      }
      env["CACHEWARM_ENABLED"] = @settings[:enabled].to_s unless @settings[:enabled].nil?
      env
    end

    # argv of `warmer run`.
    def run_argv(manifest:, categories: [], dry_run: false, detach: false)
      argv = [warmer, "run"]
      manifest = manifest.presence || @settings[:manifest].presence
      argv += ["--manifest", manifest.to_s] if manifest
      argv += ["--source", source]
      categories.each { |category| argv += ["--category", category] }
      argv << "--dry-run" if dry_run
      argv << "--detach" if detach
      argv += ["--runs-dir", @settings[:runs_dir].to_s] if @settings[:runs_dir].present?
      argv + Array(@settings[:warmer_args]).map(&:to_s)
    end

    # argv of `warmer run` from the task's variables: MANIFEST, CATEGORY (comma-separated),
    # DRY_RUN=1, DETACH=1.
    def run_argv_from(vars)
      yes = ->(name) { %w[1 true yes].include?(vars[name].to_s.downcase) }
      run_argv(
        manifest: vars["MANIFEST"],
        categories: vars["CATEGORY"].to_s.split(",").map(&:strip).reject(&:empty?),
        dry_run: yes.("DRY_RUN"),
        detach: yes.("DETACH"),
      )
    end

    # argv of `warmer undo` (the newest run, or `run_dir`).
    def undo_argv(run_dir: nil)
      argv = [warmer, "undo"]
      argv << run_dir.to_s if run_dir.present?
      argv += ["--runs-dir", @settings[:runs_dir].to_s] if @settings[:runs_dir].present?
      argv
    end

    # Runs the warmer from the app's root; returns its exit code.
    def execute(argv)
      pid = Process.spawn(environment, *argv, chdir: @root)
      Process.wait(pid)
      status = $?
      status.exitstatus || (128 + status.termsig.to_i)
    rescue Errno::ENOENT, Errno::EACCES => e
      $stderr.puts "error: cannot run the warmer `#{argv.first}`: #{e.message}"
      $stderr.puts "hint: install it on the PATH, or set CACHEWARM_WARMER or config.cachewarm.warmer to its path"
      USAGE_ERROR
    end
  end
end
