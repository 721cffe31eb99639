# frozen_string_literal: true

# Reads through Rails.cache the way apps do: a plain key, a record key with its version, and a
# view fragment.
class ProductsController < ApplicationController
  def show
    payload = Rails.cache.fetch("products/#{params[:id].to_i}", **ProductCache::PAYLOAD) do
      Product.find(params[:id]).payload
    end
    render json: payload
  end

  def card
    product = Product.find(params[:id])
    render plain: Rails.cache.fetch([product, "card"], **ProductCache::CARD) { product.card }
  end

  def page
    @product = Product.find(params[:id])
  end
end
