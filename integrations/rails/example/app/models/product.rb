# frozen_string_literal: true

# A product; what the app caches about it is computed here, by the controller and the loaders
# alike.
class Product < ApplicationRecord
  # The JSON payload of GET /products/:id.
  def payload
    as_json(only: %i[id name price_cents]).merge("description" => description, "price" => format("%.2f", price_cents / 100.0))
  end

  # The text card of GET /products/:id/card: long descriptions make it larger than the 1 KiB
  # above which Rails compresses entries.
  def card
    "#{name} (#{format('%.2f', price_cents / 100.0)})\n#{description}\n"
  end
end
