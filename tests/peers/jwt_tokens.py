"""Independent JWT issuer for jwt_verify's E2E tests (PyJWT + cryptography).

Usage:
  jwt_tokens.py <state-dir> init
      Generate every key, keep the private halves in <state-dir>/keys.json, print
      {"now": <unix s>, "jwks": {...public keys of every algorithm...},
       "rotation_a": {...}, "rotation_b": {...}}.
  jwt_tokens.py <state-dir> mint '<json list>'
      Each item: {"kid": ..., "claims": {...}, "header": {...optional extra header...},
      "alg": optional (default: the key's algorithm), "exp_in": optional seconds from now,
      "iat_in": optional seconds from now, "raw_payload": optional exact payload text}.
      Prints a JSON list of tokens. Claims get iat/exp from now unless given.

Keys (kid -> algorithm): rs256 rs384 rs512 ps256 ps384 ps512 (one RSA-2048 key), es256,
es384, eddsa, hs256 hs384 hs512 (one 64-byte secret), rot-a and rot-b (ES256, for rotation),
rsa1024 (a 1024-bit RSA key, never published), forger (another RSA-2048 key, never published).
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def init(state):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = {}
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
        keys[alg.lower()] = {"alg": alg, "pem": pem(rsa_key)}
    keys["es256"] = {"alg": "ES256", "pem": pem(ec.generate_private_key(ec.SECP256R1()))}
    keys["es384"] = {"alg": "ES384", "pem": pem(ec.generate_private_key(ec.SECP384R1()))}
    keys["eddsa"] = {"alg": "EdDSA", "pem": pem(ed25519.Ed25519PrivateKey.generate())}
    secret = b64(os.urandom(64))
    for alg in ["HS256", "HS384", "HS512"]:
        keys[alg.lower()] = {"alg": alg, "secret": secret}
    keys["rot-a"] = {"alg": "ES256", "pem": pem(ec.generate_private_key(ec.SECP256R1()))}
    keys["rot-b"] = {"alg": "ES256", "pem": pem(ec.generate_private_key(ec.SECP256R1()))}
    keys["rsa1024"] = {"alg": "RS256", "pem": pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))}
    keys["forger"] = {"alg": "RS256", "pem": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))}
    with open(os.path.join(state, "keys.json"), "w") as f:
        json.dump(keys, f)

    def public(kid):
        k = keys[kid]
        if "secret" in k:
            return {"kty": "oct", "k": k["secret"], "kid": kid, "alg": k["alg"]}
        priv = serialization.load_pem_private_key(k["pem"].encode(), None)
        impl = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm, "Ed": OKPAlgorithm}[k["alg"][:2]]
        j = json.loads(impl.to_jwk(priv.public_key()))
        j.update({"kid": kid, "alg": k["alg"], "use": "sig"})
        return j

    main = [public(k) for k in ["rs256", "rs384", "rs512", "ps256", "ps384", "ps512", "es256", "es384", "eddsa", "hs256", "hs384", "hs512"]]
    small = public("rsa1024")
    print(json.dumps({
        "now": int(time.time()),
        "jwks": {"keys": main},
        "rotation_a": {"keys": [public("rot-a")]},
        "rotation_b": {"keys": [public("rot-b")]},
        "rsa1024_jwk": small,
    }))


def mint(state, items):
    with open(os.path.join(state, "keys.json")) as f:
        keys = json.load(f)
    now = int(time.time())
    out = []
    for it in items:
        k = keys[it["kid"]]
        alg = it.get("alg", k["alg"])
        claims = dict(it.get("claims", {}))
        claims.setdefault("iat", now + it.get("iat_in", 0))
        claims.setdefault("exp", now + it.get("exp_in", 600))
        header = {"kid": it["kid"], **it.get("header", {})}
        if "raw_payload" in it or alg == "none" or it.get("hmac_with_public_pem"):
            # Hand-built tokens PyJWT refuses to make: exact payload text, alg none,
            # HS256 keyed with an RSA public key (key confusion).
            header = {"alg": alg, **header}
            payload = it.get("raw_payload", json.dumps(claims, separators=(",", ":")))
            signing_input = f"{b64(json.dumps(header, separators=(',', ':')).encode())}.{b64(payload.encode())}"
            if alg == "none":
                sig = b""
            elif it.get("hmac_with_public_pem"):
                priv = serialization.load_pem_private_key(keys[it["hmac_with_public_pem"]]["pem"].encode(), None)
                pub = priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                sig = hmac.new(pub, signing_input.encode(), hashlib.sha256).digest()
            else:
                secret = base64.urlsafe_b64decode(k["secret"] + "==")
                sig = hmac.new(secret, signing_input.encode(), {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]).digest()
            out.append(f"{signing_input}.{b64(sig)}")
            continue
        if "secret" in k:
            signer = base64.urlsafe_b64decode(k["secret"] + "==")
        else:
            signer = serialization.load_pem_private_key(k["pem"].encode(), None)
        out.append(jwt.encode(claims, signer, algorithm=alg, headers=header))
    print(json.dumps(out))


if __name__ == "__main__":
    state, cmd = sys.argv[1], sys.argv[2]
    os.makedirs(state, exist_ok=True)
    if cmd == "init":
        init(state)
    elif cmd == "mint":
        mint(state, json.loads(sys.argv[3]))
    else:
        sys.exit(f"unknown command {cmd}")
