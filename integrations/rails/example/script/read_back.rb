# frozen_string_literal: true

# Reads products' cache entries back through Rails.cache, as the app would, and compares them
# with what the app computes now; prints JSON. bin/rails runner script/read_back.rb ID…
require "json"

def entry_for(name, options)
  store = Rails.cache
  store.send(:read_entry, store.send(:normalize_key, name, options), **options)
end

results = ARGV.map do |id|
  product = Product.find(id)
  payload_name = "products/#{product.id}"
  payload = Rails.cache.read(payload_name)
  card = Rails.cache.read([product, "card"])
  payload_entry = entry_for(payload_name, {})
  card_entry = entry_for([product, "card"], {})
  {
    id: product.id,
    payload_present: !payload.nil?, payload_equal: payload == product.payload,
    payload_expires_at: payload_entry&.expires_at,
    card_present: !card.nil?, card_equal: card == product.card,
    card_expires_at: card_entry&.expires_at, card_version: card_entry&.version,
    card_compressed: card_entry ? card_entry.send(:compressed?) ? true : false : nil,
    product_version: product.cache_version,
  }
end
puts JSON.generate(now: Time.now.to_f, products: results)
