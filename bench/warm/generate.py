#!/usr/bin/env python3
"""Inputs of the warmer benchmark (`bench/warm/run`): a manifest and the same keys and values
as the two stores' own mass-insertion streams.

For `--entries N` and `--value-bytes S`, into `--out DIR`:

- `manifest.json`: manifest v1 exactly as `analyzer rank` writes it (the header on the first
  line, one compact entry per line, `entries_sha256` over the compact JSON array), N entries in
  rank order, category `default`, `ttl_s` 3600;
- `redis.resp` (with `--redis`): `SET <key> <value> NX PX 3600000` for every entry in rank
  order, in RESP, for `redis-cli --pipe`: it fills the replica the warmer reads, and it is the
  Redis limit the warmer is compared with (the same add semantics, Redis' own fastest path);
- `memcached.meta` (with `--memcached`): `ms <key> <S> T3600 ME q` + value for every entry, then
  `mn`: memcached's meta add in quiet mode (only failures answer), the memcached limit.

Keys are shaped like a Django and a Rails app's (`:1:views.decorators.cache.cache_page.…`,
`views/products/…`), 20–60 bytes. Values are S bytes of incompressible data (distinct slices of
one random pool, so every value differs). Deterministic: the same arguments write the same
bytes. Streaming: memory stays flat whatever N is.

Usage: python3 bench/warm/generate.py --out DIR --entries N --value-bytes S [--redis]
       [--memcached]
"""

import argparse
import hashlib
import os
import random

TTL_S = 3600
LAST_SEEN = "2026-11-20T12:00:00Z"
FAMILIES = [
    ":1:views.decorators.cache.cache_page.{h}",
    ":1:django.contrib.sessions.cache{h}",
    ":1:template.cache.product_card.{h}",
    ":1:q:profile:{i}",
    "views/products/_product:{h}/products/{i}",
    "users/{i}-20261120/profile",
]


def key_of(i: int) -> str:
    h = hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8).hexdigest()
    return FAMILIES[i % len(FAMILIES)].format(h=h, i=i)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--value-bytes", type=int, required=True)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--memcached", action="store_true")
    args = parser.parse_args()
    n, size = args.entries, args.value_bytes
    os.makedirs(args.out, exist_ok=True)

    rng = random.Random(7)
    pool = rng.randbytes(1 << 22)
    span = len(pool) - size

    # Zipf-like request counts, decreasing with rank as a ranking would leave them.
    def requests_of(rank: int) -> int:
        return 1 + 10_000_000 // rank

    entries_hash = hashlib.sha256(b"[")
    total_requests = 0
    entry_lines = []
    manifest_body = os.path.join(args.out, ".manifest-entries.tmp")
    redis_out = open(os.path.join(args.out, "redis.resp"), "wb") if args.redis else None
    meta_out = open(os.path.join(args.out, "memcached.meta"), "wb") if args.memcached else None
    size_text = str(size).encode()
    with open(manifest_body, "w", buffering=1 << 20) as body:
        for rank in range(1, n + 1):
            key = key_of(rank)
            requests = requests_of(rank)
            total_requests += requests
            hits = requests * 9 // 10
            line = (
                f'{{"rank":{rank},"key":"{key}","category":"default","score":{float(requests)!r},'
                f'"requests":{requests},"hits":{hits},"misses":{requests - hits},'
                f'"size_bytes":{len(key) + size},"ttl_s":{TTL_S},"last_seen":"{LAST_SEEN}"}}'
            )
            entry_lines.append(line)
            if len(entry_lines) == 10_000 or rank == n:
                chunk = ",".join(entry_lines)
                if rank > len(entry_lines):
                    entries_hash.update(b",")
                entries_hash.update(chunk.encode())
                body.write(",\n".join(entry_lines))
                body.write(",\n" if rank < n else "\n")
                entry_lines.clear()
            offset = (rank * 7919) % span
            value = pool[offset:offset + size]
            kb = key.encode()
            if redis_out:
                redis_out.write(
                    b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nNX\r\n$2\r\nPX\r\n"
                    b"$7\r\n3600000\r\n" % (len(kb), kb, size, value)
                )
            if meta_out:
                meta_out.write(b"ms %s %s T%d ME q\r\n%s\r\n" % (kb, size_text, TTL_S, value))
    entries_hash.update(b"]")
    if meta_out:
        meta_out.write(b"mn\r\n")
        meta_out.close()
    if redis_out:
        redis_out.close()

    key_bytes_avg = 40
    header = (
        '{"schema":"cachewarm.manifest/v1","generator":"bench/warm/generate.py",'
        f'"generated_at":"{LAST_SEEN}",'
        f'"window":{{"start":"2026-11-19T12:00:00Z","end":"{LAST_SEEN}"}},'
        f'"budget":{{"bytes":{n * (key_bytes_avg + size) * 2},"source":"bench"}},'
        f'"totals":{{"keys_seen":{n},"requests_seen":{total_requests},"keys_selected":{n},'
        f'"requests_selected":{total_requests},"bytes_selected":{n * (key_bytes_avg + size)},'
        '"keys_over_budget":0},'
        f'"categories":{{"default":{{"keys":{n},"requests":{total_requests},'
        f'"bytes":{n * (key_bytes_avg + size)}}}}},'
        f'"entries_sha256":"{entries_hash.hexdigest()}"}}'
    )
    manifest = os.path.join(args.out, "manifest.json")
    with open(manifest + ".tmp", "wb") as out, open(manifest_body, "rb") as body:
        out.write(b'{"header":' + header.encode() + b',\n"entries":[\n')
        while chunk := body.read(1 << 22):
            out.write(chunk)
        out.write(b"]}\n")
    os.remove(manifest_body)
    os.replace(manifest + ".tmp", manifest)


if __name__ == "__main__":
    main()
