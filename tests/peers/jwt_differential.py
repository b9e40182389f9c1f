#!/usr/bin/env python3
"""Differential peer for filters/jwt_verify/tests/differential.rs (issue 11).

Generates COUNT compact JWS tokens over every algorithm jwt_verify accepts, with random
claims and seeded mutations, and records PyJWT's verdict for each with the same keys and
options as the filter's test policy: issuer ISS, audience AUD, leeway 60 s (the filter's
default clock_skew_s), `exp` and `iss` required, the key chosen by `kid` (without `kid`:
every key whose `alg` is the header's), each key accepting only its own `alg`.

Usage: jwt_differential.py SEED COUNT  -> JSON on stdout:
  {"now": N, "iss": ..., "aud": ..., "jwks": {"keys": [...]},
   "cases": [{"kind": ..., "alg": ..., "token": ..., "pyjwt": bool, "why": str|null}, ...]}

Deterministic for a seed: keys are derived from the seed (RSA: the fixed test key below),
mutations and claims come from random.Random(seed). ECDSA and PSS signatures are randomized
by design, so token bytes differ between runs but verdicts do not. Times are relative to
`now` with margins of at least 100 s around every boundary.
"""
import base64
import hashlib
import hmac
import json
import random
import sys
import time

import jwt
from jwt.algorithms import get_default_algorithms
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ISS = "https://issuer.differential.example"
AUD = "orders-api"
LEEWAY = 60
ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"]

# A 2048-bit RSA key made for this test only (RSA generation cannot be seeded).
RSA_TEST_KEY = """-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCygPcXLS+zloUc
DIlBIqFI1Y83ar3CGh/u7YbZ3w4VQxmI/+VbuXyEqRFvCIF11C1EdotlD4y7sVeA
decTAbD7unCaGAXWrVD0qE5EE+Ha/bLKR0aQu+ahI3wCBcnnkTZC5p3GeUup37j+
kHcLiw73OkK6eDY2b0Jigq8p8BJ+nRtBPAi+bGdfg4SkzUSrpfrNt932XWUjll4x
DnZu5EpBRrmwaLx7bvSs4rrjf1qGpWFZecxgpV3uQF6o04hmvLrZT7nPp0aB9K3m
9u81WDWt+lQZ4d52hYtrHkNzVMdSLgdKnDuOLi67QbyXy/oiMZl92k6ggBUa7MTW
3waAqJ4DAgMBAAECggEACTbdCmY7uyJ+9oazIxidiLv1a5/n8bgVg+jg+CgqevB+
xfKnrUdy5QoxKzEeNa3hNFKGOY5G7n1mDeyIJBQHRcdG/r1Ut9M0hZyWha8dDofg
Dc8GFnyMmC7TvOr9lCWLzoJHDLLANCGnVASzEHZ6LErmnOeNrNuraphiYGDTI5P0
Oeit0sydKXh1vtCNJZUBVxXtqDYdqha1J1km/nOAMT29MLUNcsewb1XEfZegz6Bp
SEFmfjXnr3EidHumNBsjkAf0fuPCmfQ3Z5qOViafoTC1ysbhbu/EH9fFTvkUJ4Ye
bKFxgeey1eusZK3YQW3+l+Jm4CC42DWLqLhJpUKnQQKBgQD5dO0RtQtAicE/u3d0
NO1aCf4liNK1Few8tm1nOTANMxriRTM3ZFC+JB4l1gLGCY5JaX1otyXks0lgxY0C
lmUCe5822C/i71ElKLwQ9bINj0YAMai/ScFI0/Qj88nTN02ti0fQtB/NOwBrhdaR
TSyoIjMRmBPd6fg0p5E+n4Yb4wKBgQC3L5kRj72gW82t7JERm4/sDUJAx3U0xHYM
vZN89wKCxOzszOJEtKhf7N4FeYm3bhcZtABrQkAkwOsx0/tT9tWDToQNTsXmW0Kl
b8K0bIaeLt9jAThGAjk+wsKEFhoKYfziDW8LLObmQmRnq2eHTq6F6YofZ6Yuy/qN
I0aj0V9PYQKBgQDHJ+SE+IdNNS2FlkNeEUtVURkIGl4umJwMNJDPkkacoypZb2ne
VUZpJyiyiFOai9J/JasryNyF4+U3T0CuyidGfi+0d5BzmyCrjAPpfl5ymOoICZ1x
ao7Xd/A4K8/7wvFPFh11r/ibvvks3qNZScXXTcZ7y3BBASRZ1VYOKwnEhQKBgAwB
U4/CEtRaj90xHsS/pCv9JnVmXPkLUw08s1jCO2jkjP5r4vxLtqkqtdY4A92AmoT1
tf1RhzChcAiA8vyqtY14bNEOc4vIOVLsQx9d6Wiee8daQhzccnH5g5PyetxpVZBe
/wMFe1Bl03yz0AIfFvLxvjqWqV5xwcbUJAICa7OhAoGBAMTEdUatwFqIYWGhFvfk
f4sNZhN515N/dWQP46nHmEGwycu0b7kSF3WeZD80qq7p3szfK24PR4VYS7UF1sAj
H1H4MorNZpSr5gy2FgosCrx09hPApm2YbvLA0h/C2N1MWEXXwHT5C3n0LLcEJ96z
CGJt/bS1xnb+q+86y+eESu4e
-----END PRIVATE KEY-----"""

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Keys:
    def __init__(self, rng: random.Random):
        rsa_key = serialization.load_pem_private_key(RSA_TEST_KEY.encode(), password=None)
        ec256 = ec.derive_private_key(rng.randrange(1, P256_N), ec.SECP256R1())
        ec384 = ec.derive_private_key(rng.randrange(1, P384_N), ec.SECP384R1())
        ed = ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.private = {}
        self.public = {}
        self.jwks = []
        algs = get_default_algorithms()
        for alg in ALGS:
            if alg.startswith(("RS", "PS")):
                priv, pub = rsa_key, rsa_key.public_key()
            elif alg == "ES256":
                priv, pub = ec256, ec256.public_key()
            elif alg == "ES384":
                priv, pub = ec384, ec384.public_key()
            elif alg == "EdDSA":
                priv, pub = ed, ed.public_key()
            else:
                secret = rng.randbytes(64)
                priv, pub = secret, secret
            jwk = json.loads(algs[alg].to_jwk(pub))
            jwk.update({"kid": "k-" + alg, "alg": alg, "use": "sig"})
            jwk.pop("key_ops", None)
            self.private[alg] = priv
            self.public[alg] = pub
            self.jwks.append(jwk)
        # Another key of each kind, never published: signatures "by the wrong key".
        self.stranger = {
            "RSA": None,
            "ES256": ec.derive_private_key(rng.randrange(1, P256_N), ec.SECP256R1()),
            "ES384": ec.derive_private_key(rng.randrange(1, P384_N), ec.SECP384R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)),
            "HS": rng.randbytes(64),
        }
        self.rsa_public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(alg: str, key, signing_input: bytes) -> bytes:
    impl = get_default_algorithms()[alg]
    return impl.sign(signing_input, impl.prepare_key(key))


def raw_token(header_bytes: bytes, payload_bytes: bytes, alg: str, key) -> str:
    si = (b64(header_bytes) + "." + b64(payload_bytes)).encode()
    return si.decode() + "." + b64(sign(alg, key, si))


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def pyjwt_verdict(token: str, keys: Keys):
    """PyJWT's answer with the filter's options; (accepted, reason)."""
    try:
        header = jwt.get_unverified_header(token)
    except Exception as e:  # noqa: BLE001 - any refusal is a refusal
        return False, type(e).__name__
    kid = header.get("kid")
    if kid is not None:
        candidates = [k for k in keys.jwks if k["kid"] == kid]
    else:
        candidates = [k for k in keys.jwks if k["alg"] == header.get("alg")]
    if not candidates:
        return False, "NoMatchingKey"
    why = None
    for k in candidates:
        try:
            jwt.decode(
                token,
                keys.public[k["alg"]],
                algorithms=[k["alg"]],
                audience=AUD,
                issuer=ISS,
                leeway=LEEWAY,
                options={"require": ["exp", "iss"]},
            )
            return True, None
        except Exception as e:  # noqa: BLE001
            why = type(e).__name__
    return False, why


def flip_segment_bit(token: str, index: int, rng: random.Random) -> str:
    parts = token.split(".")
    raw = bytearray(b64d(parts[index]))
    if raw:
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    parts[index] = b64(bytes(raw))
    return ".".join(parts)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def noncanonical(token: str):
    """Change unused trailing bits of a segment: same bytes for a lenient decoder."""
    parts = token.split(".")
    for i in (2, 1, 0):
        seg = parts[i]
        unused = {2: 4, 3: 2}.get(len(seg) % 4, 0)
        if unused:
            last = ALPHABET.index(seg[-1])
            parts[i] = seg[:-1] + ALPHABET[last | 1]
            if parts[i] == seg:
                parts[i] = seg[:-1] + ALPHABET[last ^ 1] if unused else seg
            return ".".join(parts)
    return None


MUTATIONS = [
    # (name, weight)
    ("valid", 12),
    ("valid_aud_array", 3),
    ("valid_no_kid", 3),
    ("valid_extra_header", 3),
    ("valid_unicode_nested", 3),
    ("valid_fractional_times", 2),
    ("valid_exp_within_leeway", 2),
    ("flip_signature", 5),
    ("flip_payload", 3),
    ("alg_swapped", 5),
    ("alg_none", 2),
    ("hs_with_rsa_public_key", 2),
    ("wrong_key", 3),
    ("unknown_kid", 2),
    ("exp_past", 4),
    ("exp_missing", 2),
    ("nbf_future", 2),
    ("iat_future", 2),
    ("wrong_aud", 3),
    ("aud_missing", 2),
    ("wrong_iss", 2),
    ("exp_string", 2),
    ("sub_number", 2),
    ("duplicate_claim", 2),
    ("duplicate_header", 2),
    ("crit_header", 2),
    ("padded_base64", 2),
    ("noncanonical_base64", 3),
    ("whitespace_in_signature", 2),
    ("whitespace_in_payload", 2),
    ("payload_array", 1),
    ("extra_segment", 1),
    ("empty_signature", 1),
]


def make_case(rng: random.Random, keys: Keys, now: int):
    alg = rng.choice(ALGS)
    kind = rng.choices([m for m, _ in MUTATIONS], weights=[w for _, w in MUTATIONS])[0]
    kid = "k-" + alg
    claims = {
        "iss": ISS,
        "sub": "user-%d" % rng.randrange(10**6),
        "aud": AUD,
        "exp": now + rng.randrange(300, 7200),
        "iat": now - rng.randrange(0, 600),
        "jti": "%016x" % rng.getrandbits(64),
    }
    if rng.random() < 0.5:
        claims["scope"] = " ".join(rng.sample(["read", "write", "admin", "orders", "billing"], rng.randrange(1, 4)))
    if rng.random() < 0.3:
        claims["nbf"] = now - rng.randrange(100, 600)
    header = {"alg": alg, "kid": kid}
    if rng.random() < 0.5:
        header["typ"] = "JWT"
    priv = keys.private[alg]

    def encode(c=None, h=None, k=None, a=None):
        return jwt.encode(c if c is not None else claims, k if k is not None else priv, algorithm=a or alg, headers=h if h is not None else header)

    if kind == "valid":
        token = encode()
    elif kind == "valid_aud_array":
        claims["aud"] = ["other-api", AUD]
        token = encode()
    elif kind == "valid_no_kid":
        header.pop("kid")
        token = encode()
    elif kind == "valid_extra_header":
        header.update({"cty": "JWT", "x-trace": "t-%d" % rng.randrange(1000), "jku": "https://attacker.example/jwks"})
        token = encode()
    elif kind == "valid_unicode_nested":
        claims.update({"name": "Zoë Ωmega ✓", "realm": {"roles": ["a", "b"], "n": [1, 2.5, None, True]}})
        token = encode()
    elif kind == "valid_fractional_times":
        claims["exp"] = claims["exp"] + 0.5
        claims["iat"] = claims["iat"] + 0.25
        token = encode()
    elif kind == "valid_exp_within_leeway":
        claims["exp"] = now - 20
        claims["iat"] = now - 600
        token = encode()
    elif kind == "flip_signature":
        token = flip_segment_bit(encode(), 2, rng)
    elif kind == "flip_payload":
        t = encode()
        h, _, s = t.split(".")
        claims["sub"] = "admin"
        token = h + "." + b64(dumps(claims)) + "." + s
    elif kind == "alg_swapped":
        t = encode()
        others = {"RS256": "PS256", "RS384": "RS256", "RS512": "PS512", "PS256": "RS256", "PS384": "PS256", "PS512": "RS512", "ES256": "ES384", "ES384": "ES256", "EdDSA": "ES256", "HS256": "HS512", "HS384": "HS256", "HS512": "HS384"}
        header["alg"] = others[alg]
        _, p, s = t.split(".")
        token = b64(dumps(header)) + "." + p + "." + s
    elif kind == "alg_none":
        header["alg"] = "none"
        token = b64(dumps(header)) + "." + b64(dumps(claims)) + "."
    elif kind == "hs_with_rsa_public_key":
        # Key confusion: HS256 keyed with the RSA public key, naming the RSA key.
        alg = "HS256"
        header = {"alg": "HS256", "kid": "k-RS256"}
        si = (b64(dumps(header)) + "." + b64(dumps(claims))).encode()
        token = si.decode() + "." + b64(hmac.new(keys.rsa_public_pem, si, hashlib.sha256).digest())
    elif kind == "wrong_key":
        if alg.startswith(("RS", "PS")):
            # Same key, other padding: a PKCS#1 v1.5 signature under a PSS header and back.
            other = {"RS": "PS", "PS": "RS"}[alg[:2]] + alg[2:]
            t = encode(a=other, h=dict(header, alg=other))
            _, p, s = t.split(".")
            token = b64(dumps(header)) + "." + p + "." + s
        else:
            stranger = keys.stranger["HS" if alg.startswith("HS") else alg]
            token = encode(k=stranger)
    elif kind == "unknown_kid":
        header["kid"] = "k-unknown"
        token = encode()
    elif kind == "exp_past":
        claims["exp"] = now - rng.randrange(200, 100000)
        claims["iat"] = claims["exp"] - 600
        token = encode()
    elif kind == "exp_missing":
        claims.pop("exp")
        token = encode()
    elif kind == "nbf_future":
        claims["nbf"] = now + rng.randrange(200, 5000)
        token = encode()
    elif kind == "iat_future":
        claims["iat"] = now + rng.randrange(200, 5000)
        token = encode()
    elif kind == "wrong_aud":
        claims["aud"] = rng.choice(["billing-api", "Orders-api", ["billing-api", "x"], ""])
        token = encode()
    elif kind == "aud_missing":
        claims.pop("aud")
        token = encode()
    elif kind == "wrong_iss":
        claims["iss"] = rng.choice(["https://evil.example", ISS + "/", ISS.upper()])
        token = encode()
    elif kind == "exp_string":
        claims["exp"] = str(claims["exp"])
        token = encode()
    elif kind == "sub_number":
        claims["sub"] = rng.randrange(1000)
        token = encode()
    elif kind == "duplicate_claim":
        body = dumps(claims)[:-1] + b',"sub":"admin"}'
        token = raw_token(dumps(header), body, alg, priv)
    elif kind == "duplicate_header":
        hb = dumps(header)[:-1] + b',"alg":"none"}'
        token = raw_token(hb, dumps(claims), alg, priv)
    elif kind == "crit_header":
        header.update({"crit": ["x-policy"], "x-policy": "strict"})
        token = raw_token(dumps(header), dumps(claims), alg, priv)
    elif kind == "padded_base64":
        t = encode()
        parts = t.split(".")
        i = rng.randrange(3)
        if len(parts[i]) % 4:
            parts[i] += "=" * (-len(parts[i]) % 4)
        else:
            parts[i] += "="
        token = ".".join(parts)
    elif kind == "noncanonical_base64":
        t = encode()
        token = noncanonical(t) or (t + "=")
    elif kind == "whitespace_in_signature":
        t = encode()
        h, p, s = t.split(".")
        cut = rng.randrange(1, len(s))
        token = h + "." + p + "." + s[:cut] + rng.choice([" ", "\t", "\n"]) + s[cut:]
    elif kind == "whitespace_in_payload":
        t = encode()
        h, p, s = t.split(".")
        cut = rng.randrange(1, len(p))
        token = h + "." + p[:cut] + " " + p[cut:] + "." + s
    elif kind == "payload_array":
        token = raw_token(dumps(header), dumps([claims]), alg, priv)
    elif kind == "extra_segment":
        token = encode() + ".e30"
    elif kind == "empty_signature":
        token = encode().rsplit(".", 1)[0] + "."
    else:
        raise SystemExit("unknown mutation " + kind)
    ok, why = pyjwt_verdict(token, keys)
    return {"kind": kind, "alg": alg, "token": token, "pyjwt": ok, "why": why}


def main():
    seed = int(sys.argv[1])
    count = int(sys.argv[2])
    rng = random.Random(seed)
    keys = Keys(rng)
    now = int(time.time())
    cases = [make_case(rng, keys, now) for _ in range(count)]
    json.dump({"now": now, "iss": ISS, "aud": AUD, "jwks": {"keys": keys.jwks}, "cases": cases}, sys.stdout)


if __name__ == "__main__":
    main()
