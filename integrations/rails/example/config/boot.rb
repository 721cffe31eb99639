# frozen_string_literal: true

# The example app runs on Debian's Rails packages (RubyGems is out of reach where it is
# tested), so there is no Bundler: the gem under test comes from this checkout.
$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
