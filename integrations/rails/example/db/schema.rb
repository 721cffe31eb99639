# frozen_string_literal: true

# The example app's schema (`bin/rails db:schema:load`).
ActiveRecord::Schema.define(version: 1) do
  create_table :products, force: true do |t|
    t.string :name, null: false
    t.text :description, null: false
    t.integer :price_cents, null: false
    t.timestamps
  end
end
