"""Fixed test vectors for the jwt_verify unit tests, made by an independent library (PyJWT +
cryptography). Run with the project venv: `.venv/bin/python filters/jwt_verify/testdata/make_vectors.py`.
Writes vectors.json next to this file: public JWKs (with kid and alg), one token per algorithm,
and a few hostile tokens. Tokens expire in 2100 so the tests' fixed clock keeps them valid."""
import base64, hashlib, hmac, json, os, sys
import jwt
from jwt.algorithms import RSAAlgorithm, ECAlgorithm, OKPAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519

EXP = 4102444800  # 2100-01-01
IAT = 1700000000

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def jwk_of(alg_impl, pub, kid, alg):
    j = json.loads(alg_impl.to_jwk(pub))
    j["kid"] = kid
    j["alg"] = alg
    return j

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa_small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
p256 = ec.generate_private_key(ec.SECP256R1())
p384 = ec.generate_private_key(ec.SECP384R1())
ed = ed25519.Ed25519PrivateKey.generate()
secret = os.urandom(64)

keys = []
tokens = {}
claims = {"iss": "https://issuer.example", "sub": "user-1", "aud": "orders-api", "exp": EXP, "iat": IAT, "jti": "j-1"}
for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]:
    keys.append(jwk_of(RSAAlgorithm, rsa_key.public_key(), "rsa-" + alg, alg))
    tokens[alg] = jwt.encode(claims, rsa_key, algorithm=alg, headers={"kid": "rsa-" + alg})
keys.append(jwk_of(ECAlgorithm, p256.public_key(), "ec256", "ES256"))
tokens["ES256"] = jwt.encode(claims, p256, algorithm="ES256", headers={"kid": "ec256"})
keys.append(jwk_of(ECAlgorithm, p384.public_key(), "ec384", "ES384"))
tokens["ES384"] = jwt.encode(claims, p384, algorithm="ES384", headers={"kid": "ec384"})
keys.append(jwk_of(OKPAlgorithm, ed.public_key(), "ed", "EdDSA"))
tokens["EdDSA"] = jwt.encode(claims, ed, algorithm="EdDSA", headers={"kid": "ed"})
for alg in ["HS256", "HS384", "HS512"]:
    keys.append({"kty": "oct", "k": b64(secret), "kid": "hs-" + alg, "alg": alg})
    tokens[alg] = jwt.encode(claims, secret, algorithm=alg, headers={"kid": "hs-" + alg})

# A second RSA JWK without kid/alg, for "no kid" selection.
rsa_nokid = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
tokens["RS256_nokid"] = jwt.encode(claims, rsa_key, algorithm="RS256")

def raw(header, payload, sig=b""):
    h = b64(json.dumps(header, separators=(",", ":")).encode())
    p = b64(json.dumps(payload, separators=(",", ":")).encode())
    return h, p, f"{h}.{p}.{b64(sig)}"

hostile = {}
# alg none
hostile["alg_none"] = raw({"alg": "none", "kid": "rsa-RS256"}, claims)[2]
# Key confusion: HS256 with the RSA public key (JWK n bytes and PEM) as the HMAC secret.
from cryptography.hazmat.primitives import serialization
pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
h, p, _ = raw({"alg": "HS256", "kid": "rsa-RS256"}, claims)
hostile["hs_with_rsa_kid"] = f"{h}.{p}.{b64(hmac.new(pem, f'{h}.{p}'.encode(), hashlib.sha256).digest())}"
h, p, _ = raw({"alg": "HS256"}, claims)
hostile["hs_with_rsa_nokid"] = f"{h}.{p}.{b64(hmac.new(pem, f'{h}.{p}'.encode(), hashlib.sha256).digest())}"
# Header alg differs from the JWK alg (RS256 key, token says RS384 but signed RS384 with the same key).
hostile["alg_differs_from_jwk"] = jwt.encode(claims, rsa_key, algorithm="RS384", headers={"kid": "rsa-RS256"})
# Signed by a 1024-bit key, with its JWK (to show the key itself is refused).
hostile["rsa1024"] = jwt.encode(claims, rsa_small, algorithm="RS256", headers={"kid": "small"})
small_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_small.public_key())); small_jwk["kid"] = "small"
# Tampered payload (signature of the original).
t = tokens["RS256"].split(".")
tp = dict(claims); tp["sub"] = "admin"
hostile["tampered"] = f"{t[0]}.{b64(json.dumps(tp, separators=(',', ':')).encode())}.{t[2]}"
# Duplicate claim (signed): `sub` twice, last one "admin".
h = b64(json.dumps({"alg": "HS256", "kid": "hs-HS256"}, separators=(",", ":")).encode())
p = b64(b'{"iss":"https://issuer.example","sub":"user-1","sub":"admin","exp":4102444800}')
hostile["duplicate_claim"] = f"{h}.{p}.{b64(hmac.new(secret, f'{h}.{p}'.encode(), hashlib.sha256).digest())}"
# Unknown crit (signed).
hostile["crit"] = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "hs-HS256", "crit": ["exp"], "exp": 1})
# Unknown kid (signed by the real key).
hostile["unknown_kid"] = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "nope"})

out = {
    "jwks": {"keys": keys},
    "rsa_nokid_jwk": rsa_nokid,
    "small_jwk": small_jwk,
    "claims": claims,
    "tokens": tokens,
    "hostile": hostile,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
print("wrote", path)
