#!/usr/bin/env python3
"""Regenerates the demo's sample data, deterministically (same files every run).

- access.csv, access.jsonl: canonical access logs (DESIGN.md, canonical log formats) of a
  read-through workload over Django- and Rails-shaped keys, Zipf-distributed, over two days.
  access.csv holds two malformed lines on purpose, to show how ingest reports them.
- replica.sqlite3: a warm Django DatabaseCache table (`django_cache`) holding the values, the
  demo's value source. Entries never expire (Django's timeout=None stores year 9999), so the
  warmer takes each key's TTL from the manifest. A few keys are missing, as on a real replica.

Usage: python3 sample_data/generate.py  (from the repository root or anywhere)
"""

import base64
import csv
import json
import os
import random
import sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
START = 1763596800  # 2025-11-20T00:00:00Z
KEYS = 240
READS = 3000


def keys():
    out = []
    for i in range(KEYS):
        kind = i % 4
        if kind == 0:
            out.append(f":1:views.decorators.cache.cache_page.product.{i}.en")
        elif kind == 1:
            out.append(f":1:django.contrib.sessions.cache{i:032x}")
        elif kind == 2:
            out.append(f"views/products/{i}-20251120/en")
        else:
            out.append(f"app:v3:user:{i}:profile")
    return out


def main():
    rng = random.Random(20251120)
    names = keys()
    weights = [1.0 / (rank + 1) for rank in range(KEYS)]
    cached = {}
    events = []
    for n in range(READS):
        ts = START + n * 50 + rng.random()  # spans about 42 hours: two daily partitions
        key = rng.choices(names, weights)[0]
        hit = key in cached
        events.append({"ts": ts, "key": key, "op": "get", "hit": hit})
        if not hit:
            cached[key] = 40 + rng.randrange(400)
            events.append({"ts": ts + 0.002, "key": key, "op": "set",
                           "value_size": cached[key], "ttl_s": 3600})

    half = len(events) // 2
    with open(os.path.join(HERE, "access.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ts", "key", "op", "hit", "value_size", "ttl_s", "client"])
        for i, e in enumerate(events[:half]):
            writer.writerow([f"{e['ts']:.6f}", e["key"], e["op"],
                             {True: "1", False: "0"}.get(e.get("hit"), ""),
                             e.get("value_size", ""), e.get("ttl_s", ""), "web-1"])
            if i == 100:
                f.write("2025-11-20T00:99:00Z,broken:timestamp,get,1,,,web-1\r\n")
            if i == 200:
                f.write(f"{e['ts']:.6f},missing:fields\r\n")
    with open(os.path.join(HERE, "access.jsonl"), "w") as f:
        for e in events[half:]:
            line = {"ts": round(e["ts"], 6), "key": e["key"], "op": e["op"], "client": "web-2"}
            for field in ("hit", "value_size", "ttl_s"):
                if field in e:
                    line[field] = e[field]
            f.write(json.dumps(line) + "\n")

    path = os.path.join(HERE, "replica.sqlite3")
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path)
    db.execute('CREATE TABLE "django_cache" ("cache_key" varchar(255) NOT NULL PRIMARY KEY, '
               '"value" text NOT NULL, "expires" datetime NOT NULL)')
    db.execute('CREATE INDEX "django_cache_expires" ON "django_cache" ("expires")')
    for i, key in enumerate(names):
        if key not in cached or i % 37 == 5:
            continue
        payload = (f"<rendered {key}>" * 40)[: cached[key]].encode()
        db.execute("INSERT INTO django_cache VALUES (?, ?, ?)",
                   (key, base64.b64encode(payload).decode(), "9999-12-31 23:59:59.999999"))
    db.commit()
    db.execute("VACUUM")
    db.close()


if __name__ == "__main__":
    main()
