"""Demo upstream and identity provider for scripts/run (loopback only).

- GET  /.well-known/jwks.json  the demo IdP's public key (a fresh RSA key per run)
- POST /auth/login             {"username": "alice"} -> a 15-minute RS256 access token.
                               Users: alice (trader), bob (viewer), root (admin, with MFA),
                               carol (trader, premium tier). Demo only: no passwords.
- GET  /users/me               a profile full of personal data (pii_masking masks it)
- anything else                echoes what reached it (method, path, headers, body) as JSON,
                               so you see what the filter chain let through.
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
JWK.update({"kid": "demo-1", "alg": "RS256", "use": "sig"})
USERS = {
    "alice": {"role": "trader"},
    "bob": {"role": "viewer"},
    "root": {"role": "admin", "amr": ["pwd", "otp"]},
    "carol": {"role": "trader", "tier": "premium"},
}
PROFILE = {"name": "Alice Example", "email": "alice@example.com", "phone": "+14155552671",
           "ssn": "123-45-6789", "card_number": "4111 1111 1111 1111", "password": "hunter2",
           "iban": "DE89 3704 0044 0532 0130 00", "order_id": "ORD-2024-000123"}


def issue(username):
    now = int(time.time())
    claims = {"iss": "https://idp.example", "aud": "orders-api", "sub": username,
              "iat": now, "exp": now + 900, **USERS[username]}
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "demo-1"})


class Demo(BaseHTTPRequestHandler):
    server_version = "demo-upstream/1.0"
    protocol_version = "HTTP/1.1"

    def _send(self, status, obj):
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("x-powered-by", "demo")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def _handle(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if path == "/.well-known/jwks.json":
            return self._send(200, {"keys": [JWK]})
        if path == "/auth/login" and self.command == "POST":
            try:
                user = json.loads(body or b"{}").get("username")
            except ValueError:
                user = None
            if user not in USERS:
                return self._send(401, {"error": "unknown user", "users": sorted(USERS)})
            return self._send(200, {"access_token": issue(user), "token_type": "Bearer", "expires_in": 900})
        if path == "/users/me":
            return self._send(200, PROFILE)
        self._send(200, {
            "method": self.command,
            "path": self.path,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("utf-8", "replace"),
        })

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer(("127.0.0.1", port), Demo).serve_forever()
