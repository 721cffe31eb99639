# frozen_string_literal: true

# What the gem's tests share: real redis-server and memcached processes on free loopback
# ports in temp dirs (stopped after each test, their logs printed when it fails), the example
# app run as its own processes (bin/rails), and the workspace's warmer and analyzer binaries.
require "minitest/autorun"
require "fileutils"
require "json"
require "open3"
require "rbconfig"
require "socket"
require "timeout"
require "tmpdir"

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)

module TestSupport
  GEM_ROOT = File.expand_path("..", __dir__)
  EXAMPLE = File.join(GEM_ROOT, "example")
  REPO_ROOT = File.expand_path("../../..", __dir__)

  # A port nothing listens on now (the kernel's pick for an ephemeral bind).
  def self.free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  # One server process from PATH: started on a free port, waited for, stopped.
  class Server
    attr_reader :name, :port, :log_path

    def initialize(name, dir)
      @name = name
      @port = TestSupport.free_port
      @log_path = File.join(dir, "#{name}-#{@port}.log")
      argv = yield(@port)
      @pid = Process.spawn(*argv, out: @log_path, err: [:child, :out], chdir: dir)
      wait_until_listening
    end

    def address
      "127.0.0.1:#{@port}"
    end

    def stop
      return unless @pid

      Process.kill("TERM", @pid)
      Process.wait(@pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    ensure
      @pid = nil
    end

    def log
      File.exist?(@log_path) ? File.read(@log_path) : ""
    end

    private

    def wait_until_listening
      Timeout.timeout(10) do
        loop do
          TCPSocket.new("127.0.0.1", @port).close
          return
        rescue Errno::ECONNREFUSED
          raise "#{@name} exited before listening:\n#{log}" if Process.wait(@pid, Process::WNOHANG)

          sleep 0.05
        end
      end
    end
  end

  def self.redis(dir)
    Server.new("redis-server", dir) do |port|
      ["redis-server", "--port", port.to_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]
    end
  end

  def self.memcached(dir)
    Server.new("memcached", dir) do |port|
      # memcached refuses to run as root without -u.
      user = Process.uid.zero? ? ["-u", "nobody"] : []
      ["memcached", "-p", port.to_s, "-l", "127.0.0.1", "-U", "0", "-m", "64", *user]
    end
  end

  # The example app, booted in its own processes with this environment.
  class App
    attr_reader :env

    def initialize(env)
      @env = { "RAILS_ENV" => "production", "LOG_LEVEL" => "warn" }.merge(env)
    end

    # `bin/rails ARGS`; returns [stdout, stderr, status].
    def rails(*args, stdin_data: "", env: {})
      Open3.capture3(@env.merge(env), RbConfig.ruby, "bin/rails", *args, chdir: EXAMPLE, stdin_data: stdin_data)
    end

    # `bin/rails runner script/NAME.rb ARGS`, whose last stdout line is JSON.
    def runner(script, *args, env: {})
      out, err, status = rails("runner", "script/#{script}.rb", *args.map(&:to_s), env: env)
      raise "bin/rails runner script/#{script}.rb #{args.join(' ')} failed (#{status}):\n#{err}\n#{out}" unless status.success?

      JSON.parse(out.lines.last)
    end

    # The loader the warmer would start, as a child with pipes.
    def spawn_loader
      Open3.popen3(@env, RbConfig.ruby, "bin/rails", "cachewarm:loader", chdir: EXAMPLE)
    end
  end

  # The workspace's binaries, as `cargo build --bins` leaves them.
  def self.binary(name)
    dir = ENV["CACHEWARM_BIN_DIR"] || File.join(ENV.fetch("CARGO_TARGET_DIR", File.join(REPO_ROOT, "target")), "debug")
    path = File.join(dir, name)
    raise "#{path} is missing: run `cargo build --bins -p warmer -p analyzer` first (or set CACHEWARM_BIN_DIR)" unless File.executable?(path)

    path
  end

  # Writes one item over memcached's text protocol with the flags given: the plainest client
  # there is, so nothing of Dalli's is involved in the write.
  def self.memcached_set_raw(server, key, bytes, flags:, ttl_s:)
    TCPSocket.open("127.0.0.1", server.port) do |socket|
      socket.write("set #{key} #{flags} #{ttl_s || 0} #{bytes.bytesize}\r\n", bytes, "\r\n")
      reply = socket.gets
      raise "memcached refused #{key}: #{reply}" unless reply == "STORED\r\n"
    end
  end

  # The remaining TTL memcached holds for a key, in seconds (meta get with `t`), -1 for none,
  # nil when the key is absent.
  def self.memcached_ttl(server, key)
    TCPSocket.open("127.0.0.1", server.port) do |socket|
      socket.write("mg #{key} t\r\n")
      reply = socket.gets
      return nil if reply.start_with?("EN")

      Integer(reply[/ t(-?\d+)/, 1])
    end
  end

  # Minitest hooks: a temp dir per test, servers stopped after it, logs printed on failure.
  module Harness
    def setup
      super
      @dir = Dir.mktmpdir("cachewarm-rails-")
      @servers = []
    end

    def teardown
      @servers.each(&:stop)
      unless passed?
        @servers.each { |s| warn "--- #{s.name} log (#{s.log_path}) ---\n#{s.log}" }
        warn "--- kept #{@dir} for inspection ---"
      else
        FileUtils.rm_rf(@dir)
      end
      super
    end

    def start_redis
      TestSupport.redis(@dir).tap { |s| @servers << s }
    end

    def start_memcached
      TestSupport.memcached(@dir).tap { |s| @servers << s }
    end

    # The example app on a fresh database of `products` products, with the cache given.
    def app_with(cache_env, products = 40)
      app = TestSupport::App.new({ "SHOP_DB" => File.join(@dir, "shop.sqlite3") }.merge(cache_env))
      assert_equal products, app.runner("seed", products).to_i
      app
    end
  end
end

module TestSupport
  # How many items a memcached server holds (`stats` curr_items).
  def self.memcached_items(server)
    TCPSocket.open("127.0.0.1", server.port) do |socket|
      socket.write("stats\r\n")
      items = nil
      while (line = socket.gets) && line != "END\r\n"
        items = Integer(line.split[2]) if line.start_with?("STAT curr_items ")
      end
      items
    end
  end
end
