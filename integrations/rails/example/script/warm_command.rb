# frozen_string_literal: true

# Prints, as JSON, the warmer command line and environment `bin/rails cachewarm:warm` would
# use with the same MANIFEST/CATEGORY/DRY_RUN/DETACH (for the gem's tests).
require "json"

warm = Cachewarm.warm_for
puts JSON.generate(argv: warm.run_argv_from(ENV), env: warm.environment)
