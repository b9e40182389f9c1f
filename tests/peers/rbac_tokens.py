"""Independent token issuer for rbac's chained E2E test (jwt_verify in front of rbac).

Prints one JSON object: {"jwks": {...}, "tokens": {name: jwt}} with ES256 tokens made by
PyJWT for the callers of issue 5's matrix, plus tokens that must not authorize anything:
a forged admin token signed by another key under the same kid, and an expired admin token.
"""
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ISSUER = sys.argv[1] if len(sys.argv) > 1 else "https://issuer.test"
AUDIENCE = sys.argv[2] if len(sys.argv) > 2 else "api"
KID = "rbac-test-1"

key = ec.generate_private_key(ec.SECP256R1())
other = ec.generate_private_key(ec.SECP256R1())
jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": KID, "use": "sig", "alg": "ES256"})

now = int(time.time())


def token(sub, signer=key, exp=now + 600, **claims):
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": exp, **claims}
    return jwt.encode(payload, signer, algorithm="ES256", headers={"kid": KID})


tokens = {
    "admin": token("alice", role="admin", amr=["pwd", "otp"]),
    "admin_no_mfa": token("alice", role="admin", amr=["pwd"]),
    "trader": token("bob", role=["trader"]),
    "viewer": token("carol", role="viewer"),
    "forged_admin": token("mallory", signer=other, role="admin", amr=["mfa"]),
    "expired_admin": token("alice", exp=now - 3600, role="admin", amr=["mfa"]),
}
print(json.dumps({"jwks": {"keys": [jwk]}, "tokens": tokens}))
