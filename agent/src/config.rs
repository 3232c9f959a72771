//! The agent's configuration file: TOML, read into a raw form that rejects unknown keys,
//! then validated into [`AgentConfig`] with errors that name the file, line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use causeway_config::ConfigError;
use causeway_config::{bounded, parse_ldap, read_config, split_host_port, Source};
use serde::Deserialize;
use toml::Spanned;

use crate::validator::Transport;

mod check;
pub use check::{pem_certificates, FileProblem};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    agent: RawAgent,
    directory: RawDirectory,
    #[serde(default)]
    danger: RawDanger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    state_dir: Spanned<String>,
    endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    channels_per_endpoint: Option<Spanned<u32>>,
    #[serde(default)]
    max_in_flight: Option<Spanned<u32>>,
    #[serde(default)]
    proxy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    domain_controllers: Spanned<Vec<Spanned<String>>>,
    ca_file: Spanned<String>,
    #[serde(default)]
    timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pool_per_dc: Option<Spanned<u32>>,
    #[serde(default)]
    login: Option<RawLogin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    attribute: Spanned<String>,
    search_base: Spanned<String>,
    service_dn: Spanned<String>,
    service_password_file: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDanger {
    #[serde(default)]
    allow_plain_ldap: bool,
}

/// An endpoint replica to dial: `host:port` reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (also the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// A domain controller from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcConfig {
    /// The LDAP URL.
    pub url: String,
    /// How it is secured.
    pub transport: Transport,
}

/// How sign-in names are resolved, from the config (the password is read from its file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// Attribute users sign in with.
    pub attribute: String,
    /// Search base.
    pub search_base: String,
    /// Service account DN.
    pub service_dn: String,
    /// File holding the service account's password (mode 0600).
    pub service_password_file: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where `causeway agent register` left the keys and certificates.
    pub state_dir: PathBuf,
    /// Endpoint replicas.
    pub endpoints: Vec<Endpoint>,
    /// Channels kept to each endpoint.
    pub channels_per_endpoint: u32,
    /// Checks run at once per channel.
    pub max_in_flight: u16,
    /// HTTP CONNECT proxy, `host:port`.
    pub proxy: Option<Endpoint>,
    /// Domain controllers in order of preference.
    pub domain_controllers: Vec<DcConfig>,
    /// CA certificate(s) the DCs' TLS certificates chain to.
    pub ca_file: PathBuf,
    /// Time for one LDAP operation.
    pub timeout: Duration,
    /// Idle connections kept per DC.
    pub pool_per_dc: u32,
    /// Alternate login ID resolution, if configured.
    pub login: Option<LoginConfig>,
    /// Plain LDAP allowed (lab only).
    pub allow_plain_ldap: bool,
}

/// Largest configuration file read.
const MAX_CONFIG_BYTES: usize = 256 * 1024;

impl AgentConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config(path, MAX_CONFIG_BYTES)?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is used in messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let src = Source::new(path, text);
        let at = |span: std::ops::Range<usize>, message: String| src.at(span, message);
        let raw: Raw = src.toml()?;
        let resolve = |p: &str| src.resolve(p);

        let a = raw.agent;
        if a.state_dir.get_ref().trim().is_empty() {
            return Err(at(
                a.state_dir.span(),
                "state_dir must name a directory".into(),
            ));
        }
        if a.endpoints.get_ref().is_empty() {
            return Err(at(a.endpoints.span(), "endpoints must list at least one endpoint URL, e.g. \"https://idp.example.com:8443\"".into()));
        }
        let mut endpoints = Vec::new();
        for e in a.endpoints.get_ref() {
            let ep = parse_https(e.get_ref()).map_err(|m| at(e.span(), m))?;
            if endpoints.contains(&ep) {
                return Err(at(
                    e.span(),
                    format!("endpoint {} is listed twice", e.get_ref()),
                ));
            }
            endpoints.push(ep);
        }
        let channels = bounded(&a.channels_per_endpoint, 2, 1, 16, "channels_per_endpoint")
            .map_err(|(s, m)| at(s, m))?;
        let in_flight =
            bounded(&a.max_in_flight, 64, 1, 4096, "max_in_flight").map_err(|(s, m)| at(s, m))?;
        let proxy = match &a.proxy {
            None => None,
            Some(p) => Some(parse_proxy(p.get_ref()).map_err(|m| at(p.span(), m))?),
        };

        let d = raw.directory;
        if d.domain_controllers.get_ref().is_empty() {
            return Err(at(d.domain_controllers.span(), "domain_controllers must list at least one DC, e.g. \"ldaps://dc1.example.com:636\"".into()));
        }
        let mut dcs = Vec::new();
        for u in d.domain_controllers.get_ref() {
            let (transport, url) = parse_ldap(u.get_ref()).map_err(|m| at(u.span(), m))?;
            if transport == Transport::Plain && !raw.danger.allow_plain_ldap {
                return Err(at(u.span(), format!(
                    "{url} would send passwords in clear: use ldaps://, or ldap:// with StartTLS (the default), \
                     or set [danger] allow_plain_ldap = true for a lab"
                )));
            }
            dcs.push(DcConfig { url, transport });
        }
        if d.ca_file.get_ref().trim().is_empty() {
            return Err(at(
                d.ca_file.span(),
                "ca_file must name the PEM file of the CA that issued the DCs' certificates".into(),
            ));
        }
        let timeout_ms = match &d.timeout_ms {
            None => 5000,
            Some(t) if (100..=60_000).contains(t.get_ref()) => *t.get_ref(),
            Some(t) => {
                return Err(at(
                    t.span(),
                    format!(
                        "timeout_ms must be between 100 and 60000, got {}",
                        t.get_ref()
                    ),
                ))
            }
        };
        let pool =
            bounded(&d.pool_per_dc, 16, 1, 1024, "pool_per_dc").map_err(|(s, m)| at(s, m))?;
        let login = d.login.map(|l| {
            for (f, name) in [
                (&l.attribute, "attribute"),
                (&l.search_base, "search_base"),
                (&l.service_dn, "service_dn"),
            ] {
                if f.get_ref().trim().is_empty() {
                    return Err(at(f.span(), format!("login.{name} must not be empty")));
                }
            }
            if !l
                .attribute
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(at(
                    l.attribute.span(),
                    "login.attribute must be an LDAP attribute name such as \"mail\"".into(),
                ));
            }
            Ok(LoginConfig {
                attribute: l.attribute.into_inner(),
                search_base: l.search_base.into_inner(),
                service_dn: l.service_dn.into_inner(),
                service_password_file: resolve(l.service_password_file.get_ref()),
            })
        });
        let login = login.transpose()?;

        Ok(AgentConfig {
            state_dir: resolve(a.state_dir.get_ref()),
            endpoints,
            channels_per_endpoint: channels,
            max_in_flight: u16::try_from(in_flight).unwrap_or(u16::MAX),
            proxy,
            domain_controllers: dcs,
            ca_file: resolve(d.ca_file.get_ref()),
            timeout: Duration::from_millis(timeout_ms),
            pool_per_dc: pool,
            login,
            allow_plain_ldap: raw.danger.allow_plain_ldap,
        })
    }
}

fn parse_https(u: &str) -> Result<Endpoint, String> {
    let (host, port) = causeway_config::parse_https(u, "agents")?;
    Ok(Endpoint { host, port })
}

fn parse_proxy(u: &str) -> Result<Endpoint, String> {
    let rest = u
        .strip_prefix("http://")
        .ok_or_else(|| format!("proxy {u:?} must be http://host:port (an HTTP CONNECT proxy)"))?;
    let (host, port) = split_host_port(rest.trim_end_matches('/'), 3128)?;
    Ok(Endpoint { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[agent]
state_dir = "/var/lib/causeway-agent"
endpoints = ["https://idp.example.com:8443", "https://idp2.example.com"]
proxy = "http://proxy.corp:3128"

[directory]
domain_controllers = ["ldaps://dc1.corp:636", "ldap://dc2.corp"]
ca_file = "ad-ca.pem"
timeout_ms = 3000

[directory.login]
attribute = "mail"
search_base = "DC=corp"
service_dn = "CN=svc,DC=corp"
service_password_file = "svc.pw"
"#;

    fn parse(t: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(t, Path::new("/etc/causeway/agent.toml"))
    }

    #[test]
    fn a_full_config_validates() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(
            c.endpoints[1],
            Endpoint {
                host: "idp2.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            c.domain_controllers[1],
            DcConfig {
                url: "ldap://dc2.corp:389".into(),
                transport: Transport::StartTls
            }
        );
        assert_eq!(c.ca_file, PathBuf::from("/etc/causeway/ad-ca.pem"));
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.channels_per_endpoint, 2);
        assert_eq!(
            c.proxy,
            Some(Endpoint {
                host: "proxy.corp".into(),
                port: 3128
            })
        );
        assert_eq!(
            c.login.expect("login").service_password_file,
            PathBuf::from("/etc/causeway/svc.pw")
        );
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let bad = GOOD.replace("ldap://dc2.corp", "ftp://dc2.corp");
        let e = parse(&bad).expect_err("invalid");
        assert_eq!((e.line, e.column), (Some(8), Some(47)), "{e}");
        assert!(
            e.to_string()
                .starts_with("/etc/causeway/agent.toml:8:47: domain controller \"ftp://dc2.corp\""),
            "{e}"
        );

        let e = parse(&GOOD.replace("timeout_ms = 3000", "timeout_ms = 5")).expect_err("invalid");
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.message.contains("between 100 and 60000"));

        let e = parse(&GOOD.replace("proxy =", "proxie =")).expect_err("unknown key");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");

        let e = parse("[agent\nstate_dir=1").expect_err("syntax");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn the_shipped_example_validates() {
        let text = include_str!("../../agent.example.toml");
        let c = parse(text).expect("agent.example.toml must stay valid");
        assert_eq!(c.domain_controllers.len(), 2);
        assert!(c.login.is_none() && !c.allow_plain_ldap);
    }

    #[test]
    fn plain_ldap_needs_the_danger_flag() {
        let plain = GOOD.replace("ldap://dc2.corp", "ldap+plain://dc2.corp");
        let e = parse(&plain).expect_err("refused");
        assert!(e.message.contains("in clear"), "{e}");
        let allowed = format!("{plain}\n[danger]\nallow_plain_ldap = true\n");
        let c = parse(&allowed).expect("allowed");
        assert_eq!(c.domain_controllers[1].transport, Transport::Plain);
        assert!(c.allow_plain_ldap);
    }

    #[test]
    fn endpoint_and_proxy_shapes() {
        assert!(parse_https("http://idp").is_err());
        assert!(parse_https("https://idp/path").is_err());
        assert_eq!(
            parse_https("https://[::1]:8443").expect("v6"),
            Endpoint {
                host: "::1".into(),
                port: 8443
            }
        );
        assert!(parse_https("https://idp:0").is_err());
        assert!(parse_https("https://idp:99999").is_err());
        assert!(parse_https("https://user@idp").is_err());
        assert!(parse_proxy("socks5://p:1080").is_err());
        assert_eq!(
            parse_ldap("ldaps://[::1]").expect("v6").1,
            "ldaps://[::1]:636"
        );
        let dup = GOOD.replace("https://idp2.example.com", "https://idp.example.com:8443");
        assert!(parse(&dup).expect_err("dup").message.contains("twice"));
    }
}
