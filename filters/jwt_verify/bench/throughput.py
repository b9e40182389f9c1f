"""Envoy throughput of jwt_verify against native jwt_authn, side by side in one run.

One Envoy worker (--concurrency 1), a direct_response route (no upstream), wrk with keep-alive
connections and one RS256 token re-used (the issue's "repeated-token path"). Prints, per variant, the
requests/s and the Envoy CPU time per request (utime + stime of the Envoy process over the
run, divided by the requests served): on a shared machine the CPU cost is the steadier
figure. Ratios are to a filter-less Envoy. Needs `scripts/build`, the
floor example (`cargo build --release --target wasm32-wasip1 -p jwt_verify --example floor`),
.venv (PyJWT) and wrk. Run from the repository root:
    .venv/bin/python filters/jwt_verify/bench/throughput.py [seconds] [rounds] [alg]
"""
import json, os, re, socket, subprocess, sys, tempfile, time, urllib.request

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa, ec
from jwt.algorithms import RSAAlgorithm, ECAlgorithm

ROOT = os.getcwd()
ENVOY = os.path.join(ROOT, ".venv/bin/envoy")
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ALG = sys.argv[3] if len(sys.argv) > 3 else "RS256"
ISS = "https://issuer.example"

if ALG.startswith("RS"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
else:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
jwk.update({"kid": "k1", "alg": ALG})
JWKS = {"keys": [jwk]}
now = int(time.time())
TOKEN = jwt.encode({"iss": ISS, "sub": "user-1", "aud": "api", "iat": now, "exp": now + 3600}, key, algorithm=ALG, headers={"kid": "k1"})


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wasm(name, path, config):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": name, "root_id": name,
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(config)},
                   "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}}}}}


def jwt_authn(cache):
    provider = {"issuer": ISS, "local_jwks": {"inline_string": json.dumps(JWKS)}, "forward": False}
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 1000}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"main": provider}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}]}}


JV = os.path.join(ROOT, "dist/jwt_verify.wasm")
FLOOR = os.path.join(ROOT, "target/wasm32-wasip1/release/examples/floor.wasm")
jv_cfg = lambda cache: {"providers": {"main": {"issuer": ISS, "local_jwks": JWKS}}, "cache": {"enabled": cache}}
VARIANTS = [
    ("no filter", []),
    ("jwt_authn (no cache)", [jwt_authn(False)]),
    ("jwt_authn + jwt_cache_config", [jwt_authn(True)]),
    ("floor wasm (hash + 1 shared read + identity)", [wasm("floor", FLOOR, {})]),
    ("floor + clock read + token removal", [wasm("floor", FLOOR, "full")]),
    ("jwt_verify, cache hit", [wasm("jwt_verify", JV, jv_cfg(True))]),
    ("jwt_verify, cache off (verify every request)", [wasm("jwt_verify", JV, jv_cfg(False))]),
]


def run(filters):
    port, admin = free_port(), free_port()
    cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
           "static_resources": {"listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                   "stat_prefix": "b", "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [
                       {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]}]},
                   "http_filters": filters + [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]}}
    d = tempfile.mkdtemp()
    path = os.path.join(d, "envoy.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    p = subprocess.Popen([ENVOY, "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1).status == 200:
                    break
            except Exception:
                time.sleep(0.05)
        def cpu():
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        c0 = cpu()
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{SECONDS}s", "-H", f"authorization: Bearer {TOKEN}", f"http://127.0.0.1:{port}/x"], capture_output=True, text=True).stdout
        c1 = cpu()
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise SystemExit(f"non-2xx responses in variant: {out}")
        return rps, (c1 - c0) * 1e6 / max(total, 1)
    finally:
        p.kill()
        p.wait()


ONLY = os.environ.get("ONLY")
if ONLY:
    VARIANTS = [v for v in VARIANTS if v[0] == "no filter" or any(o in v[0] for o in ONLY.split(","))]
results = {name: [] for name, _ in VARIANTS}
for _ in range(ROUNDS):
    for name, filters in VARIANTS:
        results[name].append(run(filters))
base = max(r for r, _ in results["no filter"])
base_cpu = min(c for _, c in results["no filter"])
print(f"{ALG}, one worker, {SECONDS}s x {ROUNDS} rounds, best of rounds")
print(f"  {'variant':<48} {'req/s':>9} {'ratio':>6}  {'CPU us/req':>10} {'ratio':>6}")
for name, _ in VARIANTS:
    best = max(r for r, _ in results[name])
    c = min(c for _, c in results[name])
    print(f"  {name:<48} {best:>9.0f} {best / base:5.2f}x  {c:>10.1f} {base_cpu / c:5.2f}x")
