//! Deployment artifacts: the example plugin configs, the generated Envoy examples, the Istio
//! WasmPlugin manifests and the OCI images, each checked against the real thing: the real
//! filters in the real Envoy, the WasmPlugin v1alpha1 API, and a real registry (Debian's
//! `docker-registry`, the Distribution registry) driven by `skopeo`.

use e2e::{envoy_bin, root, EnvoyBuilder, Request, UpResponse, Upstream};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Test values for the secrets the examples read from the proxy's environment.
const TEST_ENV: &[(&str, &str)] = &[
    ("PARTNER_A_SECRET", "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YU="),
    ("PII_HASH_KEY", "test-only-pii-hash-key-0123456789"),
];

// ---------------------------------------------------------------------------------------
// Helpers

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples_dir() -> PathBuf {
    root().join("envoy-config/examples")
}

/// Every example: (file stem, parsed config).
fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("envoy-config/examples") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let v: Value = serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((stem, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn example(name: &str) -> Value {
    serde_json::from_str(&read(&examples_dir().join(format!("{name}.json")))).expect("example JSON")
}

/// The module an example configures (`rate_limit_ip` is a second rate_limit instance).
fn module_of(example: &str) -> &str {
    match example {
        "rate_limit_ip" => "rate_limit",
        m => m,
    }
}

/// Environment variables a config reads (`secret_env`, `hash_key_env`, at any depth).
fn env_names(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    match (k.as_str(), val) {
                        ("secret_env" | "hash_key_env", Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        _ => walk(val, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut out);
    out.into_iter().collect()
}

fn test_env(names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            let v = TEST_ENV.iter().find(|(k, _)| k == n).map(|(_, v)| *v).unwrap_or_else(|| panic!("no test value for {n}"));
            (n.clone(), v.to_string())
        })
        .collect()
}

/// An Envoy Wasm HTTP filter entry.
fn wasm_filter(name: &str, root_id: &str, module: &str, config: &Value, host_env: &[String], failure_policy: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": root_id,
                "failure_policy": failure_policy,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config.to_string()},
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": e2e::wasm_path(module).to_string_lossy()}},
                    "environment_variables": {"host_env_keys": host_env},
                },
            }
        }
    })
}

/// A complete static config with these HTTP filters (for `--mode validate`).
fn envoy_config(filters: Vec<Value>, extra_clusters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    let mut clusters = vec![cluster("upstream", 1)];
    clusters.extend(extra_clusters);
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "t",
                    "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
                    "http_filters": http_filters,
                }}]}]}],
            "clusters": clusters,
        }
    })
}

fn cluster(name: &str, port: u16) -> Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target/e2e").join(format!("deploy-{}-{}-{name}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `envoy --mode validate` (runs the plugins' on_configure) with exactly this environment.
fn validate_file(path: &Path, env: &[(String, String)]) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "-l", "error", "--disable-hot-restart", "-c"])
        .arg(path)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", envoy_bin().display()))?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && log.contains("OK") {
        Ok(())
    } else {
        Err(log)
    }
}

fn validate(config: &Value, env: &[(String, String)]) -> Result<(), String> {
    let path = scratch("validate").join("envoy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap_or_default()).expect("write config");
    validate_file(&path, env)
}

/// The documents of a YAML file (our generator separates them with `---` lines).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line == "---" {
            docs.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs.push(cur);
    docs.iter()
        .filter(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')))
        .map(|d| serde_norway::from_str::<Value>(d).unwrap_or_else(|e| panic!("{}: YAML does not parse: {e}", path.display())))
        .collect()
}

fn istio_manifests() -> Vec<(PathBuf, Value)> {
    let dir = root().join("envoy-config/istio");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("envoy-config/istio")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    files.into_iter().flat_map(|p| yaml_docs(&p).into_iter().map(move |d| (p.clone(), d))).collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_file(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path)).split_whitespace().next().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------------
// Example plugin configs: accepted by the real filters (and refused when broken)

#[test]
fn every_example_config_is_accepted_by_its_real_filter() {
    let all = examples();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for m in ["header_hardening", "jwt_verify", "rbac", "rate_limit", "hmac_signing", "pii_masking"] {
        assert!(names.contains(&m), "no example for {m}: {names:?}");
    }
    std::thread::scope(|s| {
        for (name, config) in &all {
            s.spawn(move || {
                let module = module_of(name);
                let env_keys = env_names(config);
                let env = test_env(&env_keys);
                let cfg = |c: &Value| envoy_config(vec![wasm_filter(name, module, module, c, &env_keys, "FAIL_CLOSED")], vec![]);
                if let Err(log) = validate(&cfg(config), &env) {
                    panic!("example {name} refused by {module}:\n{log}");
                }
                // Control: the same example with an unknown field is refused at load, so the
                // acceptance above really ran the filter's configuration parsing.
                let mut broken = config.clone();
                broken["no_such_field"] = json!(true);
                let err = validate(&cfg(&broken), &env).expect_err("a config with an unknown field must be refused");
                assert!(err.contains("Unable to create Wasm plugin"), "{name}: {err}");
                // Secrets come from the proxy's environment: without them the plugin is refused.
                if !env_keys.is_empty() {
                    let err = validate(&cfg(config), &[]).expect_err("missing secret env must refuse the plugin");
                    assert!(err.contains("Unable to create Wasm plugin"), "{name}: {err}");
                }
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// Generated files: up to date, valid, equal to the examples

#[test]
fn generated_envoy_examples_and_istio_manifests_are_up_to_date() {
    let out = Command::new(root().join("scripts/gen-configs")).arg("--check").output().expect("run scripts/gen-configs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn standalone_envoy_examples_run_the_example_configs() {
    for module in ["header_hardening", "jwt_verify", "rbac", "rate_limit", "hmac_signing", "pii_masking", "edge_chain"] {
        let path = root().join(format!("envoy-config/{module}.yaml"));
        let v: Value = serde_norway::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let filters = v["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].as_array().cloned().unwrap_or_default();
        let wasm: Vec<&Value> = filters.iter().filter(|f| f["name"] == "envoy.filters.http.wasm").collect();
        assert_eq!(wasm.len(), 1, "{module}: one wasm filter");
        let cfg = &wasm[0]["typed_config"]["config"];
        assert_eq!(cfg["vm_config"]["code"]["local"]["filename"], format!("dist/{module}.wasm"), "{module}: path relative to the repo root");
        let embedded: Value = serde_json::from_str(cfg["configuration"]["value"].as_str().unwrap_or_default()).expect("embedded JSON");
        assert_eq!(embedded, example(module), "{module}.yaml embeds envoy-config/examples/{module}.json");
        let env_keys = env_names(&embedded);
        let host: Vec<String> = cfg["vm_config"]["environment_variables"]["host_env_keys"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
        assert_eq!(host, env_keys, "{module}: secrets from the host environment");
        validate_file(&path, &test_env(&env_keys)).unwrap_or_else(|log| panic!("{}:\n{log}", path.display()));
    }
}

// ---------------------------------------------------------------------------------------
// Istio: the WasmPlugin v1alpha1 API (istio/api extensions/v1alpha1/wasm.proto)

/// The allowed field tree of `extensions.istio.io/v1alpha1` WasmPlugin, written from the API
/// reference. Leaves: "string", "int", "map" (string to string), "any" (pluginConfig, a
/// google.protobuf.Struct), "enum:A|B|..."; arrays are one-element arrays of their item.
fn wasmplugin_schema() -> Value {
    let target_ref = json!({"group": "string", "kind": "string", "name": "string", "namespace": "string"});
    json!({
        "apiVersion": "string",
        "kind": "string",
        "metadata": {"name": "string", "namespace": "string", "labels": "map", "annotations": "map"},
        "spec": {
            "selector": {"matchLabels": "map"},
            "targetRef": target_ref,
            "targetRefs": [target_ref],
            "url": "string",
            "sha256": "string",
            "imagePullPolicy": "enum:UNSPECIFIED_POLICY|IfNotPresent|Always",
            "imagePullSecret": "string",
            "verificationKey": "string",
            "pluginConfig": "any",
            "pluginName": "string",
            "phase": "enum:UNSPECIFIED_PHASE|AUTHN|AUTHZ|STATS",
            "priority": "int",
            "failStrategy": "enum:FAIL_CLOSE|FAIL_OPEN|FAIL_RELOAD",
            "vmConfig": {"env": [{"name": "string", "valueFrom": "enum:INLINE|HOST", "value": "string"}]},
            "match": [{"mode": "enum:UNDEFINED|CLIENT|SERVER|CLIENT_AND_SERVER", "ports": [{"number": "int"}]}],
            "type": "enum:UNSPECIFIED_PLUGIN_TYPE|HTTP|NETWORK",
        }
    })
}

/// Every field of `v` that the schema does not allow, as JSON paths.
fn schema_errors(v: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
    match (schema, v) {
        (Value::String(t), _) if t == "any" => {}
        (Value::String(t), Value::String(_)) if t == "string" => {}
        (Value::String(t), Value::Number(n)) if t == "int" && n.is_i64() => {}
        (Value::String(t), Value::Object(m)) if t == "map" => {
            for (k, x) in m {
                if !x.is_string() {
                    errors.push(format!("{at}.{k}: expected a string"));
                }
            }
        }
        (Value::String(t), Value::String(s)) if t.starts_with("enum:") => {
            if !t["enum:".len()..].split('|').any(|e| e == s) {
                errors.push(format!("{at}: '{s}' is not one of {}", &t["enum:".len()..]));
            }
        }
        (Value::Object(fields), Value::Object(m)) => {
            for (k, x) in m {
                match fields.get(k) {
                    Some(sub) => schema_errors(x, sub, &format!("{at}.{k}"), errors),
                    None => errors.push(format!("{at}.{k}: no such field in WasmPlugin v1alpha1")),
                }
            }
        }
        (Value::Array(item), Value::Array(xs)) => {
            if let Some(item) = item.first() {
                for (i, x) in xs.iter().enumerate() {
                    schema_errors(x, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        (s, x) => errors.push(format!("{at}: {x} does not match {s}")),
    }
}

fn phase_rank(phase: &str) -> u32 {
    match phase {
        "AUTHN" => 0,
        "AUTHZ" => 1,
        "STATS" => 2,
        _ => 3,
    }
}

/// The WasmPlugins in the order Istio puts them in the HTTP filter chain: by phase (AUTHN
/// before Istio's authn filter, AUTHZ before its authz filter, STATS before its stats filter,
/// unspecified last before the router), then by priority, highest first.
fn istio_chain() -> Vec<Value> {
    let mut plugins: Vec<Value> = istio_manifests().into_iter().map(|(_, d)| d).collect();
    plugins.sort_by_key(|p| (phase_rank(p["spec"]["phase"].as_str().unwrap_or_default()), -p["spec"]["priority"].as_i64().unwrap_or(0)));
    plugins
}

/// The Envoy HTTP filter Istio builds for a WasmPlugin (pilot/pkg/model/extensions.go): name
/// `<namespace>.<name>`, root_id from pluginName, pluginConfig marshalled to JSON in a
/// StringValue, FAIL_CLOSE as FAIL_CLOSED, `valueFrom: HOST` as `host_env_keys`, no vm_id and
/// no allow_on_headers_stop_iteration (the API has no field for it). The agent replaces the
/// oci:// source with the fetched module: here the module from dist/.
fn istio_translate(p: &Value) -> Value {
    let spec = &p["spec"];
    let url = spec["url"].as_str().unwrap_or_default();
    let module = url.rsplit('/').next().and_then(|s| s.split(':').next()).unwrap_or_default();
    let name = format!("{}.{}", p["metadata"]["namespace"].as_str().unwrap_or_default(), p["metadata"]["name"].as_str().unwrap_or_default());
    let host_env: Vec<String> = spec["vmConfig"]["env"].as_array().map(|a| a.iter().filter(|e| e["valueFrom"] == "HOST").filter_map(|e| e["name"].as_str().map(String::from)).collect()).unwrap_or_default();
    let policy = match spec["failStrategy"].as_str().unwrap_or("FAIL_CLOSE") {
        "FAIL_OPEN" => "FAIL_OPEN",
        "FAIL_RELOAD" => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    wasm_filter(&name, spec["pluginName"].as_str().unwrap_or_default(), module, &spec["pluginConfig"], &host_env, policy)
}

fn istio_env() -> Vec<(String, String)> {
    TEST_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn istio_manifests_use_only_wasmplugin_api_fields_and_the_tested_configs() {
    let schema = wasmplugin_schema();
    let manifests = istio_manifests();
    let mut seen_examples = BTreeSet::new();
    let release: Value = serde_json::from_str(&read(&root().join("envoy-config/istio/release.json"))).expect("release.json");
    // edge_chain's WasmPlugin is an alternative to four of the chain's (not applied by
    // `kubectl apply -f envoy-config/istio/`), held to the same API and example rules.
    let alternative = root().join("envoy-config/istio/alternatives/edge_chain.yaml");
    let alternatives: Vec<(PathBuf, Value)> = yaml_docs(&alternative).into_iter().map(|d| (alternative.clone(), d)).collect();
    assert_eq!(alternatives.len(), 1, "one WasmPlugin in {}", alternative.display());
    for (path, doc) in manifests.iter().chain(&alternatives) {
        let at = format!("{}:{}", path.display(), doc["metadata"]["name"]);
        assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1", "{at}");
        assert_eq!(doc["kind"], "WasmPlugin", "{at}");
        let mut errors = Vec::new();
        schema_errors(doc, &schema, "", &mut errors);
        assert!(errors.is_empty(), "{at}: {errors:#?}");

        let spec = &doc["spec"];
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE", "{at}");
        assert!(spec["selector"]["matchLabels"].as_object().is_some_and(|m| !m.is_empty()), "{at}: a selector");
        assert!(["AUTHN", "AUTHZ", "STATS"].contains(&spec["phase"].as_str().unwrap_or_default()), "{at}: phase");
        assert!(spec["priority"].is_i64(), "{at}: priority");
        // oci:// URL with a tag, pinned by the manifest digest.
        let url = spec["url"].as_str().unwrap_or_default();
        let module = url.rsplit('/').next().and_then(|s| s.split(':').next()).unwrap_or_default();
        assert_eq!(url, format!("oci://{}/{module}:{}", release["registry"].as_str().unwrap_or_default(), release["version"].as_str().unwrap_or_default()), "{at}");
        let sha = spec["sha256"].as_str().unwrap_or_default();
        assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{at}: sha256 '{sha}' (Istio's pattern ^[a-f0-9]{{64}}$)");
        assert_eq!(spec["pluginName"], module, "{at}");
        // pluginConfig is exactly one tested example of this module.
        let config = &spec["pluginConfig"];
        let matching: Vec<String> = examples().into_iter().filter(|(n, v)| module_of(n) == module && v == config).map(|(n, _)| n).collect();
        assert_eq!(matching.len(), 1, "{at}: pluginConfig must equal one envoy-config/examples/*.json of {module}");
        seen_examples.extend(matching);
        // Secrets named in the config come from the proxy's environment, never inline.
        let env: Vec<(String, String)> = spec["vmConfig"]["env"]
            .as_array()
            .map(|a| a.iter().map(|e| (e["name"].as_str().unwrap_or_default().to_string(), e["valueFrom"].as_str().unwrap_or("INLINE").to_string())).collect())
            .unwrap_or_default();
        let want: Vec<(String, String)> = env_names(config).into_iter().map(|n| (n, "HOST".to_string())).collect();
        assert_eq!(env, want, "{at}: vmConfig.env");
    }
    let all: BTreeSet<String> = examples().into_iter().map(|(n, _)| n).collect();
    assert_eq!(seen_examples, all, "every example is deployed by exactly one WasmPlugin");

    // The issue's order: AUTHN rate limit by IP, JWT, HMAC; AUTHZ RBAC, per-user rate limit;
    // then PII. header_hardening first of all (see header_hardening_must_come_first...).
    let order: Vec<String> = istio_chain().iter().map(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(
        order,
        ["edgesec-header-hardening", "edgesec-rate-limit-ip", "edgesec-jwt-verify", "edgesec-hmac-signing", "edgesec-rbac", "edgesec-rate-limit-user", "edgesec-pii-masking"]
    );
    let phases: Vec<(String, String)> = istio_chain().iter().map(|p| (p["metadata"]["name"].as_str().unwrap_or_default().to_string(), p["spec"]["phase"].as_str().unwrap_or_default().to_string())).collect();
    for (name, phase) in &phases {
        let want = match name.as_str() {
            "edgesec-rbac" | "edgesec-rate-limit-user" => "AUTHZ",
            "edgesec-pii-masking" => "STATS",
            _ => "AUTHN",
        };
        assert_eq!(phase, want, "{name}");
    }

    // Control: the schema check finds misspelled fields, wrong enums and misplaced fields.
    let mut bad = manifests[0].1.clone();
    bad["spec"]["failureStrategy"] = json!("FAIL_CLOSE");
    bad["spec"]["phase"] = json!("AUTHENTICATION");
    bad["spec"]["vmConfig"]["env"] = json!([{"name": "X", "valueFrom": "HOST", "secretKeyRef": "y"}]);
    let mut errors = Vec::new();
    schema_errors(&bad, &schema, "", &mut errors);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

#[test]
fn istio_plugin_configs_load_in_envoy_as_istio_translates_them() {
    let filters: Vec<Value> = istio_chain().iter().map(istio_translate).collect();
    let config = envoy_config(filters.clone(), vec![cluster("outbound|443||idp.example.com", 1)]);
    validate(&config, &istio_env()).unwrap_or_else(|log| panic!("the Istio chain is refused:\n{log}"));
    // Control: the same chain without the secrets in the proxy environment is refused.
    assert!(validate(&config, &[]).is_err());

    // The edge_chain alternative in place of the four plugins it replaces.
    let replaced = ["edgesec-header-hardening", "edgesec-rate-limit-ip", "edgesec-jwt-verify", "edgesec-rbac"];
    let alt = yaml_docs(&root().join("envoy-config/istio/alternatives/edge_chain.yaml"));
    let with_alt: Vec<Value> = alt.iter().map(istio_translate)
        .chain(istio_chain().iter().filter(|p| !replaced.contains(&p["metadata"]["name"].as_str().unwrap_or_default())).map(istio_translate))
        .collect();
    assert_eq!(with_alt.len(), filters.len() - 3);
    let config = envoy_config(with_alt, vec![cluster("outbound|443||idp.example.com", 1)]);
    validate(&config, &istio_env()).unwrap_or_else(|log| panic!("the Istio chain with edge_chain is refused:\n{log}"));
}

// ---------------------------------------------------------------------------------------
// The chain Istio builds, through the real Envoy

const SECURITY_HEADERS: &[&str] = &["strict-transport-security", "content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"];

fn has_security_headers(r: &e2e::Response) -> bool {
    SECURITY_HEADERS.iter().all(|h| r.header(h).is_some())
}

/// A JSON body full of personal data, served for every path.
fn pii_upstream() -> Upstream {
    Upstream::with_handler(|_| {
        UpResponse::new(200).header("content-type", "application/json").body(
            json!({"email": "jane.doe@example.com", "card_number": "4111 1111 1111 1111", "password": "hunter2", "note": "call +1 415-555-2671"}).to_string(),
        )
    })
}

fn start_istio_chain(plugins: &[Value], upstream: Upstream) -> e2e::Envoy {
    let mut b = EnvoyBuilder::default()
        .upstream(upstream)
        // The JWKS endpoint is down here: tokens cannot be verified (503), anonymous requests pass.
        .raw_cluster(cluster("outbound|443||idp.example.com", e2e::free_port()))
        .hcm("use_remote_address", json!(true));
    for (k, v) in TEST_ENV {
        b = b.process_env(k, v);
    }
    for p in plugins {
        b = b.raw_filter(istio_translate(p));
    }
    b.start()
}

#[test]
fn istio_chain_in_envoy_security_headers_on_every_local_reply_pii_masked() {
    let envoy = start_istio_chain(&istio_chain(), pii_upstream());

    // rbac (AUTHZ): protected route without identity.
    let r = envoy.get("/orders");
    assert_eq!((r.status, r.code().as_str()), (401, "authentication_required"), "{}", r.text());
    assert!(has_security_headers(&r), "rbac's 401 carries the security headers: {:?}", r.headers);
    // rbac: default deny.
    let r = envoy.get("/nowhere");
    assert_eq!((r.status, r.code().as_str()), (403, "no_matching_rule"));
    assert!(has_security_headers(&r), "{:?}", r.headers);
    // hmac_signing (AUTHN): a webhook without a signature.
    let r = envoy.send(Request::post("/webhooks/orders").header("content-type", "application/json").body("{}"));
    assert_eq!((r.status, r.code().as_str()), (401, "signature_missing"), "{}", r.text());
    assert!(has_security_headers(&r), "{:?}", r.headers);
    // header_hardening itself.
    let r = envoy.send(Request::new("TRACE", "/"));
    assert_eq!(r.status, 405);
    assert!(has_security_headers(&r));

    // A public route: the response passes pii_masking (no allow_on_headers_stop_iteration in
    // Istio, hence "hold_headers": false in the example) and gets the headers.
    let r = envoy.get("/products/1");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(body.get("password").is_none(), "password removed: {body}");
    assert_eq!(body["card_number"], "**** **** **** 1111");
    let email = body["email"].as_str().unwrap_or_default();
    assert!(email.starts_with("[HASH:email:") && !email.contains("jane"), "email hashed with the key from the host environment: {email}");
    assert!(!r.text().contains("415-555-2671"), "phone masked: {}", r.text());
    assert!(has_security_headers(&r));

    // rate_limit_user (AUTHZ): anonymous callers get 10 requests per minute per address. The
    // requests refused above (by rbac, hmac_signing, header_hardening) spent none; the public
    // one did, so 9 logins pass and the 10th is 429.
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let r = envoy.send(Request::post("/auth/login").header("content-type", "application/json").body("{}"));
        statuses.push(r.status);
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 429]);
    let r = last.expect("a response");
    assert_eq!(r.code(), "rate_limited", "{}", r.text());
    assert!(r.header("retry-after").is_some() && r.header("ratelimit-policy").is_some_and(|p| p.contains("anonymous")), "{:?}", r.headers);
    assert!(has_security_headers(&r), "the 429 carries the headers: {:?}", r.headers);
}

#[test]
fn header_hardening_must_come_first_or_it_misses_the_local_replies_of_the_filters_before_it() {
    // The issue's suggestion (header_hardening in STATS, after authn/authz) measured: Envoy
    // sends a local reply back through the encoders of the filters BEFORE the one that sent
    // it, so a header_hardening placed after rbac never sees rbac's 401/403.
    let mut late = istio_chain();
    for p in &mut late {
        if p["metadata"]["name"] == "edgesec-header-hardening" {
            p["spec"]["phase"] = json!("STATS");
            p["spec"]["priority"] = json!(1000);
        }
    }
    late.sort_by_key(|p| (phase_rank(p["spec"]["phase"].as_str().unwrap_or_default()), -p["spec"]["priority"].as_i64().unwrap_or(0)));
    let names: Vec<&str> = late.iter().map(|p| p["metadata"]["name"].as_str().unwrap_or_default()).collect();
    assert!(names.iter().position(|n| *n == "edgesec-header-hardening") > names.iter().position(|n| *n == "edgesec-rbac"));

    let envoy = start_istio_chain(&late, pii_upstream());
    let r = envoy.get("/orders");
    assert_eq!(r.status, 401);
    assert!(SECURITY_HEADERS.iter().all(|h| r.header(h).is_none()), "no security header on rbac's 401 when header_hardening comes later: {:?}", r.headers);
    let r = envoy.get("/products/1");
    assert_eq!(r.status, 200);
    assert!(has_security_headers(&r), "upstream responses still get them");
}

#[test]
fn istio_wasmplugin_cannot_hold_a_signed_body_for_hmac_signing() {
    // WasmPlugin has no allow_on_headers_stop_iteration: hmac_signing's hold of the headers
    // becomes Envoy's StopAllIterationAndWatermark, the body never reaches the filter, and a
    // signed request with a body stalls (fail closed: it never reaches the upstream). The same
    // request passes with the flag (our Envoy configs set it). Documented in docs/deploy.md.
    let secret = TEST_ENV.iter().find(|(k, _)| *k == "PARTNER_A_SECRET").map(|(_, v)| *v).unwrap_or_default();
    let body = r#"{"order":42}"#;
    let job = json!([{
        "method": "POST", "url": "http://localhost/webhooks/orders",
        "headers": {"content-type": "application/json"}, "body": body,
        "keyid": "partner-a", "secret_b64": secret,
        "components": ["@method", "@target-uri", "content-digest"], "digest": "sha-256",
    }]);
    let hmac = istio_chain().into_iter().find(|p| p["metadata"]["name"] == "edgesec-hmac-signing").expect("hmac WasmPlugin");
    // The harness sends `host: localhost`, the authority the signature covers.
    let signed = || -> Request {
        let out = e2e::python(&e2e::peer("hmac_sign.py"), &["sign", &job.to_string()]);
        let headers: Value = serde_json::from_str(&out).expect("peer output");
        let mut req = Request::post("/webhooks/orders").body(body).timeout(Duration::from_secs(3));
        for (k, v) in headers[0].as_object().cloned().unwrap_or_default() {
            req = req.header(&k, v.as_str().unwrap_or_default());
        }
        req
    };

    // As Istio configures it.
    let envoy = start_istio_chain(std::slice::from_ref(&hmac), Upstream::echo());
    let start = Instant::now();
    let r = signed().send(envoy.port);
    assert!(r.is_err(), "expected a stall, got {:?}", r.map(|r| r.status));
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(envoy.upstream.count(), 0, "nothing reached the upstream");

    // The EnvoyFilter alternative (which sets the flag), as the Istio agent hands it to Envoy:
    // verified and passed.
    let filter = hmac_envoyfilter_as_loaded();
    let envoy = EnvoyBuilder::default().process_env("PARTNER_A_SECRET", secret).raw_filter(filter).start();
    let r = envoy.send(signed());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(envoy.upstream.count(), 1);
}

fn hmac_envoyfilter() -> Value {
    let docs = yaml_docs(&root().join("envoy-config/istio/alternatives/hmac_signing-envoyfilter.yaml"));
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap_or_default()
}

/// The HTTP filter Envoy gets from the EnvoyFilter's extension config: the Istio agent fetches
/// the oci:// module and replaces the remote source with the local file.
fn hmac_envoyfilter_as_loaded() -> Value {
    let ef = hmac_envoyfilter();
    let mut ext = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"].clone();
    ext["config"]["vm_config"]["code"] = json!({"local": {"filename": e2e::wasm_path("hmac_signing").to_string_lossy()}});
    json!({"name": "envoy.filters.http.wasm", "typed_config": ext})
}

#[test]
fn hmac_envoyfilter_alternative_sets_the_flag_and_carries_the_tested_config() {
    let ef = hmac_envoyfilter();
    let schema = json!({
        "apiVersion": "string", "kind": "string",
        "metadata": {"name": "string", "namespace": "string", "labels": "map", "annotations": "map"},
        "spec": {
            "workloadSelector": {"labels": "map"},
            "priority": "int",
            "configPatches": [{
                "applyTo": "enum:INVALID|LISTENER|FILTER_CHAIN|NETWORK_FILTER|HTTP_FILTER|ROUTE_CONFIGURATION|VIRTUAL_HOST|HTTP_ROUTE|CLUSTER|EXTENSION_CONFIG|BOOTSTRAP|LISTENER_FILTER",
                "match": {"context": "enum:ANY|SIDECAR_INBOUND|SIDECAR_OUTBOUND|GATEWAY", "proxy": "any", "listener": {
                    "portNumber": "int", "name": "string", "filterChain": {"name": "string", "sni": "string", "transportProtocol": "string",
                        "applicationProtocols": "string", "destinationPort": "int",
                        "filter": {"name": "string", "subFilter": {"name": "string"}}}}, "routeConfiguration": "any", "cluster": "any"},
                "patch": {"operation": "enum:INVALID|MERGE|ADD|REMOVE|INSERT_BEFORE|INSERT_AFTER|INSERT_FIRST|REPLACE", "value": "any", "filterClass": "enum:UNSPECIFIED|AUTHN|AUTHZ|STATS"},
            }],
        }
    });
    let mut errors = Vec::new();
    schema_errors(&ef, &schema, "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!((ef["apiVersion"].as_str(), ef["kind"].as_str()), (Some("networking.istio.io/v1alpha3"), Some("EnvoyFilter")));
    let patches = ef["spec"]["configPatches"].as_array().cloned().unwrap_or_default();
    assert_eq!(patches.len(), 2);
    assert_eq!((patches[0]["applyTo"].as_str(), patches[0]["patch"]["operation"].as_str()), (Some("EXTENSION_CONFIG"), Some("ADD")));
    assert_eq!((patches[1]["applyTo"].as_str(), patches[1]["patch"]["operation"].as_str()), (Some("HTTP_FILTER"), Some("INSERT_AFTER")));
    let ext = &patches[0]["patch"]["value"];
    assert_eq!(patches[1]["patch"]["value"]["name"], ext["name"], "the HTTP filter refers to the extension config by name");
    let cfg = &ext["typed_config"]["config"];
    assert_eq!(cfg["allow_on_headers_stop_iteration"], true);
    assert_eq!(cfg["failure_policy"], "FAIL_CLOSED");
    let embedded: Value = serde_json::from_str(cfg["configuration"]["value"].as_str().unwrap_or_default()).expect("JSON");
    assert_eq!(embedded, example("hmac_signing"));
    // Same image and pin as the WasmPlugin.
    let wp = istio_chain().into_iter().find(|p| p["metadata"]["name"] == "edgesec-hmac-signing").expect("hmac WasmPlugin");
    assert_eq!(cfg["vm_config"]["code"]["remote"]["http_uri"]["uri"], wp["spec"]["url"]);
    assert_eq!(cfg["vm_config"]["code"]["remote"]["sha256"], wp["spec"]["sha256"]);
    assert_eq!(cfg["vm_config"]["environment_variables"]["host_env_keys"], json!(env_names(&embedded)));
    // Envoy accepts the extension config as the agent delivers it.
    validate(&envoy_config(vec![hmac_envoyfilter_as_loaded()], vec![]), &istio_env()).unwrap_or_else(|log| panic!("{log}"));
}

// ---------------------------------------------------------------------------------------
// OCI images: Istio's layout, pushed to a real registry and pulled back identical

struct Registry {
    child: Child,
    port: u16,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `docker-registry` (Distribution 2.x) on a free loopback port, storage in `dir`.
fn start_registry(dir: &Path) -> Registry {
    for _ in 0..3 {
        let port = e2e::free_port();
        let config = dir.join("registry.yml");
        std::fs::write(&config, format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.join("storage").display())).expect("registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start docker-registry (scripts/setup installs it): {e}"));
        let mut reg = Registry { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = reg.child.try_wait() {
                break;
            }
            if Request::get("/v2/").timeout(Duration::from_secs(1)).send(port).is_ok_and(|r| r.status == 200) {
                return reg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(reg);
    }
    panic!("docker-registry did not start: {}", read(&dir.join("registry.log")));
}

#[test]
fn oci_images_in_istios_layout_push_to_a_registry_and_pull_back_identical() {
    let dir = scratch("oci");
    let registry = start_registry(&dir);
    let repo = format!("127.0.0.1:{}/edgesec", registry.port);
    let layouts = dir.join("layouts");
    let out = run(Command::new(root().join("scripts/package")).args(["--version", "9.9.9", "--out"]).arg(&layouts).args(["--push", &repo, "--insecure"]));
    let modules: Vec<String> = ["header_hardening", "hmac_signing", "jwt_verify", "pii_masking", "rate_limit", "rbac"].iter().map(|s| s.to_string()).collect();
    for m in &modules {
        let module_path = e2e::wasm_path(m);
        let module_sha = sha256_file(&module_path);
        let module_size = std::fs::metadata(&module_path).map(|md| md.len()).unwrap_or(0);

        // The layout scripts/package wrote: Istio's "oci" variant.
        let layout = layouts.join(m);
        let index: Value = serde_json::from_str(&read(&layout.join("index.json"))).expect("index.json");
        let digest = index["manifests"][0]["digest"].as_str().unwrap_or_default().to_string();
        assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "9.9.9");
        assert!(out.contains(&format!("{m:18}")) && out.contains(&digest), "{out}");
        let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
        assert_eq!(format!("sha256:{}", sha256_file(&blob(&digest))), digest, "content-addressed manifest");
        let manifest: Value = serde_json::from_str(&read(&blob(&digest))).expect("manifest");
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(manifest["config"]["mediaType"], "application/vnd.module.wasm.config.v1+json");
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        assert_eq!(layers.len(), 2, "Istio's fetcher requires exactly two layers for the wasm media types");
        let wasm_layers: Vec<&Value> = layers.iter().filter(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm").collect();
        assert_eq!(wasm_layers.len(), 1);
        assert_eq!(wasm_layers[0]["digest"], format!("sha256:{module_sha}"), "the layer is the raw module");
        assert_eq!(wasm_layers[0]["size"], module_size);
        let config: Value = serde_json::from_str(&read(&blob(manifest["config"]["digest"].as_str().unwrap_or_default()))).expect("runtime config");
        assert_eq!(config["type"], "envoy_proxy");

        // What the registry serves: the same manifest bytes (so the same digest Istio pins).
        let reference = format!("docker://{repo}/{m}:9.9.9");
        let raw = run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &reference]));
        let raw_path = dir.join(format!("{m}.manifest.json"));
        std::fs::write(&raw_path, raw.as_bytes()).expect("write manifest");
        assert_eq!(format!("sha256:{}", sha256_file(&raw_path)), digest, "{m}: registry manifest digest");

        // Pulled back with skopeo into a fresh layout: same digest, same module bytes.
        let pulled = dir.join(format!("pulled-{m}"));
        run(Command::new("skopeo").args(["copy", "--quiet", "--src-tls-verify=false", "--preserve-digests", &reference]).arg(format!("oci:{}:got", pulled.display())));
        let pindex: Value = serde_json::from_str(&read(&pulled.join("index.json"))).expect("pulled index");
        assert_eq!(pindex["manifests"][0]["digest"], digest.as_str(), "{m}: pulled digest");
        let pulled_module = pulled.join("blobs/sha256").join(&module_sha);
        assert_eq!(sha256_file(&pulled_module), module_sha, "{m}: pulled module sha256");
        assert_eq!(std::fs::read(&pulled_module).ok(), std::fs::read(&module_path).ok(), "{m}: identical module");
    }

    // The pin in the Istio manifests is computed from (module sha256, size) exactly as
    // scripts/package lays the image out: same digest from both paths.
    let release: Value = serde_json::from_str(&read(&root().join("envoy-config/istio/release.json"))).expect("release.json");
    for m in &modules {
        let pin = &release["modules"][m];
        assert!(pin["module_sha256"].as_str().is_some_and(|s| s.len() == 64), "{m} pinned in release.json");
        let here = sha256_file(&e2e::wasm_path(m));
        let digest_fn = run(Command::new("python3").arg("-c").arg(format!(
            "import importlib.machinery as M, importlib.util as U; l=M.SourceFileLoader('p','{}'); s=U.spec_from_loader('p',l); p=U.module_from_spec(s); l.exec_module(p); print(p.manifest_digest('{m}','9.9.9','{here}',{}))",
            root().join("scripts/package").display(),
            std::fs::metadata(e2e::wasm_path(m)).map(|md| md.len()).unwrap_or(0)
        )));
        let index: Value = serde_json::from_str(&read(&layouts.join(m).join("index.json"))).expect("index.json");
        assert_eq!(format!("sha256:{}", digest_fn.trim()), index["manifests"][0]["digest"].as_str().unwrap_or_default(), "{m}");
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Docker artifacts (no Docker engine here): derived from the tested config

#[test]
fn dockerfile_and_compose_derive_from_the_tested_chain_config() {
    let dockerfile = read(&root().join("deploy/Dockerfile"));
    let envoy_yaml = read(&root().join("envoy-config/envoy.yaml"));
    // The only change the image makes to the tested config: the listener binds all addresses.
    let sed = dockerfile.lines().find(|l| l.contains("sed -i")).expect("the Dockerfile rewrites the listener address");
    let from = sed.split("s/").nth(1).and_then(|s| s.split('/').next()).unwrap_or_default().replace("\\.", ".");
    assert!(!from.is_empty() && envoy_yaml.contains(&from), "the Dockerfile's sed pattern '{from}' must match envoy-config/envoy.yaml");
    assert!(dockerfile.contains("COPY envoy-config/envoy.yaml") && dockerfile.contains("COPY dist/"), "{dockerfile}");
    let compose: Value = serde_norway::from_str(&read(&root().join("deploy/docker-compose.yml"))).expect("compose YAML");
    let envoy = &compose["services"]["envoy"];
    assert_eq!(envoy["build"]["dockerfile"], "deploy/Dockerfile");
    // Every secret the chain reads from the host environment is passed to the container.
    let chain: Value = serde_norway::from_str(&envoy_yaml).expect("envoy.yaml");
    let mut host_keys = BTreeSet::new();
    fn collect(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "host_env_keys" {
                        for s in x.as_array().into_iter().flatten().filter_map(|s| s.as_str()) {
                            out.insert(s.to_string());
                        }
                    } else {
                        collect(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    collect(&chain, &mut host_keys);
    let env: Map<String, Value> = envoy["environment"].as_object().cloned().unwrap_or_default();
    for k in &host_keys {
        assert!(env.contains_key(k), "compose passes {k} to Envoy");
    }
    for v in envoy["volumes"].as_array().into_iter().flatten() {
        let host = v.as_str().unwrap_or_default().split(':').next().unwrap_or_default();
        assert!(root().join("deploy").join(host).exists(), "compose volume {host} exists");
    }
}
