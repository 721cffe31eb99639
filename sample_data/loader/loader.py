#!/usr/bin/env python3
"""A cachewarm loader (protocol v1) in plain Python: `warmer run --source "exec:python3 loader.py"`."""
import base64, json, sys

def load(key: str) -> bytes | None:
    """Your application's code: the bytes its cache client stores for `key`, or None."""
    return f"value of {key}".encode() if key.startswith("user:") else None

def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")

send({"hello": {"protocol": 1, "framework": "plain-python", "store_kind": sys.argv[1] if len(sys.argv) > 1 else "redis"}})
sys.stdout.flush()
for line in sys.stdin:  # one request per line; stdin closes when the warmer is done
    request = json.loads(line)
    for key in request["keys"]:
        value = load(key)
        if value is None:
            send({"id": request["id"], "key": key, "miss": "no such user"})
        else:
            entry = {"key": key, "value_b64": base64.b64encode(value).decode(), "ttl_ms": 3_600_000}
            send({"id": request["id"], "key": key, "entries": [entry]})
    send({"id": request["id"], "done": True})
    sys.stdout.flush()
