//! An in-process endpoint for the agent transport tests (CA, registry, hub listener in a
//! runtime of their own, so a test can kill it as a crash would), and agents run against it.

#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::{lab, tls_config, Lab};
use causeway_agent::channel::{self, ChannelError, Identity};
use causeway_agent::config::Endpoint;
use causeway_agent::connect::{dial, keep_channel, Backoff};
use causeway_agent::enroll::{self, EnrollError};
use causeway_agent::runtime::{endpoint_tls, validity, CertRenewal};
use causeway_agent::state::AgentState;
use causeway_agent::validator::{
    DcTarget, DirectorySettings, LoginResolution, Transport, Validator,
};
use causeway_certs::{AgentId, Ca};
use causeway_credential::{EnvelopeOpener, Password, SignInOutcome};
use causeway_federation::hub::authority::CertsAuthority;
use causeway_federation::hub::listener;
use causeway_federation::hub::{CheckRequest, Hub, HubConfig};
use causeway_proto::agent::{Frame, ALPN, ENROLL_ALPN};
use causeway_store::{SqliteAgents, TokenPurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// A Causeway endpoint's CA, registry and hub listener, in its own runtime so that a test
/// can kill it as a crash would.
pub struct EndpointUnderTest {
    pub dir: PathBuf,
    pub addr: std::net::SocketAddr,
    pub hub: Arc<Hub>,
    pub ca_pem: String,
    /// Agent connections the authority refused so far (see [`Counted`]).
    refused: Arc<std::sync::atomic::AtomicUsize>,
    /// Dropping (or sending on) this stops the endpoint's own runtime on its own thread.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The real authority, counting the agent connections it refused, so that a test that
/// must show an agent stays out waits for the refusal itself instead of for time to pass.
struct Counted {
    inner: CertsAuthority,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl listener::AgentAuthority for Counted {
    fn authorize(
        &self,
        cert_fingerprint: &str,
    ) -> Result<causeway_federation::hub::AgentPeer, listener::Refusal> {
        let r = self.inner.authorize(cert_fingerprint);
        if r.is_err() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }
    fn still_allowed(&self, agent_id: &str) -> Result<(), listener::Refusal> {
        self.inner.still_allowed(agent_id)
    }
    fn enroll(
        &self,
        token: &str,
        host_name: &str,
        hpke_public_key: [u8; 32],
        csr_pem: &str,
    ) -> Result<listener::Enrollment, String> {
        self.inner
            .enroll(token, host_name, hpke_public_key, csr_pem)
    }
    fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<String, String> {
        self.inner.renew(agent_id, csr_pem)
    }
    fn touch(&self, agent_id: &str) {
        self.inner.touch(agent_id)
    }
}

impl EndpointUnderTest {
    /// How many agent connections were refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn start(dir: &Path, port: u16, require_approval: bool) -> Self {
        let now = SystemTime::now();
        let ca = Ca::load_or_create(&dir.join("ca"), now).expect("CA");
        let registry = SqliteAgents::open(&ca.registry_path()).expect("registry");
        let server = ca
            .issue_server_cert(&["127.0.0.1".into(), "localhost".into()], now)
            .expect("server cert");
        let tls = causeway_certs::server_config(
            server.chain_der(),
            server.private_key_der().expect("key"),
            ca.enrollment_client_verifier().expect("verifier"),
            vec![ALPN.to_vec(), ENROLL_ALPN.to_vec(), b"http/1.1".to_vec()],
        )
        .expect("server config");
        let ca_pem = ca.cert_pem().to_owned();
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let authority = Arc::new(Counted {
            inner: CertsAuthority::new(
                ca,
                registry,
                require_approval,
                Duration::from_secs(30 * 86400),
            ),
            refused: refused.clone(),
        });
        let mut cfg = HubConfig::new("endpoint-tls");
        cfg.heartbeat = Duration::from_millis(500);
        let hub = Hub::new(cfg);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let h = hub.clone();
        let web = Arc::new(causeway_federation::web::WebState {
            hub: hub.clone(),
            metrics: causeway_federation::metrics::Metrics::new(),
            portal: None,
        });
        // The endpoint runs on its own thread and runtime, so that killing it takes every
        // task and socket with it, as a crash would.
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            let listener = rt
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
                .expect("bind");
            addr_tx
                .send(listener.local_addr().expect("addr"))
                .expect("send addr");
            rt.spawn(async move {
                use causeway_federation::acceptor::{self, ConnectionLimits};
                use causeway_federation::web::{HttpHandler, HttpLimits};
                let timeout = acceptor::DEFAULT_HANDSHAKE_TIMEOUT;
                let agents = listener::AgentHandler::start(h, authority, timeout);
                let metrics = web.metrics.clone();
                let routes = agents
                    .routes()
                    .http(HttpHandler::new(web, HttpLimits::default()));
                let limits = ConnectionLimits::default();
                acceptor::serve(listener, Arc::new(tls), limits, routes, metrics).await
            });
            let _ = stopped.recv();
            // Drops every task (and so the listener and every connection) before the thread
            // ends, so that `kill` returns with the port free: a restart on the same port
            // needs no pause. Tasks are dropped, not asked to finish, as in a crash.
            rt.shutdown_timeout(Duration::from_secs(10));
        });
        let addr = addr_rx.recv().expect("endpoint started");
        Self {
            dir: dir.to_owned(),
            addr,
            hub,
            ca_pem,
            refused,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    /// What `causeway certs ...` would use: another handle on the same files.
    pub fn admin(&self) -> (Ca, SqliteAgents) {
        let ca = Ca::load(&self.dir.join("ca"), SystemTime::now()).expect("CA");
        let reg = SqliteAgents::open(&ca.registry_path()).expect("registry");
        (ca, reg)
    }

    pub fn token(&self) -> String {
        let (ca, reg) = self.admin();
        reg.create_token(
            TokenPurpose::Agent,
            &ca.fingerprint_sha256(),
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .expect("token")
        .expose_secret()
        .clone()
    }

    /// Kills the endpoint like a crash: every task and socket of its runtime goes.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for EndpointUnderTest {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn directory(lab: &Lab) -> DirectorySettings {
    DirectorySettings {
        dcs: vec![DcTarget {
            url: lab.get("AD_LDAPS_URL").into(),
            transport: Transport::Ldaps,
        }],
        tls: tls_config(Some(&PathBuf::from(lab.get("AD_CA_CERT")))),
        op_timeout: Duration::from_secs(3),
        pool_per_dc: 4,
        cool_down: Duration::from_secs(5),
        login: LoginResolution::AsTyped,
    }
}

/// Runs an enrolled agent the way `causeway agent run` does (channels kept up for ever).
pub fn run_agent(
    lab: &Lab,
    state: AgentState,
    ep: Endpoint,
    channels: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tls = Arc::new(RwLock::new(
        endpoint_tls(&state.ca_pem, &state.tls_cert_pem, &state.tls_key_pem).expect("agent TLS"),
    ));
    let me = Identity {
        agent_id: state.agent_id.clone(),
        max_in_flight: 16,
        renewer: None,
    };
    let v = Arc::new(Validator::new(
        EnvelopeOpener::new(state.hpke),
        directory(lab),
    ));
    let backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
        healthy_after: Duration::from_secs(5),
    };
    (0..channels)
        .map(|_| {
            tokio::spawn(keep_channel(
                ep.clone(),
                None,
                tls.clone(),
                me.clone(),
                v.clone(),
                backoff.clone(),
            ))
        })
        .collect()
}

pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

pub fn req(user: &str, pw: &str) -> CheckRequest {
    CheckRequest {
        user_name: user.into(),
        password: Password::new(pw.into()).expect("valid"),
        source: None,
    }
}
