# frozen_string_literal: true

# One product in three cached forms: JSON payload, card text, HTML page with a fragment.
Rails.application.routes.draw do
  get "/products/:id", to: "products#show"
  get "/products/:id/card", to: "products#card"
  get "/products/:id/page", to: "products#page"
end
