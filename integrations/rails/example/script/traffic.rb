# frozen_string_literal: true

# Sends the requests listed in a file (one path a line) through the whole Rails stack and
# prints, as JSON, how the cache answered: every read, and the first read of each key (the
# reads a warm cache saves after a deploy), and a digest of each path's first response body. bin/rails runner script/traffic.rb PATHS_FILE
require "digest"
require "json"

reads = []
subscriber = ActiveSupport::Notifications.subscribe("cache_read.active_support") do |*, payload|
  key = Rails.cache.send(:normalize_key, payload[:key], payload)
  reads << [key, payload[:hit] ? true : false]
end

session = ActionDispatch::Integration::Session.new(Rails.application)
session.host! "shop.example"
failures = []
bodies = {}
paths = File.readlines(ARGV.fetch(0), chomp: true).reject(&:empty?)
paths.each do |path|
  session.get(path)
  failures << [path, session.response.status] unless session.response.status == 200
  bodies[path] ||= Digest::SHA256.hexdigest(session.response.body)
end
ActiveSupport::Notifications.unsubscribe(subscriber)

seen = {}
first = reads.select { |key, _| seen[key] ? false : (seen[key] = true) }
puts JSON.generate(
  requests: paths.size, failures: failures,
  reads: reads.size, hits: reads.count { |_, hit| hit },
  first_reads: first.size, first_read_hits: first.count { |_, hit| hit },
  first_read_hit_keys: first.select { |_, hit| hit }.map(&:first),
  bodies: bodies,
)
