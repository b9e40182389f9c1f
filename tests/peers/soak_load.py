"""Load generator for the soak of the whole chain (envoy-config/envoy.yaml); PyJWT mints the
tokens, an asyncio client sends raw HTTP/1.1, one connection per request.

Usage:
  soak_load.py keys <dir>
      Make the soak IdP's RSA-2048 key (kid demo-1, <dir>/key.pem) and a forger's key;
      print the public JWK Set.
  soak_load.py run <dir> --port P --seconds N [--rate R] [--concurrency C] [--users U] [--sources S]
      Mint U distinct user tokens (and hundreds of expired and forged ones), then send a
      steady mix of request classes at R requests/s for N seconds. Every request but the
      two flood classes comes from its own random loopback source address (127.1.0.0 -
      127.254.255.255), so the per-IP rate limiter sees a flood of distinct keys; the flood
      classes share one address each. --sources S draws them from a pool of S addresses
      instead (to tell growth by new rate-limit keys from growth per request). Prints one JSON object: per class the count, the
      statuses seen, the statuses expected, errors, and raw personal data seen in responses.

Tokens live 15 minutes (the chain's max_lifetime_s); they are re-minted every 10 minutes.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISS = "https://idp.example"
AUD = "orders-api"
KID = "demo-1"

# class -> (weight, expected statuses)
CLASSES = {
    "good_read":        (28, {200}),       # GET /orders, trader or viewer
    "good_write":       (8,  {200}),       # POST /orders, trader
    "good_pii":         (8,  {200}),       # GET /users/me: masked personal data
    "anonymous":        (10, {200}),       # GET /products/<n>, no token
    "expired_token":    (5,  {401}),
    "forged_token":     (5,  {401}),
    "malformed_token":  (3,  {401}),
    "forbidden_role":   (6,  {403}),       # viewer POST /orders, trader GET /admin/stats
    "path_trick":       (6,  {400}),       # dot segments, encoded slashes, backslashes
    "bad_method":       (2,  {405}),
    "oversized_header": (3,  {431}),
    "oversized_body":   (3,  {413}),       # content-length over 1 MiB
    "flood_one_ip":     (9,  {200, 429}),  # one source address hammering a public endpoint
    "login_flood":      (4,  {200, 429}),  # credential stuffing from one address
}
RAW_PII = [b"123-45-6789", b"4111 1111 1111 1111", b"alice@example.com", b"hunter2", b"+14155552671"]


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def keys(d):
    os.makedirs(d, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(os.path.join(d, "key.pem"), "wb") as f:
        f.write(pem(key))
    with open(os.path.join(d, "forger.pem"), "wb") as f:
        f.write(pem(forger))
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    print(json.dumps({"keys": [jwk]}))


def load_key(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


class Tokens:
    """Distinct tokens per user; re-minted before they expire."""

    def __init__(self, d, users):
        self.key = load_key(d, "key.pem")
        self.forger = load_key(d, "forger.pem")
        self.users = users
        self.mint()

    def _tok(self, sub, role, signer, lifetime, extra=None):
        now = int(time.time())
        iat = now if lifetime > 0 else now - 600
        claims = {"iss": ISS, "aud": AUD, "sub": sub, "role": role, "iat": iat, "exp": iat + abs(lifetime),
                  "jti": f"{sub}-{now}-{random.getrandbits(32)}", **(extra or {})}
        if lifetime < 0:
            claims["exp"] = now - 120
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": KID})

    def mint(self):
        started = time.time()
        self.traders, self.viewers = [], []
        for i in range(self.users):
            r = random.random()
            if r < 0.6:
                self.traders.append(self._tok(f"user-{i}", "trader", self.key, 900))
            elif r < 0.9:
                self.viewers.append(self._tok(f"user-{i}", "viewer", self.key, 900))
            else:
                self.traders.append(self._tok(f"user-{i}", "trader", self.key, 900, {"tier": "premium"}))
        n_bad = max(50, self.users // 10)
        self.expired = [self._tok(f"old-{i}", "trader", self.key, -1) for i in range(n_bad)]
        self.forged = [self._tok(f"evil-{i}", "admin", self.forger, 900, {"amr": ["otp"]}) for i in range(n_bad)]
        self.minted_at = time.time()
        self.mint_seconds = self.minted_at - started


def request_for(cls, tok):
    """(source address or None for random, raw request bytes)."""
    def req(method, path, headers=(), body=b""):
        lines = [f"{method} {path} HTTP/1.1", "host: api.example.com"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT"):
            lines.append(f"content-length: {len(body)}")
        lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def bearer(t):
        return ("authorization", f"Bearer {t}")

    order = json.dumps({"sku": "X1", "qty": random.randint(1, 9)}).encode()
    if cls == "good_read":
        return None, req("GET", "/orders", [bearer(random.choice(tok.traders + tok.viewers))])
    if cls == "good_write":
        return None, req("POST", "/orders", [bearer(random.choice(tok.traders)), ("content-type", "application/json")], order)
    if cls == "good_pii":
        return None, req("GET", "/users/me", [bearer(random.choice(tok.traders))])
    if cls == "anonymous":
        return None, req("GET", f"/products/{random.randint(1, 10**6)}")
    if cls == "expired_token":
        return None, req("GET", "/orders", [bearer(random.choice(tok.expired))])
    if cls == "forged_token":
        return None, req("GET", "/admin/stats", [bearer(random.choice(tok.forged))])
    if cls == "malformed_token":
        return None, req("GET", "/orders", [bearer(random.choice(["x.y.z", "abc", "e30.e30.", "a" * 300]))])
    if cls == "forbidden_role":
        if random.random() < 0.5 and tok.viewers:
            return None, req("POST", "/orders", [bearer(random.choice(tok.viewers)), ("content-type", "application/json")], order)
        return None, req("GET", "/admin/stats", [bearer(random.choice(tok.traders))])
    if cls == "path_trick":
        p = random.choice(["/orders/../admin/stats", "/orders/%2e%2e/admin/stats", "/admin%2fstats", "/products/..%2fadmin", "/users/%5c..%5cadmin"])
        return None, req("GET", p, [bearer(random.choice(tok.traders))])
    if cls == "bad_method":
        return None, req("TRACE", "/orders")
    if cls == "oversized_header":
        return None, req("GET", "/products/1", [("x-padding", "p" * 20000)])
    if cls == "oversized_body":
        head = req("POST", "/orders", [bearer(random.choice(tok.traders)), ("content-type", "application/json"), ("content-length", str(2 * 1024 * 1024))])
        # Our content-length header wins over the one req() adds for an empty POST body.
        head = head.replace(b"content-length: 0\r\n", b"")
        return None, head
    if cls == "flood_one_ip":
        return "127.0.0.2", req("GET", "/products/1")
    if cls == "login_flood":
        return "127.0.0.3", req("POST", "/auth/login", [("content-type", "application/json")], b'{"username": "alice", "password": "guess"}')
    raise ValueError(cls)


SOURCES = 0  # 0: any of ~16.5 million loopback addresses; N: a pool of N addresses


def random_source():
    if SOURCES:
        n = random.randrange(SOURCES)
        return f"127.{1 + n // 65536}.{(n // 256) % 256}.{n % 256}"
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


async def one(port, source, data, timeout):
    reader = writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout)
        writer.write(data)
        await writer.drain()
        resp = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        if writer is not None:
            writer.close()
    line = resp.split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2 or not line[1].isdigit():
        raise ValueError(f"no status line: {resp[:60]!r}")
    return int(line[1]), resp


async def run(args):
    tok = Tokens(args.dir, args.users)
    print("load started", file=sys.stderr, flush=True)
    names = list(CLASSES)
    weights = [CLASSES[n][0] for n in names]
    stats = {n: {"count": 0, "statuses": {}, "expected": sorted(CLASSES[n][1]), "errors": 0, "error_samples": [],
                 "unexpected": 0, "unexpected_samples": [], "raw_pii": 0} for n in names}
    sem = asyncio.Semaphore(args.concurrency)
    tasks = set()
    loop = asyncio.get_running_loop()
    remint = None

    async def fire(cls, source, data):
        s = stats[cls]
        try:
            status, body = await one(args.port, source or random_source(), data, args.timeout)
        except Exception as e:  # connection failures and timeouts are results too
            s["errors"] += 1
            if len(s["error_samples"]) < 5:
                s["error_samples"].append(f"{type(e).__name__}: {e}")
            return
        finally:
            sem.release()
        s["count"] += 1
        s["statuses"][str(status)] = s["statuses"].get(str(status), 0) + 1
        if status not in CLASSES[cls][1]:
            s["unexpected"] += 1
            if len(s["unexpected_samples"]) < 5:
                s["unexpected_samples"].append(body[:300].decode("utf-8", "replace"))
        if cls == "good_pii" and any(p in body for p in RAW_PII):
            s["raw_pii"] += 1

    started = time.monotonic()
    sent = 0
    behind = 0.0
    while True:
        now = time.monotonic()
        elapsed = now - started
        if elapsed >= args.seconds:
            break
        if remint is None and time.time() - tok.minted_at > 600:
            remint = loop.run_in_executor(None, Tokens, args.dir, args.users)
        if remint is not None and remint.done():
            tok = remint.result()
            remint = None
        due = started + sent / args.rate
        if due > now:
            await asyncio.sleep(due - now)
        else:
            behind = max(behind, now - due)
        await sem.acquire()
        cls = random.choices(names, weights)[0]
        source, data = request_for(cls, tok)
        t = asyncio.create_task(fire(cls, source, data))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        await asyncio.gather(*tasks)
    duration = time.monotonic() - started
    total = sum(s["count"] + s["errors"] for s in stats.values())
    print(json.dumps({
        "seconds": round(duration, 1),
        "requests": total,
        "rate_target": args.rate,
        "rate_achieved": round(total / duration, 1) if duration else 0,
        "max_lag_s": round(behind, 2),
        "users": args.users,
        "sources": args.sources,
        "distinct_tokens": len(tok.traders) + len(tok.viewers) + len(tok.expired) + len(tok.forged),
        "mint_seconds": round(tok.mint_seconds, 1),
        "classes": stats,
    }))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "keys":
        return keys(sys.argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["run"])
    p.add_argument("dir")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seconds", type=float, default=180)
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--sources", type=int, default=0, help="pool of source addresses (0: unbounded)")
    args = p.parse_args()
    global SOURCES
    SOURCES = args.sources
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
