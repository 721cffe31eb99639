#!/usr/bin/env python3
"""Synthetic cache access logs for the ingest benchmark (`bench/ingest`), in every format the
analyzer reads, with the shapes of real logs.

One workload, rendered seven ways. The workload is a read-through cache in front of a Django
and a Rails app:

- keys: a few hundred thousand distinct keys (`--keys`, 300,000), Zipf-distributed popularity
  (`--zipf`, alpha 1.0, the middle of the range of Twitter's production clusters in
  `sample_data/real/twitter/stat-2020Mar.md`), named like Django (`:1:django.contrib.sessions
  .cache…`, `:1:views.decorators.cache.cache_page…`, `:1:template.cache…`, `:1:q:profile:42`)
  and Rails (`views/products/_product:…/products/42-…`, `users/42-…/profile`) apps name them;
- requests: a `get`; on a miss (never written, expired, or invalidated) the client computes the
  value and `set`s it a few milliseconds later with its family's TTL, on the same connection;
  a few `delete`s invalidate keys. 32 client connections interleave;
- values: real payloads (Django: pickled sessions, responses, fragments and querysets; Rails:
  Marshal-framed entries, zlib-compressed above 1 KiB as Rails does), log-normal sizes per key
  family from ~100 B (permissions) to ~15 KB (cached pages).

Per format (each file has exactly `--lines` lines):

- `csv` (`access.csv`): canonical CSV with every column; `jsonl` (`access.jsonl`): the same
  fields, absent ones left out;
- `memcached-watch`: `watch fetchers mutations` output: URI-encoded keys, microseconds printed
  without zero padding (`ts=1795165200.4521`), slab class ids, and the set's own `item_get`
  logged just before each `item_store`, as memcached 1.6 prints them; deletes are not shown
  (`watch mutations` does not log them);
- `redis-monitor`: `redis-cli monitor` output (`OK` first), arguments quoted and escaped as
  `sdscatrepr` does (`\\"`, `\\n`, `\\xHH` for every non-printable byte), whole values in the
  `SET` lines, `EX` (Django) or `PX` (Rails) TTLs, some `DEL`s;
- `twitter`: the OSDI'20 trace layout `ts,key,key_size,value_size,client,op,ttl`, anonymised
  keys, seconds from the start of the trace;
- `cachelib`: kvcache trace rows `op_time,key,key_size,op,op_count,size,cache_hits,ttl,usecase,
  sub_usecase` with hashed keys, some rows standing for several identical operations;
- `rails`: a Rails production log (Ruby Logger lines, request ids) of requests whose
  `Rails.cache.fetch` calls log `Cache read` then `Cache fetch_hit`, or `Cache generate` and
  `Cache write` with `{:expires_in=>…}`, between `Started`/`Processing`/`Completed` lines.

Deterministic: the same arguments write the same bytes. Streaming: lines go straight to disk,
and memory stays at the per-key cache state (tens of MB) whatever `--lines` is.

Usage: python3 bench/generate_logs.py --out DIR [--lines 5000000] [--formats csv,jsonl,…]
       [--jobs N]
"""

import argparse
import bisect
import datetime
import heapq
import itertools
import json
import os
import random
import sys
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import quote

from log_families import FAMILIES, md5hex

FORMATS = ("csv", "jsonl", "memcached-watch", "redis-monitor", "twitter", "cachelib", "rails")
FILE_NAMES = {
    "csv": "access.csv",
    "jsonl": "access.jsonl",
    "memcached-watch": "memcached-watch.log",
    "redis-monitor": "redis-monitor.log",
    "twitter": "twitter.csv",
    "cachelib": "cachelib.csv",
    "rails": "rails.log",
}

SEED = 20261120
START_US = 1795165200 * 1_000_000  # 2026-11-20T09:00:00Z: a busy morning, one UTC day
RATE = 2_000.0  # client requests per second: 5 M lines span well under a day
CONNECTIONS = 32
DELETE_SHARE = 0.004  # invalidations per request
PAYLOADS_PER_FAMILY = 96


class Keys:
    """The key universe: names, families and payloads of keys by popularity rank."""

    def __init__(self, count, alpha, apps):
        self.count = count
        families = [f for f in FAMILIES if f.app in apps]
        self.families = families
        total = sum(f.share for f in families)
        self.family_cum = list(itertools.accumulate(f.share / total for f in families))
        weights = [1.0 / (rank + 1) ** alpha for rank in range(count)]
        self.cum_weights = list(itertools.accumulate(weights))
        self.names = [None] * count
        self.key_family = [None] * count
        rng = random.Random(SEED ^ 0x5EED)
        self.payloads = {}
        for family in families:
            pool = []
            for _ in range(PAYLOADS_PER_FAMILY):
                size = max(16, int(rng.lognormvariate(0, family.sigma) * family.median))
                pool.append(family.payload(rng, size))
            self.payloads[family.name] = pool

    @staticmethod
    def _mix(i):
        # A fixed scramble of the rank, so families, TTLs and payloads do not follow rank.
        return (i * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF

    def family(self, i):
        family = self.key_family[i]
        if family is None:
            u = self._mix(i) / 2**32
            at = bisect.bisect_right(self.family_cum, u * self.family_cum[-1])
            family = self.families[min(at, len(self.families) - 1)]
            self.key_family[i] = family
        return family

    def name(self, i):
        name = self.names[i]
        if name is None:
            name = self.family(i).namer(i)
            self.names[i] = name
        return name

    def payload(self, i):
        """(payload index, payload bytes) of key `i`: the same every time it is written."""
        family = self.family(i)
        index = (self._mix(i) >> 8) % PAYLOADS_PER_FAMILY
        return family.name, index, self.payloads[family.name][index]

    def ttl(self, i):
        ttls = self.family(i).ttls
        return ttls[(self._mix(i) >> 4) % len(ttls)]


# ---------------------------------------------------------------------------------------------
# The workload: a time-ordered stream of operations.

GET, SET, DELETE = "get", "set", "delete"


def workload(keys, rng, synchronous_sets=False):
    """Yields (op, ts_us, connection, key, hit) in time order, forever.

    `hit` is the get's outcome (None for writes). A miss is followed by a set of the key on the
    same connection a few milliseconds later (interleaved with other connections' requests),
    or right away with `synchronous_sets` (for logs written by one process at a time).
    """
    expires = {}  # key -> expiry (µs) of the value in the cache
    scheduled = []  # heap of (ts_us, seq, connection, key) sets to come
    busy = set()  # connections computing a value
    seq = 0
    ts = START_US
    batch = []
    choose = rng.choices
    population = range(keys.count)
    cum = keys.cum_weights
    while True:
        if not batch:
            batch = choose(population, cum_weights=cum, k=4096)
            batch.reverse()
        key = batch.pop()
        ts += int(rng.expovariate(RATE) * 1_000_000) + 1
        while scheduled and scheduled[0][0] <= ts:
            set_ts, _, connection, set_key = heapq.heappop(scheduled)
            busy.discard(connection)
            expires[set_key] = set_ts + keys.ttl(set_key) * 1_000_000
            yield SET, set_ts, connection, set_key, None
        connection = rng.randrange(CONNECTIONS)
        while connection in busy:
            connection = rng.randrange(CONNECTIONS)
        if rng.random() < DELETE_SHARE:
            expires.pop(key, None)
            yield DELETE, ts, connection, key, None
            continue
        hit = expires.get(key, 0) > ts
        yield GET, ts, connection, key, hit
        if not hit:
            # The app computes the value: a few ms, sometimes tens (well within the 250 ms
            # redis-monitor reader's window).
            delay = min(int(rng.lognormvariate(8.0, 0.9)), 150_000) + 20
            if synchronous_sets:
                ts += delay
                expires[key] = ts + keys.ttl(key) * 1_000_000
                yield SET, ts, connection, key, None
            else:
                seq += 1
                busy.add(connection)
                heapq.heappush(scheduled, (ts + delay, seq, connection, key))


# ---------------------------------------------------------------------------------------------
# Renderers: each turns the operation stream into lines of one format.


def latency(rng, op, hit):
    if op == GET:
        return int(rng.lognormvariate(5.6 if hit else 5.9, 0.5))
    return int(rng.lognormvariate(6.0, 0.5))


def render_canonical(keys, rng, jsonl):
    """Canonical CSV or JSON lines."""
    if not jsonl:
        yield "ts,key,op,hit,count,value_size,ttl_s,latency_us,client,namespace\n"
    quoted = {}
    for op, ts, conn, key, hit in workload(keys, rng):
        name = keys.name(key)
        family = keys.family(key)
        client = f"{family.app}-web-{conn % 8 + 1}"
        ts_text = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
        lat = latency(rng, op, hit)
        size = ttl = None
        if op == GET and hit:
            size = len(keys.payload(key)[2])
        elif op == SET:
            size = len(keys.payload(key)[2])
            ttl = keys.ttl(key)
        if jsonl:
            jkey = quoted.get(key)
            if jkey is None:
                jkey = quoted[key] = json.dumps(name)
            line = f'{{"ts": {ts_text}, "key": {jkey}, "op": "{op}"'
            if op == GET:
                line += ', "hit": true' if hit else ', "hit": false'
            if size is not None:
                line += f', "value_size": {size}'
            if ttl is not None:
                line += f', "ttl_s": {ttl}'
            yield (line + f', "latency_us": {lat}, "client": "{client}", '
                   f'"namespace": "{family.app}"}}\n')
        else:
            hit_text = "" if hit is None else ("1" if hit else "0")
            yield (f"{ts_text},{name},{op},{hit_text},1,{'' if size is None else size},"
                   f"{'' if ttl is None else ttl},{lat},{client},{family.app}\n")


# memcached's slab classes with the default growth factor 1.25 and 48-byte minimum (-n 48).
SLAB_CHUNKS = []
_chunk = 96
while _chunk < 512 * 1024:
    SLAB_CHUNKS.append(_chunk)
    _chunk = (int(_chunk * 1.25) + 7) // 8 * 8
SLAB_CHUNKS.append(512 * 1024)


def slab_class(key_len, value_len):
    item = 48 + 8 + key_len + 1 + value_len + 2  # header, cas, key, suffix, data + \r\n
    return min(bisect.bisect_left(SLAB_CHUNKS, item), len(SLAB_CHUNKS) - 1) + 1


def render_memcached(keys, rng):
    encoded = {}
    gid = 0
    stored = set()
    for op, ts, conn, key, hit in workload(keys, rng):
        if op == DELETE:  # `watch fetchers mutations` does not log deletes
            stored.discard(key)
            continue
        name = encoded.get(key)
        if name is None:
            name = encoded[key] = quote(keys.name(key), safe="")
        cfd = 23 + conn
        size = len(keys.payload(key)[2])
        clsid = slab_class(len(keys.name(key)), size)
        sec, us = divmod(ts, 1_000_000)
        gid += 1
        if op == GET:
            if hit:
                yield (f"ts={sec}.{us} gid={gid} type=item_get key={name} status=found "
                       f"clsid={clsid} cfd={cfd} size={size}\n")
            else:
                yield (f"ts={sec}.{us} gid={gid} type=item_get key={name} status=not_found "
                       f"clsid=0 cfd={cfd} size=0\n")
        else:
            # A set looks the key up first (an expired item is found by the lookup only when it
            # is still in memory; the set replaces it), then stores.
            if key in stored and rng.random() < 0.3:
                own = f"status=found clsid={clsid} cfd={cfd} size={size}"
            else:
                own = f"status=not_found clsid=0 cfd={cfd} size=0"
            yield f"ts={sec}.{us} gid={gid} type=item_get key={name} {own}\n"
            stored.add(key)
            gid += 1
            sec, us = divmod(ts + 3 + (gid & 3), 1_000_000)
            yield (f"ts={sec}.{us} gid={gid} type=item_store key={name} status=stored cmd=set "
                   f"ttl={keys.ttl(key)} clsid={clsid} cfd={cfd} size={size}\n")
        if gid % 1_500_000 == 0:
            # Under load the watcher falls behind now and then and says how much it dropped.
            yield f"skipped={rng.randrange(1, 40)}\n"


REPR = []
for _byte in range(256):
    _char = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x07: "\\a",
             0x08: "\\b"}.get(_byte)
    if _char is None:
        _char = chr(_byte) if 0x20 <= _byte < 0x7F else f"\\x{_byte:02x}"
    REPR.append(_char)


def redis_repr(data):
    """An argument as MONITOR prints it (redis' sdscatrepr), quotes included."""
    return '"' + "".join([REPR[b] for b in data]) + '"'


def render_redis(keys, rng):
    yield "OK\n"
    quoted = {}
    values = {}
    for op, ts, conn, key, hit in workload(keys, rng):
        name = quoted.get(key)
        if name is None:
            name = quoted[key] = redis_repr(keys.name(key).encode())
        origin = f"[0 10.0.1.{conn % 8 + 11}:{40000 + conn * 37}]"
        stamp = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
        if op == GET:
            yield f'{stamp} {origin} "GET" {name}\n'
        elif op == DELETE:
            yield f'{stamp} {origin} "DEL" {name}\n'
        else:
            family, index, payload = keys.payload(key)
            value = values.get((family, index))
            if value is None:
                value = values[(family, index)] = redis_repr(payload)
            ttl = keys.ttl(key)
            if keys.family(key).app == "django":
                yield f'{stamp} {origin} "SET" {name} {value} "EX" "{ttl}"\n'
            else:
                yield f'{stamp} {origin} "SET" {name} {value} "PX" "{ttl * 1000}"\n'


BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def twitter_key(keys, i):
    digest = int(md5hex(keys.name(i)), 16)
    tail = []
    for _ in range(11):
        digest, r = divmod(digest, 62)
        tail.append(BASE62[r])
    prefix = {"django": "q:q:1:", "rails": "r:v:2:"}[keys.family(i).app]
    return prefix + "".join(tail)


def render_twitter(keys, rng):
    names = {}
    for op, ts, conn, key, hit in workload(keys, rng):
        name = names.get(key)
        if name is None:
            name = names[key] = f"{twitter_key(keys, key)},{len(keys.name(key))}"
        seconds = (ts - START_US) // 1_000_000
        if op == GET:
            size = len(keys.payload(key)[2]) if hit else 0
            yield f"{seconds},{name},{size},{conn},get,0\n"
        elif op == SET:
            yield f"{seconds},{name},{len(keys.payload(key)[2])},{conn},set,{keys.ttl(key)}\n"
        else:
            yield f"{seconds},{name},0,{conn},delete,0\n"


def render_cachelib(keys, rng):
    yield "op_time,key,key_size,op,op_count,size,cache_hits,ttl,usecase,sub_usecase\n"
    names = {}
    usecases = {f.name: (str(int(md5hex(f.app)[:8], 16)), str(int(md5hex(f.name)[:8], 16)))
                for f in keys.families}
    for op, ts, conn, key, hit in workload(keys, rng):
        row = names.get(key)
        if row is None:
            use, sub = usecases[keys.family(key).name]
            row = names[key] = (md5hex(keys.name(key))[:16], len(keys.name(key)), use, sub)
        hashed, key_size, use, sub = row
        op_time = 604_038_471 + (ts - START_US) // 1_000_000
        size = len(keys.payload(key)[2])
        if op == GET:
            count = 1 if rng.random() < 0.75 else rng.randrange(2, 5)
            yield (f"{op_time},{hashed},{key_size},GET,{count},{size if hit else 0},"
                   f"{count if hit else 0},0,{use},{sub}\n")
        elif op == SET:
            yield f"{op_time},{hashed},{key_size},SET,1,{size},0,{keys.ttl(key)},{use},{sub}\n"
        else:
            yield f"{op_time},{hashed},{key_size},DELETE,1,0,0,0,{use},{sub}\n"


RAILS_PAGES = ("/products/{}", "/products/{}/reviews", "/users/{}", "/", "/search?q=shoes&page={}")
RAILS_ACTIONS = ("ProductsController#show", "ReviewsController#index", "UsersController#show",
                 "HomeController#index", "SearchController#index")


def ruby_duration(seconds):
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            amount = seconds // size
            return f"{amount} {unit if amount != 1 else unit[:-1]}"
    return f"{seconds} seconds"


def render_rails(keys, rng):
    """A Rails production log: one process's requests, each a few Rails.cache.fetch calls."""
    pids = [4242 + 17 * n for n in range(6)]
    stream = workload(keys, rng, synchronous_sets=True)
    last = 0  # a log file's lines are in time order

    def stamp(ts, severity, pid, request):
        nonlocal last
        last = max(ts, last)
        moment = datetime.datetime.fromtimestamp(last / 1_000_000, datetime.timezone.utc)
        return (f"{severity[0]}, [{moment.strftime('%Y-%m-%dT%H:%M:%S.%f')} #{pid}] "
                f"{severity:>5} -- : [{request}] ")

    options = {}
    while True:
        pid = rng.choice(pids)
        request = f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}"
        page = rng.randrange(len(RAILS_PAGES))
        op, ts, conn, key, hit = next(stream)
        started = ts - 300
        when = datetime.datetime.fromtimestamp(max(started, last) // 1_000_000,
                                               datetime.timezone.utc)
        path = RAILS_PAGES[page].format(rng.randrange(1, 5000))
        yield (stamp(started, "INFO", pid, request) + f'Started GET "{path}" for '
               f"10.0.{conn % 4}.{conn + 20} at {when.strftime('%Y-%m-%d %H:%M:%S')} +0000\n")
        yield (stamp(started + 120, "INFO", pid, request)
               + f"Processing by {RAILS_ACTIONS[page]} as HTML\n")
        fetches = rng.randrange(2, 9)
        done = 0
        while True:
            name = keys.name(key)
            opts = options.get(key)
            if opts is None:
                opts = options[key] = f" ({{:expires_in=>{ruby_duration(keys.ttl(key))}}})"
            prefix = stamp(ts, "DEBUG", pid, request)
            if op == GET:
                done += 1
                yield f"{prefix}Cache read: {name}{opts}\n"
                if hit:
                    yield f"{prefix}Cache fetch_hit: {name}{opts}\n"
                else:
                    # The write comes next in the stream (synchronous sets): finish the fetch.
                    yield f"{prefix}Cache generate: {name}{opts}\n"
            elif op == SET:
                yield f"{prefix}Cache write: {name}{opts}\n"
            else:
                yield f"{prefix}Cache delete: {name}\n"
            if done >= fetches and not (op == GET and not hit):
                break
            op, ts, conn, key, hit = next(stream)
        views = rng.randrange(2, 80)
        total_ms = (max(ts, last) + 500 - started) // 1000 + views
        yield (stamp(ts + 500, "INFO", pid, request) + f"Completed 200 OK in {total_ms}ms "
               f"(Views: {views}.{rng.randrange(10)}ms | ActiveRecord: "
               f"{rng.randrange(0, 30)}.{rng.randrange(10)}ms | "
               f"Allocations: {rng.randrange(2000, 60000)})\n")


RENDERERS = {
    "csv": lambda keys, rng: render_canonical(keys, rng, jsonl=False),
    "jsonl": lambda keys, rng: render_canonical(keys, rng, jsonl=True),
    "memcached-watch": render_memcached,
    "redis-monitor": render_redis,
    "twitter": render_twitter,
    "cachelib": render_cachelib,
    "rails": render_rails,
}


def generate(fmt, out_dir, lines, key_count, alpha):
    """Writes `lines` lines of `fmt` into `out_dir`; returns (path, bytes)."""
    apps = ("rails",) if fmt == "rails" else ("django", "rails")
    keys = Keys(key_count, alpha, apps)
    rng = random.Random(f"{SEED}:{fmt}")
    path = os.path.join(out_dir, FILE_NAMES[fmt])
    temp = path + ".partial"
    with open(temp, "w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        write = out.write
        chunk = []
        for line in itertools.islice(RENDERERS[fmt](keys, rng), lines):
            chunk.append(line)
            if len(chunk) == 8192:
                write("".join(chunk))
                chunk.clear()
        write("".join(chunk))
    os.replace(temp, path)
    return path, os.path.getsize(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory to write the logs into")
    parser.add_argument("--lines", type=int, default=5_000_000,
                        help="lines per file, headers included (default 5,000,000)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, default all: {','.join(FORMATS)}")
    parser.add_argument("--keys", type=int, default=300_000, help="distinct keys (300,000)")
    parser.add_argument("--zipf", type=float, default=1.0, help="Zipf alpha of key popularity")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="formats written in parallel (default: the CPU count)")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or args.lines < 2:
        parser.error(f"unknown formats {unknown}" if unknown else "--lines must be at least 2")
    os.makedirs(args.out, exist_ok=True)
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(formats)))) as pool:
        jobs = [pool.submit(generate, f, args.out, args.lines, args.keys, args.zipf)
                for f in formats]
        for fmt, job in zip(formats, jobs):
            path, size = job.result()
            print(f"{fmt:16} {args.lines:>11,} lines {size / 1e6:>10,.1f} MB  {path}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
