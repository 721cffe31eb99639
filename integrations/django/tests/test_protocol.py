"""The loader side of protocol v1, per cache backend, before any warmer is involved: the
example project's traffic is replayed cold, then ``manage.py cachewarm_loader`` is asked for
every key the access log saw; its bytes and flags are written with the store's plain client
and must read back through Django's own ``cache.get`` equal (==, same type) to what the app
computed cold — under the current VERSION and after a VERSION bump. A loader that raises is
answered as an error for its keys only; keys of no loader or of another prefix are misses.
"""

from __future__ import annotations

import pytest

from scenarios import BACKENDS, run_scenario


@pytest.mark.parametrize("backend", BACKENDS)
def test_loader_answers_decode_to_the_cold_values(
    backend: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    result = run_scenario("protocol", backend, request, tmp_path, single_memcached=True)
    assert result["compared"] > 0
