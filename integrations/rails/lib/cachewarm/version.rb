# frozen_string_literal: true

# The gem's version, kept apart so the gemspec can read it without loading Rails.
module Cachewarm
  VERSION = "0.1.0"
end
