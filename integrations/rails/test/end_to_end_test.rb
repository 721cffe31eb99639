# frozen_string_literal: true

# The whole loop for a Rails app, per store, with real servers and the real binaries: traffic
# through the example app writes the access log; `analyzer ingest` reads every line of it;
# `analyzer rank --preset rails` makes the manifest; the cache is cleared; `bin/rails
# cachewarm:warm` runs the warmer, which asks the app's loader task for the values; the app
# then reads them back as its own, with their expiry, and the replayed traffic's first reads
# hit where the cold run's missed. A second warm writes nothing; undo takes the warm back.
require_relative "test_helper"
require "redis"

class EndToEndTest < Minitest::Test
  include TestSupport::Harness

  PRODUCTS = 40
  REQUESTS = 600

  # Why: RedisCacheStore, one server, namespace `shop`.
  def test_redis_store
    redis = start_redis
    url = "redis://#{redis.address}/0"
    client = Redis.new(url: url)
    run_loop("redis", { "CACHE_STORE" => "redis", "REDIS_URL" => url },
             present: ->(key) { client.exists?(key) },
             ttl_s: ->(key) { client.pttl(key) / 1000.0 })

    # Off in development unless turned on: exit 0, nothing written.
    client.flushall
    out, err, status = @app.rails("cachewarm:warm", "MANIFEST=#{@manifest}", env: warm_env.merge("RAILS_ENV" => "development"))
    assert status.success?, err
    assert_match(/development/, out + err)
    assert_equal 0, client.dbsize
  end

  # Why: MemCacheStore over two servers: the warmer must place each key on the server Dalli's
  # ring picks, with Dalli's flags, or the app never reads it.
  def test_memcached_store_over_two_servers
    servers = [start_memcached, start_memcached]
    holders = ->(key) { servers.select { |s| TestSupport.memcached_ttl(s, key) } }
    run_loop("memcached", { "CACHE_STORE" => "memcached", "MEMCACHED_SERVERS" => servers.map(&:address).join(",") },
             present: ->(key) { holders.(key).any? },
             ttl_s: lambda { |key|
               found = holders.(key)
               assert_equal 1, found.size, "#{key} is on exactly one server"
               TestSupport.memcached_ttl(found.first, key)
             })
    # Both servers took a share of the warm (the ring spread the keys).
    assert servers.all? { |s| TestSupport.memcached_items(s).positive? }
  end

  private

  def warm_env
    { "CACHEWARM_WARMER" => TestSupport.binary("warmer"), "CACHEWARM_RUNS_DIR" => File.join(@dir, "runs") }
  end

  def run_loop(store, cache_env, present:, ttl_s:)
    @app = app_with(cache_env, PRODUCTS)
    paths = File.join(@dir, "paths.txt")
    File.write(paths, traffic.join("\n"))
    log = File.join(@dir, "access.jsonl")

    # 1. Cold traffic, logged.
    cold = @app.runner("traffic", paths, env: { "CACHEWARM_ACCESS_LOG" => log })
    assert_empty cold["failures"]
    lines = File.readlines(log).map { |l| JSON.parse(l) }
    assert_equal cold["reads"], lines.count { |l| l["op"] == "get" }, "every read is logged once"
    assert_equal cold["reads"] - cold["hits"], lines.count { |l| l["op"] == "set" }, "every miss is computed and written"

    # 2. Nightly: ingest (exact counts) and rank.
    dataset = File.join(@dir, "dataset")
    ingest = JSON.parse(run!(TestSupport.binary("analyzer"), "ingest", log, "--out", dataset, "--json"))
    assert_equal [lines.size, lines.size, 0], ingest.values_at("lines", "events", "rejected")
    @manifest = File.join(@dir, "manifest.json")
    run!(TestSupport.binary("analyzer"), "rank", "--data", dataset, "--preset", "rails", "--budget", "1MiB", "--out", @manifest)
    entries = JSON.parse(File.read(@manifest)).fetch("entries")
    by_category = entries.group_by { |e| e["category"] }
    assert_equal %w[rails.shop rails.views], by_category.keys.sort
    loadable = entries.map { |e| e["key"] }
    assert_operator by_category["rails.shop"].size, :>, 10
    assert_operator by_category["rails.views"].size, :>, 3
    assert_operator loadable.size, :<, cold["first_reads"], "read-once keys stay out of the manifest"

    # 3. Deploy: the cache is cold; warm it.
    _, err, status = @app.rails("runner", "Rails.cache.clear")
    assert status.success?, err
    refute loadable.any? { |key| present.(key) }
    started = Time.now.to_f
    out, err, status = @app.rails("cachewarm:warm", "MANIFEST=#{@manifest}", env: warm_env)
    assert status.success?, "cachewarm:warm exited #{status.exitstatus}:\n#{out}\n#{err}"
    first_run = newest_run
    counts = report_counts(first_run)
    assert_equal [loadable.size, 0, 0], counts.values_at("written", "source_miss", "failed"), "every key has a loader"

    # 4. The app reads back what it computes, with the entry's expiry in place.
    ids = loadable.filter_map { |key| key[%r{\Ashop:products/(\d+)}, 1]&.to_i }.uniq
    read = @app.runner("read_back", *ids)
    read.fetch("products").each do |product|
      payload_warm = loadable.include?("shop:products/#{product['id']}")
      card_warm = loadable.include?("shop:products/#{product['id']}/card")
      assert_equal [payload_warm, payload_warm], product.values_at("payload_present", "payload_equal"), product.inspect
      assert_equal [card_warm, card_warm], product.values_at("card_present", "card_equal"), product.inspect
      assert_in_delta started + 3600, product["payload_expires_at"], 120 if payload_warm
      assert_in_delta started + 1800, product["card_expires_at"], 120 if card_warm
      assert_equal product["product_version"], product["card_version"] if card_warm
    end
    # The physical expiry: 1 hour, and 30 + 5 minutes under race_condition_ttl.
    payload_key = loadable.find { |key| key.match?(%r{\Ashop:products/\d+\z}) }
    card_key = loadable.find { |key| key.end_with?("/card") }
    assert_in_delta 3600, ttl_s.(payload_key), 60
    assert_in_delta 2100, ttl_s.(card_key), 60

    # 5. The same traffic again: first reads now hit exactly where the warm wrote.
    warmed = @app.runner("traffic", paths)
    assert_equal 0, cold["first_read_hits"], "a cold cache misses every first read"
    assert_equal loadable.sort, warmed["first_read_hit_keys"].sort
    assert_equal cold["bodies"], warmed["bodies"], "warmed entries and fragments render the same pages"
    puts format("\n%<store>s: cold run hit rate %<cold>.1f%% (first reads %<cold_first>.1f%%), " \
                "after cachewarm:warm %<warm>.1f%% (first reads %<warm_first>.1f%%)",
                store: store, cold: 100.0 * cold["hits"] / cold["reads"], cold_first: 100.0 * cold["first_read_hits"] / cold["first_reads"],
                warm: 100.0 * warmed["hits"] / warmed["reads"], warm_first: 100.0 * warmed["first_read_hits"] / warmed["first_reads"])
    assert_operator warmed["hits"], :>, cold["hits"]

    # 6. A second warm writes nothing: every entry is already there.
    out, err, status = @app.rails("cachewarm:warm", "MANIFEST=#{@manifest}", env: warm_env)
    assert status.success?, "#{out}\n#{err}"
    second = report_counts(newest_run)
    assert_equal [0, loadable.size], second.values_at("written", "already_present")

    # 7. Undo the first warm: its keys go; what the app wrote itself stays.
    app_written = warmed_app_keys(warmed, loadable)
    assert app_written.all? { |key| present.(key) }
    out, err, status = @app.rails("cachewarm:undo", "RUN=#{first_run}", env: warm_env)
    assert status.success?, "#{out}\n#{err}"
    assert_empty loadable.select { |key| present.(key) }, "undo removes what the warm wrote"
    assert app_written.all? { |key| present.(key) }, "undo keeps what the app wrote"
  end

  # A Zipf-like mix over the products: payloads, cards and pages (the same every run).
  def traffic
    random = Random.new(2026)
    weights = (1..PRODUCTS).map { |i| 1.0 / (i**1.1) }
    total = weights.sum
    Array.new(REQUESTS) do
      pick = random.rand * total
      id = weights.each_with_index.find { |w, _| (pick -= w) <= 0 }&.last.to_i + 1
      ["/products/#{id}", "/products/#{id}/card", "/products/#{id}/page"][[0, 0, 0, 1, 1, 2].sample(random: random)]
    end
  end

  # Keys the app itself wrote during the warmed replay (misses it computed): read once and
  # written, not in the manifest's loadable part.
  def warmed_app_keys(warmed, loadable)
    keys = File.readlines(File.join(@dir, "paths.txt"), chomp: true).grep(%r{\A/products/\d+\z}).map { |p| "shop:#{p.delete_prefix('/')}" }.uniq
    (keys - loadable).first(5).tap { |k| refute_empty k }
  end

  def newest_run
    Dir[File.join(@dir, "runs", "*", "report.json")].max_by { |p| File.mtime(p) }.then { |p| File.dirname(p) }
  end

  def report_counts(run_dir)
    report = JSON.parse(File.read(File.join(run_dir, "report.json")))
    assert_equal 1, report["targets"].size
    report["targets"].first["counts"]
  end

  def run!(*argv)
    out, err, status = Open3.capture3(*argv)
    assert status.success?, "#{argv.join(' ')} exited #{status.exitstatus}:\n#{err}"
    out
  end
end
