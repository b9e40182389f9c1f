"""Keys and tokens for scripts/bench, made with PyJWT + cryptography (an independent issuer).

  .venv/bin/python bench/tokens.py <state-dir> [pool-size]

prints a summary; bench.py imports `keys()` and `pool()`. Keys live in <state-dir>/keys.json
(one per algorithm, generated once); the pool of distinct RS256 tokens (`sub` user-0 ..
user-<n-1>, role viewer) in <state-dir>/pool-<n>.txt, one token a line, re-made when it
expires within two hours. Tokens are valid for 7 days.
"""
import base64
import json
import multiprocessing
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.bench.example"
AUDIENCE = "orders-api"
LIFETIME_S = 7 * 24 * 3600
ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"]


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def _load(pem):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def keys(state):
    """{alg: {"kid", "alg", "pem"|"secret", "jwk"}}: one key per algorithm, made once."""
    path = os.path.join(state, "keys.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    os.makedirs(state, exist_ok=True)
    made = {
        "RS256": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "PS256": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ES256": _pem(ec.generate_private_key(ec.SECP256R1())),
        "ES384": _pem(ec.generate_private_key(ec.SECP384R1())),
        "EdDSA": _pem(ed25519.Ed25519PrivateKey.generate()),
    }
    out = {}
    for alg, pem in made.items():
        pub = _load(pem).public_key()
        conv = RSAAlgorithm if alg[0] in "RP" else ECAlgorithm if alg.startswith("ES") else OKPAlgorithm
        jwk = json.loads(conv.to_jwk(pub))
        kid = "bench-" + alg.lower()
        jwk.update({"kid": kid, "alg": alg, "use": "sig"})
        out[alg] = {"kid": kid, "alg": alg, "pem": pem, "jwk": jwk}
    secret = os.urandom(32)
    out["HS256"] = {"kid": "bench-hs256", "alg": "HS256", "secret": _b64(secret),
                    "jwk": {"kty": "oct", "k": _b64(secret), "kid": "bench-hs256", "alg": "HS256"}}
    with open(path, "w") as f:
        json.dump(out, f)
    return out


def jwks(ks, algs):
    return {"keys": [ks[a]["jwk"] for a in algs]}


def claims(sub, now):
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "role": "viewer", "iat": now, "exp": now + LIFETIME_S}


def mint(key, sub, now):
    signing = base64.urlsafe_b64decode(key["secret"] + "==") if "secret" in key else _load(key["pem"])
    return jwt.encode(claims(sub, now), signing, algorithm=key["alg"], headers={"kid": key["kid"]})


def _mint_range(args):
    pem, kid, start, end, now = args
    key = _load(pem)
    return [jwt.encode(claims(f"user-{i}", now), key, algorithm="RS256", headers={"kid": kid}) for i in range(start, end)]


def pool(state, n):
    """n distinct RS256 tokens (user-0 .. user-(n-1)), cached in <state>/pool-<n>.txt."""
    ks = keys(state)
    path = os.path.join(state, f"pool-{n}.txt")
    meta = path + ".exp"
    now = int(time.time())
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            if int(f.read().strip() or 0) > now + 7200:
                return path
    k = ks["RS256"]
    procs = max(1, min(os.cpu_count() or 1, 4))
    step = (n + procs - 1) // procs
    jobs = [(k["pem"], k["kid"], s, min(n, s + step), now) for s in range(0, n, step)]
    with multiprocessing.Pool(procs) as p:
        parts = p.map(_mint_range, jobs)
    with open(path + ".tmp", "w") as f:
        for part in parts:
            for t in part:
                f.write(t + "\n")
    os.replace(path + ".tmp", path)
    with open(meta, "w") as f:
        f.write(str(now + LIFETIME_S))
    return path


if __name__ == "__main__":
    state = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    t = time.time()
    ks = keys(state)
    p = pool(state, n)
    print(json.dumps({"keys": sorted(ks), "pool": p, "seconds": round(time.time() - t, 1)}))
