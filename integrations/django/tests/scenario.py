"""One backend's scenario against the example project, in a process of its own (Django's
settings are fixed per process): ``python scenario.py protocol|e2e``, with ``EXAMPLE_CACHES``,
``EXAMPLE_DATABASES`` and ``SCENARIO_*`` variables saying what to run against.

It prints a ``RESULT {json}`` line with its figures and exits non-zero when a check fails.
Expected values are what the app itself computed and cached during a cold replay, read back
through ``cache.get``; the store is written by the warmer (e2e) or, for the protocol check, by
the store's own plain client with the loader's bytes and flags.

The scenarios live in ``scenario_protocol.py`` and ``scenario_e2e.py``, on what
``scenario_base.py`` sets up.
"""

from __future__ import annotations

import json
import sys

from scenario_e2e import run_argv, run_detached, run_e2e, run_throughput
from scenario_protocol import run_access_log, run_protocol


def main() -> None:
    mode = sys.argv[1]
    result = {
        "protocol": run_protocol,
        "access_log": run_access_log,
        "e2e": run_e2e,
        "detached": run_detached,
        "argv": run_argv,
        "throughput": run_throughput,
    }[mode]()
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
