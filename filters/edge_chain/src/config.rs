//! The combined configuration: one optional key per member holding exactly that member's
//! own configuration, each parsed and compiled by the member's own code, every error
//! reported with the member's name in front of its path (`rbac.rules[2].roles[0]`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use shared::config::{join, parse_json, ConfigError, ConfigErrors};

/// The members, in the order they see a request (responses: the reverse).
pub const MEMBERS: [&str; 4] = ["header_hardening", "rate_limit", "jwt_verify", "rbac"];

/// `edge_chain`'s plugin configuration. A member runs when its key is present; `{}` gives
/// that member's documented defaults (where it has any).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// header_hardening's configuration (filters/header_hardening/README.md).
    #[serde(default, deserialize_with = "present")]
    pub header_hardening: Option<Box<RawValue>>,
    /// rate_limit's configuration (filters/rate_limit/README.md).
    #[serde(default, deserialize_with = "present")]
    pub rate_limit: Option<Box<RawValue>>,
    /// jwt_verify's configuration (filters/jwt_verify/README.md).
    #[serde(default, deserialize_with = "present")]
    pub jwt_verify: Option<Box<RawValue>>,
    /// rbac's configuration (filters/rbac/README.md).
    #[serde(default, deserialize_with = "present")]
    pub rbac: Option<Box<RawValue>>,
    /// Also write the verified identity to the `identity` filter-state property, for filters
    /// placed AFTER edge_chain in Envoy's chain (a per-user rate_limit, hmac_signing...).
    /// Default false: the identity stays in the VM's memory (one host call less).
    #[serde(default)]
    pub export_identity: bool,
}

/// A key that is present is a member to run, even when its value is `null` (which the
/// member's own parser then refuses): `null` never silently switches a member off.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The compiled members, each exactly what the member builds from its own configuration.
pub struct Plan {
    pub header_hardening: Option<header_hardening::policy::Policy>,
    pub rate_limit: Option<rate_limit::policy::Policy>,
    pub jwt_verify: Option<jwt_verify::config::Policy>,
    pub rbac: Option<rbac::policy::Policy>,
    pub export_identity: bool,
}

impl Plan {
    /// The names of the members that run, in request order.
    pub fn members(&self) -> Vec<&'static str> {
        let on = [self.header_hardening.is_some(), self.rate_limit.is_some(), self.jwt_verify.is_some(), self.rbac.is_some()];
        MEMBERS.iter().zip(on).filter(|(_, on)| *on).map(|(m, _)| *m).collect()
    }
}

impl Config {
    /// Parse and compile every present member with its own code; report every error of
    /// every member, each path prefixed with the member's key.
    pub fn compile(self) -> Result<Plan, ConfigErrors> {
        let mut errors = Vec::new();
        let none = self.header_hardening.is_none() && self.rate_limit.is_none() && self.jwt_verify.is_none() && self.rbac.is_none();
        if none {
            errors.push(ConfigError { path: ".".into(), message: format!("at least one member is required: {}", MEMBERS.join(", ")) });
        }
        let plan = Plan {
            header_hardening: member("header_hardening", self.header_hardening, header_hardening::config::Config::compile, &mut errors),
            rate_limit: member("rate_limit", self.rate_limit, rate_limit::config::Config::compile, &mut errors),
            jwt_verify: member("jwt_verify", self.jwt_verify, jwt_verify::config::Config::compile, &mut errors),
            rbac: member("rbac", self.rbac, rbac::config::Config::compile, &mut errors),
            export_identity: self.export_identity,
        };
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// One member: its bytes through its own parser and compiler, errors re-rooted under `name`.
fn member<C: DeserializeOwned, P>(name: &str, raw: Option<Box<RawValue>>, compile: impl FnOnce(C) -> Result<P, ConfigErrors>, errors: &mut Vec<ConfigError>) -> Option<P> {
    let raw = raw?;
    match parse_json::<C>(raw.get().as_bytes()).and_then(compile) {
        Ok(policy) => Some(policy),
        Err(e) => {
            errors.extend(e.0.into_iter().map(|e| ConfigError { path: prefixed(name, &e.path), message: e.message }));
            None
        }
    }
}

fn prefixed(name: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        name.to_string()
    } else {
        join(name, path)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn compile(v: Value) -> Result<Plan, ConfigErrors> {
        parse_json::<Config>(v.to_string().as_bytes()).and_then(Config::compile)
    }

    fn errors(v: Value) -> ConfigErrors {
        match compile(v) {
            Ok(p) => panic!("accepted, members {:?}", p.members()),
            Err(e) => e,
        }
    }

    fn jwks() -> Value {
        // An Ed25519 public key (RFC 8037 appendix A.2).
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]})
    }

    fn full() -> Value {
        json!({
            "header_hardening": {},
            "rate_limit": {"tiers": {"anonymous": {"requests": 10, "per": "minute"}, "authenticated": {"requests": 10, "per": "minute"}}},
            "jwt_verify": {"providers": {"main": {"issuer": "https://issuer.test", "audiences": ["api"], "local_jwks": jwks()}}, "rules": [{"prefix": "/", "allow_missing": true}]},
            "rbac": {"roles": {"viewer": {"permissions": ["*:read"]}}, "rules": [{"path": "/items", "methods": ["GET"], "permission": "items:read"}]}
        })
    }

    #[test]
    fn every_member_compiles_in_request_order() {
        let p = compile(full()).unwrap();
        assert_eq!(p.members(), MEMBERS.to_vec());
        assert!(!p.export_identity);
    }

    #[test]
    fn a_subset_runs_only_the_present_members() {
        let p = compile(json!({"rbac": full()["rbac"], "header_hardening": {}, "export_identity": true})).unwrap();
        assert_eq!(p.members(), ["header_hardening", "rbac"]);
        assert!(p.export_identity);
        assert!(p.rate_limit.is_none() && p.jwt_verify.is_none());
    }

    #[test]
    fn an_empty_member_object_means_that_members_defaults() {
        let p = compile(json!({"header_hardening": {}})).unwrap();
        assert_eq!(p.members(), ["header_hardening"]);
    }

    #[test]
    fn no_member_is_refused() {
        for cfg in [json!({}), json!({"export_identity": true})] {
            let e = errors(cfg);
            assert!(e.has("."), "{e}");
            assert!(e.to_string().contains("at least one member"), "{e}");
        }
        // Empty plugin configuration = `{}`: refused the same way.
        assert!(parse_json::<Config>(b"").and_then(Config::compile).is_err());
    }

    #[test]
    fn unknown_top_level_key_is_named() {
        let e = errors(json!({"header_hardening": {}, "hmac_signing": {}}));
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].path, "hmac_signing");
        assert!(e.0[0].message.contains("unknown field `hmac_signing`"), "{e}");
    }

    #[test]
    fn member_parse_errors_carry_the_member_prefix() {
        let e = errors(json!({"header_hardening": {"cors": {"allow_origin": ["x"]}}}));
        assert!(e.0[0].path.starts_with("header_hardening.cors"), "{e}");
        assert!(e.0[0].message.contains("unknown field `allow_origin`"), "{e}");
        // A wrong type at a member's root is reported at the member's key.
        let e = errors(json!({"rbac": 5}));
        assert_eq!(e.0[0].path, "rbac", "{e}");
        // null does not switch a member off: it is refused by the member.
        let e = errors(json!({"header_hardening": {}, "jwt_verify": null}));
        assert_eq!(e.0[0].path, "jwt_verify", "{e}");
    }

    #[test]
    fn every_members_compile_errors_are_all_reported_with_prefixes() {
        let mut cfg = full();
        cfg["jwt_verify"] = json!({"providers": {}});
        cfg["rbac"]["rules"][0]["roles"] = json!(["superuser"]);
        cfg["rbac"]["rules"][0].as_object_mut().unwrap().remove("permission");
        cfg["rate_limit"] = json!({"tiers": {"anonymous": {"requests": 0, "per": "minute"}}});
        let e = errors(cfg);
        assert!(e.has("jwt_verify.providers"), "{e}");
        assert!(e.has("rbac.rules[0].roles[0]"), "{e}");
        assert!(e.0.iter().any(|x| x.path.starts_with("rate_limit.tiers")), "{e}");
        assert!(e.0.iter().all(|x| MEMBERS.iter().any(|m| x.path.starts_with(m))), "{e}");
    }

    #[test]
    fn a_member_sees_its_bytes_exactly() {
        // Duplicate keys are refused by the member's own parser (a `Value` round trip would
        // keep the last one silently).
        let raw = br#"{"rbac": {"roles": {}, "roles": {}, "rules": []}}"#;
        let e = parse_json::<Config>(raw).and_then(Config::compile).err().unwrap();
        assert!(e.to_string().contains("duplicate field `roles`"), "{e}");
        assert!(e.0[0].path.starts_with("rbac"), "{e}");
    }
}
