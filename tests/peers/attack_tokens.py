"""Attacker's toolbox for tests/tests/attacks.rs (PyJWT + cryptography, not our code).

Usage: attack_tokens.py
Prints {"jwks": {...}, "tokens": {name: jwt}} for the issuer envoy-config/envoy.yaml expects
(iss https://idp.example, aud orders-api, RSA-2048 key with kid "demo-1", published in "jwks")
and a catalog of crafted tokens: alg none in every casing, HS256 keyed with the issuer's
public key (alg confusion), kid injection, attacker keys announced through jku / x5u / jwk /
x5c, bad claims, duplicate JSON members, non-canonical base64url, oversized tokens.

Crafted tokens whose point is the encoding (duplicates, base64 variants) are signed with the
real issuer key over their exact signing input, so that only the parser rule under test can
refuse them; tokens whose point is the key are signed by the attacker.
"""
import base64
import datetime
import hashlib
import hmac
import json
import time

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

ISS = "https://idp.example"
AUD = "orders-api"
KID = "demo-1"

issuer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
now = int(time.time())

jwk = json.loads(RSAAlgorithm.to_jwk(issuer.public_key()))
jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker.public_key()))


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def claims(sub="mallory", lifetime=600, **extra):
    body = {"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + lifetime, "role": "admin", "amr": ["pwd", "otp"]}
    body.update(extra)
    return body


def rs256(key, signing_input):
    return b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))


def hs256(secret, signing_input):
    return b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def raw(header_text, payload_text, sign):
    """A token from exact JSON texts; `sign(signing_input) -> b64 signature` or None for ""."""
    signing_input = b64(header_text.encode()) + "." + b64(payload_text.encode())
    return signing_input + "." + (sign(signing_input) if sign else "")


def by_issuer(body, **header):
    return jwt.encode(body, issuer, algorithm="RS256", headers={"kid": KID, **header})


def by_attacker(body, header):
    return jwt.encode(body, attacker, algorithm="RS256", headers=header)


tokens = {}

# A valid admin token (the control) and a valid viewer token (for escalation attempts).
tokens["admin_valid"] = by_issuer(claims("root"))
tokens["viewer"] = by_issuer(claims("bob", role="viewer", amr=["pwd"]))
tokens["trader"] = by_issuer(claims("alice", role="trader", amr=["pwd"]))

# --- alg none, every casing (RFC 8725 3.1): unsigned tokens claiming admin.
admin_payload = json.dumps(claims("root"))
for alg in ["none", "None", "NONE", "nOnE"]:
    tokens[f"alg_{alg}"] = raw(json.dumps({"alg": alg, "typ": "JWT", "kid": KID}), admin_payload, None)
# none with the issuer's real signature of another token appended.
valid_sig = tokens["admin_valid"].split(".")[2]
tokens["alg_none_with_sig"] = raw(json.dumps({"alg": "none", "kid": KID}), admin_payload, None) + valid_sig
tokens["alg_missing"] = raw(json.dumps({"typ": "JWT", "kid": KID}), admin_payload, lambda s: rs256(issuer, s))
tokens["alg_empty"] = raw(json.dumps({"alg": "", "kid": KID}), admin_payload, None)

# --- alg confusion: HS256 keyed with the issuer's public key (what a naive verifier does with
# the configured RSA key when the token says HS256).
spki_pem = issuer.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
pkcs1_pem = issuer.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
n_bytes = issuer.public_key().public_numbers().n.to_bytes(256, "big")
tokens["hs256_spki_pem"] = raw(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}), admin_payload, lambda s: hs256(spki_pem, s))
tokens["hs256_spki_pem_nokid"] = raw(json.dumps({"alg": "HS256", "typ": "JWT"}), admin_payload, lambda s: hs256(spki_pem, s))
tokens["hs256_pkcs1_pem"] = raw(json.dumps({"alg": "HS256", "kid": KID}), admin_payload, lambda s: hs256(pkcs1_pem, s))
tokens["hs256_jwk_json"] = raw(json.dumps({"alg": "HS256", "kid": KID}), admin_payload, lambda s: hs256(json.dumps(jwk).encode(), s))
tokens["hs256_modulus"] = raw(json.dumps({"alg": "HS256", "kid": KID}), admin_payload, lambda s: hs256(n_bytes, s))
# Other algorithm substitutions keyed by the attacker: PS256 / ES256 claimed over the RSA kid.
tokens["ps256_attacker"] = jwt.encode(claims("root"), attacker, algorithm="PS256", headers={"kid": KID})

# --- kid injection: the classic file and SQL payloads, with the secret they would yield.
tokens["kid_dev_null"] = raw(json.dumps({"alg": "HS256", "kid": "../../../../../../dev/null"}), admin_payload, lambda s: hs256(b"", s))
tokens["kid_sql"] = raw(json.dumps({"alg": "HS256", "kid": "' OR 1=1--"}), admin_payload, lambda s: hs256(b"1", s))
tokens["kid_sql_union"] = raw(json.dumps({"alg": "HS256", "kid": "x' UNION SELECT 'k'--"}), admin_payload, lambda s: hs256(b"k", s))
tokens["kid_unknown"] = by_issuer(claims("root"), kid="demo-2")
tokens["kid_nul_suffix"] = raw(json.dumps({"alg": "RS256", "kid": KID + "\u0000"}), admin_payload, lambda s: rs256(issuer, s))
tokens["kid_not_string"] = raw(json.dumps({"alg": "RS256", "kid": {"$ne": ""}}), admin_payload, lambda s: rs256(issuer, s))

# --- keys announced by the token itself (jku, x5u, jwk, x5c): never trusted.
tokens["jku_attacker"] = by_attacker(claims("root"), {"kid": "attacker-1", "jku": "http://127.0.0.1:9/jwks.json"})
tokens["jku_real_kid"] = by_attacker(claims("root"), {"kid": KID, "jku": "http://127.0.0.1:9/jwks.json"})
tokens["x5u_attacker"] = by_attacker(claims("root"), {"kid": "attacker-1", "x5u": "http://127.0.0.1:9/cert.pem"})
tokens["jwk_embedded"] = by_attacker(claims("root"), {"kid": KID, "jwk": attacker_jwk})
tokens["jwk_embedded_nokid"] = by_attacker(claims("root"), {"jwk": attacker_jwk})
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example")])
cert = (
    x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(attacker.public_key())
    .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1)).not_valid_after(datetime.datetime(2100, 1, 1))
    .sign(attacker, hashes.SHA256())
)
tokens["x5c_self_signed"] = by_attacker(claims("root"), {"x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]})
tokens["forged_signature"] = by_attacker(claims("root"), {"kid": KID})

# --- claims.
tokens["expired"] = by_issuer(claims("root", lifetime=-120))
tokens["not_yet_valid"] = by_issuer(claims("root", nbf=now + 300))
tokens["iat_future"] = by_issuer(claims("root", iat=now + 300, exp=now + 900))
tokens["wrong_issuer"] = by_issuer(claims("root", iss="https://evil.example"))
tokens["issuer_trailing_slash"] = by_issuer(claims("root", iss=ISS + "/"))
tokens["issuer_case"] = by_issuer(claims("root", iss=ISS.upper()))
tokens["wrong_audience"] = by_issuer(claims("root", aud="billing-api"))
tokens["audience_missing"] = by_issuer({k: v for k, v in claims("root").items() if k != "aud"})
tokens["exp_missing"] = by_issuer({k: v for k, v in claims("root").items() if k != "exp"})
tokens["exp_string"] = by_issuer(claims("root", exp=str(now + 600)))
tokens["lifetime_30d"] = by_issuer(claims("root", lifetime=30 * 24 * 3600))

# --- size: just over max_token_bytes (16 KiB) and over Envoy's 60 KiB header limit.
tokens["oversize_17k"] = by_issuer(claims("root", pad="A" * 12400))
tokens["oversize_70k"] = by_issuer(claims("root", pad="A" * 70000))

# --- duplicate JSON members (parser differentials: first-wins vs last-wins).
hdr = json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID})
viewer_payload = json.dumps(claims("bob", role="viewer", amr=["pwd"]))
sign_real = lambda s: rs256(issuer, s)  # noqa: E731
tokens["dup_header_alg"] = raw('{"alg":"RS256","kid":"demo-1","alg":"none"}', viewer_payload, sign_real)
tokens["dup_header_kid"] = raw('{"alg":"RS256","kid":"demo-1","kid":"../../dev/null"}', viewer_payload, sign_real)
tokens["dup_payload_role"] = raw(hdr, viewer_payload[:-1] + ', "role": "admin", "amr": ["otp"]}', sign_real)
tokens["dup_payload_sub"] = raw(hdr, viewer_payload[:-1] + ', "sub": "root"}', sign_real)
tokens["dup_payload_nested"] = raw(hdr, viewer_payload[:-1] + ', "realm": {"roles": "viewer", "roles": "admin"}}', sign_real)
tokens["dup_payload_escaped"] = raw(hdr, viewer_payload[:-1] + ', "r\\u006fle": "admin"}', sign_real)


# --- non-canonical base64url, each signed by the issuer over the exact text sent.
def signed(header_seg, payload_seg):
    si = header_seg + "." + payload_seg
    return si + "." + rs256(issuer, si)


def payload_with(pred):
    """A viewer payload whose base64url text satisfies pred (varying a filler claim)."""
    for i in range(10000):
        text = json.dumps(claims("bob", role="viewer", amr=["pwd"], n="?~>" [i % 3] * (i % 7) + str(i)))
        seg = b64(text.encode())
        if pred(text, seg):
            return text, seg
    raise SystemExit("no payload found")


hseg = b64(hdr.encode())
text, seg = payload_with(lambda t, s: len(t.encode()) % 3 == 1)
tokens["b64_padding"] = signed(hseg, seg + "==")
text, seg = payload_with(lambda t, s: "-" in s or "_" in s)
tokens["b64_std_alphabet"] = signed(hseg, seg.replace("-", "+").replace("_", "/"))
text, seg = payload_with(lambda t, s: len(t.encode()) % 3 == 1)
alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
last = alphabet.index(seg[-1])
tokens["b64_trailing_bits_payload"] = signed(hseg, seg[:-1] + alphabet[last | 0x0F])
# The issuer's own valid token with the signature's 4 unused trailing bits set: a lenient
# decoder reads the same signature bytes (token malleability, a cache-key / replay splitter).
good = by_issuer(claims("bob", role="viewer", amr=["pwd"], n="sig-bits"))
h, p, s = good.split(".")
assert len(s) % 4 == 2, "RSA-2048 signatures leave 4 unused bits"
tokens["b64_trailing_bits_signature"] = f"{h}.{p}.{s[:-1]}{alphabet[alphabet.index(s[-1]) | 0x0F]}"
tokens["b64_trailing_bits_signature_control"] = good
tokens["b64_whitespace"] = signed(hseg, seg[:10] + " " + seg[10:])
tokens["jwe_five_segments"] = good + ".x.y"

print(json.dumps({"jwks": {"keys": [jwk]}, "tokens": tokens}))
