//! Optional response signing (RFC 9421 section 2.2.9 `@status` and response fields) with
//! the gateway's own key, so clients can verify what the gateway sent them.
//! Response header fields the configuration names but the response lacks are left out of
//! the covered components (a signature cannot cover an absent field).

use crate::components::signature_params_value;
use crate::policy::{ResponseSigning, ALG};
use crate::sfv::{self, BareItem, Dictionary, Member};
use crate::signature::hmac_sign;
use shared::request::Headers;

/// `Signature-Input` and `Signature` values for a response.
pub fn sign(resp: &Headers, cfg: &ResponseSigning, now: u64) -> Option<(String, String)> {
    let mut covered = Vec::new();
    let mut base = String::new();
    for c in &cfg.components {
        let value = if c.name == "@status" {
            resp.get_str(":status")?.to_string()
        } else {
            let mut lines = resp.get_all(&c.name).peekable();
            if lines.peek().is_none() {
                continue;
            }
            let joined: Vec<String> = lines.map(|l| String::from_utf8_lossy(l.trim_ascii()).into_owned()).collect();
            let v = joined.join(", ");
            if !v.bytes().all(|b| (0x20..=0x7e).contains(&b) || b == b'\t') {
                continue;
            }
            v
        };
        base.push_str(&c.serialize());
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
        covered.push(c.clone());
    }
    let params = vec![
        ("created".to_string(), BareItem::Integer(i64::try_from(now).ok()?)),
        ("keyid".to_string(), BareItem::String(cfg.keyid.clone())),
        ("alg".to_string(), BareItem::String(ALG.to_string())),
    ];
    let params_value = signature_params_value(&covered, &params);
    base.push_str("\"@signature-params\": ");
    base.push_str(&params_value);
    let mac = hmac_sign(cfg.secret.expose(), base.as_bytes());
    let input = format!("{}={params_value}", cfg.label);
    let sig = Dictionary { members: vec![(cfg.label.clone(), Member::Item(sfv::Item { bare: BareItem::ByteSeq(mac), params: vec![] }))], duplicate_keys: false };
    Some((input, sfv::serialize_dictionary(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{self, ComponentId};
    use crate::secret::Secret;
    use crate::signature::hmac_verify;

    fn cfg() -> ResponseSigning {
        ResponseSigning {
            keyid: "gateway".into(),
            secret: Secret::new(vec![7u8; 32]),
            label: "sig1".into(),
            components: vec![ComponentId::new("@status"), ComponentId::new("content-type"), ComponentId::new("content-digest")],
        }
    }

    #[test]
    fn signs_status_and_present_fields() {
        let resp = Headers::from_pairs([(":status", "200"), ("content-type", "application/json")]);
        let (input, sig) = sign(&resp, &cfg(), 1_700_000_000).unwrap();
        assert_eq!(input, r#"sig1=("@status" "content-type");created=1700000000;keyid="gateway";alg="hmac-sha256""#);
        // Verify independently: rebuild the base from the response and check the HMAC.
        let d = sfv::parse_dictionary(input.as_bytes()).unwrap();
        let l = components::as_inner_list(d.get("sig1").unwrap()).unwrap();
        let base = format!("\"@status\": 200\n\"content-type\": application/json\n\"@signature-params\": {}", components::signature_params_value(&components::covered_components(&l.items).unwrap(), &l.params));
        let s = sfv::parse_dictionary(sig.as_bytes()).unwrap();
        let Some(Member::Item(sfv::Item { bare: BareItem::ByteSeq(mac), .. })) = s.get("sig1") else { panic!() };
        assert!(hmac_verify(&[7u8; 32], base.as_bytes(), mac));
        assert!(!hmac_verify(&[7u8; 32], base.replace("200", "201").as_bytes(), mac));
    }

    #[test]
    fn no_status_no_signature() {
        assert!(sign(&Headers::from_pairs([("content-type", "x")]), &cfg(), 1).is_none());
    }
}
