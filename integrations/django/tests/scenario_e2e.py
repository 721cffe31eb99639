"""The deploy scenarios against one backend: traffic replayed cold, ``analyzer ingest`` and
``rank``, ``manage.py cachewarm`` into the emptied cache and the replay again; selective and
detached runs, ``MAX_ENTRIES``, the warmer command line, and the loader's throughput.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scenario_base import (
    _MISSING,
    BACKEND,
    DAYS,
    EXAMPLE,
    KIND,
    WORK,
    app_key,
    cache,
    call_command,
    check,
    connection,
    first_read_hit_rate,
    log_to,
    read_log,
    replay,
    same,
    services,
    session_keys,
    settings,
    setup_data,
    snapshot,
    traffic,
)


def analyzer(*args: str) -> str:
    done = subprocess.run(
        [os.environ["SCENARIO_ANALYZER"], *args], capture_output=True, text=True, check=False
    )
    check(done.returncode == 0, f"analyzer {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def rank(log: Path, label: str) -> tuple[Path, list[dict[str, Any]]]:
    dataset = WORK / f"dataset-{label}"
    manifest = WORK / f"manifest-{label}.json"
    analyzer("ingest", str(log), "--out", str(dataset))
    analyzer(
        "rank",
        "--data",
        str(dataset),
        "--out",
        str(manifest),
        "--preset",
        "django",
        "--budget",
        "64MiB",
        "--store",
        KIND,
    )
    return manifest, json.loads(manifest.read_text())["entries"]


def cachewarm(
    manifest: Path, label: str, *args: str, env: dict[str, str] | None = None, expect_exit: int = 0
) -> tuple[dict[str, Any], float]:
    """``manage.py cachewarm`` as a deploy runs it; returns its report and wall-clock seconds."""
    runs = WORK / f"runs-{label}"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "manage.py"),
            "cachewarm",
            "--manifest",
            str(manifest),
            "--runs-dir",
            str(runs),
            *args,
        ],
        env={**os.environ, "EXAMPLE_WARMING": "on", "EXAMPLE_ACCESS_LOG": "", **(env or {})},
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    (WORK / f"cachewarm-{label}.out").write_text(done.stdout + done.stderr)
    check(
        done.returncode == expect_exit,
        f"cachewarm {label}: exit {done.returncode}, expected {expect_exit}\n"
        f"{done.stdout}\n{done.stderr[-5000:]}",
    )
    reports = sorted(runs.glob("*/report.json"))
    check(len(reports) == 1, f"cachewarm {label}: {len(reports)} reports in {runs}")
    return json.loads(reports[0].read_text()), seconds


def warm_state(
    entries: list[dict[str, Any]],
    sessions: dict[str, str],
    expected: dict[str, Any],
    version: int | None = None,
    skip: set[str] = frozenset(),
) -> int:  # type: ignore[assignment]
    """How many manifest keys are in the cache; each one must equal the cold value."""
    warm = 0
    for entry in entries:
        key = entry["key"]
        if key in skip:
            continue
        name, logged_version = app_key(key, sessions)
        got = cache.get(name, _MISSING, version=version or logged_version)
        if got is _MISSING:
            continue
        warm += 1
        if key in expected:
            check(same(got, expected[key]), f"{key}: warmed {got!r} != cold {expected[key]!r}")
    return warm


def run_e2e() -> dict[str, Any]:
    clients = setup_data()
    sessions = session_keys(clients)
    visits = traffic(clients)
    # Cold: an empty cache after a deploy.
    cache.clear()
    cold_log = WORK / "cold.jsonl"
    log_to(cold_log)
    services.FRAGMENT_RENDERS.clear()
    replay(visits)
    cold_events = read_log(cold_log)
    cold_hits, cold_reads = first_read_hit_rate(cold_events)
    expected = snapshot(cold_events, sessions)
    log_to(WORK / "checks.jsonl")
    manifest, entries = rank(cold_log, "cold")
    categories = {entry["category"] for entry in entries}
    check(
        {
            "django.sessions",
            "django.template_fragments",
            "django.profile",
            "django.perm",
            "django.report",
        }
        <= categories,
        f"manifest categories: {categories}",
    )

    # The deploy step.
    cache.clear()
    report, seconds = cachewarm(manifest, "first")
    target = report["targets"][0]
    counts = target["counts"]
    check(counts["failed"] == 0 and counts["source_miss"] == 0, f"first run: {counts}")
    warm = warm_state(entries, sessions, expected)
    check(warm == counts["written"] and warm > 0, f"{warm} keys warm, report says {counts}")
    # Session keys are logged hashed: the report's coverage asks for the keys the loader wrote.
    covered = target["coverage_after"]["keys_present"]
    check(covered == warm, f"coverage after finds {covered} keys, {warm} are warm")
    if KIND != "sql":
        check(warm == len(entries), f"{warm} of {len(entries)} manifest keys warm")
    fragments_warm = {
        entry["key"]
        for entry in entries
        if ":template.cache." in entry["key"]
        and cache.get(app_key(entry["key"], sessions)[0]) is not None
    }
    fragments_cold = {key for key in expected if ":template.cache." in key}

    # The same traffic again, now on a warmed cache.
    warm_log = WORK / "warm.jsonl"
    log_to(warm_log)
    services.FRAGMENT_RENDERS.clear()
    replay(visits)
    warm_hits, warm_reads = first_read_hit_rate(read_log(warm_log))
    log_to(WORK / "checks.jsonl")
    renders = sum(services.FRAGMENT_RENDERS.values())
    check(
        renders == len(fragments_cold - fragments_warm),
        f"{renders} fragment bodies rendered; "
        f"{len(fragments_cold - fragments_warm)} fragments were not warm",
    )
    cold_rate, warm_rate = cold_hits / cold_reads, warm_hits / warm_reads
    print(
        f"{BACKEND}: first reads hit {cold_hits}/{cold_reads} = {cold_rate:.1%} cold, "
        f"{warm_hits}/{warm_reads} = {warm_rate:.1%} warmed",
        flush=True,
    )
    check(warm_rate >= cold_rate + 0.5, "the warmed first reads should hit well above cold")

    # Again: everything is there, nothing is written.
    again, _ = cachewarm(manifest, "again")
    check(
        again["targets"][0]["counts"]["written"] == 0,
        f"second run: {again['targets'][0]['counts']}",
    )

    if os.environ.get("SCENARIO_SELECTIVE"):
        result_selective = check_selective(manifest, entries, sessions)
    else:
        result_selective = None

    # A loader that raises for some keys: the rest is warm, the report names them.
    broken_days = [DAYS[1].isoformat(), DAYS[2].isoformat()]
    broken = {
        e["key"]
        for e in entries
        if any(e["key"].endswith(f"report:daily:{d}") for d in broken_days)
    }
    check(bool(broken), "the manifest has reports of the broken days")
    cache.clear()
    failing, _ = cachewarm(
        manifest, "broken", env={"EXAMPLE_BROKEN_REPORTS": ",".join(broken_days)}
    )
    failed = failing["targets"][0]
    named = {item["key"] for item in failed["not_warmed"]}
    check(broken <= named, f"the report names {named & broken} of the broken keys {broken}")
    check(
        failed["counts"]["failed"] + failed["counts"]["source_miss"] == len(broken),
        f"{failed['counts']}",
    )
    still = warm_state(entries, sessions, expected, skip=broken)
    check(still == failed["counts"]["written"], f"{still} warm beside the broken keys")
    cache.clear()
    cachewarm(
        manifest,
        "strict",
        "--strict",
        env={"EXAMPLE_BROKEN_REPORTS": broken_days[0]},
        expect_exit=1,
    )

    # A version bump: the manifest ranked under VERSION 1 warms the keys of VERSION 2.
    cache.clear()
    bumped, _ = cachewarm(manifest, "bump", env={"EXAMPLE_CACHE_VERSION": "2"})
    on_two = warm_state(entries, sessions, expected, version=2)
    check(
        on_two == bumped["targets"][0]["counts"]["written"] and on_two > 0,
        f"{on_two} warm under VERSION 2",
    )
    covered = bumped["targets"][0]["coverage_after"]["keys_present"]
    check(covered == on_two, f"coverage after the bump finds {covered} keys, {on_two} are warm")
    check(
        warm_state(entries, sessions, expected, version=1) == 0, "nothing written under VERSION 1"
    )

    result: dict[str, Any] = {
        "backend": BACKEND,
        "database": connection.vendor,
        "manifest_entries": len(entries),
        "written": counts["written"],
        "cold_first_read_hit_rate": round(cold_rate, 4),
        "warm_first_read_hit_rate": round(warm_rate, 4),
        "first_reads": warm_reads,
        "warm_ms": report["timings"]["warm_ms"],
        "keys_per_s": target["keys_per_s"],
        "command_seconds": round(seconds, 2),
    }

    if result_selective is not None:
        result["selective"] = result_selective
    if KIND == "sql":
        result["max_entries_rows"] = check_max_entries()
    return result


def check_selective(
    manifest: Path, entries: list[dict[str, Any]], sessions: dict[str, str]
) -> dict[str, int]:
    """--dry-run writes nothing; --category and --key warm only what they select. Leaves the
    cache as the warm replay left it (the selective runs add nothing that was not there)."""

    def warm_keys() -> set[str]:
        found = set()
        for entry in entries:
            name, version = app_key(entry["key"], sessions)
            if cache.get(name, _MISSING, version=version) is not _MISSING:
                found.add(entry["key"])
        return found

    cache.clear()
    dry, _ = cachewarm(manifest, "dry", "--dry-run")
    check(not warm_keys(), "--dry-run wrote keys")
    check(dry["dry_run"] is True, "the report says dry run")
    sessions_only, _ = cachewarm(manifest, "category", "--category", "django.sessions")
    warm = warm_keys()
    check(
        bool(warm) and all("django.contrib.sessions" in key for key in warm), f"--category: {warm}"
    )
    cache.clear()
    profiles_only, _ = cachewarm(manifest, "key", "--key", r"^:1:profile:")
    warm = warm_keys()
    want = {e["key"] for e in entries if e["key"].startswith(":1:profile:")}
    check(warm == want, f"--key warmed {sorted(warm)[:5]}…, expected {sorted(want)[:5]}…")
    cache.clear()
    return {
        "category_written": sessions_only["targets"][0]["counts"]["written"],
        "key_written": profiles_only["targets"][0]["counts"]["written"],
    }


def check_max_entries() -> int:
    """500 hot report keys against MAX_ENTRIES = 300, with the fill limit lifted: the emptied
    table takes exactly 300 rows, never more, and the report counts the other 200 as
    ``skipped_budget``."""
    keys, max_entries = 500, settings.CACHES["default"]["OPTIONS"]["MAX_ENTRIES"]
    check(max_entries < keys, f"MAX_ENTRIES = {max_entries} leaves room for all {keys} keys")
    log = WORK / "many.jsonl"
    base = 1_800_000_000
    with log.open("w") as out:
        for round_ in range(2):
            for i in range(keys):
                day = datetime.date(2020, 1, 1) + datetime.timedelta(days=i)
                out.write(
                    json.dumps(
                        {
                            "ts": base + round_ * 1000 + i,
                            "key": f":1:report:daily:{day}",
                            "op": "get",
                            "hit": False,
                            "namespace": "default",
                        }
                    )
                    + "\n"
                )
    manifest, entries = rank(log, "many")
    check(len(entries) == keys, f"{len(entries)} entries")
    cache.clear()
    table = connection.ops.quote_name(settings.CACHES["default"]["LOCATION"])
    report, _ = cachewarm(manifest, "many", env={"CACHEWARM_MAX_FILL": "100%"})
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        rows = int(cursor.fetchone()[0])
    target = report["targets"][0]
    counts = target["counts"]
    check(rows == max_entries, f"{rows} rows in a table with MAX_ENTRIES = {max_entries}")
    check(
        (counts["written"], counts["skipped_budget"]) == (max_entries, keys - max_entries),
        f"{max_entries} written and {keys - max_entries} skipped_budget expected: {counts}",
    )
    check(target["stopped_by"] == "max_entries", f"stopped_by: {target['stopped_by']}")
    return rows


def run_detached() -> dict[str, Any]:
    """``warm(…, background=True)`` from Python returns a run directory at once; its status
    can be polled until the run has finished."""
    from cachewarm_django import warm

    clients = setup_data()
    cache.clear()
    log = WORK / "cold.jsonl"
    log_to(log)
    replay(traffic(clients))
    manifest, entries = rank(log, "detached")
    cache.clear()
    os.environ["EXAMPLE_WARMING"] = "on"
    started = time.perf_counter()
    run = warm(manifest, background=True, runs_dir=str(WORK / "runs-detached"))
    returned = time.perf_counter() - started
    status: dict[str, Any] = {}
    for _ in range(600):
        try:
            status = run.status()
        except RuntimeError:  # the background run has not written its checkpoint yet
            status = {}
        if status.get("state") not in ("running", "starting", None):
            break
        time.sleep(0.2)
    check(status.get("state") == "finished", f"status: {status}")
    report = json.loads((Path(run.run_dir) / "report.json").read_text())
    written = report["targets"][0]["counts"]["written"]
    check(written == len(entries), f"{written} of {len(entries)} written in the background")
    return {
        "backend": BACKEND,
        "returned_after_s": round(returned, 3),
        "state": status["state"],
        "written": written,
    }


def run_throughput() -> dict[str, Any]:
    """Keys per second through the loader: SCENARIO_KEYS daily reports (one aggregate query
    each), ranked and warmed as a deploy would."""
    call_command("migrate", verbosity=0)
    count = int(os.environ.get("SCENARIO_KEYS", "5000"))
    log = WORK / "many.jsonl"
    base = 1_800_000_000
    with log.open("w") as out:
        for round_ in range(2):
            for i in range(count):
                day = datetime.date(2000, 1, 1) + datetime.timedelta(days=i)
                event = {
                    "ts": base + round_ * count + i,
                    "key": f":1:report:daily:{day}",
                    "op": "get",
                    "hit": False,
                    "namespace": "default",
                }
                out.write(json.dumps(event) + "\n")
    manifest, entries = rank(log, "throughput")
    cache.clear()
    report, seconds = cachewarm(manifest, "throughput")
    target = report["targets"][0]
    check(target["counts"]["written"] == count, f"{target['counts']}")
    return {
        "backend": BACKEND,
        "keys": count,
        "warm_ms": report["timings"]["warm_ms"],
        "keys_per_s": target["keys_per_s"],
        "command_seconds": round(seconds, 2),
        "loader_workers": os.cpu_count(),
    }


def run_argv() -> dict[str, Any]:
    """The warmer command ``manage.py cachewarm`` would run, without running it."""
    from cachewarm_django.runner import Options, command

    argv, env = command("manifest.json", "default", Options(key="^:1:profile:"), detach=False)
    return {
        "argv": argv,
        "targets": env["CACHEWARM_TARGETS"],
        "key_pattern": env.get("CACHEWARM_DJANGO_KEY_PATTERN"),
    }
