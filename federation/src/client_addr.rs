//! The client's address behind reverse proxies: `Forwarded` (RFC 7239) or `X-Forwarded-For`
//! is believed only when the TCP peer is a configured trusted proxy, and only back to the
//! first hop that is not one. A header from anyone else, or one that does not parse, is
//! never trusted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hyper::header::HeaderMap;
use tracing::debug;

/// An address range such as `10.0.0.0/8` or `::1` (a single address is a full-length prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: IpAddr,
    prefix: u8,
}

/// Why a trusted-proxy range does not parse (the configuration names the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or CIDR range such as 10.0.0.0/8, 192.0.2.7 or fd00::/8")]
pub struct BadRange(String);

impl FromStr for IpRange {
    type Err = BadRange;

    fn from_str(s: &str) -> Result<Self, BadRange> {
        let bad = || BadRange(s.chars().take(100).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Self {
            net: mask(net, prefix),
            prefix,
        })
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

impl IpRange {
    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// Which TCP peers may say who the client is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// Trust these ranges (empty: trust no forwarding header at all, the default).
    pub fn new(ranges: Vec<IpRange>) -> Self {
        Self(ranges)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    ///
    /// When the peer is trusted, the chain of `Forwarded` headers (or, if there is none,
    /// of `X-Forwarded-For` headers) is walked from the right, and the first address that
    /// is not a trusted proxy is the client. A chain that does not parse is ignored as a
    /// whole (the peer is the client), so a client cannot smuggle an address past a proxy
    /// that appends to a malformed header.
    pub fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer?.ip().to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let chain = if headers.contains_key("forwarded") {
            forwarded_chain(headers)
        } else {
            xff_chain(headers)
        };
        let chain = match chain {
            Ok(c) => c,
            Err(why) => {
                debug!(
                    why,
                    "forwarding header from a trusted proxy ignored: malformed"
                );
                return Some(peer);
            }
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                // An obfuscated or `unknown` hop cannot be identified: the last proxy that
                // we trust is as far back as we can see.
                Hop::Hidden => break,
                Hop::Ip(ip) => {
                    client = *ip;
                    if !self.trusts(*ip) {
                        break;
                    }
                }
            }
        }
        Some(client)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Ip(IpAddr),
    Hidden,
}

/// At most this many hops are looked at; a longer chain is treated as malformed.
const MAX_HOPS: usize = 32;

fn header_values<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Vec<&'a str>, &'static str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().map_err(|_| "not visible ASCII"))
        .collect()
}

fn xff_chain(headers: &HeaderMap) -> Result<Vec<Hop>, &'static str> {
    let mut hops = Vec::new();
    for value in header_values(headers, "x-forwarded-for")? {
        for item in value.split(',') {
            let ip = node_ip(item.trim()).ok_or("X-Forwarded-For item is not an address")?;
            hops.push(Hop::Ip(ip));
            if hops.len() > MAX_HOPS {
                return Err("too many hops");
            }
        }
    }
    Ok(hops)
}

/// An address as a node: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443`.
fn node_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    // `[v6]` without a port.
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|v6| IpAddr::V6(v6).to_canonical())
}

/// Splits on `sep` outside double-quoted strings (RFC 7230 quoted-string with `\` escapes).
fn split_unquoted(s: &str, sep: char) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted || escaped {
        return Err("unterminated quoted string");
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn forwarded_chain(headers: &HeaderMap) -> Result<Vec<Hop>, &'static str> {
    let mut hops = Vec::new();
    for value in header_values(headers, "forwarded")? {
        for element in split_unquoted(value, ',')? {
            let mut hop = None;
            for pair in split_unquoted(element, ';')? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = pair.split_once('=').ok_or("Forwarded pair without =")?;
                if !k.trim().eq_ignore_ascii_case("for") {
                    continue;
                }
                if hop.is_some() {
                    return Err("Forwarded element with two for= parameters");
                }
                let v = v.trim();
                let v = match v.strip_prefix('"') {
                    Some(q) => q.strip_suffix('"').ok_or("unterminated quoted string")?,
                    None => v,
                };
                hop = Some(forwarded_node(v)?);
            }
            // An element without `for=` says nothing about who sent it: it cannot be used.
            hops.push(hop.ok_or("Forwarded element without for=")?);
            if hops.len() > MAX_HOPS {
                return Err("too many hops");
            }
        }
    }
    Ok(hops)
}

/// RFC 7239 §6: `node = nodename [ ":" node-port ]`, nodename an IPv4 address, a bracketed
/// IPv6 address, `unknown`, or an obfuscated `_identifier`.
fn forwarded_node(v: &str) -> Result<Hop, &'static str> {
    if v.eq_ignore_ascii_case("unknown") || v.starts_with('_') {
        return Ok(Hop::Hidden);
    }
    // A bare IPv6 address is not allowed by the RFC (it must be bracketed and quoted).
    if !v.starts_with('[') && v.matches(':').count() > 1 {
        return Err("Forwarded IPv6 address without brackets");
    }
    let (name, port) = if let Some(rest) = v.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("unclosed [ in Forwarded")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ] in Forwarded")?),
        };
        let ip: Ipv6Addr = inside.parse().map_err(|_| "bad IPv6 in Forwarded")?;
        (IpAddr::V6(ip), port)
    } else {
        let (name, port) = match v.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (v, None),
        };
        let ip: Ipv4Addr = name.parse().map_err(|_| "bad IPv4 in Forwarded")?;
        (IpAddr::V4(ip), port)
    };
    if let Some(p) = port {
        let ok = p.starts_with('_') || (!p.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err("bad port in Forwarded");
        }
    }
    Ok(Hop::Ip(name.to_canonical()))
}

/// Who a connection, or sign-in work without a session, is counted against: an IPv4 address, or the /64 an IPv6 address is
/// in (one host usually holds a whole /64, so per address would be no cap at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    V4(u32),
    V6(u64),
}

impl SourceKey {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(r: &[&str]) -> TrustedProxies {
        TrustedProxies::new(r.iter().map(|s| s.parse().expect("range")).collect())
    }

    fn headers(h: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                hyper::header::HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(s.parse().expect("ip"), 40_000))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn ranges_parse_and_match() {
        let r: IpRange = "10.1.2.3/8".parse().expect("v4");
        assert_eq!(r.to_string(), "10.0.0.0/8");
        assert!(r.contains("10.200.0.1".parse().expect("ip")));
        assert!(r.contains("::ffff:10.0.0.9".parse().expect("mapped")));
        assert!(!r.contains("11.0.0.1".parse().expect("ip")));
        let one: IpRange = "::1".parse().expect("v6 host");
        assert!(one.contains("::1".parse().expect("ip")));
        assert!(!one.contains("::2".parse().expect("ip")));
        let all: IpRange = "0.0.0.0/0".parse().expect("all v4");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        assert!(!all.contains("2001:db8::1".parse().expect("ip")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "x",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spoofed_headers_from_an_untrusted_peer_are_ignored() {
        let t = proxies(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.8"),
        ]);
        assert_eq!(t.client(&h, peer("203.0.113.5")), ip("203.0.113.5"));
        // No trusted proxies configured: nobody is believed, not even loopback.
        assert_eq!(
            TrustedProxies::default().client(&h, peer("127.0.0.1")),
            ip("127.0.0.1")
        );
        assert_eq!(t.client(&h, None), None);
    }

    #[test]
    fn xff_is_walked_from_the_right_to_the_first_untrusted_hop() {
        let t = proxies(&["10.0.0.0/8", "::1"]);
        // The client put a fake address first; the proxies appended the real ones.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("198.51.100.7"));
        // Several headers are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(t.client(&h, peer("::1")), ip("198.51.100.7"));
        // Ports and brackets some proxies add.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("2001:db8::7"));
        let h = headers(&[("x-forwarded-for", "198.51.100.7:5555")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("198.51.100.7"));
        // Every hop trusted: the leftmost is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.5.5.5, 10.0.0.2")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.5.5.5"));
        // No header at all from a trusted proxy: the proxy itself.
        assert_eq!(
            t.client(&HeaderMap::new(), peer("10.0.0.1")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn malformed_chains_are_never_trusted() {
        let t = proxies(&["10.0.0.0/8"]);
        for bad in [
            "198.51.100.7, not-an-ip",
            "198.51.100.7,,10.0.0.2",
            "",
            "198.51.100.7 10.0.0.2",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.0.0.1"), "{bad:?}");
        }
        let long = vec!["198.51.100.7"; MAX_HOPS + 1].join(",");
        let h = headers(&[("x-forwarded-for", &long)]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.0.0.1"));
        for bad in [
            "for=2001:db8::1",
            "for=\"[2001:db8::1\"",
            "for=\"[2001:db8::1]x\"",
            "for=198.51.100.7:port",
            "for=\"198.51.100.7",
            "by=10.0.0.1",
            "for=198.51.100.7;for=198.51.100.8",
            "for",
            "for=300.1.1.1",
        ] {
            let h = headers(&[("forwarded", bad)]);
            assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.0.0.1"), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_with_ipv6_brackets_ports_and_several_headers() {
        let t = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let h = headers(&[("forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("2001:db8:cafe::17"));
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.43, for=\"[2001:db8:ffff::1]\";by=10.0.0.1",
        )]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("192.0.2.43"));
        let h = headers(&[
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("forwarded", "For=\"198.51.100.17:8080\""),
        ]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("198.51.100.17"));
        // Quoted commas and semicolons do not split.
        let h = headers(&[("forwarded", "for=192.0.2.43;ext=\"a,b;c\"")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("192.0.2.43"));
        // `unknown` / obfuscated hops stop the walk at the last trusted proxy.
        let h = headers(&[("forwarded", "for=192.0.2.43, for=unknown, for=10.0.0.9")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.0.0.9"));
        let h = headers(&[("forwarded", "for=_hidden:_port")]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("10.0.0.1"));
        // Forwarded wins over X-Forwarded-For when both are present.
        let h = headers(&[
            ("forwarded", "for=192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2"),
        ]);
        assert_eq!(t.client(&h, peer("10.0.0.1")), ip("192.0.2.1"));
    }
}
