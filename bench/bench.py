"""scripts/bench driver: runs every row of issue 10 against the same requests, prints the
tables and writes docs/performance.md. Run through scripts/bench (which installs and builds);
settings are environment variables (see SETTINGS below, or `scripts/bench --help`)."""
import atexit
import datetime
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import envoy as E  # noqa: E402
import tokens as T  # noqa: E402

ROOT = E.ROOT
STATE = os.path.join(ROOT, "target/bench")
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(ROOT, ".venv/bin/envoy"))
LUA = os.path.join(ROOT, "bench/wrk")
QUICK = os.environ.get("BENCH_QUICK") == "1"
NCPU = os.cpu_count() or 1


def setting(name, full, quick, conv=int):
    v = os.environ.get(name)
    return conv(v) if v not in (None, "") else (quick if QUICK else full)


# name: (full default, --quick default, meaning)
SETTINGS = {
    "BENCH_DURATION": (2, 1, "seconds per measured repetition, hot path main table"),
    "BENCH_REPS": (4, 1, "repetitions per row (round-robin over the rows, so drift hits all rows alike)"),
    "BENCH_WARMUP": (1, 1, "seconds of warm-up per Envoy before its first repetition (not measured)"),
    "BENCH_CONNECTIONS": (16, 16, "wrk keep-alive connections, hot path"),
    "BENCH_EXTRA_DURATION": (2, 1, "seconds per repetition of the extra measurements (JWT per algorithm, RBAC, opt-level)"),
    "BENCH_EXTRA_REPS": (1, 1, "repetitions of the extra measurements"),
    "BENCH_PII_DURATION": (3, 2, "seconds per PII throughput measurement"),
    "BENCH_MANY_TOKENS": (20000, 20000, "distinct tokens in the many-users pool"),
    "BENCH_MANY_CONCURRENCY": (4, 4, "Envoy workers, many users"),
    "BENCH_MANY_CONNECTIONS": (64, 64, "wrk connections, many users"),
    "BENCH_MANY_COLD": (4, 2, "seconds measured from Envoy start (cold caches, warm-up included)"),
    "BENCH_MANY_WARMUP": (6, 2, "further seconds of warm-up before the warm measurement"),
    "BENCH_MANY_WARM": (4, 2, "seconds measured warm"),
    "BENCH_RL_KEYS": (1000000, 20000, "distinct client addresses sent to rate_limit for the memory measurement"),
}
S = {k: setting(k, full, quick) for k, (full, quick, _) in SETTINGS.items()}
SECTIONS = [s for s in os.environ.get("BENCH_ONLY", "hot,many,jwt,rbac,pii,ratelimit,opt").split(",") if s]
OPT_LEVELS = [x for x in os.environ.get("BENCH_OPT_LEVELS", "s,z,3").split(",") if x]
OPT_CRATES = [x for x in os.environ.get("BENCH_OPT_CRATES", "header_hardening,jwt_verify").split(",") if x]
# Hot path and per-algorithm/RBAC/opt groups: the Envoy under test answers itself (1) or
# forwards to the upstream Envoy (0).
DIRECT = os.environ.get("BENCH_DIRECT", "1") == "1"
DOC = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs/performance.md"))

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- processes -------------------------------------------------------------------------------

RUNNING = []  # every Envoy started, stopped at exit (they run in their own sessions)


def stop_all():
    for env in list(RUNNING):
        env.stop()


atexit.register(stop_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Envoy:
    """An Envoy process (optionally pinned with taskset), killed by stop()."""

    def __init__(self, name, make_config, concurrency, cpus=None):
        self.name = name
        self.dir = os.path.join(STATE, "run", name.replace(" ", "_").replace("/", "_"))
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.admin = free_port(), free_port()
        self.config = make_config(self.port, self.admin)
        path = os.path.join(self.dir, "envoy.json")
        with open(path, "w") as f:
            json.dump(self.config, f, indent=1)
        self.log_path = os.path.join(self.dir, "envoy.log")
        cmd = [ENVOY, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart", "-l", "warning"]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus] + cmd
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        RUNNING.append(self)

    def wait_ready(self, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=2)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def log_tail(self, n=6):
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [l.strip() for l in f if l.strip()]
        except OSError:
            return ""
        important = [l for l in lines if "error" in l.lower() or "invalid" in l.lower()] or lines
        return " | ".join(important[-n:])

    def cpu_seconds(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def rss_bytes(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def stats(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=10)
            c.request("GET", "/stats")
            text = c.getresponse().read().decode(errors="replace")
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            k, _, v = line.partition(": ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def stop(self):
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def send(port, path, headers, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def cores():
    """Busy and total jiffies per CPU from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = list(map(int, parts[1:]))
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                out[parts[0]] = (sum(vals) - idle, sum(vals))
    return out


def wrk(port, path, script, duration, conns, threads, headers_file, cpus=None, env=None, timeout_s=10, stop_when=None):
    """Run wrk and return its BENCH_RESULT summary. `stop_when`: polled every 0.5 s; once
    true, wrk gets SIGINT and reports what it did so far (wrk's main thread otherwise sleeps
    for the whole -d duration even after every Lua thread called wrk.thread:stop())."""
    e = dict(os.environ, BENCH_LUA_DIR=LUA, BENCH_HEADERS=headers_file, BENCH_THREADS=str(threads), **(env or {}))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--timeout", f"{timeout_s}s", "-s", os.path.join(LUA, script),
           f"http://127.0.0.1:{port}{path}"]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    if stop_when is not None:
        deadline = time.time() + duration + 5
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
            if stop_when():
                proc.send_signal(signal.SIGINT)
                break
    try:
        stdout, stderr = proc.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"wrk gave no result: {stdout[-500:]} {stderr[-500:]}")


def write_headers(name, headers):
    path = os.path.join(STATE, "run", f"headers-{name}.txt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for k, v in headers.items():
            f.write(f"{k}: {v}\n")
    return path


# ---- rows ------------------------------------------------------------------------------------

class Row:
    """One configuration of the Envoy under test. `filters`: Wasm or native entries.
    `check(status, headers, body)` returns None when the functional check passes."""

    def __init__(self, name, filters, headers, path="/orders", check=None, note="", base=None):
        self.name = name
        self.filters = filters
        self.headers = headers
        self.path = path
        self.check = check
        self.note = note
        self.base = base
        self.problem = None
        self.invalid = None  # set when wrk saw responses other than the expected ones
        for f in filters:
            if isinstance(f, E.Wasm):
                p = E.module_problem(f.path)
                if p:
                    self.problem = f"{p}: {os.path.relpath(f.path, ROOT)}"
                    break
        self.samples = []
        self.rss = None
        self.extra = {}


def wrk_problem(res):
    """Why a wrk run does not count, or None. Every request of every row must get the answer
    the functional check got (200): wrk counts each response with status >= 400 in
    `errors.status`; one is enough to mark the row invalid, so a row can never look fast by
    answering 401/403/429/503. Socket errors above 0.1% of the requests also invalidate it."""
    if res["requests"] <= 0:
        return "no request completed"
    if res["status"]:
        return f"{res['status']:,} of {res['requests']:,} responses were not 2xx/3xx"
    sock = res["connect"] + res["read"] + res["write"] + res["timeout"]
    if sock > max(2, res["requests"] // 1000):
        return f"{sock:,} socket errors/timeouts in {res['requests']:,} requests"
    return None


def check_ok(status, headers, body):
    return None if status == 200 else f"HTTP {status}: {body[:300].decode(errors='replace')}"


def check_hardened(status, headers, body):
    return check_ok(status, headers, body) or (None if headers.get("x-content-type-options") == "nosniff" else "security headers missing")


def check_masked(status, headers, body):
    return check_hardened(status, headers, body) or check_pii(status, headers, body)


def check_pii(status, headers, body):
    bad = check_ok(status, headers, body)
    if bad:
        return bad
    if b"4111 1111 1111 1111" in body or b"jane.doe@example.com" in body:
        return "response not masked"
    try:
        json.loads(body)
    except ValueError:
        return "masked response is not JSON"
    return None


def measure_group(title, rows, upstream_port, duration, reps, warmup, conns, concurrency=1, envoy_cpus="0", wrk_cpus="1", threads=1, direct=None):
    """Start every row's Envoy at once (idle ones cost nothing), check each with one request,
    warm each up, then measure round-robin `reps` times."""
    log(f"{title}: starting {sum(1 for r in rows if not r.problem)} Envoys")
    live = []
    for r in rows:
        if r.problem:
            continue
        # Single-worker groups answer from the router (direct_response, the same JSON and
        # headers as the upstream): wrk alone on core 1, so row 1 is not capped by the upstream.
        d = DIRECT if direct is None else direct
        r.envoy = Envoy(f"{title}-{r.name}", lambda p, a, r=r: E.proxy(p, a, upstream_port, r.filters, direct=d), concurrency, envoy_cpus)
        r.headers_file = write_headers(f"{title}-{r.name}".replace(" ", "_").replace("/", "_"), r.headers)
    for r in rows:
        if r.problem:
            continue
        if not r.envoy.wait_ready():
            r.problem = "Envoy refused the configuration: " + r.envoy.log_tail()
            r.envoy.stop()
            continue
        try:
            status, headers, body = send(r.envoy.port, r.path, r.headers)
            bad = (r.check or check_ok)(status, headers, body)
        except OSError as e:
            bad = f"request failed: {e}"
        if bad:
            r.problem = "functional check failed: " + bad
            r.envoy.stop()
            continue
        live.append(r)
    for r in live:
        if warmup > 0:
            wrk(r.envoy.port, r.path, "hot.lua", warmup, conns, threads, r.headers_file, wrk_cpus)
    for rep in range(reps):
        log(f"{title}: repetition {rep + 1}/{reps}")
        for r in live:
            c0, k0 = r.envoy.cpu_seconds(), cores()
            res = wrk(r.envoy.port, r.path, "hot.lua", duration, conns, threads, r.headers_file, wrk_cpus)
            c1, k1 = r.envoy.cpu_seconds(), cores()
            res["rps"] = res["requests"] / max(res["duration_us"] / 1e6, 1e-9)
            res["cpu_us"] = (c1 - c0) * 1e6 / max(res["requests"], 1)
            res["errors"] = res["status"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
            res["busy"] = {c: round((k1[c][0] - k0[c][0]) / max(k1[c][1] - k0[c][1], 1), 3) for c in k1}
            res["rep"] = rep
            r.samples.append(res)
            bad = wrk_problem(res)
            if bad and not r.invalid:
                r.invalid = f"INVALID (repetition {rep + 1}: {bad})"
    for r in live:
        r.rss = r.envoy.rss_bytes()
        r.envoy.stop()
    return rows


def summarize(rows, base_name="no filters"):
    """Median per row over repetitions; ratio per repetition to the base row of the same
    repetition (then the median), so slow drift of the machine cancels out."""
    by = {r.name: r for r in rows}
    for r in rows:
        if not r.samples:
            continue
        base = by.get(r.base or base_name)
        rps = [s["rps"] for s in r.samples]
        r.rps = statistics.median(rps)
        r.spread = (max(rps) - min(rps)) / r.rps if r.rps else 0
        r.cpu = statistics.median(s["cpu_us"] for s in r.samples)
        r.p50 = statistics.median(s["p50_us"] for s in r.samples) / 1000
        r.p99 = statistics.median(s["p99_us"] for s in r.samples) / 1000
        r.errors = sum(s["errors"] for s in r.samples)
        r.ratio = r.cpu_ratio = None
        if base is not None and base.samples:
            per = []
            for s in r.samples:
                b = next((x for x in base.samples if x["rep"] == s["rep"]), None)
                if b and b["rps"]:
                    per.append(s["rps"] / b["rps"])
            r.ratio = statistics.median(per) if per else None
            bcpu = statistics.median(s["cpu_us"] for s in base.samples)
            r.cpu_ratio = bcpu / r.cpu if r.cpu else None


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}x"


def mib(b):
    return "—" if b is None else f"{b / 1048576:.0f}"


def table(rows, with_rss=True):
    head = "| row | req/s | ratio to row 1 | Envoy CPU µs/req | CPU ratio | p50 ms | p99 ms | spread | RSS MiB |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if not with_rss:
        head, sep = head.rsplit(" RSS MiB |", 1)[0], sep.rsplit("---:|", 1)[0]
    lines = [head, sep]
    for r in rows:
        if r.problem:
            lines.append(f"| {r.name} | {r.problem} |" + " |" * (7 if with_rss else 6))
            continue
        if not r.samples:
            continue
        err = f" ⚠ {r.errors} errors" if r.errors else ""
        if r.invalid:
            err = f" — **{r.invalid}**, not counted"
        cells = [r.name + err, f"{r.rps:,.0f}", fmt_ratio(r.ratio), f"{r.cpu:.1f}", fmt_ratio(r.cpu_ratio), f"{r.p50:.2f}", f"{r.p99:.2f}", f"{r.spread * 100:.0f}%"]
        if with_rss:
            cells.append(mib(r.rss))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- the bench -------------------------------------------------------------------------------

def make_pii_json(path, size):
    """A JSON array of customer records with personal data, about `size` bytes (seeded)."""
    if os.path.exists(path) and abs(os.path.getsize(path) - size) < 4096:
        return
    rnd = random.Random(size)
    first = ["Jane", "John", "Ana", "Luis", "Mei", "Ravi", "Olga", "Tom", "Sara", "Ali"]
    last = ["Doe", "Smith", "García", "Müller", "Chen", "Patel", "Ivanova", "Brown", "Rossi", "Khan"]
    cards = ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011 1111 1111 1117"]
    ibans = ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606"]
    out, n = [], 2
    while n < size - 600:
        fn, ln = rnd.choice(first), rnd.choice(last)
        rec = {"id": f"cus_{rnd.randrange(10**9):09d}", "name": f"{fn} {ln}",
               "email": f"{fn.lower()}.{ln.lower().replace('í', 'i').replace('ü', 'u')}{rnd.randrange(100)}@example.com",
               "phone": f"+1 415 555 {rnd.randrange(10000):04d}", "card_number": rnd.choice(cards),
               "ssn": f"{rnd.randrange(100, 665):03d}-{rnd.randrange(1, 99):02d}-{rnd.randrange(1, 9999):04d}",
               "iban": rnd.choice(ibans), "ip": f"203.0.{rnd.randrange(256)}.{rnd.randrange(256)}",
               "order": {"id": f"ord_{rnd.randrange(10**8)}", "total": f"{rnd.randrange(100000) / 100:.2f}",
                         "created_at": "2026-11-25T07:00:00Z", "uuid": "3f2b8c1e-9a4d-4e6b-8f00-1c2d3e4f5a6b"},
               "note": f"Customer called from {rnd.randrange(2, 9)}15-555-{rnd.randrange(1000, 9999)} about order {rnd.randrange(10**6)}, version 2.3.{rnd.randrange(9)}"}
        s = json.dumps(rec, ensure_ascii=False)
        out.append(s)
        n += len(s.encode()) + 1
    with open(path, "w") as f:
        f.write("[" + ",".join(out) + "]")


def sign_request(secret, host, path):
    """RFC 9421 signature over @method and @target-uri, made by the PyPI package
    http-message-signatures (an independent implementation)."""
    import base64
    from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms
    from http_message_signatures.structures import CaseInsensitiveDict

    class Req:
        def __init__(self):
            self.method, self.url, self.headers = "GET", f"http://{host}{path}", CaseInsensitiveDict({})

    key = base64.b64decode(secret)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256,
                               key_resolver=MappingKeyResolver(public_keys={"partner-a": key}, private_keys={"partner-a": key}))
    req = Req()
    signer.sign(req, key_id="partner-a", covered_component_ids=("@method", "@target-uri"), label="sig1", include_alg=True)
    return {"signature-input": req.headers["Signature-Input"], "signature": req.headers["Signature"]}


def module_sizes():
    out = []
    for name in sorted(os.listdir(E.DIST)):
        if name.endswith(".wasm"):
            p = os.path.join(E.DIST, name)
            out.append((f"dist/{name}", os.path.getsize(p), E.module_problem(p)))
    if os.path.exists(E.FLOOR):
        out.append(("floor.wasm (bench only)", os.path.getsize(E.FLOOR), E.module_problem(E.FLOOR)))
    return out


def main():
    os.makedirs(os.path.join(STATE, "run"), exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    version = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1].strip()
    log(f"mode {'quick' if QUICK else 'full'}; settings {S}; sections {SECTIONS}")

    ks = T.keys(STATE)
    now = int(time.time())
    hot_token = T.mint(ks["RS256"], "bench-hot", now)
    jwks_rs = T.jwks(ks, ["RS256"])
    identity = {"source": "jwt", "provider": "bench", "subject": "bench-hot", "claims": T.claims("bench-hot", now)}
    hmac_secret = __import__("base64").b64encode(__import__("hashlib").sha256(b"bench hmac key").digest()).decode()
    host = "api.example.com"
    base_headers = {"Host": host, "authorization": f"Bearer {hot_token}"}
    base_headers.update(sign_request(hmac_secret, host, "/orders"))

    bodies = {}
    if "pii" in SECTIONS:
        for label, size in (("1m", 1 << 20), ("10m", 10 << 20)):
            p = os.path.join(STATE, f"pii-{label}.json")
            make_pii_json(p, size)
            bodies[f"/pii/{label}"] = p

    report = {"started": started.isoformat(), "mode": "quick" if QUICK else "full", "settings": S, "envoy": version,
              "cpus": NCPU, "loadavg_at_start": load0}
    sections_md = []

    # The upstream for the pinned scenarios: a separate Envoy answering with direct_response,
    # on the wrk core, so the core under test runs only the proxy.
    up = Envoy("upstream-hot", lambda p, a: E.upstream(p, a, bodies), 1, "1" if NCPU > 1 else None)
    if not up.wait_ready():
        sys.exit("upstream Envoy did not start: " + up.log_tail())
    envoy_cpu, wrk_cpu = ("0", "1") if NCPU > 1 else (None, None)
    fjwt = lambda: E.floor(["jwt"], identity, label="floor_jwt")  # noqa: E731

    # ---- hot path, main table ----------------------------------------------------------------
    main_rows = []
    if "hot" in SECTIONS:
        H = base_headers
        main_rows = [
            Row("no filters", [], H),
            Row("native chain (no jwt cache)", [E.native_header_mutation(), E.native_local_ratelimit(), E.native_jwt_authn(jwks_rs), E.native_rbac()], H, check=check_hardened),
            Row("native chain + jwt_cache_config", [E.native_header_mutation(), E.native_local_ratelimit(), E.native_jwt_authn(jwks_rs, 32768), E.native_rbac()], H, check=check_hardened),
            Row("native jwt_authn alone (no cache)", [E.native_jwt_authn(jwks_rs)], H),
            Row("native jwt_authn alone + cache", [E.native_jwt_authn(jwks_rs, 32768)], H),
            Row("no-op wasm filter", [E.floor([])], H),
            Row("4 no-op wasm filters", [E.floor([], label=f"noop{i}") for i in range(4)], H),
            Row("floor: headers", [E.floor(["headers"])], H, check=check_hardened),
            Row("floor: headers, one call per header", [E.floor(["headers_each"])], H, check=check_hardened),
            Row("floor: rate limit", [E.floor(["rate_limit"])], H),
            Row("floor: jwt", [fjwt()], H),
            Row("floor: jwt + floor: rbac", [fjwt(), E.floor(["rbac"])], H),
            Row("floor chain (4 filters)", [E.floor(["headers"]), E.floor(["rate_limit"]), fjwt(), E.floor(["rbac"])], H, check=check_hardened),
            Row("floor: 4 jobs in 1 filter", [E.floor(["headers", "rate_limit", "jwt", "rbac"], identity, label="floor_all")], H, check=check_hardened),
            Row("header_hardening", [E.Wasm("header_hardening", E.HEADER_HARDENING)], H, check=check_hardened),
            Row("rate_limit", [E.Wasm("rate_limit", E.RATE_LIMIT)], H),
            Row("jwt_verify", [E.jwt_verify(jwks_rs)], H),
            Row("floor: jwt + rbac", [fjwt(), E.rbac()], H),
            Row("hmac_signing", [E.hmac_signing(hmac_secret)], H),
            Row("pii_masking", [E.pii()], H, check=check_pii),
            Row("our chain (4 filters)", [E.Wasm("header_hardening", E.HEADER_HARDENING), E.Wasm("rate_limit", E.RATE_LIMIT), E.jwt_verify(jwks_rs), E.rbac()], H, check=check_hardened),
            Row("edge_chain (4 jobs, one filter)", [E.edge_chain(jwks_rs)], H, check=check_hardened),
            Row("our chain (6 filters)", [E.Wasm("header_hardening", E.HEADER_HARDENING), E.Wasm("rate_limit", E.RATE_LIMIT), E.jwt_verify(jwks_rs),
                                          E.hmac_signing(hmac_secret), E.rbac(), E.pii()], H, check=check_masked),
        ]
        measure_group("hot", main_rows, up.port, S["BENCH_DURATION"], S["BENCH_REPS"], S["BENCH_WARMUP"], S["BENCH_CONNECTIONS"], 1, envoy_cpu, wrk_cpu)
        summarize(main_rows)
        base = main_rows[0]
        busy = ""
        if base.samples:
            b = base.samples[-1]["busy"]
            busy = f"During row 1, core 0 (Envoy) was {b.get('cpu0', 0) * 100:.0f}% busy and core 1 (wrk + upstream) {b.get('cpu1', 0) * 100:.0f}%."
        print("\n## Hot path\n" + table(main_rows) + "\n" + busy)
        sections_md.append(("hot", main_rows, busy))

    # ---- extra measurements (hot path set-up) -----------------------------------------------
    jwt_rows, rbac_rows, pii_rows, opt_rows = [], [], [], []
    if "jwt" in SECTIONS:
        jwt_rows = [Row("no filters", [], base_headers)]
        for alg in T.ALGS:
            tok = T.mint(ks[alg], "bench-hot", now)
            h = dict(base_headers, authorization=f"Bearer {tok}")
            jw = T.jwks(ks, [alg])
            jwt_rows.append(Row(f"native jwt_authn, {alg}, no cache", [E.native_jwt_authn(jw)], h))
            jwt_rows.append(Row(f"jwt_verify, {alg}, cache off", [E.jwt_verify(jw, cache=False)], h))
        measure_group("jwt", jwt_rows, up.port, S["BENCH_EXTRA_DURATION"], S["BENCH_EXTRA_REPS"], 1, S["BENCH_CONNECTIONS"], 1, envoy_cpu, wrk_cpu)
        summarize(jwt_rows)
        print("\n## JWT verification, cache off\n" + table(jwt_rows, False))
    if "rbac" in SECTIONS:
        rbac_rows = [Row("no filters", [], base_headers), Row("floor: jwt", [fjwt()], base_headers),
                     Row("floor: jwt + rbac, 10 rules", [fjwt(), E.rbac()], base_headers),
                     Row("floor: jwt + rbac, 1,000 rules, distinct first segments", [fjwt(), E.rbac(E.rbac_rules(1000, False))], base_headers),
                     Row("floor: jwt + rbac, 1,000 rules, all under /orders/", [fjwt(), E.rbac(E.rbac_rules(1000, True))], base_headers)]
        measure_group("rbac", rbac_rows, up.port, S["BENCH_EXTRA_DURATION"], S["BENCH_EXTRA_REPS"], 1, S["BENCH_CONNECTIONS"], 1, envoy_cpu, wrk_cpu)
        summarize(rbac_rows)
        print("\n## RBAC rules\n" + table(rbac_rows, False))
    if "pii" in SECTIONS:
        for label in ("1m", "10m"):
            p = f"/pii/{label}"
            pii_rows.append(Row(f"no filters, {label[:-1]} MiB JSON", [], base_headers, path=p))
            pii_rows.append(Row(f"pii_masking, {label[:-1]} MiB JSON", [E.pii(16 << 20)], base_headers, path=p, check=check_pii_large, base=f"no filters, {label[:-1]} MiB JSON"))
        measure_group("pii", pii_rows, up.port, S["BENCH_PII_DURATION"], 1, 1, 2, 1, envoy_cpu, wrk_cpu, direct=False)
        summarize(pii_rows)
        for r in pii_rows:
            if r.samples:
                size = os.path.getsize(bodies[r.path])
                r.extra["size"] = size
                r.extra["mbs"] = size * r.rps / 1e6
        print("\n## PII masking throughput\n" + table(pii_rows, False))
    if "opt" in SECTIONS:
        opt_rows = [Row("no filters", [], base_headers)]
        report["opt_sizes"] = {}
        for lvl in OPT_LEVELS:
            d = os.path.join(ROOT, "target/bench-opt", lvl, "wasm32-wasip1/release")
            for crate in OPT_CRATES:
                p = os.path.join(d, crate + ".wasm")
                if os.path.exists(p):
                    report["opt_sizes"][f"{crate}@{lvl}"] = os.path.getsize(p)
            opt_rows.append(Row(f"header_hardening, opt-level {lvl}", [E.Wasm("header_hardening", E.HEADER_HARDENING, path=os.path.join(d, "header_hardening.wasm"))], base_headers, check=check_hardened))
            if "jwt_verify" in OPT_CRATES:
                opt_rows.append(Row(f"jwt_verify RS256 cache off, opt-level {lvl}", [E.Wasm("jwt_verify", E.jwt_verify(jwks_rs, cache=False).config, path=os.path.join(d, "jwt_verify.wasm"))], base_headers))
        measure_group("opt", opt_rows, up.port, S["BENCH_EXTRA_DURATION"], S["BENCH_EXTRA_REPS"], 1, S["BENCH_CONNECTIONS"], 1, envoy_cpu, wrk_cpu)
        summarize(opt_rows)
        print("\n## opt-level\n" + table(opt_rows, False))
    up.stop()

    # ---- many users ---------------------------------------------------------------------------
    many = []
    if "many" in SECTIONS:
        many = many_users(ks, jwks_rs, base_headers, bodies, identity)

    # ---- rate-limit memory ----------------------------------------------------------------------
    rl = None
    if "ratelimit" in SECTIONS:
        rl = ratelimit_memory(base_headers)

    sizes = module_sizes()
    report["sizes"] = sizes
    elapsed = time.time() - T0
    report["elapsed_s"] = round(elapsed)
    report["rows"] = {g: [row_dict(r) for r in rows] for g, rows in
                      (("hot", main_rows), ("jwt", jwt_rows), ("rbac", rbac_rows), ("pii", pii_rows), ("opt", opt_rows))}
    report["many"] = many
    report["ratelimit"] = rl
    with open(os.path.join(STATE, f"results-{started.strftime('%Y%m%dT%H%M%S')}.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    md = render(report, main_rows, jwt_rows, rbac_rows, pii_rows, opt_rows, many, rl, sizes, started, load0, version, elapsed)
    goals = goals_text(main_rows, many)
    print("\n## Goals\n" + goals)
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write(md)
    log(f"wrote {os.path.relpath(DOC, ROOT)}; total {elapsed:.0f} s")


def check_pii_large(status, headers, body):
    bad = check_ok(status, headers, body)
    if bad:
        return bad
    if b"4111 1111 1111 1111" in body:
        return "response not masked"
    try:
        json.loads(body)
    except ValueError:
        return "masked response is not JSON"
    return None


def row_dict(r):
    d = {"name": r.name, "problem": r.problem, "samples": r.samples, "rss": r.rss, "extra": r.extra}
    for k in ("rps", "ratio", "cpu", "cpu_ratio", "p50", "p99", "spread", "errors"):
        d[k] = getattr(r, k, None)
    return d


def counter(stats, suffix):
    return sum(v for k, v in stats.items() if k.endswith(suffix))


def many_users(ks, jwks_rs, base_headers, bodies, identity):
    n = S["BENCH_MANY_TOKENS"]
    log(f"many users: token pool of {n}")
    pool = T.pool(STATE, n)
    conc = S["BENCH_MANY_CONCURRENCY"]
    up = Envoy("upstream-many", lambda p, a: E.upstream(p, a, bodies), max(1, NCPU // 2))
    if not up.wait_ready():
        return [{"name": "upstream", "problem": up.log_tail()}]
    # Both caches hold at least twice the pool: jwt_verify sets x 2 ways, jwt_authn the same per worker.
    sets = min(65536, 1 << (max(n, 4096) - 1).bit_length())
    rows = [
        ("no filters", []),
        ("native chain (no jwt cache)", [E.native_header_mutation(), E.native_local_ratelimit(), E.native_jwt_authn(jwks_rs), E.native_rbac()]),
        (f"native chain + jwt_cache_config ({2 * sets} per worker)", [E.native_header_mutation(), E.native_local_ratelimit(), E.native_jwt_authn(jwks_rs, 2 * sets), E.native_rbac()]),
        ("floor chain (4 filters)", [E.floor(["headers"]), E.floor(["rate_limit"]), E.floor(["jwt"], identity, label="floor_jwt"), E.floor(["rbac"])]),
        (f"our chain (4 filters), cache {sets}x2 shared", [E.Wasm("header_hardening", E.HEADER_HARDENING), E.Wasm("rate_limit", E.RATE_LIMIT), E.jwt_verify(jwks_rs, sets=sets, ways=2), E.rbac()]),
        (f"edge_chain (4 jobs, one filter), cache {sets}x2 shared", [E.edge_chain(jwks_rs, sets=sets, ways=2)]),
    ]
    hfile = write_headers("many", {k: v for k, v in base_headers.items() if k != "authorization"})
    threads = max(1, min(NCPU, 4))
    out = []
    for name, filters in rows:
        res = {"name": name}
        problem = next((f"{E.module_problem(f.path)}: {os.path.relpath(f.path, ROOT)}" for f in filters if isinstance(f, E.Wasm) and E.module_problem(f.path)), None)
        if problem:
            res["problem"] = problem
            out.append(res)
            continue
        log(f"many users: {name}")
        env = Envoy(f"many-{name}", lambda p, a, f=filters: E.proxy(p, a, up.port, f), conc)
        try:
            if not env.wait_ready():
                res["problem"] = "Envoy refused the configuration: " + env.log_tail()
                out.append(res)
                continue
            status, _, body = send(env.port, "/orders", base_headers)
            if status != 200:
                res["problem"] = f"functional check failed: HTTP {status} {body[:200]!r}"
                out.append(res)
                continue
            wenv = {"BENCH_TOKENS": pool}
            for phase, secs in (("cold", S["BENCH_MANY_COLD"]), ("warmup", S["BENCH_MANY_WARMUP"]), ("warm", S["BENCH_MANY_WARM"])):
                if secs <= 0:
                    continue
                s0, c0 = env.stats(), env.cpu_seconds()
                r = wrk(env.port, "/orders", "many.lua", secs, S["BENCH_MANY_CONNECTIONS"], threads, hfile, None, wenv)
                time.sleep(0.6)  # jwt_verify adds its counters on a 500 ms tick
                s1, c1 = env.stats(), env.cpu_seconds()
                r["rps"] = r["requests"] / max(r["duration_us"] / 1e6, 1e-9)
                r["cpu_us"] = (c1 - c0) * 1e6 / max(r["requests"], 1)
                r["errors"] = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
                bad = wrk_problem(r)
                if bad and not res.get("invalid"):
                    res["invalid"] = f"INVALID ({phase}: {bad})"
                hits = counter(s1, "jwt_verify.cache_hit") - counter(s0, "jwt_verify.cache_hit")
                miss = counter(s1, "jwt_verify.cache_miss") - counter(s0, "jwt_verify.cache_miss")
                nh = counter(s1, "jwt_authn.jwt_cache_hit") - counter(s0, "jwt_authn.jwt_cache_hit")
                nm = counter(s1, "jwt_authn.jwt_cache_miss") - counter(s0, "jwt_authn.jwt_cache_miss")
                if hits + miss:
                    r["hit_rate"] = hits / (hits + miss)
                elif nh + nm and "jwt_cache_config" in name:
                    r["hit_rate"] = nh / (nh + nm)
                res[phase] = r
            res["rss"] = env.rss_bytes()
        finally:
            env.stop()
        out.append(res)
    up.stop()
    base = next((r for r in out if r["name"] == "no filters" and "cold" in r), None)
    for r in out:
        for phase in ("cold", "warm"):
            if base and phase in r and phase in base and base[phase]["rps"]:
                r[phase]["ratio"] = r[phase]["rps"] / base[phase]["rps"]
    print("\n## Many users\n" + many_table(out))
    return out


def many_table(out):
    lines = ["| row | cold req/s | cold ratio | cold p99 ms | cold hit rate | warm req/s | warm ratio | warm p99 ms | warm hit rate | RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in out:
        if r.get("problem"):
            lines.append(f"| {r['name']} | {r['problem']} |" + " |" * 8)
            continue
        cells = [r["name"]]
        for phase in ("cold", "warm"):
            p = r.get(phase)
            if not p:
                cells += ["—"] * 4
                continue
            err = f" ⚠ {p['errors']} errors" if p.get("errors") else ""
            if r.get("invalid"):
                err = f" — **{r['invalid']}**"
            hr = f"{p['hit_rate'] * 100:.1f}%" if "hit_rate" in p else "—"
            cells += [f"{p['rps']:,.0f}{err}", fmt_ratio(p.get("ratio")), f"{p['p99_us'] / 1000:.2f}", hr]
        cells.append(mib(r.get("rss")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratelimit_memory(base_headers):
    keys = S["BENCH_RL_KEYS"]
    path = E.module_path("rate_limit")
    if E.module_problem(path):
        return {"problem": E.module_problem(path)}
    log(f"rate-limit memory: {keys} distinct client addresses")
    cfg = dict(E.RATE_LIMIT, trusted_proxy_hops=1)
    # The Envoy answers itself (direct_response after the filter): no upstream hop, so the
    # million requests cost half the CPU; the filter sees every request the same way.
    env = Envoy("ratelimit-memory", lambda p, a: E.proxy(p, a, 9, [E.Wasm("rate_limit", cfg)], direct=True), max(2, NCPU))
    out = {"keys": keys}
    try:
        if not env.wait_ready():
            return {"problem": "Envoy refused the configuration: " + env.log_tail()}
        h = {"Host": "api.example.com"}
        status, _, _ = send(env.port, "/orders", dict(h, **{"x-forwarded-for": "192.0.2.1"}))
        if status != 200:
            return {"problem": f"functional check failed: HTTP {status}"}
        time.sleep(1)
        out["rss_start"] = env.rss_bytes()
        hfile = write_headers("rl", h)
        threads = max(1, min(NCPU, 4))
        stages = [k for k in (20000, 100000, 300000) if k < keys] + [keys]
        done = 0
        out["stages"] = []
        def served():
            st = env.stats()
            return st.get("http.bench.downstream_rq_completed", 0)

        for upto in stages:
            t = time.time()
            target = served() + (upto - done)
            r = wrk(env.port, "/orders", "xff.lua", 3600, 32, threads, hfile, None,
                    {"BENCH_KEYS": str(upto - done), "BENCH_KEY_BASE": str(done)},
                    stop_when=lambda target=target: served() >= target)
            time.sleep(1)
            out["stages"].append({"keys": upto, "seconds": round(time.time() - t, 1), "rss": env.rss_bytes(), "requests": r["requests"], "errors": r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]})
            done = upto
        st = env.stats()
        out["allowed"] = counter(st, "edgesec.rate_limit.allowed")
        out["limited"] = counter(st, "edgesec.rate_limit.limited")
    finally:
        env.stop()
    print(f"\n## Rate-limit memory\n{json.dumps(out)}")
    return out


# ---- report ----------------------------------------------------------------------------------

def find(rows, name):
    """A measured, valid row (None if missing, refused or invalid)."""
    return next((r for r in rows if r.name == name and r.samples and not r.invalid), None)


def goal_row(label, a, b, target):
    """One line of the goals table: throughput of row a over row b (the median over
    repetitions of their ratios to row 1 in the same repetition), the goal, and the same
    comparison by Envoy CPU per request. target None: reported, no goal."""
    if a is None or b is None:
        return f"| {label} | not measured (a row is missing, refused or invalid) | {'—' if target is None else f'≥ {target:.2f}x'} | — | — |"
    x = (a.ratio / b.ratio) if (a.ratio and b.ratio) else a.rps / b.rps
    cpu = b.cpu / a.cpu if a.cpu else 0
    if target is None:
        verdict = "reported"
    elif x >= target:
        verdict = "**met**"
    else:
        verdict = f"**missed** by {(target - x) / target * 100:.0f}%"
    return f"| {label} | {x:.2f}x | {'—' if target is None else f'≥ {target:.2f}x'} | {verdict} | {cpu:.2f}x |"


GOALS_HEAD = "| comparison | throughput ratio | goal | verdict | CPU/request ratio |\n|---|---:|---:|---|---:|"


def goals_text(rows, many):
    g = lambda n: find(rows, n)  # noqa: E731
    ours, nat, natc, fl = g("our chain (4 filters)"), g("native chain (no jwt cache)"), g("native chain + jwt_cache_config"), g("floor chain (4 filters)")
    edge = g("edge_chain (4 jobs, one filter)")
    lines = [
        GOALS_HEAD,
        goal_row("hot: our 4-filter chain / native chain without jwt cache", ours, nat, 1.0),
        goal_row("hot: our 4-filter chain / floor chain", ours, fl, 0.9),
        goal_row("hot: our 4-filter chain / native chain with jwt cache", ours, natc, None),
        goal_row("hot: header_hardening / floor: headers", g("header_hardening"), g("floor: headers"), 0.9),
        goal_row("hot: rate_limit / floor: rate limit", g("rate_limit"), g("floor: rate limit"), 0.9),
        goal_row("hot: jwt_verify / floor: jwt", g("jwt_verify"), g("floor: jwt"), 0.9),
        goal_row("hot: rbac / floor: rbac (both after floor: jwt)", g("floor: jwt + rbac"), g("floor: jwt + floor: rbac"), 0.9),
        goal_row("hot: jwt_verify / native jwt_authn alone without cache (issue 4)", g("jwt_verify"), g("native jwt_authn alone (no cache)"), 1.3),
        goal_row("hot: edge_chain / our 4-filter chain (ship edge_chain if ≥ 1.15x)", edge, ours, 1.15),
        goal_row("hot: edge_chain / native chain without jwt cache", edge, nat, 1.0),
        goal_row("hot: edge_chain / floor: 4 jobs in 1 filter", edge, g("floor: 4 jobs in 1 filter"), 0.9),
    ]
    valid = [r for r in many if "cold" in r and not r.get("invalid") and not r.get("problem")]
    mrow = lambda prefix: next((r for r in valid if r["name"].startswith(prefix)), None)  # noqa: E731
    mo, mn, mc, me, mf = (mrow("our chain"), mrow("native chain (no jwt cache)"), mrow("native chain + jwt_cache_config"),
                          mrow("edge_chain"), mrow("floor chain"))
    for phase in ("cold", "warm"):
        for label, a, b, target in (("our 4-filter chain / native chain without jwt cache", mo, mn, 1.0),
                                    ("our 4-filter chain / native chain with jwt cache", mo, mc, None),
                                    ("our 4-filter chain / floor chain", mo, mf, None),
                                    ("edge_chain / native chain without jwt cache", me, mn, 1.0),
                                    ("edge_chain / our 4-filter chain (ship if ≥ 1.15x)", me, mo, 1.15)):
            tgt = "—" if target is None else f"≥ {target:.2f}x"
            if not (a and b and phase in a and phase in b and b[phase]["rps"]):
                lines.append(f"| many users, {phase}: {label} | not measured (a row is missing, refused or invalid) | {tgt} | — | — |")
                continue
            x = a[phase]["rps"] / b[phase]["rps"]
            cpu = b[phase]["cpu_us"] / a[phase]["cpu_us"] if a[phase].get("cpu_us") else 0
            verdict = "reported" if target is None else ("**met**" if x >= target else f"**missed** by {(target - x) / target * 100:.0f}%")
            lines.append(f"| many users, {phase}: {label} | {x:.2f}x | {tgt} | {verdict} | {cpu:.2f}x |")
    return "\n".join(lines)


ROWS_TEXT = """## Rows (hot path table)

| row | what runs in the Envoy under test (then the router) | issue 10 row |
|---|---|---|
| no filters | nothing: the ceiling, 1.00x | 1 |
| native chain (no jwt cache) | `header_mutation` (9 security headers set, 5 leaky headers removed) → `local_ratelimit` (a bucket per client address) → `jwt_authn` (RS256, local JWKS) → `rbac` (the 10-rule matrix on the JWT's `role` claim) | 2 |
| native chain + jwt_cache_config | the same with `jwt_cache_config` (32,768 entries) | 2 |
| native jwt_authn alone (no cache) / + cache | `jwt_authn` alone, for the JWT goal of issue 4 and to split the native chain's cost | 2 (detail) |
| no-op wasm filter / 4 no-op wasm filters | the floor module with no job: what V8 charges a filter that does nothing (VM entries for every callback) | 3 |
| floor: headers | the floor module's `headers` job: read the response map once, write it back once with the 9 headers (2 host calls) | 3 |
| floor: headers, one call per header | the same with one `replace_header` call per header (9 host calls): the price of a host call | 3 (detail) |
| floor: rate limit | read `source.address`, one compare-and-swap on one shared-data key (3 host calls) | 3 |
| floor: jwt | read `authorization`, SHA-256 of the token, one shared-data read, record the identity, remove the header (4 host calls) | 3 |
| floor: jwt + floor: rbac | `floor: jwt`, then a second floor filter reading the identity and `:path` and matching one template (2 host calls) | 3 |
| floor chain (4 filters) | floor headers → floor rate limit → floor jwt → floor rbac, four filters | 3 |
| floor: 4 jobs in 1 filter | the four jobs in one filter (identity in memory): the floor of a combined module | 3 |
| header_hardening, rate_limit, jwt_verify | each of our filters alone with the chain's configuration | 4 |
| floor: jwt + rbac | `floor: jwt` then our `rbac` (rbac needs an identity; compare with `floor: jwt + floor: rbac`) | 4 |
| hmac_signing | our `hmac_signing` alone, signature required on `/orders` (the request is signed) | 4 |
| pii_masking | our `pii_masking` alone on the 240-byte JSON answer | 4 |
| our chain (4 filters) | header_hardening → rate_limit → jwt_verify → rbac, four separate modules (four VMs) | 4 |
| edge_chain (4 jobs, one filter) | `dist/edge_chain.wasm`: the same four members with the same configurations inside one filter (one VM, identity in memory) | 4 (combined module) |
| our chain (6 filters) | the 4-filter chain plus `hmac_signing` (after jwt_verify) and `pii_masking` (last) | 4 |

Every row is checked before it is measured (one request: status 200, the security headers where the row sets them, a masked JSON body where pii_masking runs), and every response during the measurement must be 2xx: a row with a single response of status 400 or above (wrk's `errors.status`) is printed as **INVALID** and never used in a ratio or a goal. A row whose module is missing or that Envoy refuses is printed with the reason.
"""


def render(report, main_rows, jwt_rows, rbac_rows, pii_rows, opt_rows, many, rl, sizes, started, load0, version, elapsed):
    quick = report["mode"] == "quick"
    date = started.strftime("%Y-%m-%d %H:%M UTC")
    L = []
    L.append("# Performance\n")
    L.append("Generated by `scripts/bench` (do not edit by hand; re-run it). Issue 10's side-by-side "
             "benchmark of our filters against Envoy's native ones, on the same requests.\n")
    if quick:
        L.append(f"> **QUICK / NOISY RUN ({date})**: `scripts/bench --quick` on a machine shared with other jobs "
                 f"(load average {load0[0]:.1f} at start). These numbers prove the benchmark runs end to end; they are "
                 "not results. Run `scripts/bench` on a quiet machine for the real table.\n")
    else:
        L.append(f"Run: {date}, full mode, load average {load0[0]:.1f} at start.\n")
    L.append(f"Envoy `{version}`, {NCPU} CPUs (`{cpu_model()}`), total run time {elapsed / 60:.1f} min. "
             f"Raw samples: `target/bench/results-*.json`.\n")
    L.append("## Method\n")
    L.append(
        "* **Requests.** Every row gets the same request: `GET /orders`, `Host: api.example.com`, "
        "`Authorization: Bearer <RS256 JWT>` (PyJWT, 2048-bit key, claims `iss`, `aud`, `sub`, `role: viewer`, `iat`, `exp`), "
        "and RFC 9421 `Signature-Input`/`Signature` headers (HMAC-SHA256 over `@method` and `@target-uri`, made by the "
        "PyPI package `http-message-signatures`; only the 6-filter chain checks them). The upstream answers a 240-byte JSON "
        "body containing an e-mail, a phone and a card number.\n"
        + ("* **Upstream.** Hot path, JWT, RBAC and opt-level groups: the Envoy under test answers itself "
           "(`direct_response` in the route after every filter, the same JSON body and `content-type` as the upstream; "
           "the filters run exactly as with an upstream, the router being the last decoder filter), so wrk alone runs on "
           "core 1 and row 1 is not capped by a second proxy on the load generator's core (`BENCH_DIRECT=0` forwards to "
           "the upstream instead). Many users and PII: a second Envoy process answering from its own configuration "
           "(`direct_response`, no filters), not the Python demo.\n" if DIRECT else
           "* **Upstream.** A second Envoy process answering from its own configuration (`direct_response`, no filters), "
           "not the Python demo, pinned with wrk to core 1 (`BENCH_DIRECT=0`). On a 2-core machine core 1 is near saturation "
           "at row 1's rate, so throughput ratios of light rows are compressed towards 1; read the CPU µs/req column.\n")
        + f"* **Hot path.** The Envoy under test runs with `--concurrency 1` pinned to core 0 (`taskset -c 0`); wrk "
        f"(1 thread, {S['BENCH_CONNECTIONS']} keep-alive connections, one token re-used) and the upstream are pinned to core 1. "
        f"Every row's Envoy is started at once (idle ones cost nothing), checked with one request (status 200, security "
        f"headers where a row sets them, masked JSON for the 6-filter chain; a failing row is reported, never measured), "
        f"warmed up for {S['BENCH_WARMUP']} s, then measured {S['BENCH_REPS']} x {S['BENCH_DURATION']} s round-robin over the rows. "
        "A row's ratio is the median over repetitions of its req/s divided by row 1's req/s in the same repetition; "
        "*spread* is (max - min) / median of its req/s. *Envoy CPU µs/req* is the Envoy process's user + system time "
        "over the run divided by the requests served (steadier than req/s on a shared machine); *CPU ratio* is row 1's "
        "CPU per request divided by the row's. RSS is Envoy's `VmRSS` from `/proc` after its last repetition.\n"
        f"* **Many users.** Envoy `--concurrency {S['BENCH_MANY_CONCURRENCY']}` (not pinned), wrk with {S['BENCH_MANY_CONNECTIONS']} "
        f"connections and a Lua script (`bench/wrk/many.lua`) giving each request the next of {S['BENCH_MANY_TOKENS']:,} distinct "
        f"valid RS256 tokens. Each row starts a fresh Envoy; *cold* is the first {S['BENCH_MANY_COLD']} s after start "
        f"(every token verified once per cache: warm-up included), then {S['BENCH_MANY_WARMUP']} s more of warm-up, then "
        f"*warm* is {S['BENCH_MANY_WARM']} s. jwt_authn's per-worker cache and our shared cache get the same capacity (at least "
        "twice the pool). Hit rates from jwt_verify's `cache_hit`/`cache_miss` counters and jwt_authn's `jwt_cache_hit`/`jwt_cache_miss` stats.\n"
        "* **Configurations** (`bench/envoy.py`). Native chain: `header_mutation` (the nine security headers, five "
        "leaky headers removed) → `local_ratelimit` (a bucket per client address via a wildcard descriptor, limit far above the load) "
        "→ `jwt_authn` (RS256, local JWKS, `payload_in_metadata`) → `rbac` (the seeds' 10-rule endpoint matrix as ALLOW policies on the "
        "JWT's `role`). Our chain, same order: `header_hardening` (envoy-config's settings) → `rate_limit` (per IP, same high limit) → "
        "`jwt_verify` (same provider, shared cache) → `rbac` (the same 10 rules). The 6-filter chain adds `hmac_signing` (after "
        "jwt_verify; signature required on `/orders`) and `pii_masking` (envoy-config's settings). Every wasm filter has its own "
        "VM, `FAIL_RELOAD` and `allow_on_headers_stop_iteration`.\n"
        "* **Floor module** (`bench/floor`, bench only, never shipped): the least host work each job needs. headers: read the "
        "response header map and write it back with the security headers (2 host calls; *one call per header*: 9 replace calls); "
        "rate limit: read `source.address`, one compare-and-swap on one shared-data key (3 calls); JWT: read `authorization`, "
        "SHA-256 of the token, one shared-data read returning the cached identity, record the identity property, remove the "
        "header (4 calls); RBAC: read the identity property, decode it, read `:path`, normalize and match one template, check "
        "the role (2 calls). RBAC needs an identity, so both `rbac` and the RBAC floor are measured after `floor: jwt`.\n")

    L.append(ROWS_TEXT)

    def section(title, body):
        L.append(f"## {title}\n")
        L.append(body + "\n")

    if main_rows:
        section("Hot path (one worker, one token)", table(main_rows) + "\n")
        base = main_rows[0]
        if base.samples:
            b = base.samples[-1]["busy"]
            L.append(f"During row 1 core 0 (Envoy) was {b.get('cpu0', 0) * 100:.0f}% busy and core 1 (wrk + upstream) "
                     f"{b.get('cpu1', 0) * 100:.0f}%: row 1 is bound by the proxy core only if core 0 is near 100%.\n")
    L.append("## Goals (issue 10, issue 4)\n")
    L.append("Throughput ratio: the first row's req/s over the second's (hot path: the median over repetitions of "
             "their ratios to row 1 in the same repetition). CPU/request ratio: the same comparison by the Envoy "
             "process's CPU time per request (second row's over the first's; above 1 means the first row costs less), "
             "the steadier measure on a shared machine. " + ("**Smoke run: the verdicts below are not results.**" if quick else "") + "\n")
    L.append(goals_text(main_rows, many) + "\n")
    if many:
        section(f"Many users ({S['BENCH_MANY_TOKENS']:,} tokens, {S['BENCH_MANY_CONCURRENCY']} workers)",
                many_table(many) + "\n\nRatios are to `no filters` in the same phase. Each row runs once, one after "
                "the other (not interleaved like the hot path), so machine noise weighs more here. The floor chain never "
                "verifies a signature (its JWT job stores the identity on a miss), so it is the floor of the warm phase only.")
    if jwt_rows:
        lines = [table(jwt_rows, False), "", "| algorithm | native jwt_authn µs/req | jwt_verify µs/req | jwt_verify / native CPU |", "|---|---:|---:|---:|"]
        base = find(jwt_rows, "no filters")
        for alg in T.ALGS:
            n, o = find(jwt_rows, f"native jwt_authn, {alg}, no cache"), find(jwt_rows, f"jwt_verify, {alg}, cache off")
            if base and n and o:
                lines.append(f"| {alg} | {n.cpu - base.cpu:.0f} | {o.cpu - base.cpu:.0f} | {(o.cpu - base.cpu) / max(n.cpu - base.cpu, 0.1):.1f}x |")
            else:
                lines.append(f"| {alg} | {'missing' if not n else ''} | {'missing' if not o else ''} | — |")
        section("JWT verification cost, cache off (per algorithm)",
                "Every request verifies its signature (jwt_verify `cache.enabled: false`, jwt_authn without `jwt_cache_config`). "
                "µs/req is the filter's Envoy CPU per request above `no filters`.\n\n" + "\n".join(lines))
    if rbac_rows:
        base = find(rbac_rows, "floor: jwt")
        extra = ["", "| rules | rbac CPU µs/req (above floor: jwt) |", "|---|---:|"]
        for r in rbac_rows[2:]:
            if r.samples and base:
                extra.append(f"| {r.name.split('rbac, ', 1)[1]} | {r.cpu - base.cpu:.1f} |")
            else:
                extra.append(f"| {r.name} | {r.problem or 'not measured'} |")
        section("RBAC cost at 10 and 1,000 rules", table(rbac_rows, False) + "\n" + "\n".join(extra) +
                "\n\nThe request (`GET /orders`) matches the last rule. *Distinct first segments*: 990 generated rules `/svc<i>/items/{id}`; "
                "*all under /orders/*: 990 rules `/orders/r<i>/{id}` that share the request's first segment, so rbac's index cannot skip them (worst case).")
    if pii_rows:
        lines = ["| body | through Envoy, no filter MB/s | through pii_masking MB/s | masking alone MB/s | Envoy CPU ms/response (pii) |", "|---|---:|---:|---:|---:|"]
        for label in ("1", "10"):
            b, p = find(pii_rows, f"no filters, {label} MiB JSON"), find(pii_rows, f"pii_masking, {label} MiB JSON")
            if b and p:
                size = p.extra["size"]
                alone = size / max((p.cpu - b.cpu) * 1e-6, 1e-9) / 1e6
                lines.append(f"| {label} MiB JSON ({size:,} bytes) | {b.extra['mbs']:.0f} | {p.extra['mbs']:.1f} | {alone:.1f} | {p.cpu / 1000:.1f} |")
            else:
                miss = next((r.problem for r in pii_rows if r.name.endswith(f"{label} MiB JSON") and r.problem), "not measured")
                lines.append(f"| {label} MiB JSON | — | {miss} | — | — |")
        section("PII masking throughput", "A JSON array of customer records (names, e-mails, phones, cards, SSNs, IBANs, "
                "addresses, order ids, UUIDs, prices; `bench.py make_pii_json`, seeded) served by the upstream; pii_masking "
                "with envoy-config's settings and `max_buffer_bytes` 16 MiB; wrk with 2 connections. *Masking alone* divides "
                "the body size by the Envoy CPU time pii_masking adds per response.\n\n" + "\n".join(lines) + "\n\n" + table(pii_rows, False))
    if rl is not None:
        if rl.get("problem"):
            section("Rate-limit memory", f"missing: {rl['problem']}")
        else:
            lines = ["| distinct clients sent | Envoy RSS MiB | seconds |", "|---:|---:|---:|", f"| 1 | {mib(rl.get('rss_start'))} | |"]
            for s in rl.get("stages", []):
                err = f" ⚠ {s['errors']} errors" if s["errors"] else ""
                lines.append(f"| {s['keys']:,}{err} | {mib(s['rss'])} | {s['seconds']} |")
            section("Rate-limit memory after many distinct keys",
                    f"`rate_limit` alone (its default bucket table: a fixed key space, so memory must level off), Envoy `--concurrency {max(2, NCPU)}` "
                    "answering itself (`direct_response`, no upstream), `trusted_proxy_hops: 1`, one request per distinct "
                    "`x-forwarded-for` address (`bench/wrk/xff.lua`, stopped once Envoy has answered them all). "
                    f"Counted: {rl.get('allowed', 0):,} allowed, {rl.get('limited', 0):,} limited.\n\n" + "\n".join(lines))
    size_lines = ["| module | bytes |", "|---|---:|"] + [f"| `{n}` | {b:,}{' (' + p + ')' if p else ''} |" for n, b, p in sizes]
    section("Module sizes (release profile of the workspace)", "\n".join(size_lines))
    if opt_rows:
        osz = report.get("opt_sizes", {})
        lines = ["| crate | " + " | ".join(f"opt-level {l}" for l in OPT_LEVELS) + " |", "|---|" + "---:|" * len(OPT_LEVELS)]
        for c in OPT_CRATES:
            lines.append(f"| {c} bytes | " + " | ".join(f"{osz[f'{c}@{l}']:,}" if f"{c}@{l}" in osz else "not built" for l in OPT_LEVELS) + " |")
        section("opt-level: size and speed",
                "The same crates built with `CARGO_PROFILE_RELEASE_OPT_LEVEL=<level>` into `target/bench-opt/<level>` (LTO, "
                "codegen-units 1, strip, panic=abort as in the workspace profile), hot path as above.\n\n" + "\n".join(lines) + "\n\n" + table(opt_rows, False))
    analysis = os.path.join(ROOT, "bench/analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as f:
            L.append(f.read().strip() + "\n")
    settings = "\n".join(f"| `{k}` | {S[k]} | {SETTINGS[k][0]} / {SETTINGS[k][1]} | {SETTINGS[k][2]} |" for k in SETTINGS)
    section("Reproduce", "```sh\nscripts/bench            # full run (installs wrk and Envoy if missing, builds), writes this file\n"
            "scripts/bench --quick    # smoke run, a few minutes\n```\n\n"
            "| variable | this run | full / quick default | meaning |\n|---|---:|---:|---|\n" + settings +
            "\n| `BENCH_ONLY` | " + ",".join(SECTIONS) + " | all | sections: hot, many, jwt, rbac, pii, ratelimit, opt |"
            "\n| `BENCH_OPT_CRATES` / `BENCH_OPT_LEVELS` | " + ",".join(OPT_CRATES) + " / " + ",".join(OPT_LEVELS) + " | | opt-level comparison |")
    return "\n".join(L)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
