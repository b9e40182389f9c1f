"""Independent token issuer for the chain tests (PyJWT + cryptography, not our code).

Usage: chain_tokens.py
Prints {"jwks": {...}, "tokens": {name: jwt}} for a fresh RSA-2048 key (kid "demo-1"),
issuer https://idp.example, audience orders-api: the claims envoy-config/envoy.yaml expects.
"""
import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "demo-1", "alg": "RS256", "use": "sig"})
other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
now = int(time.time())


def token(sub, lifetime=600, signer=key, **claims):
    body = {"iss": "https://idp.example", "aud": "orders-api", "sub": sub,
            "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(body, signer, algorithm="RS256", headers={"kid": "demo-1"})


tokens = {
    "trader": token("alice", role="trader"),
    "viewer": token("bob", role="viewer"),
    "admin_mfa": token("root", role="admin", amr=["pwd", "otp"]),
    "admin_no_mfa": token("root", role="admin", amr=["pwd"]),
    "premium": token("carol", role="trader", tier="premium"),
    # A 30-day refresh token must never pass where 15-minute access tokens are expected.
    "refresh_30d": token("alice", lifetime=30 * 24 * 3600, role="trader"),
    "expired": token("alice", lifetime=-120, role="trader"),
    "forged": token("alice", signer=other, role="admin", amr=["otp"]),
}
print(json.dumps({"jwks": {"keys": [jwk]}, "tokens": tokens}))
