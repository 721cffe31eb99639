# frozen_string_literal: true

# Boots the example app.
require_relative "application"
Rails.application.initialize!
