"""Envoy configurations for scripts/bench: the proxy under test, the upstream, and every
filter the rows use (ours, the floor module, Envoy's native ones). Plain JSON, which Envoy
reads like YAML. Nothing here runs anything."""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(ROOT, "dist")
FLOOR = os.path.join(ROOT, "target/wasm32-wasip1/release/floor.wasm")
BUF = 32 * 1024 * 1024

# The small JSON every row's upstream answers: some personal data, so pii_masking works.
SMALL_JSON = json.dumps({
    "id": "ord_1042", "status": "shipped", "total": "19.99", "currency": "EUR",
    "customer": {"name": "Jane Doe", "email": "jane.doe@example.com", "phone": "+1 415 555 2671"},
    "card_number": "4111 1111 1111 1111", "created_at": "2026-11-25T07:00:00Z",
})

# header_hardening's defaults (OWASP API profile) and removed headers: the native chain's
# header_mutation sets and removes the same.
SECURITY_HEADERS = [
    ("strict-transport-security", "max-age=31536000; includeSubDomains"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("permissions-policy", "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-permitted-cross-domain-policies", "none"),
]
LEAKY_HEADERS = ["server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator"]

# rbac: the seeds' endpoint matrix of envoy-config/envoy.yaml (10 rules). The bench request is
# GET /orders, allowed by "orders:read", which role viewer holds ("*:read").
RBAC_ROLES = {
    "admin": {"permissions": ["*"], "mfa_required": True},
    "trader": {"permissions": ["users:read", "orders:read", "orders:write", "positions:read"]},
    "viewer": {"permissions": ["*:read"]},
}
RBAC_RULES = [
    {"path": "/auth/login", "methods": ["POST"], "public": True},
    {"path": "/auth/register", "methods": ["POST"], "public": True},
    {"path": "/products/**", "methods": ["GET"], "public": True},
    {"path": "/users/me", "methods": ["GET"], "permission": "users:read"},
    {"path": "/users/{id}", "methods": ["GET"], "roles": ["admin"]},
    {"path": "/orders", "methods": ["GET"], "permission": "orders:read"},
    {"path": "/orders", "methods": ["POST"], "permission": "orders:write"},
    {"path": "/webhooks/orders", "methods": ["POST"], "permission": "orders:write"},
    {"path": "/reports/**", "methods": ["GET"], "permission": "reports:read"},
    {"path": "/admin/**", "permission": "admin:manage"},
]

HEADER_HARDENING = {
    "cors": {"allow_origins": ["https://app.example.com"], "allow_methods": ["GET", "POST", "PUT", "DELETE"],
             "allow_headers": ["authorization", "content-type"], "max_age_s": 600},
    "request": {"max_body_bytes": 1048576},
}

# Per-IP limit far above what one machine can send, so it never triggers.
RATE_LIMIT = {
    "table": {"name": "per_ip"},
    "tiers": {"anonymous": {"requests": 1000000, "per": "second", "burst": 1000000},
              "authenticated": {"requests": 1000000, "per": "second", "burst": 1000000}},
    "allowed_response_headers": "none",
}

PII = {
    "detectors": ["email", "phone", "ssn", "credit_card", "iban", "ipv4"],
    "mode": "partial",
    "modes": {"ssn": "redact"},
    "json_fields": {"password": "remove", "ssn": "redact", "card_number": "partial"},
    "content_types": ["application/json", "text/plain", "text/html", "text/csv"],
    "max_buffer_bytes": 1048576,
    "on_overflow": "reject",
}


def module_path(name):
    return FLOOR if name == "floor" else os.path.join(DIST, name + ".wasm")


def module_problem(path):
    """None when `path` is a real proxy-wasm module, else why not."""
    if not os.path.exists(path):
        return "missing"
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"\0asm") or b"proxy_abi_version" not in data:
        return "missing (not a proxy-wasm module yet)"
    return None


class Wasm:
    """One wasm filter instance: module name (dist/<name>.wasm or 'floor'), config, path."""

    def __init__(self, module, config, path=None, root_id=None, label=None):
        self.module = module
        self.config = config
        self.path = path or module_path(module)
        self.root_id = root_id or module
        self.label = label or module

    def entry(self, index):
        return {"name": "envoy.filters.http.wasm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": f"{self.label}-{index}", "root_id": self.root_id,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(self.config)},
                "vm_config": {"vm_id": f"{self.label}-{index}", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": self.path}}},
                "failure_policy": "FAIL_RELOAD",
                "allow_on_headers_stop_iteration": True,
            }}}


def floor(jobs, identity=None, label=None):
    cfg = {"jobs": jobs}
    if identity is not None:
        cfg["identity"] = identity
    return Wasm("floor", cfg, label=label or ("floor_" + "_".join(jobs) if jobs else "noop"))


def jwt_verify(jwks, cache=True, sets=16384, ways=2):
    cfg = {"providers": {"bench": {"issuer": ISSUER, "audiences": ["orders-api"], "local_jwks": jwks}},
           "rules": [{"prefix": "/", "requires": "bench"}],
           "cache": {"enabled": cache, "sets": sets, "ways": ways} if cache else {"enabled": False}}
    return Wasm("jwt_verify", cfg)


def rbac(rules=None):
    return Wasm("rbac", {"roles": RBAC_ROLES, "role_claim": "role", "mfa_claim": "amr", "rules": rules or RBAC_RULES})


def rbac_rules(n, same_segment):
    """n rules: generated ones first, the 10 matrix rules last. `same_segment`: every
    generated rule under /orders/ (the index cannot skip them: the worst case); else each
    under its own first segment (what real route tables look like)."""
    gen = []
    for i in range(n - len(RBAC_RULES)):
        path = f"/orders/r{i}/{{id}}" if same_segment else f"/svc{i}/items/{{id}}"
        gen.append({"path": path, "methods": ["GET"], "permission": "orders:read"})
    return gen + RBAC_RULES


def hmac_signing(secret_b64):
    return Wasm("hmac_signing", {
        "keys": {"partner-a": {"secret_base64": secret_b64, "scopes": ["orders:read"]}},
        "required_components": ["@method", "@target-uri"],
        "max_age_s": 86400,
        "rules": [{"prefix": "/orders", "require": "signature"}, {"prefix": "/", "require": "none"}],
    })


def edge_chain(jwks, sets=16384, ways=2):
    """dist/edge_chain.wasm: header_hardening + rate_limit + jwt_verify + rbac in ONE filter,
    each member with exactly the configuration its separate module gets in the bench rows
    (filters/edge_chain/README.md: one key per member holding that member's configuration)."""
    return Wasm("edge_chain", {
        "header_hardening": HEADER_HARDENING,
        "rate_limit": RATE_LIMIT,
        "jwt_verify": jwt_verify(jwks, sets=sets, ways=ways).config,
        "rbac": rbac().config,
    })


def pii(max_buffer=1048576):
    cfg = dict(PII)
    cfg["max_buffer_bytes"] = max_buffer
    return Wasm("pii_masking", cfg)


ISSUER = "https://idp.bench.example"


# ---- Envoy's native filters ----------------------------------------------------------------

def native_header_mutation():
    muts = [{"append": {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}} for k, v in SECURITY_HEADERS]
    muts += [{"remove": h} for h in LEAKY_HEADERS]
    return {"name": "envoy.filters.http.header_mutation", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        "mutations": {"response_mutations": muts}}}


def native_local_ratelimit():
    bucket = {"max_tokens": 1000000, "tokens_per_fill": 1000000, "fill_interval": "1s"}
    pct = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    return {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "per_ip",
        "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000, "fill_interval": "1s"},
        "filter_enabled": dict(pct, runtime_key="rl_enabled"),
        "filter_enforced": dict(pct, runtime_key="rl_enforced"),
        # A value-less entry is a wildcard: one bucket per client address (dynamic descriptors).
        "descriptors": [{"entries": [{"key": "remote_address"}], "token_bucket": bucket}],
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
        "max_dynamic_descriptors": 65536,
    }}


def native_jwt_authn(jwks, cache_size=None):
    provider = {"issuer": ISSUER, "audiences": ["orders-api"],
                "local_jwks": {"inline_string": json.dumps(jwks)},
                "forward": False, "payload_in_metadata": "jwt_payload"}
    if cache_size:
        provider["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}}


def _grants(pattern, perm):
    pr, pa = pattern.split(":") if ":" in pattern else (pattern, "*")
    r, a = perm.split(":")
    return pattern == "*" or ((pr in ("*", r)) and (pa in ("*", a)))


def _template_regex(t):
    out = ""
    for seg in t.strip("/").split("/"):
        if seg == "**":
            return "^" + out + "(/.*)?$"
        out += "/" + ("[^/]+" if seg.startswith("{") else re.escape(seg))
    return "^" + out + "$"


def native_rbac():
    """The same matrix as our rbac, as Envoy RBAC policies on jwt_authn's payload metadata."""
    def role_is(r):
        return {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "jwt_payload"}, {"key": "role"}],
                             "value": {"string_match": {"exact": r}}}}

    def principal(role):
        p = role_is(role)
        if RBAC_ROLES[role].get("mfa_required"):
            mfa = {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "jwt_payload"}, {"key": "amr"}],
                                "value": {"list_match": {"one_of": {"string_match": {"exact": "mfa"}}}}}}
            p = {"and_ids": {"ids": [p, mfa]}}
        return p

    policies = {}
    for i, rule in enumerate(RBAC_RULES):
        path = rule["path"]
        pm = {"exact": path} if "{" not in path and "**" not in path else {"safe_regex": {"regex": _template_regex(path)}}
        perms = [{"url_path": {"path": pm}}]
        if rule.get("methods"):
            perms.append({"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": m}}} for m in rule["methods"]]}})
        if rule.get("public"):
            principals = [{"any": True}]
        elif "permission" in rule:
            principals = [principal(r) for r, spec in RBAC_ROLES.items() if any(_grants(p, rule["permission"]) for p in spec["permissions"])]
        else:
            principals = [principal(r) for r in rule["roles"]]
        policies[f"rule{i}"] = {"permissions": [{"and_rules": {"rules": perms}}], "principals": principals}
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": policies}}}


# ---- whole configurations ------------------------------------------------------------------

def _cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "per_connection_buffer_limit_bytes": BUF,
            "circuit_breakers": {"thresholds": [{"max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000}]},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def proxy(port, admin, upstream_port, filters, direct=False):
    """The Envoy under test: every filter entry (wasm or native), then the router to the
    upstream (`direct`: the router answers SMALL_JSON itself, no upstream)."""
    entries = []
    for i, f in enumerate(filters):
        entries.append(f.entry(i) if isinstance(f, Wasm) else f)
    entries.append({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "use_remote_address": True,
        "server_header_transformation": "PASS_THROUGH",
        "route_config": {"response_headers_to_add": JSON_CT if direct else [],
                         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": SMALL_JSON}}} if direct else
            {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "60s"}}]}]},
        "http_filters": entries,
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "bench", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "per_connection_buffer_limit_bytes": BUF,
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}],
            "clusters": [_cluster("upstream", upstream_port)],
        },
    }


JSON_CT = [{"header": {"key": "content-type", "value": "application/json"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def upstream(port, admin, bodies):
    """The upstream: Envoy answering from its own config (direct_response), no filters.
    `bodies`: {path: file} of large JSON bodies; every other path gets SMALL_JSON."""
    json_ct = JSON_CT
    routes = [{"match": {"path": p}, "direct_response": {"status": 200, "body": {"filename": f}}} for p, f in bodies.items()]
    routes.append({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": SMALL_JSON}}})
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "upstream",
        "route_config": {"max_direct_response_body_size_bytes": BUF,
                         "response_headers_to_add": json_ct,
                         "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{"name": "upstream", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                                            "per_connection_buffer_limit_bytes": BUF,
                                            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}]},
    }
