//! Who a request is counted against: the verified user, or the client IP. A client can never
//! choose its own key: the user comes from the identity a verifying filter recorded in filter
//! state, and the IP from the connection (or from `x-forwarded-for` entries written by the
//! configured number of trusted proxies, counted from the right).

use shared::identity::Identity;
use shared::request::Headers;
use std::net::{IpAddr, Ipv6Addr};

/// The key of a client, ready to be hashed into the bucket table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// `provider` and `sub` of a verified identity (the provider keeps two issuers' equal
    /// `sub`s apart).
    User { provider: String, subject: String },
    /// A normalized IP (`203.0.113.7`, `2001:db8:1:2::/64`), or the raw peer string when it is
    /// not an IP address (a unix socket path).
    Ip(String),
}

impl ClientKey {
    /// Stable byte form used in bucket keys and RLS descriptors.
    pub fn as_key(&self) -> String {
        match self {
            ClientKey::User { provider, subject } => format!("user:{provider}:{subject}"),
            ClientKey::Ip(ip) => format!("ip:{ip}"),
        }
    }
}

/// Split an Envoy address into IP and port: `1.2.3.4:5678`, `[2001:db8::1]:443`, or a bare IP
/// (no port). `None` when it is not an IP address.
pub fn parse_socket(addr: &str) -> Option<(IpAddr, Option<u16>)> {
    let a = addr.trim();
    if let Ok(ip) = a.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        (host, tail.strip_prefix(':')?)
    } else {
        let (host, port) = a.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host.parse().ok()?, Some(port.parse().ok()?)))
}

/// The IP of an address with or without a port.
pub fn parse_address(addr: &str) -> Option<IpAddr> {
    parse_socket(addr).map(|(ip, _)| ip)
}

/// Normalized text of an IP: IPv4-mapped IPv6 becomes IPv4; IPv6 is cut to `v6_prefix` bits
/// (one subscriber usually holds a whole /64, so per-address keys would be free to rotate).
pub fn normalize_ip(ip: IpAddr, v6_prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            let bits = u32::from(v6_prefix.min(128));
            if bits >= 128 {
                return v6.to_string();
            }
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            format!("{}/{bits}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// `x-forwarded-for` entries in order, across repeated headers; empty entries dropped.
fn xff_entries(headers: &Headers) -> Vec<String> {
    headers
        .get_all("x-forwarded-for")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| String::from_utf8_lossy(e.trim_ascii()).into_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// Where the client IP came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSource {
    /// The TCP peer of the connection.
    Peer,
    /// An `x-forwarded-for` entry written by a trusted proxy (`trusted_proxy_hops`).
    Forwarded,
    /// Envoy's downstream address derived from request headers, trusted by configuration.
    EnvoyDerived,
    /// Envoy derived the address from headers a client can write, and nothing vouches for
    /// it: every such request shares the one key [`UNVERIFIED`].
    Unverified,
}

/// Key shared by all requests whose address could have been chosen by the client.
pub const UNVERIFIED: &str = "unverified";

/// The client IP key and where it came from.
///
/// `source` is Envoy's `source.address`. With the HTTP connection manager's default
/// `use_remote_address: false`, Envoy sets it from the rightmost `x-forwarded-for` entry (so a
/// client can choose it); such an address has port 0, a TCP peer never does. It is used only
/// when `trust_envoy_address` says Envoy was configured to derive it from trusted proxies.
///
/// With `hops == N > 0` the client is the N-th `x-forwarded-for` entry from the right: each
/// trusted proxy appends the address it saw, so whatever a client wrote itself sits further
/// left and is never read. Envoy's own entry is not counted: with `use_remote_address: true`
/// Envoy appends the peer (or, for a loopback peer, its own address) and keeps the real peer
/// as `source.address`, with a real port; with `use_remote_address: false` it appends nothing
/// and reports a valid rightmost entry as `source.address` with port 0. So a real source port
/// together with a valid rightmost entry means Envoy appended that entry, and it is dropped
/// before counting. When the header has fewer entries, or that entry is not an IP, the
/// request did not come through the trusted proxies as configured and the peer rules above
/// apply.
pub fn client_ip(source: Option<&str>, headers: &Headers, hops: u32, v6_prefix: u8, trust_envoy_address: bool) -> (String, IpSource) {
    let peer = source.and_then(parse_socket);
    if hops > 0 {
        let mut entries = xff_entries(headers);
        let envoy_appended = matches!(peer, Some((_, Some(port))) if port != 0) && entries.last().and_then(|e| parse_address(e)).is_some();
        if envoy_appended {
            entries.pop();
        }
        let n = usize::try_from(hops).unwrap_or(usize::MAX);
        if let Some(entry) = entries.len().checked_sub(n).and_then(|i| entries.get(i)) {
            if let Some(ip) = parse_address(entry) {
                return (normalize_ip(ip, v6_prefix), IpSource::Forwarded);
            }
        }
    }
    match (peer, source) {
        (Some((ip, Some(port))), _) if port != 0 => (normalize_ip(ip, v6_prefix), IpSource::Peer),
        (Some((ip, _)), _) if trust_envoy_address => (normalize_ip(ip, v6_prefix), IpSource::EnvoyDerived),
        (Some(_), _) => (UNVERIFIED.to_string(), IpSource::Unverified),
        // Not an IP (a unix socket path): the peer as Envoy names it.
        (None, Some(s)) => (s.to_string(), IpSource::Peer),
        (None, None) => (UNVERIFIED.to_string(), IpSource::Unverified),
    }
}

/// The key of the caller: the verified user if there is one, else the client IP.
pub fn user_or_ip(identity: Option<&Identity>, ip: &str) -> ClientKey {
    match identity {
        Some(id) => ClientKey::User { provider: id.provider.clone(), subject: id.subject.clone() },
        None => ClientKey::Ip(ip.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &[&str]) -> Headers {
        Headers::from_pairs(xff.iter().map(|v| ("x-forwarded-for", *v)))
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_socket("10.0.0.1:5555"), Some(("10.0.0.1".parse().unwrap(), Some(5555))));
        assert_eq!(parse_socket("[2001:db8::1]:443"), Some(("2001:db8::1".parse().unwrap(), Some(443))));
        assert_eq!(parse_socket("2001:db8::1"), Some(("2001:db8::1".parse().unwrap(), None)));
        assert_eq!(parse_socket("203.0.113.9:0"), Some(("203.0.113.9".parse().unwrap(), Some(0))));
        assert_eq!(parse_address(" 192.0.2.9 "), Some("192.0.2.9".parse().unwrap()));
        for bad in ["evil", "1.2.3.4:", "[::1", "[::1]", "[::1]x", "/var/run/sock", "1.2.3.4:99999", "1:2:3"] {
            assert_eq!(parse_socket(bad), None, "{bad}");
        }
    }

    #[test]
    fn ipv6_is_keyed_by_prefix() {
        let a = normalize_ip("2001:db8:1:2:aaaa::1".parse().unwrap(), 64);
        let b = normalize_ip("2001:db8:1:2:bbbb::9".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(a, normalize_ip("2001:db8:1:3::1".parse().unwrap(), 64));
        assert_eq!(normalize_ip("2001:db8::1".parse().unwrap(), 128), "2001:db8::1");
        assert_eq!(normalize_ip("::ffff:192.0.2.1".parse().unwrap(), 64), "192.0.2.1");
    }

    fn ip(source: &str, xff: &[&str], hops: u32, trust: bool) -> (String, IpSource) {
        client_ip(Some(source), &h(xff), hops, 64, trust)
    }

    #[test]
    fn no_trusted_hops_uses_the_peer_and_ignores_xff() {
        assert_eq!(ip("198.51.100.7:4000", &["1.1.1.1"], 0, false), ("198.51.100.7".into(), IpSource::Peer));
    }

    #[test]
    fn an_address_envoy_took_from_headers_is_not_trusted_by_default() {
        // use_remote_address: false, the client sent x-forwarded-for: Envoy reports it, port 0.
        assert_eq!(ip("203.0.113.9:0", &["203.0.113.9"], 0, false), (UNVERIFIED.into(), IpSource::Unverified));
        assert_eq!(ip("203.0.113.9:0", &["203.0.113.9"], 0, true), ("203.0.113.9".into(), IpSource::EnvoyDerived));
        assert_eq!(client_ip(None, &h(&[]), 0, 64, false), (UNVERIFIED.into(), IpSource::Unverified));
    }

    #[test]
    fn trusted_hops_count_from_the_right() {
        // client -> P1 -> P2 -> envoy (use_remote_address: false): P1 appended the client, P2
        // appended P1; Envoy reports the rightmost entry with port 0.
        let xff = ["6.6.6.6, 203.0.113.5, 10.0.0.1"];
        assert_eq!(ip("10.0.0.1:0", &xff, 2, false), ("203.0.113.5".into(), IpSource::Forwarded));
        assert_eq!(ip("10.0.0.1:0", &xff, 1, false), ("10.0.0.1".into(), IpSource::Forwarded));
        // Split over two header lines: same list.
        assert_eq!(ip("10.0.0.1:0", &["6.6.6.6", "203.0.113.5 ,10.0.0.1"], 2, false).0, "203.0.113.5");
    }

    #[test]
    fn envoys_own_append_is_not_a_hop() {
        // use_remote_address: true: Envoy appended the peer (the proxy, 10.0.0.2) itself.
        let xff = ["6.6.6.6, 203.0.113.5, 10.0.0.2"];
        assert_eq!(ip("10.0.0.2:41000", &xff, 1, false).0, "203.0.113.5");
        // A loopback peer: Envoy appends its own address instead of 127.0.0.1.
        let xff = ["6.6.6.6, 203.0.113.5, 172.17.0.2"];
        assert_eq!(ip("127.0.0.1:41000", &xff, 1, false).0, "203.0.113.5");
        // A client connecting directly: Envoy appended the client; it is the peer.
        assert_eq!(ip("198.51.100.3:5000", &["198.51.100.3"], 1, false), ("198.51.100.3".into(), IpSource::Peer));
    }

    #[test]
    fn spoofed_entries_on_the_left_are_never_read() {
        // The client sends its own XFF; the one trusted proxy appends the real address.
        for spoof in ["1.1.1.1", "1.1.1.1, 2.2.2.2", "", "garbage, , ,"] {
            let value = if spoof.is_empty() { "203.0.113.5".to_string() } else { format!("{spoof}, 203.0.113.5") };
            assert_eq!(ip("10.0.0.2:0", &[&value], 1, false).0, "203.0.113.5", "{value}");
            assert_eq!(ip("10.0.0.2:1234", &[&value, "10.0.0.2"], 1, false).0, "203.0.113.5", "{value}");
        }
    }

    #[test]
    fn too_few_entries_or_garbage_fall_back_to_the_peer() {
        assert_eq!(ip("198.51.100.7:4000", &[], 1, false), ("198.51.100.7".into(), IpSource::Peer));
        assert_eq!(ip("198.51.100.7:4000", &["203.0.113.5"], 2, false).0, "198.51.100.7");
        assert_eq!(ip("198.51.100.7:4000", &["not-an-ip"], 1, false).0, "198.51.100.7");
        assert_eq!(ip("/tmp/envoy.sock", &[], 0, false), ("/tmp/envoy.sock".into(), IpSource::Peer));
    }

    #[test]
    fn keys() {
        let id = Identity { source: shared::identity::Source::Jwt, provider: "main".into(), subject: "u1".into(), scopes: vec![], claims: Default::default() };
        assert_eq!(user_or_ip(Some(&id), "1.2.3.4").as_key(), "user:main:u1");
        assert_eq!(user_or_ip(None, "1.2.3.4").as_key(), "ip:1.2.3.4");
    }
}
