# frozen_string_literal: true

# `cachewarm:warm`'s command line and environment, from the example app's real Rails.cache:
# the target URL the warmer gets for each store (Dalli's server spelling kept, since Dalli's
# ring hashes it), passwords only in the environment, and the Rails environment as the
# warmer's profile so warming stays off in development and test.
require_relative "test_helper"

class WarmCommandTest < Minitest::Test
  include TestSupport::Harness

  # Why: a password in argv is readable by every user of the machine (ps, /proc).
  def test_redis_password_goes_in_the_environment_only
    app = TestSupport::App.new("CACHE_STORE" => "redis", "REDIS_URL" => "redis://:s3cret@cache.internal:6380/2", "SHOP_DB" => File.join(@dir, "db"))
    command = app.runner("warm_command", env: { "MANIFEST" => "/data/m.json", "CATEGORY" => "rails.shop,rails.views" })

    assert_equal "redis://:s3cret@cache.internal:6380/2", command["env"]["CACHEWARM_TARGETS"]
    refute command["argv"].any? { |arg| arg.include?("s3cret") }, command["argv"].inspect
    assert_equal "production", command["env"]["CACHEWARM_ENV"]
    assert_equal ["run", "--manifest", "/data/m.json"], command["argv"][1, 3]
    assert_equal ["--category", "rails.shop", "--category", "rails.views"], command["argv"].each_cons(2).select { |a, _| a == "--category" }.flatten
    source = command["argv"][command["argv"].index("--source") + 1]
    assert_match(%r{\Aexec:\S*ruby\S* \S*/example/bin/rails cachewarm:loader\z}, source)
  end

  # Why: the warmer must route keys over several memcached servers exactly as Dalli's ring
  # does, which hashes the server text as the app wrote it.
  def test_memcached_servers_keep_the_app_spelling_and_dalli_hashing
    app = TestSupport::App.new("CACHE_STORE" => "memcached", "MEMCACHED_SERVERS" => "cache-a:11211,cache-b,cache-c:11300", "SHOP_DB" => File.join(@dir, "db"))
    command = app.runner("warm_command", env: { "DRY_RUN" => "1", "DETACH" => "1" })

    assert_equal "memcached://cache-a:11211,cache-b:11211,cache-c:11300?hashing=dalli", command["env"]["CACHEWARM_TARGETS"]
    assert_includes command["argv"], "--dry-run"
    assert_includes command["argv"], "--detach"
  end

  # Why: off in development unless turned on — the profile must reach the warmer even when
  # RAILS_ENV is not set in the environment (Rails then defaults to development).
  def test_development_profile_reaches_the_warmer
    app = TestSupport::App.new("CACHE_STORE" => "redis", "SHOP_DB" => File.join(@dir, "db"))
    app.env.delete("RAILS_ENV")
    command = app.runner("warm_command")
    assert_equal "development", command["env"]["CACHEWARM_ENV"]
    refute command["env"].key?("CACHEWARM_ENABLED")
  end

  # Why: operators check which keys the deploy can warm without reading the initializers.
  def test_loaders_are_listed_in_the_order_they_are_tried
    app = TestSupport::App.new("CACHE_STORE" => "redis", "SHOP_DB" => File.join(@dir, "db"))
    out, err, status = app.rails("cachewarm:loaders")
    assert status.success?, err
    assert_equal [%w[value catalog], %w[value catalog], %w[fragment pages]], out.lines.map { |l| l.chomp.split("\t").drop(1) }
    assert_match(/products.*card/, out.lines[1])
  end
end
