"""Which way to copy Redis strings: `GET` + `PTTL` → `SET NX PX`, or `DUMP` + `PTTL` → `RESTORE`.

The warmer copies every Redis type with `DUMP`/`RESTORE`, and strings with `GET`/`SET`
(warmer/src/store/redis/mod.rs). This measures both for strings on the same servers, the way
the warmer sends them: pipelined batches of 2,000 keys on one connection, every reply read.

    python3 bench/warm/strings.py --replica PORT --target PORT [--keys N] [--size BYTES] [--repeat R]

It fills the replica with N strings (default 100,000 of 100 B, TTL 1 h), then per round and
path reads every key from the replica and writes it into the emptied target; prints the median
seconds of each phase. Needs only the standard library (raw RESP over a socket).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

BATCH = 2000


def command(*args: bytes) -> bytes:
    """One RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Connection:
    """A blocking RESP connection that sends pipelines and reads their replies."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.at = 0

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n", self.at)
            if end >= 0:
                line = self.buffer[self.at : end]
                self.at = end + 2
                return line
            self._fill()

    def _fill(self) -> None:
        self.buffer = self.buffer[self.at :] + self.socket.recv(1 << 20)
        self.at = 0

    def _reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) - self.at < size + 2:
                self._fill()
            value = self.buffer[self.at : self.at + size]
            self.at += size + 2
            return value
        raise ValueError(f"unexpected reply {line!r}")

    def pipeline(self, commands: list[bytes]) -> list[object]:
        self.socket.sendall(b"".join(commands))
        return [self._reply() for _ in commands]


def rounds(replica: Connection, target: Connection, keys: list[bytes], dump: bool) -> tuple[float, float]:
    """Seconds to read every key from the replica, and to write them into the target."""
    read_verb = b"DUMP" if dump else b"GET"
    values: list[tuple[bytes, object, object]] = []
    start = time.perf_counter()
    for i in range(0, len(keys), BATCH):
        batch = keys[i : i + BATCH]
        replies = replica.pipeline([c for k in batch for c in (command(read_verb, k), command(b"PTTL", k))])
        values.extend((k, replies[2 * j], replies[2 * j + 1]) for j, k in enumerate(batch))
    read = time.perf_counter() - start
    target.pipeline([command(b"FLUSHALL")])
    start = time.perf_counter()
    for i in range(0, len(values), BATCH):
        batch = values[i : i + BATCH]
        if dump:
            writes = [command(b"RESTORE", k, b"%d" % t, v) for k, v, t in batch]
        else:
            writes = [command(b"SET", k, v, b"NX", b"PX", b"%d" % t) for k, v, t in batch]
        for reply in target.pipeline(writes):
            assert reply == b"OK", reply
    return read, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replica", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    replica, target = Connection(args.replica), Connection(args.target)
    keys = [b"bench:str:%d" % i for i in range(args.keys)]
    value = b"v" * args.size
    replica.pipeline([command(b"FLUSHALL")])
    for i in range(0, len(keys), BATCH):
        replica.pipeline([command(b"SET", k, value, b"EX", b"3600") for k in keys[i : i + BATCH]])
    results: dict[str, list[tuple[float, float]]] = {"GET/SET": [], "DUMP/RESTORE": []}
    for _ in range(args.repeat):
        for name, dump in (("GET/SET", False), ("DUMP/RESTORE", True)):
            results[name].append(rounds(replica, target, keys, dump))
    print(f"{args.keys:,} strings of {args.size} B, median of {args.repeat} rounds")
    for name, times in results.items():
        read = statistics.median(t[0] for t in times)
        write = statistics.median(t[1] for t in times)
        print(f"{name:>13}: read {read:.3f} s, write {write:.3f} s, total {read + write:.3f} s")


if __name__ == "__main__":
    main()
