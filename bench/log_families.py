"""The key families of the synthetic workload (`bench/generate_logs.py`): how a Django or Rails
app names its cache keys, how large their values are, how long they live, and the real
payloads they hold (pickled Django sessions, responses, fragments and querysets; Marshal-framed
Rails entries, zlib-compressed above 1 KiB as Rails does)."""

import datetime
import hashlib
import json
import pickle
import zlib


def md5hex(text):
    return hashlib.md5(text.encode()).hexdigest()


def rails_stamp(i):
    # `updated_at` in a Rails cache version: YYYYMMDDHHMMSSffffff.
    base = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
    moment = base + datetime.timedelta(seconds=(i * 7919) % (19 * 86400), microseconds=i % 997)
    return moment.strftime("%Y%m%d%H%M%S%f")


class Family:
    def __init__(self, name, app, share, namer, median, sigma, ttls, payload):
        self.name = name
        self.app = app  # "django" or "rails"
        self.share = share
        self.namer = namer
        self.median = median
        self.sigma = sigma
        self.ttls = ttls
        self.payload = payload  # (rng, size) -> bytes of about `size`


def html_text(rng, size):
    words = ("product", "price", "cart", "review", "stock", "ships", "colour", "size", "new",
             "sale", "rating", "delivery", "returns", "gift", "bundle", "limited", "édition")
    parts = []
    total = 0
    while total < size:
        pid = rng.randrange(1, 100_000)
        piece = (f'<div class="card" data-id="{pid}">\n  <a href="/products/{pid}">'
                 f'{" ".join(rng.choice(words) for _ in range(rng.randrange(2, 7)))}</a>\n'
                 f'  <span class="price">{rng.randrange(1, 999)}.{rng.randrange(100):02d} €'
                 f'</span>\n</div>\n')
        parts.append(piece)
        total += len(piece.encode())
    return "".join(parts).encode()[:size].decode("utf-8", "ignore")


def django_session(rng, size):
    data = {
        "_auth_user_id": str(rng.randrange(1, 2_000_000)),
        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
        "_auth_user_hash": hashlib.sha256(str(rng.random()).encode()).hexdigest(),
        "cart": [],
    }
    while len(pickle.dumps(data, 5)) < size:
        data["cart"].append({"sku": f"SKU-{rng.randrange(10**6):06d}", "qty": rng.randrange(1, 4)})
    return pickle.dumps(data, 5)


def django_page(rng, size):
    body = html_text(rng, max(size - 200, 64)).encode()
    response = {
        "status": 200,
        "headers": {"Content-Type": "text/html; charset=utf-8", "Vary": "Cookie",
                    "Cache-Control": "max-age=600"},
        "content": body,
    }
    return pickle.dumps(response, 5)


def django_headers(rng, size):
    headers = ["Cookie", "Accept-Language", "Accept-Encoding"]
    while len(pickle.dumps(headers, 5)) < size:
        headers.append(f"X-Variant-{rng.randrange(1000)}")
    return pickle.dumps(headers, 5)


def django_fragment(rng, size):
    return pickle.dumps(html_text(rng, size), 5)


def django_rows(rng, size):
    rows = []
    while len(pickle.dumps(rows, 5)) < size:
        rows.append((rng.randrange(10**6), f"user{rng.randrange(10**5)}", rng.random() < 0.5,
                     round(rng.random() * 1000, 2)))
    return pickle.dumps(rows, 5)


def rails_entry(rng, size):
    """An ActiveSupport::Cache::Entry in Marshal framing; bodies over 1 KiB zlib-compressed."""
    body = html_text(rng, size).encode()
    compressed = len(body) > 1024
    if compressed:
        body = zlib.compress(body)
    head = b"\x04\x08o:\x1eActiveSupport::Cache::Entry\x08:\x0b@valueI\"" + marshal_len(len(body))
    tail = (b"\x06:\x06ET:\x10@compressed" + (b"T" if compressed else b"F")
            + b":\x0f@expires_in0")
    return head + body + tail


def rails_json(rng, size):
    record = {"id": rng.randrange(10**6), "name": f"user{rng.randrange(10**5)}", "badges": []}
    while len(json.dumps(record)) < size:
        record["badges"].append({"kind": rng.choice(("gold", "silver", "helper", "early")),
                                 "at": rng.randrange(1_700_000_000, 1_800_000_000)})
    return rails_entry_raw(json.dumps(record).encode())


def rails_entry_raw(body):
    return (b"\x04\x08o:\x1eActiveSupport::Cache::Entry\x08:\x0b@valueI\"" + marshal_len(len(body))
            + body + b"\x06:\x06ET:\x10@compressedF:\x0f@expires_in0")


def marshal_len(n):
    if n < 123:
        return bytes([n + 5])
    if n < 256:
        return b"\x01" + bytes([n])
    return b"\x02" + n.to_bytes(2, "little") if n < 65536 else b"\x03" + n.to_bytes(3, "little")


FAMILIES = [
    Family("session", "django", 0.20, lambda i: f":1:django.contrib.sessions.cache{md5hex(f's{i}')}",
           300, 0.35, (1209600,), django_session),
    Family("page", "django", 0.08,
           lambda i: f":1:views.decorators.cache.cache_page..GET.{md5hex(f'u{i}')}"
                     f".d41d8cd98f00b204e9800998ecf8427e.en-us.UTC",
           14_000, 0.6, (600,), django_page),
    Family("header", "django", 0.05,
           lambda i: f":1:views.decorators.cache.cache_header..{md5hex(f'u{i}')}.en-us.UTC",
           180, 0.3, (600,), django_headers),
    Family("fragment", "django", 0.12,
           lambda i: f":1:template.cache.{('sidebar', 'product_card', 'nav', 'comments')[i % 4]}"
                     f".{md5hex(f'f{i}')}",
           2_000, 0.7, (900, 3600), django_fragment),
    Family("query", "django", 0.15,
           lambda i: f":1:{('q:profile', 'perm:user', 'stats:dashboard')[i % 3]}:{i}",
           350, 0.8, (300, 1800), django_rows),
    Family("rails-view", "rails", 0.25,
           lambda i: f"views/products/_product:{md5hex(f'tpl{i % 17}')}/products/{i}-{rails_stamp(i)}",
           1_500, 0.7, (43200,), rails_entry),
    Family("rails-json", "rails", 0.15, lambda i: f"users/{i}-{rails_stamp(i)}/profile",
           700, 0.5, (3600, 21600), rails_json),
]
