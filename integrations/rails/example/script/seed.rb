# frozen_string_literal: true

# Loads the schema and creates N products (bin/rails runner script/seed.rb N). Every fifth has
# a description long enough that Rails compresses its cached card.
ActiveRecord::Schema.verbose = false
load Rails.root.join("db/schema.rb")
count = Integer(ARGV.fetch(0, "40"))
now = Time.utc(2026, 11, 30, 12)
Product.insert_all!(
  (1..count).map do |i|
    words = i % 5 == 0 ? 400 : 12
    { id: i, name: "Product #{i}", description: (["item #{i} is fine"] * words).join(". "),
      price_cents: 100 * i + 99, created_at: now, updated_at: now + i }
  end,
)
puts Product.count
