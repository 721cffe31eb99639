#!/usr/bin/env python3
"""A loader (protocol v1) for the warmer's loader tests, whose behaviour each key picks.

The value of a key is `value of KEY`. A key containing:
- `multi`: two entries under other store keys, `v2:KEY` and `v2:KEY:meta`;
- `miss`: a miss, reason `object deleted`;
- `fail`: an error that is not retryable;
- `flaky`, `crash`, `hang`, `garbage`: the first time it is asked (per test, remembered in
  `$FAULTY_STATE`), a retryable error, an exit with a traceback on stderr, a sleep far past any
  timeout, or a line that is not JSON; later times, its value;
- `poison`: an exit every time;
- `big`: a value of 2 MiB;
- `env`: the names of the loader's environment variables that start with `CACHEWARM_`, and
  `PGPASSWORD` when set, as a JSON list.
Every key asked is appended to `$FAULTY_STATE/asked`. argv[1] is the store kind; argv[2], when
given, a pause in seconds before each answer.
"""

import base64
import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAULTY_STATE"])


def first_time(what: str, key: str) -> bool:
    """Whether `what` happens to `key` for the first time (and remembers that it did)."""
    marker = STATE / f"{what}-{base64.urlsafe_b64encode(key.encode()).decode()}"
    if marker.exists():
        return False
    marker.touch()
    return True


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")


def entry(key: str, value: bytes) -> dict:
    return {"key": key, "value_b64": base64.b64encode(value).decode(), "ttl_ms": 3_600_000}


def answer(request_id: int, key: str) -> None:
    head = {"id": request_id, "key": key}
    if "multi" in key:
        send({**head, "entries": [entry(f"v2:{key}", f"value of {key}".encode()),
                                  entry(f"v2:{key}:meta", b"meta")]})
    elif "miss" in key:
        send({**head, "miss": "object deleted"})
    elif "fail" in key:
        send({**head, "error": "the database said no", "retryable": False})
    elif "flaky" in key and first_time("flaky", key):
        send({**head, "error": "database timeout", "retryable": True})
    elif ("crash" in key and first_time("crash", key)) or "poison" in key:
        sys.stdout.flush()
        print("Traceback (most recent call last):", file=sys.stderr)
        print(f"RuntimeError: loader crashed on {key}", file=sys.stderr, flush=True)
        os._exit(3)
    elif "hang" in key and first_time("hang", key):
        sys.stdout.flush()
        print(f"hanging on {key}", file=sys.stderr, flush=True)
        time.sleep(3600)
    elif "garbage" in key and first_time("garbage", key):
        sys.stdout.write("this is not JSON\n")
        print(f"garbage for {key}", file=sys.stderr, flush=True)
    elif "env" in key:
        names = sorted(n for n in os.environ if n.startswith("CACHEWARM_") or n == "PGPASSWORD")
        send({**head, "entries": [entry(key, json.dumps(names).encode())]})
    elif "big" in key:
        send({**head, "entries": [entry(key, b"x" * (2 << 20))]})
    else:
        send({**head, "entries": [entry(key, f"value of {key}".encode())]})


def main() -> None:
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    send({"hello": {"protocol": 1, "framework": "faulty-test", "store_kind": sys.argv[1],
                    "alias": "default", "version": 2}})
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        with open(STATE / "asked", "a") as asked:
            asked.writelines(key + "\n" for key in request["keys"])
        for key in request["keys"]:
            time.sleep(pause)
            answer(request["id"], key)
        send({"id": request["id"], "done": True})
        sys.stdout.flush()


if __name__ == "__main__":
    main()
