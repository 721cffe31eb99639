"""End to end per backend, with the real warmer and analyzer: the example's traffic replayed
through Django's test client with the access log on → ``analyzer ingest`` and ``rank --preset
django`` → the cache cleared → ``manage.py cachewarm``. Every warmed key reads back through
``cache.get`` equal (==, same type) to what the app computed cold; the first reads of the
replay hit where the cold replay missed (both rates printed); warmed fragments are not rendered
again; a second run writes nothing; a loader that raises leaves the rest warm and is named in
the report (and fails the run with --strict); a VERSION bump warms the new keys; a
DatabaseCache never holds more than MAX_ENTRIES rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scenarios import BACKENDS, run_scenario

#: What each parametrised backend must really have run on: Django's backend class, and the
#: database under the DatabaseCache (the example's models sit on SQLite otherwise).
RAN_ON = {
    "redis": ("django.core.cache.backends.redis.RedisCache", "sqlite"),
    "django_redis": ("django_redis.cache.RedisCache", "sqlite"),
    "pymemcache": ("django.core.cache.backends.memcached.PyMemcacheCache", "sqlite"),
    "pylibmc": ("django.core.cache.backends.memcached.PyLibMCCache", "sqlite"),
    "db_sqlite": ("django.core.cache.backends.db.DatabaseCache", "sqlite"),
    "db_postgres": ("django.core.cache.backends.db.DatabaseCache", "postgresql"),
}
#: "Well above": the warmed first reads hit at least this share more than the cold ones.
WELL_ABOVE = 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_after_deploy(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    warmer_binary: str,
    analyzer_binary: str,
) -> None:
    """Prints, per backend, the hit rate of the replay's first reads cold and after
    ``manage.py cachewarm``, and that run's wall time and keys per second through the loader."""
    # --dry-run, --category and --key once, on Redis.
    selective = {"SCENARIO_SELECTIVE": "1"} if backend == "redis" else {}
    result = run_scenario(
        "e2e",
        backend,
        request,
        tmp_path,
        # The warmer: $CACHEWARM_WARMER when the caller set one, else the wheel's own.
        extra_env={"SCENARIO_ANALYZER": analyzer_binary, **selective},
    )
    print("figures:", json.dumps(result))
    assert set(RAN_ON) == set(BACKENDS)
    assert (result["backend"], result["database"]) == RAN_ON[backend]
    cold, warm = result["cold_first_read_hit_rate"], result["warm_first_read_hit_rate"]
    seconds, written = result["command_seconds"], result["written"]
    print(
        f"{backend}: first reads ({result['first_reads']}) hit {cold:.1%} cold, {warm:.1%} "
        f"warmed; the warm run wrote {written} keys in {seconds:.2f} s wall "
        f"({written / seconds:.0f} keys/s), {result['warm_ms']} ms warming "
        f"({result['keys_per_s']:.0f} keys/s in the report)"
    )
    assert result["first_reads"] > 0 and written > 0
    assert warm >= cold + WELL_ABOVE, f"{backend}: warmed {warm:.1%} is not well above {cold:.1%}"


def test_background_run_is_pollable(
    request: pytest.FixtureRequest, tmp_path: Path, warmer_binary: str, analyzer_binary: str
) -> None:
    result = run_scenario(
        "detached",
        "redis",
        request,
        tmp_path,
        extra_env={"SCENARIO_ANALYZER": analyzer_binary},
    )
    assert result["state"] == "finished"


def test_loader_throughput(
    request: pytest.FixtureRequest, tmp_path: Path, warmer_binary: str, analyzer_binary: str
) -> None:
    """Prints the keys per second 5,000 computed values reach through the loader (Redis)."""
    result = run_scenario(
        "throughput", "redis", request, tmp_path, extra_env={"SCENARIO_ANALYZER": analyzer_binary}
    )
    print("throughput:", json.dumps(result))
    assert result["keys"] == 5000
