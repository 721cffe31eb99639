# frozen_string_literal: true

# The cache options the app writes with, shared by the controller and the loaders so a warmed
# entry is exactly what the app would have written; and the loaders the warmer asks for values.
module ProductCache
  PAYLOAD = { expires_in: 1.hour }.freeze
  CARD = { expires_in: 30.minutes, race_condition_ttl: 10.seconds }.freeze
end

# `shop:products/7`: the product's JSON payload.
Cachewarm.loader(%r{\Aproducts/(?<id>\d+)\z}, category: "catalog", **ProductCache::PAYLOAD) do |id:|
  Product.find(id).payload
end

# `shop:products/7/card`: written by `Rails.cache.fetch([product, "card"])`, a recyclable key
# whose entry carries the record's cache_version.
Cachewarm.loader(%r{\Aproducts/(?<id>\d+)/card\z}, category: "catalog", **ProductCache::CARD) do |id:|
  product = Product.find(id)
  Cachewarm.value(product.card, version: product.cache_version)
end

# `shop:views/products/page:DIGEST/products/7`: the fragment of the product page, made by
# rendering the page; Rails' `cache` helper writes it with the template's current digest and
# the record's version.
Cachewarm.fragment_loader(%r{\Aviews/products/page:\h+/products/(?<id>\d+)\z}, category: "pages") do |id:|
  ApplicationController.render(template: "products/page", assigns: { product: Product.find(id) })
end
