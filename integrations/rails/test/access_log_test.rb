# frozen_string_literal: true

# The access log subscriber against real stores: which line each cache operation becomes
# (the store's own key, op, hit, the bytes the store holds, TTL, latency), and that a log that
# cannot be written, or a full buffer, costs the application nothing but a counter.
require_relative "test_helper"
require "active_support"
require "active_support/cache"
require "active_support/core_ext/numeric/time"
require "active_support/core_ext/string/inflections"
require "redis"
require "cachewarm"
require "cachewarm/access_log"

class AccessLogTest < Minitest::Test
  include TestSupport::Harness

  def teardown
    Cachewarm::AccessLog.current&.uninstall
    super
  end

  # Why: the analyzer ranks by these lines; a fetch must be one read (its miss latency
  # including the time the value took to compute), keys must be the store's own, and
  # value_size the bytes the store holds.
  def test_redis_operations_become_canonical_lines
    redis = start_redis
    store = ActiveSupport::Cache::RedisCacheStore.new(url: "redis://#{redis.address}/0", namespace: "t")
    log = Cachewarm::AccessLog.install(path: File.join(@dir, "access.jsonl"), store: store, flush_interval: 60)

    assert_equal "v" * 100, store.fetch("a", expires_in: 60) { sleep 0.05; "v" * 100 }
    assert_equal "v" * 100, store.fetch("a") { flunk "a is cached" }
    assert_nil store.read("missing")
    assert_equal({ "a" => "v" * 100 }, store.read_multi("a", "missing"))
    store.write("b", 1, unless_exist: true)
    store.delete("b")
    log.flush
    lines = File.readlines(log.path).map { |l| JSON.parse(l) }

    assert_equal [
      ["t:a", "get", false], ["t:a", "set", nil], ["t:a", "get", true], ["t:missing", "get", false],
      ["t:a", "get", true], ["t:missing", "get", false], ["t:b", "add", nil], ["t:b", "delete", nil],
    ], lines.map { |l| [l["key"], l["op"], l["hit"]] }
    size = Redis.new(url: "redis://#{redis.address}/0").strlen("t:a")
    assert_equal [size, size], [lines[1]["value_size"], lines[2]["value_size"]]
    assert_equal 60, lines[1]["ttl_s"]
    assert_operator lines[0]["latency_us"], :>=, 50_000, "a fetch miss costs what computing the value cost"
    assert lines.all? { |l| l["namespace"] == "t" }
    assert lines.all? { |l| Time.iso8601(l["ts"]) }
    assert_equal Cachewarm::AccessLog::Stats.new(8, 0, 0), log.stats
  end

  # Why: with MemCacheStore the bytes are Dalli's (the Entry Marshal'd by the client), and the
  # key is MemCacheStore's escaped one.
  def test_memcached_lines_carry_dalli_bytes_and_escaped_keys
    memcached = start_memcached
    store = ActiveSupport::Cache::MemCacheStore.new(memcached.address, namespace: "t")
    log = Cachewarm::AccessLog.install(path: File.join(@dir, "access.jsonl"), store: store, flush_interval: 60)

    store.write("with space", "v" * 50, expires_in: 120)
    assert_equal "v" * 50, store.read("with space")
    log.flush
    lines = File.readlines(log.path).map { |l| JSON.parse(l) }

    assert_equal [["t:with%20space", "set", nil, 120], ["t:with%20space", "get", true, nil]],
                 lines.map { |l| [l["key"], l["op"], l["hit"], l["ttl_s"]] }
    size = TCPSocket.open("127.0.0.1", memcached.port) do |s|
      s.write("mg t:with%20space s\r\n")
      Integer(s.gets[/ s(\d+)/, 1])
    end
    assert_equal [size, size], lines.map { |l| l["value_size"] }
  end

  # Why: a log that cannot be written must never break or slow a request; the failure is
  # counted, and a full buffer drops (and counts) events instead of growing.
  def test_failures_are_counted_not_raised
    redis = start_redis
    store = ActiveSupport::Cache::RedisCacheStore.new(url: "redis://#{redis.address}/0")
    log = Cachewarm::AccessLog.install(path: File.join(@dir, "no-such-dir", "access.jsonl"), store: store, buffer: 2, flush_interval: 60)

    5.times { |i| store.read("k#{i}") }
    assert_equal 3, log.stats.dropped
    log.flush
    assert_equal 1, log.stats.errors
    assert_equal 0, log.stats.written
    assert_equal "x", store.fetch("k") { "x" }
  end
end
