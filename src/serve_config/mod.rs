//! `causeway serve`'s configuration file (TOML), validated at start with errors that name
//! the file, line and column. Every setting has a default, so no file is needed on a
//! single machine; `CAUSEWAY_*` environment variables and command-line flags override it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_certs::signing::RolloverPolicy;
use causeway_credential::Secret;
use causeway_federation::acceptor::certs::CertFiles;
use causeway_federation::acceptor::ConnectionLimits;
use causeway_federation::apps::{Apps, WsFedRealm};
use causeway_federation::client_addr::{IpRange, TrustedProxies};
use causeway_federation::hub::lockout::LockoutPolicy;
use causeway_federation::ingest::{MAX_LEASE, MIN_LEASE};
use causeway_federation::signin::Method;
use causeway_federation::web::HttpLimits;
use causeway_saml::saml2::ServiceProvider;
use serde::Deserialize;
use toml::Spanned;

use causeway_config::{read_config, ConfigError};

mod limits;

pub(crate) use limits::DEFAULT_ANONYMOUS_BUDGET;
use limits::{anonymous_budget, connection_settings, lockout_policy};

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
    saml: RawSaml,
    #[serde(default)]
    wsfed_app: Vec<Spanned<WsFedRealm>>,
    #[serde(default)]
    lockout: RawLockout,
    #[serde(default)]
    throttle: RawThrottle,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    password_policy: crate::password_policy::RawPasswordPolicy,
    #[serde(default)]
    audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    max_file_mib: Option<Spanned<u64>>,
    keep_files: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    lease: Option<Spanned<String>>,
    certificate_validity: Option<Spanned<String>>,
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
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
    agent_listen: Option<Spanned<String>>,
    shutdown_timeout: Option<Spanned<String>>,
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

/// `[saml]`: how our SAML metadata is published.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaml {
    sign_metadata: Option<bool>,
    metadata_valid_for: Option<Spanned<String>>,
    metadata_cache_duration: Option<Spanned<String>>,
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
    /// `[saml]`: validUntil, cacheDuration and signing of our SAML metadata.
    pub(crate) saml_metadata: causeway_federation::portal::MetadataConfig,
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
    /// How long a sync host's lease on a connector lasts unless renewed (`[sync] lease`).
    pub(crate) sync_lease: Duration,
    /// How long a sync host's certificate lasts (`[sync] certificate_validity`); it
    /// renews at 70 % of it.
    pub(crate) sync_certificate_validity: Duration,
    /// The audit log's rotation (`[audit] max_file_mib`, `keep_files`).
    pub(crate) audit: causeway_federation::audit::Rotation,
    /// The certificate browsers get (`server.tls_cert_file` / `server.tls_key_file`);
    /// `None`: the one Causeway's CA issues.
    pub(crate) browser_cert: Option<CertFiles>,
    /// A listener of its own for agents and sync hosts (`server.agent_listen`); the public
    /// port then serves HTTPS only.
    pub(crate) agent_listen: Option<SocketAddr>,
    /// How long `serve` lets open requests finish after SIGTERM (`server.shutdown_timeout`).
    pub(crate) shutdown_timeout: Duration,
    /// What a cloud-only user's new password must meet (`[password_policy]`).
    pub(crate) password_policy: crate::password_policy::PasswordPolicy,
}

/// How long requests in flight may take to finish after SIGTERM unless configured: more
/// than the hub's whole check deadline (10 s), so a pass-through sign-in under way is
/// answered.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

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
            saml_metadata: Default::default(),
            connections: ConnectionSettings::default(),
            metrics_listen: None,
            metrics_token: None,
            lockout: LockoutPolicy::default(),
            trusted_proxies: TrustedProxies::default(),
            anonymous_budget: DEFAULT_ANONYMOUS_BUDGET,
            sync_lease: causeway_store::DEFAULT_LEASE,
            sync_certificate_validity: causeway_certs::DEFAULT_AGENT_CERT_VALIDITY,
            audit: causeway_federation::audit::Rotation::default(),
            browser_cert: None,
            agent_listen: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            password_policy: crate::password_policy::PasswordPolicy::default(),
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
                        causeway_config::parse_duration(s.get_ref()).map_err(|m| at(s.span(), m))
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
        if let Some(l) = &raw.server.agent_listen {
            cfg.agent_listen = Some(l.get_ref().parse().map_err(|_| {
                at(
                    l.span(),
                    format!(
                        "{:?} is not an address such as 0.0.0.0:8444 or [::]:8444",
                        l.get_ref()
                    ),
                )
            })?);
        }
        cfg.browser_cert = browser_cert(&raw.server, &at, &resolve)?;
        cfg.shutdown_timeout = dur(&raw.server.shutdown_timeout, cfg.shutdown_timeout)?;
        if cfg.shutdown_timeout > Duration::from_secs(600) {
            let s = raw
                .server
                .shutdown_timeout
                .as_ref()
                .map_or(0..0, Spanned::span);
            return Err(at(s, "server.shutdown_timeout must be at most 10m".into()));
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
        let m = cfg.saml_metadata;
        cfg.saml_metadata = causeway_federation::portal::MetadataConfig {
            valid_for: dur(&raw.saml.metadata_valid_for, m.valid_for)?,
            cache_duration: dur(&raw.saml.metadata_cache_duration, m.cache_duration)?,
            signed: raw.saml.sign_metadata.unwrap_or(m.signed),
        };
        let m = cfg.saml_metadata;
        if m.valid_for < Duration::from_secs(3600)
            || m.valid_for > Duration::from_secs(365 * 86_400)
        {
            let s = raw
                .saml
                .metadata_valid_for
                .as_ref()
                .map_or(0..0, Spanned::span);
            return Err(at(
                s,
                "saml.metadata_valid_for must be between 1h and 365d".into(),
            ));
        }
        if m.cache_duration < Duration::from_secs(60) || m.cache_duration > m.valid_for {
            let s = raw
                .saml
                .metadata_cache_duration
                .as_ref()
                .map_or(0..0, Spanned::span);
            return Err(at(
                s,
                "saml.metadata_cache_duration must be at least 1m and at most saml.metadata_valid_for (relying parties must fetch a fresh copy before theirs expires)".into(),
            ));
        }
        cfg.lockout = lockout_policy(&raw, &at, &dur)?;
        cfg.password_policy =
            crate::password_policy::PasswordPolicy::from_raw(&raw.password_policy, &at)?;
        cfg.anonymous_budget = anonymous_budget(&raw.throttle, &at)?;
        cfg.sync_lease = dur(&raw.sync.lease, cfg.sync_lease)?;
        if !(MIN_LEASE..=MAX_LEASE).contains(&cfg.sync_lease) {
            let s = raw.sync.lease.as_ref().map_or(0..0, Spanned::span);
            return Err(at(
                s,
                "sync.lease must be between 2s and 10m (a sync host renews it at about a third of it)".into(),
            ));
        }
        cfg.sync_certificate_validity = dur(
            &raw.sync.certificate_validity,
            cfg.sync_certificate_validity,
        )?;
        if let Some(m) = &raw.audit.max_file_mib {
            if !(1..=4096).contains(m.get_ref()) {
                return Err(at(
                    m.span(),
                    "audit.max_file_mib must be between 1 and 4096 (MiB)".into(),
                ));
            }
            cfg.audit.max_file_bytes = m.get_ref() * 1024 * 1024;
        }
        if let Some(k) = &raw.audit.keep_files {
            if !(1..=1000).contains(k.get_ref()) {
                return Err(at(
                    k.span(),
                    "audit.keep_files must be between 1 and 1000".into(),
                ));
            }
            cfg.audit.keep_files = *k.get_ref();
        }
        let (min, max) = (
            causeway_certs::MIN_AGENT_CERT_VALIDITY,
            causeway_certs::MAX_AGENT_CERT_VALIDITY,
        );
        if !(min..=max).contains(&cfg.sync_certificate_validity) {
            let s = raw
                .sync
                .certificate_validity
                .as_ref()
                .map_or(0..0, Spanned::span);
            return Err(at(
                s,
                "sync.certificate_validity must be between 1m and 365d (a sync host renews at 70 % of it)".into(),
            ));
        }
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
            if let Some(u) = causeway_federation::apps::plain_http_url(&sp) {
                let problem = causeway_federation::apps::plain_http_problem(&sp.entity_id, u);
                return Err(at(
                    app.metadata.span(),
                    format!("{}: {problem}", p.display()),
                ));
            }
            cfg.apps.saml.insert(sp.entity_id.clone(), sp);
        }
        for w in &raw.wsfed_app {
            w.get_ref().validate().map_err(|m| at(w.span(), m))?;
            let r = w.get_ref();
            if let Some(u) = r
                .reply_urls
                .iter()
                .find(|u| !causeway_federation::apps::is_https_or_loopback(u))
            {
                return Err(at(
                    w.span(),
                    causeway_federation::apps::plain_http_problem(&r.realm, u),
                ));
            }
            cfg.apps
                .wsfed
                .insert(w.get_ref().realm.clone(), w.get_ref().clone());
        }
        Ok(cfg)
    }
}

/// `server.tls_cert_file` and `server.tls_key_file`: both or neither, and a pair that
/// loads now (the error names the line of the file at fault).
fn browser_cert(
    server: &RawServer,
    at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    resolve: &impl Fn(&str) -> PathBuf,
) -> Result<Option<CertFiles>, ConfigError> {
    let (cert, key) = match (&server.tls_cert_file, &server.tls_key_file) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(c), None) => {
            return Err(at(
                c.span(),
                "server.tls_cert_file needs server.tls_key_file (the certificate's private key, PEM)".into(),
            ))
        }
        (None, Some(k)) => {
            return Err(at(
                k.span(),
                "server.tls_key_file needs server.tls_cert_file (the certificate chain, PEM, leaf first)".into(),
            ))
        }
    };
    let files = CertFiles {
        cert: resolve(cert.get_ref()),
        key: resolve(key.get_ref()),
    };
    match causeway_certs::load_cert_files(&files.cert, &files.key, std::time::SystemTime::now()) {
        Ok(_) => Ok(Some(files)),
        Err(e) => {
            let span = match &e {
                causeway_certs::CertsError::TlsFile { path, .. } if *path == files.key => {
                    key.span()
                }
                _ => cert.span(),
            };
            Err(at(span, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests;
