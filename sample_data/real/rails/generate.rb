# Produces real Rails cache instrumentation with ActiveSupport's own code (Debian's
# ruby-activesupport): a read-through workload of `fetch` calls over Zipf-popular keys, with a
# few plain reads, writes and deletes.
#
#   cache.log       the cache log subscriber's lines, through Ruby's Logger (with timestamps)
#   events.jsonl    cache_*.active_support notifications as an app's subscriber logs them
#   counts.json     what the workload did, counted by this script
#
# Usage: ruby sample_data/real/rails/generate.rb   (writes next to this script)
require "active_support"
require "active_support/cache"
require "active_support/notifications"
require "logger"
require "json"

dir = File.dirname(File.expand_path(__FILE__))
events = File.open(File.join(dir, "events.jsonl"), "w")
ActiveSupport::Notifications.subscribe(/^cache_.*\.active_support$/) do |name, start, _finish, _id, payload|
  line = { name: name, key: payload[:key], time: start.utc.iso8601(6), store: "MemoryStore" }
  line[:hit] = payload[:hit] if payload.key?(:hit)
  events.puts(JSON.generate(line))
end

store = ActiveSupport::Cache::MemoryStore.new
log = File.join(dir, "cache.log")
File.delete(log) if File.exist?(log) # Logger appends
store.logger = Logger.new(log)
store.logger.level = Logger::DEBUG

rng = Random.new(20261121)
keys = (0...120).map { |i| i.even? ? "views/products/#{i}-20261120" : "app:v3:user:#{i}:profile" }
weights = keys.each_index.map { |rank| 1.0 / (rank + 1) }
total = weights.sum
pick = lambda do
  target = rng.rand * total
  keys.each_with_index { |key, i| target -= weights[i]; return key if target <= 0 }
  keys.last
end

# "plain_reads" are `read` calls: the log does not say whether they hit (the events do).
counts = { "reads" => 0, "hits" => 0, "misses" => 0, "plain_reads" => 0, "plain_read_hits" => 0,
           "writes" => 0, "deletes" => 0 }
800.times do |n|
  key = pick.call
  counts["reads"] += 1
  hit = true
  store.fetch(key, expires_in: 10.minutes) { hit = false; counts["writes"] += 1; "rendered #{key}" * 3 }
  hit ? counts["hits"] += 1 : counts["misses"] += 1
  if n % 97 == 0
    store.delete(pick.call)
    counts["deletes"] += 1
  end
  if n % 53 == 0
    found = store.read(pick.call)
    counts["reads"] += 1
    counts["plain_reads"] += 1
    counts["plain_read_hits"] += 1 if found
  end
  if n % 71 == 0
    store.write("app:v3:flags", "on", expires_in: 90)
    counts["writes"] += 1
  end
end
events.close
File.write(File.join(dir, "counts.json"), JSON.pretty_generate(counts) + "\n")
