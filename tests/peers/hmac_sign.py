"""Independent RFC 9421 / RFC 9530 peer for hmac_signing's E2E tests, using the PyPI package
`http-message-signatures` (not our code) to sign requests and verify signed responses.

Usage:
  hmac_sign.py sign '<json list>'
      Each item: {"method": "POST", "url": "http://api.example.com/path?q=1",
                  "headers": {...}, "body": "text" (optional, UTF-8),
                  "keyid": "...", "secret_b64": "...",
                  "components": ["@method", "@target-uri", ...],
                  "created_in": seconds from now (default 0), "expires_in": optional,
                  "nonce": optional, "label": optional (default "sig1"),
                  "include_alg": optional (default true),
                  "digest": optional "sha-256" | "sha-512" (with a body: add and cover
                            Content-Digest computed by the package)}
      Prints a JSON list: for each item, the request headers to send as a JSON object
      (the given ones plus Signature-Input, Signature and Content-Digest).
  hmac_sign.py verify_response '<json>'
      {"status": 200, "headers": [[k, v], ...], "keyid": "...", "secret_b64": "...",
       "require": ["@status", ...]}
      Prints {"ok": true, "keyid": ..., "covered": [...]} or {"ok": false, "error": "..."}.
"""
import base64
import datetime
import json
import sys

from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)
from http_message_signatures.structures import CaseInsensitiveDict


class Request:
    def __init__(self, method, url, headers):
        self.method = method
        self.url = url
        self.headers = CaseInsensitiveDict(headers)


class Response:
    def __init__(self, status, headers):
        self.status_code = status
        self.headers = CaseInsensitiveDict()
        for k, v in headers:
            if k in self.headers:
                self.headers[k] = self.headers[k] + ", " + v
            else:
                self.headers[k] = v


class Sha512Digest(ContentDigest):
    algorithm = "sha-512"


class Sha512Signer(HTTPMessageSigner):
    content_digest_class = Sha512Digest


def sign(job):
    secret = base64.b64decode(job["secret_b64"])
    keys = MappingKeyResolver(public_keys={job["keyid"]: secret}, private_keys={job["keyid"]: secret})
    cls = Sha512Signer if job.get("digest") == "sha-512" else HTTPMessageSigner
    signer = cls(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=keys)
    req = Request(job["method"], job["url"], job.get("headers", {}))
    now = datetime.datetime.now(datetime.timezone.utc)
    created = now + datetime.timedelta(seconds=job.get("created_in", 0))
    expires = None
    if job.get("expires_in") is not None:
        expires = now + datetime.timedelta(seconds=job["expires_in"])
    body = None
    if job.get("digest") and "body" in job:
        body = job["body"].encode()
    signer.sign(
        req,
        key_id=job["keyid"],
        created=created,
        expires=expires,
        nonce=job.get("nonce"),
        label=job.get("label", "sig1"),
        include_alg=job.get("include_alg", True),
        covered_component_ids=tuple(job["components"]),
        body=body,
    )
    return dict(req.headers.items())


def verify_response(job):
    secret = base64.b64decode(job["secret_b64"])
    keys = MappingKeyResolver(public_keys={job["keyid"]: secret}, private_keys={})
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=keys)
    resp = Response(job["status"], job["headers"])
    try:
        results = verifier.verify(resp, max_age=datetime.timedelta(seconds=60), require_components=tuple(job.get("require", ())))
    except (InvalidSignature, Exception) as e:  # noqa: BLE001 - report any failure to the test
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    r = results[0]
    return {"ok": True, "keyid": r.parameters.get("keyid"), "covered": list(r.covered_components)}


def main():
    mode = sys.argv[1]
    arg = json.loads(sys.argv[2])
    if mode == "sign":
        print(json.dumps([sign(j) for j in arg]))
    elif mode == "verify_response":
        print(json.dumps(verify_response(arg)))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
