//! `causeway serve`'s configuration file (TOML), validated at start with errors that name
//! the file, line and column. Every setting has a default, so no file is needed on a
//! single machine; `CAUSEWAY_*` environment variables and command-line flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_certs::signing::RolloverPolicy;
use causeway_credential::Secret;
use causeway_federation::acceptor::ConnectionLimits;
use causeway_federation::apps::{Apps, WsFedRealm};
use causeway_federation::client_addr::{IpRange, TrustedProxies};
use causeway_federation::hub::lockout::LockoutPolicy;
use causeway_federation::saml::ServiceProvider;
use causeway_federation::signin::Method;
use causeway_federation::web::HttpLimits;
use serde::Deserialize;
use toml::Spanned;

use crate::config_file::{read_config, ConfigError};

const MAX_CONFIG_BYTES: usize = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    signing: RawSigning,
    #[serde(default)]
    domain: Vec<RawDomain>,
    #[serde(default)]
    saml_app: Vec<RawSamlApp>,
    #[serde(default)]
    wsfed_app: Vec<Spanned<WsFedRealm>>,
    #[serde(default)]
    lockout: RawLockout,
    #[serde(default)]
    throttle: RawThrottle,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockout {
    threshold: Option<Spanned<u32>>,
    directory_threshold: Option<Spanned<u32>>,
    window: Option<Spanned<String>>,
    lock_for: Option<Spanned<String>>,
    max_lock: Option<Spanned<String>>,
    familiar_locations: Option<Spanned<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    per_source_failures_per_minute: Option<Spanned<u32>>,
    anonymous_per_source_per_second: Option<Spanned<u32>>,
    anonymous_burst: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    public_url: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    data_dir: Option<String>,
    server_names: Option<Vec<String>>,
    endpoint_id: Option<String>,
    require_approval: Option<bool>,
    handshake_timeout: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_source: Option<Spanned<i64>>,
    max_agent_channels: Option<Spanned<i64>>,
    metrics_listen: Option<Spanned<String>>,
    metrics_token_file: Option<Spanned<String>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    lifetime: Option<Spanned<String>>,
    token_validity: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    key_lifetime: Option<Spanned<String>>,
    publish_before_expiry: Option<Spanned<String>>,
    activate_after_publish: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Spanned<String>,
    method: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSamlApp {
    metadata: Spanned<String>,
}

/// A validated configuration (file settings only; flags are applied by the caller).
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) public_url: Option<String>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) server_names: Option<Vec<String>>,
    pub(crate) endpoint_id: Option<String>,
    pub(crate) require_approval: bool,
    pub(crate) session_lifetime: Duration,
    pub(crate) token_validity: Duration,
    pub(crate) rollover: RolloverPolicy,
    pub(crate) domains: Vec<(String, Method)>,
    pub(crate) apps: Apps,
    /// Connection limits of the public port; the caps are bounded by the file-descriptor
    /// limit at start-up (see [`ServeConfig::connection_limits`]).
    pub(crate) connections: ConnectionSettings,
    /// Where `/metrics` is served; `None`: [`DEFAULT_METRICS_LISTEN`], and a failure to
    /// listen there is a warning rather than fatal.
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// A bearer token `/metrics` scrapes must send (read from `server.metrics_token_file`).
    pub(crate) metrics_token: Option<Arc<Secret<String>>>,
    pub(crate) lockout: LockoutPolicy,
    pub(crate) trusted_proxies: TrustedProxies,
    /// Sign-in requests without a session one source may make: (per second, burst).
    pub(crate) anonymous_budget: (u32, u32),
}

/// The shortest metrics token accepted: long enough that guessing it is hopeless.
const MIN_METRICS_TOKEN: usize = 16;

/// Where Prometheus `/metrics` is served unless configured: loopback only.
pub(crate) const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// File descriptors kept back from the connection caps: the data directory's files, the
/// directory store, LDAP pools, the metrics listener, logs.
const FD_RESERVE: u64 = 256;

/// `[server]`'s connection settings as configured (`None`: derived at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionSettings {
    pub(crate) handshake_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_source: usize,
    pub(crate) max_agent_channels: Option<usize>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        let (d, http) = (ConnectionLimits::default(), HttpLimits::default());
        Self {
            handshake_timeout: d.handshake_timeout,
            header_read_timeout: http.header_read_timeout,
            idle_timeout: http.idle_timeout,
            max_connections: None,
            max_connections_per_source: d.max_connections_per_source,
            max_agent_channels: None,
        }
    }
}

impl ConnectionSettings {
    /// The HTTP side's timeouts.
    pub(crate) fn http(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The limits to run with when the process may hold `fd_limit` open files (its
    /// `RLIMIT_NOFILE`; `None` if unknown): unset caps are derived from it, and caps that
    /// together exceed it are lowered, with the warning to log. A connection costs one
    /// descriptor, so caps above the limit would bring back `EMFILE` instead of a clean
    /// refusal.
    pub(crate) fn limits(&self, fd_limit: Option<u64>) -> (ConnectionLimits, Option<String>) {
        let d = ConnectionLimits::default();
        let mut limits = ConnectionLimits {
            handshake_timeout: self.handshake_timeout,
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_connections_per_source: self.max_connections_per_source,
            max_agent_channels: self.max_agent_channels.unwrap_or(d.max_agent_channels),
        };
        let Some(fds) = fd_limit else {
            return (limits, None);
        };
        let budget = usize::try_from(fds.saturating_sub(FD_RESERVE))
            .unwrap_or(usize::MAX)
            .max(2);
        if self.max_agent_channels.is_none() {
            limits.max_agent_channels = limits.max_agent_channels.min((budget / 8).max(1));
        }
        if self.max_connections.is_none() {
            limits.max_connections = limits
                .max_connections
                .min(budget.saturating_sub(limits.max_agent_channels).max(1));
        }
        let asked = limits.max_connections + limits.max_agent_channels;
        if asked <= budget {
            return (limits, None);
        }
        limits.max_agent_channels = limits.max_agent_channels.min((budget / 2).max(1));
        limits.max_connections = budget.saturating_sub(limits.max_agent_channels).max(1);
        let warning = format!(
            "server.max_connections + server.max_agent_channels = {asked}, but only {budget} file descriptors are left for connections (RLIMIT_NOFILE {fds} minus {FD_RESERVE}); using max_connections = {} and max_agent_channels = {}. Raise the hard limit (LimitNOFILE= in systemd) or lower the caps",
            limits.max_connections, limits.max_agent_channels
        );
        (limits, Some(warning))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            listen: None,
            data_dir: None,
            server_names: None,
            endpoint_id: None,
            require_approval: false,
            session_lifetime: Duration::from_secs(8 * 3600),
            token_validity: Duration::from_secs(300),
            rollover: RolloverPolicy::default(),
            domains: Vec::new(),
            apps: Apps::default(),
            connections: ConnectionSettings::default(),
            metrics_listen: None,
            metrics_token: None,
            lockout: LockoutPolicy::default(),
            trusted_proxies: TrustedProxies::default(),
            anonymous_budget: DEFAULT_ANONYMOUS_BUDGET,
        }
    }
}

/// Checks a public URL: `https://host[:port]` with no path, query or fragment.
pub(crate) fn check_public_url(u: &str) -> Result<String, String> {
    let u = u.trim_end_matches('/');
    let rest = u.strip_prefix("https://").ok_or_else(|| {
        format!("{u:?}: the public URL must start with https:// (cookies are Secure)")
    })?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '"', '<', '>']) {
        return Err(format!(
            "{u:?}: give scheme, host and port only, e.g. https://sso.example.com"
        ));
    }
    Ok(u.to_owned())
}

impl ServeConfig {
    /// Reads and validates `path`.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config(path, MAX_CONFIG_BYTES)?;
        Self::parse(&text, path)
    }

    /// Validates configuration text (`path` for messages and relative paths).
    pub(crate) fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String| {
            ConfigError::at(path, text, span.start, message)
        };
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let dur =
            |v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(s) => {
                        crate::duration::parse_duration(s.get_ref()).map_err(|m| at(s.span(), m))
                    }
                }
            };
        let mut cfg = Self::default();
        if let Some(u) = &raw.server.public_url {
            cfg.public_url = Some(check_public_url(u.get_ref()).map_err(|m| at(u.span(), m))?);
        }
        if let Some(l) = &raw.server.listen {
            cfg.listen = Some(l.get_ref().parse().map_err(|_| {
                at(
                    l.span(),
                    format!(
                        "{:?} is not an address such as 127.0.0.1:8443 or [::]:443",
                        l.get_ref()
                    ),
                )
            })?);
        }
        if let Some(l) = &raw.server.metrics_listen {
            cfg.metrics_listen = Some(l.get_ref().parse().map_err(|_| {
                at(
                    l.span(),
                    format!(
                        "{:?} is not an address such as 127.0.0.1:9464 or [::1]:9464",
                        l.get_ref()
                    ),
                )
            })?);
        }
        if let Some(f) = &raw.server.metrics_token_file {
            let p = resolve(f.get_ref());
            // The file's content is the secret: messages name the file, never what is in it.
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&p)
                    .map_err(|e| at(f.span(), format!("cannot read {}: {e}", p.display())))?,
            );
            let token = text.trim();
            if token.len() < MIN_METRICS_TOKEN || token.contains(char::is_whitespace) {
                return Err(at(
                    f.span(),
                    format!(
                        "{}: the metrics token must be one line of at least {MIN_METRICS_TOKEN} characters without spaces (e.g. openssl rand -hex 32)",
                        p.display()
                    ),
                ));
            }
            cfg.metrics_token = Some(Arc::new(Secret::new(token.to_owned())));
        }
        cfg.connections = connection_settings(&raw.server, &at, &dur)?;
        cfg.data_dir = raw.server.data_dir.as_deref().map(resolve);
        cfg.server_names = raw.server.server_names.clone();
        cfg.endpoint_id = raw.server.endpoint_id.clone();
        cfg.require_approval = raw.server.require_approval.unwrap_or(false);
        cfg.session_lifetime = dur(&raw.session.lifetime, cfg.session_lifetime)?;
        cfg.token_validity = dur(&raw.session.token_validity, cfg.token_validity)?;
        if cfg.session_lifetime < Duration::from_secs(60)
            || cfg.session_lifetime > Duration::from_secs(30 * 86_400)
        {
            let s = raw.session.lifetime.as_ref().map_or(0..0, Spanned::span);
            return Err(at(s, "session.lifetime must be between 1m and 30d".into()));
        }
        if cfg.token_validity < Duration::from_secs(60)
            || cfg.token_validity > Duration::from_secs(3600)
        {
            let s = raw
                .session
                .token_validity
                .as_ref()
                .map_or(0..0, Spanned::span);
            return Err(at(
                s,
                "session.token_validity must be between 1m and 1h".into(),
            ));
        }
        let d = RolloverPolicy::default();
        cfg.rollover = RolloverPolicy {
            key_lifetime: dur(&raw.signing.key_lifetime, d.key_lifetime)?,
            publish_before_expiry: dur(
                &raw.signing.publish_before_expiry,
                d.publish_before_expiry,
            )?,
            activate_after_publish: dur(
                &raw.signing.activate_after_publish,
                d.activate_after_publish,
            )?,
        };
        if let Err(m) = cfg.rollover.validate() {
            let s = raw
                .signing
                .activate_after_publish
                .as_ref()
                .or(raw.signing.publish_before_expiry.as_ref())
                .or(raw.signing.key_lifetime.as_ref())
                .map_or(0..0, Spanned::span);
            return Err(at(s, format!("[signing]: {m}")));
        }
        cfg.lockout = lockout_policy(&raw, &at, &dur)?;
        cfg.anonymous_budget = anonymous_budget(&raw.throttle, &at)?;
        if let Some(list) = &raw.server.trusted_proxies {
            let mut ranges = Vec::new();
            for r in list {
                ranges.push(
                    r.get_ref()
                        .parse::<IpRange>()
                        .map_err(|e| at(r.span(), format!("server.trusted_proxies: {e}")))?,
                );
            }
            cfg.trusted_proxies = TrustedProxies::new(ranges);
        }
        for dm in &raw.domain {
            let name = dm.name.get_ref().trim().to_lowercase();
            if !name.contains('.') || name.contains(['@', ' ', '/']) {
                return Err(at(
                    dm.name.span(),
                    format!("{name:?} is not a DNS domain such as corp.example.com"),
                ));
            }
            let method = match dm.method.get_ref().as_str() {
                "pta" => Method::Pta,
                "phs" => Method::Phs,
                "pta+phs" => Method::PtaWithPhsFallback,
                other => {
                    return Err(at(
                        dm.method.span(),
                        format!("unknown method {other:?}: use \"pta\" (pass-through), \"phs\" (password hash sync) or \"pta+phs\" (pass-through, hash sync when no agent is connected)"),
                    ))
                }
            };
            if cfg.domains.iter().any(|(d, _)| *d == name) {
                return Err(at(
                    dm.name.span(),
                    format!("the domain {name} is listed twice"),
                ));
            }
            cfg.domains.push((name, method));
        }
        for app in &raw.saml_app {
            let p = resolve(app.metadata.get_ref());
            let xml = std::fs::read_to_string(&p).map_err(|e| {
                at(
                    app.metadata.span(),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            let sp = ServiceProvider::from_metadata(&xml)
                .map_err(|e| at(app.metadata.span(), format!("{}: {e}", p.display())))?;
            cfg.apps.saml.insert(sp.entity_id.clone(), sp);
        }
        for w in &raw.wsfed_app {
            w.get_ref().validate().map_err(|m| at(w.span(), m))?;
            cfg.apps
                .wsfed
                .insert(w.get_ref().realm.clone(), w.get_ref().clone());
        }
        Ok(cfg)
    }
}

/// Reads an optional duration setting, or its default.
type DurationField<'a> =
    &'a dyn Fn(&Option<Spanned<String>>, Duration) -> Result<Duration, ConfigError>;

/// Validates `[server]`'s timeouts and caps.
fn connection_settings(
    raw: &RawServer,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    dur: DurationField<'_>,
) -> Result<ConnectionSettings, ConfigError> {
    let d = ConnectionSettings::default();
    let within = |v: &Option<Spanned<String>>,
                  default: Duration,
                  name: &str,
                  max: (Duration, &str)|
     -> Result<Duration, ConfigError> {
        let t = dur(v, default)?;
        if t < Duration::from_secs(1) || t > max.0 {
            let s = v.as_ref().map_or(0..0, Spanned::span);
            return Err(at(
                s,
                format!("server.{name} must be between 1s and {}", max.1),
            ));
        }
        Ok(t)
    };
    let count =
        |v: &Option<Spanned<i64>>, name: &str, max: i64| -> Result<Option<usize>, ConfigError> {
            match v {
                None => Ok(None),
                Some(n) if (1..=max).contains(n.get_ref()) => {
                    Ok(Some(usize::try_from(*n.get_ref()).unwrap_or(usize::MAX)))
                }
                Some(n) => Err(at(
                    n.span(),
                    format!("server.{name} must be between 1 and {max}"),
                )),
            }
        };
    let s = ConnectionSettings {
        handshake_timeout: within(
            &raw.handshake_timeout,
            d.handshake_timeout,
            "handshake_timeout",
            (Duration::from_secs(300), "5m"),
        )?,
        header_read_timeout: within(
            &raw.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
            (Duration::from_secs(300), "5m"),
        )?,
        idle_timeout: within(
            &raw.idle_timeout,
            d.idle_timeout,
            "idle_timeout",
            (Duration::from_secs(3600), "1h"),
        )?,
        max_connections: count(&raw.max_connections, "max_connections", 1_000_000)?,
        max_connections_per_source: count(
            &raw.max_connections_per_source,
            "max_connections_per_source",
            1_000_000,
        )?
        .unwrap_or(d.max_connections_per_source),
        max_agent_channels: count(&raw.max_agent_channels, "max_agent_channels", 100_000)?,
    };
    if let (Some(max), Some(per)) = (s.max_connections, &raw.max_connections_per_source) {
        if s.max_connections_per_source > max {
            return Err(at(
                per.span(),
                format!("server.max_connections_per_source cannot exceed server.max_connections ({max})"),
            ));
        }
    }
    Ok(s)
}

/// Reads an optional duration setting, or gives the default.
type DurationSetting<'a> =
    dyn Fn(&Option<Spanned<String>>, Duration) -> Result<Duration, ConfigError> + 'a;

/// Sign-in requests without a session per source: 50 a second, in bursts of 200.
pub(crate) const DEFAULT_ANONYMOUS_BUDGET: (u32, u32) = (50, 200);

/// `[throttle]`'s budget for sign-in work without a session (0 per second: off).
fn anonymous_budget(
    t: &RawThrottle,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<(u32, u32), ConfigError> {
    let (d_rate, d_burst) = DEFAULT_ANONYMOUS_BUDGET;
    let rate = t
        .anonymous_per_source_per_second
        .as_ref()
        .map_or(d_rate, |v| *v.get_ref());
    // Unless given, the burst is four seconds' worth (at least 20).
    let burst = t.anonymous_burst.as_ref().map_or(
        if rate == d_rate {
            d_burst
        } else {
            rate.saturating_mul(4).max(20)
        },
        |v| *v.get_ref(),
    );
    if rate > 1_000_000 {
        let span = t
            .anonymous_per_source_per_second
            .as_ref()
            .map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "throttle.anonymous_per_source_per_second must be at most 1000000 (0 turns it off)"
                .into(),
        ));
    }
    if rate > 0 && burst == 0 {
        let span = t.anonymous_burst.as_ref().map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "throttle.anonymous_burst must be at least 1".into(),
        ));
    }
    Ok((rate, burst))
}

/// `[lockout]` and `[throttle]` over the defaults, checked together (the error points at
/// the first setting given, or the section when only defaults are involved).
fn lockout_policy(
    raw: &Raw,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    dur: &DurationSetting<'_>,
) -> Result<LockoutPolicy, ConfigError> {
    let (l, t) = (&raw.lockout, &raw.throttle);
    let d = LockoutPolicy::default();
    let threshold = l.threshold.as_ref().map_or(d.threshold, |v| *v.get_ref());
    let p = LockoutPolicy {
        threshold,
        // Unless given, one guess above the threshold for familiar places.
        directory_threshold: l
            .directory_threshold
            .as_ref()
            .map_or(threshold.saturating_add(1), |v| *v.get_ref()),
        window: dur(&l.window, d.window)?,
        lock_for: dur(&l.lock_for, d.lock_for)?,
        max_lock: dur(&l.max_lock, d.max_lock)?,
        familiar_locations: l
            .familiar_locations
            .as_ref()
            .map_or(d.familiar_locations, |v| *v.get_ref()),
        per_source_failures_per_minute: t
            .per_source_failures_per_minute
            .as_ref()
            .map_or(d.per_source_failures_per_minute, |v| *v.get_ref()),
        ..d
    };
    if let Err(m) = p.validate() {
        let span = [
            l.threshold.as_ref().map(Spanned::span),
            l.directory_threshold.as_ref().map(Spanned::span),
            l.window.as_ref().map(Spanned::span),
            l.lock_for.as_ref().map(Spanned::span),
            l.max_lock.as_ref().map(Spanned::span),
            t.per_source_failures_per_minute.as_ref().map(Spanned::span),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(0..0);
        return Err(at(span, m));
    }
    if p.familiar_locations == 0 || p.familiar_locations > 1024 {
        let span = l.familiar_locations.as_ref().map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "lockout.familiar_locations must be between 1 and 1024".into(),
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(t, Path::new("causeway.toml"))
    }

    #[test]
    fn empty_is_all_defaults_and_the_example_validates() {
        let c = parse("").expect("empty");
        assert_eq!(c.session_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(c.rollover, RolloverPolicy::default());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("causeway.example.toml");
        let c = ServeConfig::load(&path).expect("the shipped example validates");
        assert_eq!(c.domains.len(), 2);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("[server]\npublic_url = \"http://x\"\n").expect_err("http");
        assert_eq!((e.line, e.column), (Some(2), Some(14)), "{e}");
        let e = parse("[[domain]]\nname = \"corp.example\"\nmethod = \"kerberos\"\n")
            .expect_err("method");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("causeway.toml:3:"), "{e}");
        let e = parse("[session]\nlifetime = \"5w\"\n").expect_err("unit");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[server]\nlisten = 8443\n").expect_err("type");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[sever]\n").expect_err("typo");
        assert_eq!(e.line, Some(1), "{e}");
        let e = parse("[signing]\nactivate_after_publish = \"30d\"\n").expect_err("policy");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[lockout]\nthreshold = 5\ndirectory_threshold = 5\n").expect_err("budget");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("directory_threshold"), "{e}");
        let e = parse("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n")
            .expect_err("cidr");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[throttle]\nper_source_per_minute = 5\n").expect_err("old name");
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse("[[wsfed_app]]\nrealm = \"urn:x\"\nreply_urls = [\"javascript:x\"]\n")
            .expect_err("url");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn connection_settings_are_read_and_checked_with_their_line() {
        let c = parse(
            "[server]\nidle_timeout = \"5s\"\nhandshake_timeout = \"3s\"\nmax_connections = 500\nmax_connections_per_source = 8\nmetrics_listen = \"127.0.0.1:0\"\n",
        )
        .expect("valid");
        assert_eq!(c.connections.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.connections.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.connections.max_connections, Some(500));
        assert_eq!(c.connections.max_connections_per_source, 8);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:0".parse().expect("addr")));
        assert_eq!(parse("").expect("empty").metrics_listen, None);
        for (text, line) in [
            ("[server]\n\nidle_timeout = \"0s\"\n", 3),
            ("[server]\nidle_timeout = \"2h\"\n", 2),
            ("[server]\nhandshake_timeout = \"1d\"\n", 2),
            ("[server]\nheader_read_timeout = \"soon\"\n", 2),
            ("[server]\nmax_connections = 0\n", 2),
            ("[server]\nmax_connections_per_source = -1\n", 2),
            ("[server]\nmax_agent_channels = 1000001\n", 2),
            (
                "[server]\nmax_connections = 10\nmax_connections_per_source = 11\n",
                3,
            ),
            ("[server]\nmetrics_listen = \"localhost\"\n", 2),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, Some(line), "{text}: {e}");
        }
    }

    #[test]
    fn connection_caps_stay_below_the_file_descriptor_limit() {
        let d = ConnectionSettings::default();
        // A generous limit: the documented defaults.
        let (l, w) = d.limits(Some(1 << 20));
        assert_eq!((l.max_connections, l.max_agent_channels), (10_000, 1_000));
        assert!(w.is_none());
        // 1024 descriptors: the defaults are derived below it, without a warning.
        let (l, w) = d.limits(Some(1024));
        assert!(w.is_none());
        assert_eq!(l.max_agent_channels, 96);
        assert_eq!(l.max_connections, 1024 - 256 - 96);
        // Caps set above the limit are lowered, and the operator is told.
        let set = ConnectionSettings {
            max_connections: Some(5_000),
            ..d
        };
        let (l, w) = set.limits(Some(1024));
        assert!(l.max_connections + l.max_agent_channels <= 1024 - 256);
        assert!(w.expect("a warning").contains("RLIMIT_NOFILE 1024"));
        // Unknown limit: as configured.
        assert_eq!(set.limits(None).0.max_connections, 5_000);
    }

    #[test]
    fn the_metrics_token_is_read_from_its_file_and_never_shown() {
        let dir =
            std::env::temp_dir().join(format!("causeway-metrics-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cfg = dir.join("causeway.toml");
        std::fs::write(dir.join("token"), "0123456789abcdef-unique-5e1\n").expect("token");
        std::fs::write(dir.join("short"), "tiny-5e2").expect("short");
        let c = ServeConfig::parse("[server]\nmetrics_token_file = \"token\"\n", &cfg)
            .expect("relative to the config file");
        let t = c.metrics_token.as_ref().expect("token");
        assert_eq!(t.expose_secret(), "0123456789abcdef-unique-5e1");
        assert!(
            !format!("{c:?}").contains("unique-5e1"),
            "Debug shows the token"
        );
        let e = ServeConfig::parse("[server]\n\nmetrics_token_file = \"short\"\n", &cfg)
            .expect_err("short");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(!e.to_string().contains("tiny-5e2"), "{e}");
        let e = ServeConfig::parse("[server]\nmetrics_token_file = \"missing\"\n", &cfg)
            .expect_err("missing");
        assert_eq!(e.line, Some(2), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lockout_throttle_and_proxies_are_read() {
        let c = parse("").expect("empty");
        assert_eq!(c.lockout.threshold, 3);
        assert_eq!(c.lockout.directory_threshold, 4);
        assert_eq!(c.lockout.per_source_failures_per_minute, 120);
        assert_eq!(c.anonymous_budget, (50, 200));
        let c = parse("[throttle]\nanonymous_per_source_per_second = 10\n").expect("rate");
        assert_eq!(
            c.anonymous_budget,
            (10, 40),
            "four seconds' worth unless given"
        );
        let c = parse("[throttle]\nanonymous_per_source_per_second = 0\n").expect("off");
        assert_eq!(c.anonymous_budget.0, 0);
        let e = parse("[throttle]\nanonymous_per_source_per_second = 5\nanonymous_burst = 0\n")
            .expect_err("no burst");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(c.trusted_proxies, TrustedProxies::default());
        let c = parse(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[lockout]\nthreshold = 5\nwindow = \"1h\"\nlock_for = \"5m\"\nfamiliar_locations = 4\n[throttle]\nper_source_failures_per_minute = 600\n",
        )
        .expect("valid");
        assert_eq!(c.lockout.threshold, 5);
        assert_eq!(
            c.lockout.directory_threshold, 6,
            "one above the threshold unless given"
        );
        assert_eq!(c.lockout.window, Duration::from_secs(3600));
        assert_eq!(c.lockout.lock_for, Duration::from_secs(300));
        assert_eq!(c.lockout.familiar_locations, 4);
        assert_eq!(c.lockout.per_source_failures_per_minute, 600);
        let behind: std::net::SocketAddr = "10.1.2.3:5000".parse().expect("addr");
        let mut h = hyper::HeaderMap::new();
        h.insert("x-forwarded-for", "198.51.100.7".parse().expect("value"));
        assert_eq!(
            c.trusted_proxies.client(&h, Some(behind)),
            Some("198.51.100.7".parse().expect("ip"))
        );
    }
}
