# frozen_string_literal: true

# The loader task's side of protocol v1, against real servers: the bytes, flags and TTLs it
# answers, written into the store by a plain client that knows nothing of Rails, must read
# back through `Rails.cache.read` in the app as the values the app computes, with their expiry,
# record version and compression in place.
require_relative "test_helper"
require "base64"
require "redis"
require "active_support"
require "active_support/cache"

class LoaderProtocolTest < Minitest::Test
  include TestSupport::Harness

  KEYS = [
    "shop:products/1",      # a plain key, expires_in 1 hour
    "shop:products/5/card", # a record key: version, race_condition_ttl, compressed (> 1 KiB)
    "shop:products/999",    # the record is gone
    "shop:nope",            # no loader
    "other:products/1",     # another namespace
  ].freeze

  # Why: the Redis store's entries are a Marshal'd Entry (cache_format_version 6.1) with the
  # physical TTL Rails gives them; a byte off and Rails.cache.read returns nil or garbage.
  def test_redis_answers_read_back_through_rails_cache
    redis = start_redis
    app = app_with("CACHE_STORE" => "redis", "REDIS_URL" => "redis://#{redis.address}/0")
    started = Time.now.to_f
    hello, answers = converse(app, KEYS)
    answered = Time.now.to_f

    assert_equal({ "protocol" => 1, "store_kind" => "redis", "key_prefix" => "shop:", "namespace" => "shop", "cache_format_version" => "6.1" },
                 hello.slice("protocol", "store_kind", "key_prefix", "namespace", "cache_format_version"))
    assert_match(/\Arails 6\.1\.\d+/, hello["framework"])
    assert_misses(answers)

    client = Redis.new(url: "redis://#{redis.address}/0")
    entries = answers.first(2).flat_map { |a| a.fetch("entries") }
    assert_equal %w[shop:products/1 shop:products/5/card], entries.map { |e| e["key"] }
    # expires_in 1 hour; 30 minutes plus the 5 minutes Rails adds under race_condition_ttl.
    assert_equal [3_600_000, 2_100_000], entries.map { |e| e["ttl_ms"] }
    assert entries.none? { |e| e.key?("flags") }, "flags are for memcached only"
    entries.each { |e| client.set(e["key"], Base64.strict_decode64(e["value_b64"]), px: e["ttl_ms"]) }

    read = app.runner("read_back", 1, 5)
    check_read_back(read, started, answered)
    assert_in_delta 2_100_000, client.pttl("shop:products/5/card"), 15_000

    touch_then_card_is_stale(app)
  end

  # Why: MemCacheStore hands the Entry to Dalli, which Marshals it again and sets flag 1; the
  # item only reads back when both the bytes and the flags are Dalli's.
  def test_memcached_answers_read_back_through_rails_cache
    memcached = start_memcached
    app = app_with("CACHE_STORE" => "memcached", "MEMCACHED_SERVERS" => memcached.address)
    started = Time.now.to_f
    hello, answers = converse(app, KEYS)
    answered = Time.now.to_f

    assert_equal "memcached", hello["store_kind"]
    assert_match(/Marshal/, hello["serializer"])
    assert_misses(answers)

    entries = answers.first(2).flat_map { |a| a.fetch("entries") }
    assert_equal %w[shop:products/1 shop:products/5/card], entries.map { |e| e["key"] }
    assert_equal [3_600_000, 2_100_000], entries.map { |e| e["ttl_ms"] }
    # Dalli's FLAG_SERIALIZED: the value is Marshal'd by the client.
    assert_equal [1, 1], entries.map { |e| e["flags"] }
    entries.each do |e|
      TestSupport.memcached_set_raw(memcached, e["key"], Base64.strict_decode64(e["value_b64"]), flags: e["flags"], ttl_s: e["ttl_ms"] / 1000)
    end

    read = app.runner("read_back", 1, 5)
    check_read_back(read, started, answered)
    assert_in_delta 2100, TestSupport.memcached_ttl(memcached, "shop:products/5/card"), 15

    touch_then_card_is_stale(app)
  end

  # Why: the protocol is stdout; anything else the app prints must not reach it, and a request
  # line that is not JSON must be reported on stderr, not kill the loader.
  def test_loader_keeps_stdout_for_the_protocol
    redis = start_redis
    app = app_with("CACHE_STORE" => "redis", "REDIS_URL" => "redis://#{redis.address}/0")
    stdin, stdout, stderr, wait = app.spawn_loader
    errors = Thread.new { stderr.read }
    lines = Timeout.timeout(60) do
      stdin.puts "not json"
      stdin.puts JSON.generate(id: 1, keys: ["shop:products/2"])
      stdin.close
      stdout.read.lines
    end
    assert wait.value.success?, errors.value
    assert_equal %w[hello 1 1], lines.map { |l| JSON.parse(l).then { |m| m["hello"] ? "hello" : m["id"].to_s } }
    assert_match(/ignoring a request line/, errors.value)
  end

  # Why: fragment keys carry the template's digest; the loader must let Rails' own `cache`
  # helper make them (a manifest key whose digest is stale is warmed under the current key),
  # and the page served from the warmed fragment must be the page rendered cold.
  def test_fragment_loader_renders_through_the_app
    redis = start_redis
    app = app_with("CACHE_STORE" => "redis", "REDIS_URL" => "redis://#{redis.address}/0")
    _, answers = converse(app, ["shop:views/products/page:0123/products/3"])
    entry = answers.first.fetch("entries").first
    assert_match(%r{\Ashop:views/products/page:\h{32}/products/3\z}, entry["key"])
    assert_nil entry["ttl_ms"], "the app caches the fragment without expiry"
    Redis.new(url: "redis://#{redis.address}/0").set(entry["key"], Base64.strict_decode64(entry["value_b64"]))

    paths = File.join(@dir, "paths.txt")
    File.write(paths, "/products/3/page\n")
    warm = app.runner("traffic", paths)
    assert_equal [entry["key"]], warm["first_read_hit_keys"]
    _, err, status = app.rails("runner", "Rails.cache.clear")
    assert status.success?, err
    cold = app.runner("traffic", paths)
    assert_equal 0, cold["hits"]
    assert_equal cold["bodies"], warm["bodies"]
  end

  private

  # Runs one request through a fresh loader; returns the hello and the answers in order.
  def converse(app, keys)
    stdin, stdout, stderr, wait = app.spawn_loader
    errors = Thread.new { stderr.read }
    hello, answers = Timeout.timeout(60) do
      hello = JSON.parse(stdout.gets || flunk("the loader said nothing: #{errors.value}")).fetch("hello")
      stdin.puts JSON.generate(id: 7, keys: keys)
      stdin.flush
      answers = []
      while (line = stdout.gets)
        message = JSON.parse(line)
        assert_equal 7, message["id"]
        break if message["done"]

        answers << message
      end
      stdin.close
      [hello, answers]
    end
    assert wait.value.success?, "the loader exited #{wait.value}: #{errors.value}"
    assert_equal keys, answers.map { |a| a["key"] }, "one answer per key, in order"
    [hello, answers]
  end

  def assert_misses(answers)
    assert_equal "record not found (ActiveRecord::RecordNotFound)", answers[2]["miss"]
    assert_equal "no loader matches the key", answers[3]["miss"]
    assert_match(/namespace `shop`/, answers[4]["miss"])
  end

  def check_read_back(read, started, answered)
    plain, record = read.fetch("products")
    assert plain["payload_present"] && plain["payload_equal"], "products/1 reads back as the app's payload: #{plain}"
    assert record["card_present"] && record["card_equal"], "products/5/card reads back as the app's card: #{record}"
    assert_equal record["product_version"], record["card_version"], "the entry carries the record's cache_version"
    assert record["card_compressed"], "a card over 1 KiB is compressed, as the store does"
    assert_operator plain["payload_expires_at"], :>=, started + 3600
    assert_operator plain["payload_expires_at"], :<=, answered + 3600
    assert_operator record["card_expires_at"], :>=, started + 1800
    assert_operator record["card_expires_at"], :<=, answered + 1800
  end

  # A record changed since the warm: its recyclable key now reads as a miss, as in the app.
  def touch_then_card_is_stale(app)
    _, err, status = app.rails("runner", "Product.find(5).touch(time: Time.now + 60)")
    assert status.success?, err
    record = app.runner("read_back", 5).fetch("products").first
    refute record["card_present"], "a warmed card with the old version must not be served"
  end
end
