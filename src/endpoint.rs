//! `causeway serve`: the endpoint's data directory, its CA, registry and token-signing
//! keys, and the one listener for browsers, relying parties and agents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use causeway_federation::acceptor::{Routes, Shutdown};
use causeway_federation::hub::authority::CertsAuthority;
use causeway_federation::hub::{listener, Hub, HubConfig};
use causeway_federation::ingest::{IngestConfig, IngestHandler, DEFAULT_IDLE_TIMEOUT};
use causeway_federation::metrics::Metrics;
use causeway_federation::web::{HttpHandler, WebState};
use tracing::info;

use crate::data_dir::{DataDir, DEFAULT_DATA_DIR};

mod tls;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML; see causeway.example.toml). Optional: every setting has a default.
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// The endpoint's data directory [default: causeway-data].
    #[arg(long, env = "CAUSEWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on: browsers (HTTPS), and agents (mutual TLS) unless --agent-listen is given [default: 127.0.0.1:8443].
    #[arg(long, env = "CAUSEWAY_LISTEN")]
    listen: Option<SocketAddr>,
    /// A separate address for agents and sync hosts (mutual TLS); the public port then serves HTTPS only, e.g. behind a TLS-terminating proxy [default: none, they share --listen].
    #[arg(long, env = "CAUSEWAY_AGENT_LISTEN")]
    agent_listen: Option<SocketAddr>,
    /// The URL browsers and applications use [default: https://<listen>].
    #[arg(long, env = "CAUSEWAY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Names (DNS or IP) the TLS certificate carries, besides the public URL's host.
    #[arg(long = "server-name")]
    server_names: Vec<String>,
    /// Make new agents wait for `causeway certs approve` before they receive sign-ins.
    #[arg(long)]
    require_approval: bool,
    /// This endpoint replica's id (envelopes are sealed for it) [default: the host name].
    #[arg(long)]
    endpoint_id: Option<String>,
    /// Also serve the two demo SAML applications under /demo/ (as `causeway demo` does).
    #[arg(long)]
    demo_apps: bool,
    /// Where Prometheus /metrics is served (plain HTTP; see server.metrics_token_file) [default: 127.0.0.1:9464].
    #[arg(long, env = "CAUSEWAY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

/// Everything an endpoint runs with.
#[derive(Debug, Clone)]
pub(crate) struct EndpointSettings {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: SocketAddr,
    pub(crate) public_url: String,
    pub(crate) server_names: Vec<String>,
    pub(crate) endpoint_id: String,
    pub(crate) require_approval: bool,
    pub(crate) demo_apps: bool,
    /// Overrides the per-source sign-in rate limit and lifts the budget for sign-in work
    /// without a session (the benchmark's clients all share 127.0.0.1).
    pub(crate) per_source_per_minute: Option<u32>,
    pub(crate) file: crate::serve_config::ServeConfig,
}

impl ServeArgs {
    pub(crate) fn settings(self) -> Result<EndpointSettings> {
        let mut file = match &self.config {
            Some(p) => {
                crate::serve_config::ServeConfig::load(p).map_err(|e| anyhow::anyhow!("{e}"))?
            }
            None => crate::serve_config::ServeConfig::default(),
        };
        file.metrics_listen = self.metrics_listen.or(file.metrics_listen);
        file.agent_listen = self.agent_listen.or(file.agent_listen);
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443)));
        let public_url = match self.public_url.or_else(|| file.public_url.clone()) {
            Some(u) => crate::serve_config::check_public_url(&u).map_err(|e| anyhow::anyhow!("--public-url: {e}"))?,
            None if listen.ip().is_unspecified() => bail!(
                "listening on {listen} (all interfaces): set the public URL browsers use with --public-url or server.public_url"
            ),
            None => format!("https://{listen}"),
        };
        let mut server_names: Vec<String> = file
            .server_names
            .clone()
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()]);
        server_names.extend(self.server_names);
        let host = public_url
            .trim_start_matches("https://")
            .rsplit_once(':')
            .map_or(public_url.trim_start_matches("https://"), |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    public_url.trim_start_matches("https://")
                }
            })
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !server_names.contains(&host) {
            server_names.push(host);
        }
        Ok(EndpointSettings {
            data_dir: self
                .data_dir
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            public_url,
            server_names,
            endpoint_id: self
                .endpoint_id
                .or_else(|| file.endpoint_id.clone())
                .unwrap_or_else(causeway_certs::host_name),
            require_approval: self.require_approval || file.require_approval,
            demo_apps: self.demo_apps,
            per_source_per_minute: None,
            file,
        })
    }
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let settings = args.settings()?;
    // SIGTERM is what systemd and container runtimes send: drain, then exit 0.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let shutdown = Shutdown::new();
    let run = run_endpoint_until(settings, None, shutdown.clone());
    tokio::pin!(run);
    let why = tokio::select! {
        r = &mut run => return r,
        _ = term.recv() => "SIGTERM",
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            "SIGINT"
        }
    };
    info!(
        signal = why,
        "stopping: no new connections; finishing the requests in flight"
    );
    shutdown.stop();
    run.await?;
    info!("stopped");
    Ok(())
}

/// Runs an endpoint until it fails; sends the bound address on `ready` once listening.
pub(crate) async fn run_endpoint(
    s: EndpointSettings,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    run_endpoint_until(s, ready, Shutdown::new()).await
}

/// [`run_endpoint`] until `shutdown` is set; then drains (see
/// [`causeway_federation::acceptor::serve_until`]), tells agents GoAway and returns.
pub(crate) async fn run_endpoint_until(
    s: EndpointSettings,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    shutdown: Arc<Shutdown>,
) -> Result<()> {
    let data = DataDir {
        data_dir: s.data_dir.clone(),
    };
    let fd_limit = raise_fd_limit();
    let (limits, lowered) = s.file.connections.limits(fd_limit);
    let http_limits = s.file.connections.http();
    if let Some(w) = lowered {
        tracing::warn!("{w}");
    }
    let (ca, registry) = data.open()?;
    let audit_dir = data.audit();
    let audit = causeway_federation::audit::AuditLog::open(&audit_dir, s.file.audit)
        .with_context(|| format!("cannot open the audit log in {}", audit_dir.display()))?;
    causeway_federation::audit::install(audit);
    let tls::Configs {
        public: tls,
        agents: agent_tls,
    } = tls::configs(&ca, &s.server_names, &s.file)?;
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let bound = listener.local_addr()?;
    let agent_listener =
        match s.file.agent_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| {
                format!("cannot listen on {a} for agents (server.agent_listen)")
            })?),
            None => None,
        };
    let agent_bound = match &agent_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    // Port 0 asks the OS for a free port (tests, benchmarks: no port picked then bound
    // later, which another process may take in between). A public URL derived from that
    // listen address names the port actually bound, and the start-up line logs it.
    let mut s = s;
    if s.listen.port() == 0 && s.public_url == format!("https://{}", s.listen) {
        s.public_url = format!("https://{bound}");
    }
    let metrics_addr = s
        .file
        .metrics_listen
        .unwrap_or(crate::serve_config::DEFAULT_METRICS_LISTEN);
    let metrics_listener = match tokio::net::TcpListener::bind(metrics_addr).await {
        Ok(l) => Some(l),
        // Configured: the operator relies on it. The default: another endpoint on this
        // host may hold it, and sign-ins matter more than a scrape.
        Err(e) if s.file.metrics_listen.is_some() => {
            return Err(e).with_context(|| format!("cannot listen on {metrics_addr} for /metrics"))
        }
        Err(e) => {
            tracing::warn!(metrics_listen = %metrics_addr, error = %e, "/metrics is not served: cannot listen on its default address; set server.metrics_listen");
            None
        }
    };
    let metrics_bound = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    if metrics_bound.is_some_and(|a| !a.ip().is_loopback()) {
        if s.file.metrics_token.is_some() {
            tracing::warn!(metrics_listen = %metrics_addr, "/metrics is served beyond loopback over plain HTTP (its bearer token travels in clear): keep that address on a management network");
        } else {
            tracing::warn!(metrics_listen = %metrics_addr, "/metrics is served beyond loopback without authentication: keep that address off the internet, or set server.metrics_token_file");
        }
    }
    // One handle for sign-ins (users, verifiers, and the groups claim's reads).
    let sign_in_store = Arc::new(causeway_store::SqliteStore::open(&data.directory_path())?);
    let store: Arc<dyn causeway_store::DirectoryStore> = sign_in_store.clone();
    let groups: Arc<dyn causeway_store::Synced> = sign_in_store;
    // The ingestion API writes batches on a connection of its own, so that sign-in reads
    // never queue behind a thousand-object transaction.
    let ingest_store: Arc<dyn causeway_store::Synced> =
        Arc::new(causeway_store::SqliteStore::open(&data.directory_path())?);
    let mut hub_config = HubConfig::new(s.endpoint_id.clone());
    hub_config.lockout = s.file.lockout.clone();
    if let Some(n) = s.per_source_per_minute {
        hub_config.lockout.per_source_failures_per_minute = n;
    }
    let hub = Hub::new(hub_config);
    // Counters and familiar places outlive a restart (in the directory store's file, on a
    // connection of their own so the writer thread never waits for sign-in reads).
    let lockout_store: Arc<dyn causeway_store::LockoutStore> =
        Arc::new(causeway_store::SqliteStore::open(&data.directory_path())?);
    let restored = hub.lockout().persist_to(lockout_store, SystemTime::now())?;
    info!(accounts = restored, "smart lockout state restored");
    let metrics = Metrics::new();
    let auth = Arc::new(
        causeway_federation::signin::Authenticator::new(
            hub.clone(),
            store.clone(),
            s.file.domains.clone(),
        )
        .with_metrics(metrics.clone())
        .with_trusted_proxies(s.file.trusted_proxies.clone()),
    );
    // `causeway users test-signin` runs its checks here: only this process has the agents
    // and the live lockout counters.
    if let Some((l, owner)) = crate::admin_socket::bind(&s.data_dir).await {
        tokio::spawn(crate::admin_socket::serve(l, owner, auth.clone()));
    }
    let keys_dir = s.data_dir.join("token-signing");
    let apps_dir = s.data_dir.join("apps");
    let portal_cfg = causeway_federation::portal::PortalConfig {
        public_url: s.public_url.clone(),
        session_lifetime: s.file.session_lifetime,
        token_validity: s.file.token_validity,
        rollover: s.file.rollover,
        keys_dir: keys_dir.clone(),
        apps_dir: apps_dir.clone(),
        config_apps: s.file.apps.clone(),
        metadata: s.file.saml_metadata,
        mounts: if s.demo_apps {
            vec![
                Arc::new(crate::demo_apps::DemoApps::new(&s.public_url))
                    as Arc<dyn causeway_federation::portal::Mount>,
                Arc::new(crate::demo_oidc::DemoOidc::new(&s.public_url)),
            ]
        } else {
            Vec::new()
        },
        // The benchmark's override lifts every per-source limit (its clients share one
        // address).
        anonymous_per_source: if s.per_source_per_minute.is_some() {
            (0, 0)
        } else {
            s.file.anonymous_budget
        },
    };
    let portal = tokio::task::spawn_blocking({
        let (store, auth, hub) = (store.clone(), auth.clone(), hub.clone());
        move || causeway_federation::portal::Portal::new(portal_cfg, store, groups, auth, hub)
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot start the sign-in service: {e}"))?;
    tokio::spawn(portal.clone().maintain(Duration::from_secs(10)));
    info!(
        public_url = %s.public_url,
        listen = %bound,
        agent_listen = %agent_bound.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        data_dir = %s.data_dir.display(),
        saml_metadata = %portal.urls().entity_id,
        wsfed_metadata = %format!("{}/FederationMetadata/2007-06/FederationMetadata.xml", s.public_url),
        ca_fingerprint = %ca.fingerprint_sha256(),
        endpoint_id = %s.endpoint_id,
        domains = ?s.file.domains.iter().map(|(d, m)| format!("{d}={m:?}")).collect::<Vec<_>>(),
        metrics_listen = %metrics_bound.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        fd_limit = fd_limit.unwrap_or(0),
        max_connections = limits.max_connections,
        max_connections_per_source = limits.max_connections_per_source,
        max_agent_channels = limits.max_agent_channels,
        idle_timeout_s = http_limits.idle_timeout.as_secs(),
        "endpoint ready: sign-in, SAML, WS-Federation and /healthz on listen; agents and sync hosts on agent_listen (on listen when none); /metrics on metrics_listen"
    );
    if !s.require_approval {
        tracing::warn!(
            "new agents receive sign-ins as soon as they enroll; a stolen enrollment token gives a rogue agent live passwords. Use --require-approval and `causeway certs approve` in production"
        );
    }
    let web = Arc::new(WebState {
        hub: hub.clone(),
        metrics,
        portal: Some(portal),
    });
    let authority = Arc::new(
        CertsAuthority::new(
            ca,
            registry,
            s.require_approval,
            causeway_certs::DEFAULT_AGENT_CERT_VALIDITY,
        )
        .with_sync_validity(s.file.sync_certificate_validity),
    );
    if let Some(l) = metrics_listener {
        tokio::spawn(causeway_federation::web::serve_metrics(
            l,
            web.clone(),
            s.file.metrics_token.clone(),
        ));
    }
    if let Some(r) = ready {
        let _ = r.send(bound);
    }
    let metrics = web.metrics.clone();
    let ingest = IngestHandler::new(
        authority.clone(),
        ingest_store,
        metrics.clone(),
        IngestConfig {
            endpoint_id: s.endpoint_id.clone(),
            lease: s.file.sync_lease,
            enroll_timeout: limits.handshake_timeout,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        },
    );
    tokio::spawn({
        let ingest = ingest.clone();
        async move { ingest.refresh_metrics().await }
    });
    let agents = listener::AgentHandler::start(hub.clone(), authority, limits.handshake_timeout);
    let internal_routes = ingest.routes(agents.routes());
    let http = HttpHandler::new(web, http_limits);
    let drain = s.file.shutdown_timeout;
    let serve = |l, tls, routes| {
        causeway_federation::acceptor::serve_until(
            l,
            Arc::new(tls),
            limits,
            routes,
            metrics.clone(),
            shutdown.clone(),
            drain,
        )
    };
    match (agent_listener, agent_tls) {
        (Some(al), Some(at)) => {
            let public = Routes::new().http(http);
            tokio::join!(serve(listener, tls, public), serve(al, at, internal_routes));
        }
        _ => {
            serve(listener, tls, internal_routes.http(http)).await;
        }
    }
    // No request is in flight any more (or the drain deadline passed): agents may go.
    hub.shut_down(Duration::from_secs(2)).await;
    Ok(())
}

/// Raises this process's open-file soft limit to its hard limit (often 1024 soft against
/// far more hard), since every connection holds a descriptor; returns the limit now in
/// force, or `None` if it cannot be read.
fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    // Linux refuses a soft limit above fs.nr_open (2^20 by default) even when the hard
    // limit is "unlimited"; no endpoint needs more.
    const ENOUGH: u64 = 1 << 20;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = hard.min(ENOUGH);
    if soft >= target {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit; connection caps follow the soft limit");
            Some(soft)
        }
    }
}
