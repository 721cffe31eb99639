# frozen_string_literal: true

# The app's base model.
class ApplicationRecord < ActiveRecord::Base
  self.abstract_class = true
end
