//! Value shapes more than one configuration file uses, checked with messages that say what
//! a valid value looks like. Errors carry the value's span so the caller can locate them.

use std::ops::Range;

use toml::Spanned;

/// A whole number in `min..=max`, or `default` when the setting is absent.
pub fn bounded(
    v: &Option<Spanned<u32>>,
    default: u32,
    min: u32,
    max: u32,
    name: &str,
) -> Result<u32, (Range<usize>, String)> {
    match v {
        None => Ok(default),
        Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => Err((
            s.span(),
            format!(
                "{name} must be between {min} and {max}, got {}",
                s.get_ref()
            ),
        )),
    }
}

/// Splits `host[:port]` or `[v6]:port`, with `default_port` when none is given. Refuses an
/// empty host, port 0, and hosts with spaces, `/` or `@` (a URL or credentials pasted in the
/// wrong place).
pub fn split_host_port(hp: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("unclosed '[' in an IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?,
            None if after.is_empty() => default_port,
            None => return Err("unexpected text after the IPv6 address".into()),
        };
        (h.to_owned(), port)
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?,
            ),
            None => (hp.to_owned(), default_port),
        }
    };
    if host.is_empty()
        || port == 0
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(format!("{hp:?} is not host:port"));
    }
    Ok((host, port))
}

/// Reads an endpoint URL, `https://host[:port]` (port 443 by default) without a path, into
/// host and port. `who` names what dials it, for the message (`agents`, `sync`).
pub fn parse_https(u: &str, who: &str) -> Result<(String, u16), String> {
    let rest = u.strip_prefix("https://").ok_or_else(|| {
        format!("endpoint {u:?} must start with https:// ({who} only dial out over TLS)")
    })?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') || rest.contains('?') {
        return Err(format!(
            "endpoint {u:?} must be https://host[:port] without a path"
        ));
    }
    split_host_port(rest, 443)
}

/// How a domain controller (or any LDAP server) is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://` — TLS from the first byte.
    Ldaps,
    /// `ldap://` then StartTLS.
    StartTls,
    /// `ldap+plain://` without TLS: passwords in clear. Callers allow it only behind an
    /// explicit danger setting.
    Plain,
}

/// Reads a domain controller's URL: `ldaps://host[:port]` (TLS, port 636),
/// `ldap://host[:port]` (StartTLS, 389) or `ldap+plain://host[:port]` (no TLS: the caller
/// decides whether that is allowed). Gives the transport and the URL in the canonical form
/// `scheme://host:port` that ldap3 dials.
pub fn parse_ldap(u: &str) -> Result<(Transport, String), String> {
    let (transport, rest, default_port) = if let Some(r) = u.strip_prefix("ldaps://") {
        (Transport::Ldaps, r, 636)
    } else if let Some(r) = u.strip_prefix("ldap+plain://") {
        (Transport::Plain, r, 389)
    } else if let Some(r) = u.strip_prefix("ldap://") {
        (Transport::StartTls, r, 389)
    } else {
        return Err(format!(
            "domain controller {u:?} must start with ldaps:// or ldap:// (StartTLS)"
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(format!(
            "domain controller {u:?} must be scheme://host[:port] without a DN"
        ));
    }
    let (host, port) = split_host_port(rest, default_port)?;
    let scheme = if transport == Transport::Ldaps {
        "ldaps"
    } else {
        "ldap"
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok((transport, format!("{scheme}://{host}:{port}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldap_urls() {
        assert_eq!(
            parse_ldap("ldaps://dc1.corp"),
            Ok((Transport::Ldaps, "ldaps://dc1.corp:636".into()))
        );
        assert_eq!(
            parse_ldap("ldap://dc1:3389/"),
            Ok((Transport::StartTls, "ldap://dc1:3389".into()))
        );
        assert_eq!(
            parse_ldap("ldap+plain://[::1]"),
            Ok((Transport::Plain, "ldap://[::1]:389".into()))
        );
        assert!(parse_ldap("ldaps://dc1/DC=corp").is_err());
        assert!(parse_ldap("https://dc1").is_err());
    }

    #[test]
    fn host_port_shapes() {
        assert_eq!(split_host_port("dc1:636", 389), Ok(("dc1".into(), 636)));
        assert_eq!(split_host_port("dc1", 389), Ok(("dc1".into(), 389)));
        assert_eq!(split_host_port("[::1]:8443", 443), Ok(("::1".into(), 8443)));
        assert_eq!(split_host_port("[::1]", 443), Ok(("::1".into(), 443)));
        assert!(split_host_port("[::1", 443).is_err());
        assert!(split_host_port("[::1]x", 443).is_err());
        assert!(split_host_port("dc1:0", 389).is_err());
        assert!(split_host_port("dc1:99999", 389).is_err());
        assert!(split_host_port(":389", 389).is_err());
        assert!(split_host_port("user@dc1", 389).is_err());
    }

    #[test]
    fn bounded_names_the_setting_and_its_range() {
        let v: Option<Spanned<u32>> = None;
        assert_eq!(bounded(&v, 4, 1, 8, "pool"), Ok(4));
        #[derive(serde::Deserialize)]
        struct T {
            pool: Spanned<u32>,
        }
        let t: T = toml::from_str("pool = 9").expect("toml");
        let (span, m) = bounded(&Some(t.pool), 4, 1, 8, "pool").expect_err("out of range");
        assert_eq!(span, 7..8);
        assert_eq!(m, "pool must be between 1 and 8, got 9");
    }
}
