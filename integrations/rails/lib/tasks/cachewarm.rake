# frozen_string_literal: true

# bin/rails cachewarm:warm, cachewarm:loader, cachewarm:undo.
namespace :cachewarm do
  desc "Warm Rails.cache with the warmer: MANIFEST=path [CATEGORY=a,b] [DRY_RUN=1] [DETACH=1]; exits with the warmer's code"
  task warm: :environment do
    warm = Cachewarm.warm_for
    exit warm.execute(warm.run_argv_from(ENV))
  rescue Cachewarm::UnsupportedStore => e
    warn "error: #{e.message}"
    exit Cachewarm::Warm::USAGE_ERROR
  end

  desc "Take back what a warm wrote (the newest run, or RUN=run_dir): keys the app rewrote since are kept"
  task undo: :environment do
    warm = Cachewarm.warm_for
    exit warm.execute(warm.undo_argv(run_dir: ENV["RUN"]))
  rescue Cachewarm::UnsupportedStore => e
    warn "error: #{e.message}"
    exit Cachewarm::Warm::USAGE_ERROR
  end

  desc "List the registered loaders: pattern, kind and category, in the order they are tried"
  task loaders: :environment do
    Cachewarm.loaders.each do |loader|
      puts [loader.pattern.inspect, loader.render ? "fragment" : "value", loader.category || "-"].join("\t")
    end
  end

  desc "The loader the warmer starts (loader protocol v1 on stdin/stdout); not for people"
  task :loader do
    output = Cachewarm.become_loader!
    Rake::Task["environment"].invoke
    Cachewarm::Protocol.new(store: Cachewarm::Store.new(Rails.cache), loaders: Cachewarm.loaders, input: $stdin, output: output).run
    output.flush
  rescue Cachewarm::UnsupportedStore => e
    # On stderr, which the warmer keeps in the run's log and report.
    warn "error: #{e.message}"
    exit Cachewarm::Warm::USAGE_ERROR
  end
end
