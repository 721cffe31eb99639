# frozen_string_literal: true

# The app's base controller.
class ApplicationController < ActionController::Base
end
