"""The access log writes exactly one canonical line per cache operation the store sees, sync
and async, with cached ``None`` as a hit, ``get_many`` per key, nested calls once, and session
keys hashed; ``analyzer ingest`` reads every line. A full disk or a full queue never raises
into the request and never blocks it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from scenarios import run_scenario


@pytest.mark.parametrize("backend", ["redis", "django_redis", "pymemcache", "pylibmc", "db_sqlite"])
def test_operations_are_logged_once_each(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, analyzer_binary: str
) -> None:
    result = run_scenario("access_log", backend, request, tmp_path)
    lines = Path(result["log"]).read_text().splitlines()
    assert len(lines) == result["lines"]
    done = subprocess.run(
        [analyzer_binary, "ingest", result["log"], "--out", str(tmp_path / "dataset"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    print(stats)
    assert stats["events"] == len(lines), stats
    assert stats.get("rejected", 0) == 0, stats


def test_a_full_disk_drops_lines_without_raising(tmp_path: Path) -> None:
    from cachewarm_django.access_log import Writer

    writer = Writer("/dev/full")
    for i in range(1000):
        writer.put(json.dumps({"ts": 1, "key": f"k{i}"}) + "\n")
    assert writer.flush(timeout=10)
    assert writer.dropped == 1000 and writer.written == 0


def test_a_full_queue_never_blocks_the_caller(tmp_path: Path) -> None:
    from cachewarm_django.access_log import Writer

    writer = Writer(str(tmp_path / "log.jsonl"), max_lines=10)
    started = time.perf_counter()
    for i in range(50_000):
        writer.put(f'{{"ts":1,"key":"k{i}"}}\n')
    elapsed = time.perf_counter() - started
    assert writer.flush(timeout=10)
    written = len((tmp_path / "log.jsonl").read_text().splitlines())
    assert written + writer.dropped == 50_000
    assert writer.dropped > 0
    assert elapsed < 2.0, f"50,000 puts took {elapsed:.2f}s"
