//! Pass-through authentication over the real transport: Causeway's CA and registry on
//! disk, the hub's TLS listener, agents that enroll with one-time tokens and dial out
//! with mutual TLS — and the real Samba DC behind them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

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
use common::{lab, tls_config, Lab};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A Causeway endpoint's CA, registry and hub listener, in its own runtime so that a test
/// can kill it as a crash would.
struct EndpointUnderTest {
    dir: PathBuf,
    addr: std::net::SocketAddr,
    hub: Arc<Hub>,
    ca_pem: String,
    /// Dropping (or sending on) this stops the endpoint's own runtime on its own thread.
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

impl EndpointUnderTest {
    fn start(dir: &Path, port: u16, require_approval: bool) -> Self {
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
        let authority = Arc::new(CertsAuthority::new(
            ca,
            registry,
            require_approval,
            Duration::from_secs(30 * 86400),
        ));
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
            rt.shutdown_background();
        });
        let addr = addr_rx.recv().expect("endpoint started");
        Self {
            dir: dir.to_owned(),
            addr,
            hub,
            ca_pem,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    /// What `causeway certs ...` would use: another handle on the same files.
    fn admin(&self) -> (Ca, SqliteAgents) {
        let ca = Ca::load(&self.dir.join("ca"), SystemTime::now()).expect("CA");
        let reg = SqliteAgents::open(&ca.registry_path()).expect("registry");
        (ca, reg)
    }

    fn token(&self) -> String {
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
    fn kill(&mut self) {
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

fn directory(lab: &Lab) -> DirectorySettings {
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
fn run_agent(
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

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn req(user: &str, pw: &str) -> CheckRequest {
    CheckRequest {
        user_name: user.into(),
        password: Password::new(pw.into()).expect("valid"),
        source: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_agent_serves_sign_ins_and_is_cut_off_when_revoked() {
    common::init_logs();
    let lab = lab();
    let dir = tempdir("revoke");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let token = ep.token();
    let state = enroll::register(&ep.endpoint(), None, &token, "agent-host-1")
        .await
        .expect("enrolled");
    let id = state.agent_id.clone();
    assert!(AgentId::parse(&id).is_ok());
    // The token was single-use.
    let again = enroll::register(&ep.endpoint(), None, &token, "agent-host-2").await;
    assert!(
        matches!(&again, Err(EnrollError::Refused(r)) if r.contains("already")),
        "{again:?}"
    );

    let _agent = run_agent(lab, state, ep.endpoint(), 2);
    until("the agent is connected", || {
        ep.hub.connected_agents().contains(&id)
    })
    .await;
    let (ca, reg) = ep.admin();
    let rec = reg
        .agent(&AgentId::parse(&id).expect("id"))
        .expect("read")
        .expect("registered");
    assert_eq!(rec.host_name, "agent-host-1");
    assert!(rec.cert_fingerprint.len() == 64);
    drop(ca);

    let alice = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    assert_eq!(
        ep.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::Success
    );
    assert_eq!(
        ep.hub
            .check(req(
                lab.user("bob-disabled", "UPN"),
                lab.user("bob-disabled", "PASSWORD")
            ))
            .await,
        SignInOutcome::AccountDisabled
    );

    // `causeway certs revoke` from another process: cut off within seconds, and it stays off.
    let t = std::time::Instant::now();
    reg.revoke(&AgentId::parse(&id).expect("id"))
        .expect("revoke");
    until("the revoked agent is disconnected", || {
        ep.hub.connected_agents().is_empty()
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "cut off after {:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        ep.hub.connected_agents().is_empty(),
        "a revoked agent got back in"
    );
    assert_eq!(
        ep.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::DirectoryUnavailable
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() {
    let dir = tempdir("tokens");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let (ca, reg) = ep.admin();
    // Expired: issued two hours ago for one hour.
    let old = SystemTime::now() - Duration::from_secs(7200);
    let expired = reg
        .create_token(
            TokenPurpose::Agent,
            &ca.fingerprint_sha256(),
            Duration::from_secs(3600),
            old,
        )
        .expect("token");
    let r = enroll::register(&ep.endpoint(), None, expired.expose_secret(), "h").await;
    assert!(
        matches!(&r, Err(EnrollError::Refused(m)) if m.contains("expired")),
        "{r:?}"
    );
    // Unknown secret with the right CA pin.
    let good = ep.token();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("cwt1.{}.{}", "A".repeat(parts[1].len()), parts[2]);
    let r = enroll::register(&ep.endpoint(), None, &forged, "h").await;
    assert!(matches!(r, Err(EnrollError::Refused(_))), "{r:?}");
    // A token pinning another CA: the agent refuses the endpoint before sending anything.
    let other = format!("cwt1.{}.{}", parts[1], "0".repeat(parts[2].len()));
    let r = enroll::register(&ep.endpoint(), None, &other, "h").await;
    assert!(matches!(r, Err(EnrollError::Dial(_))), "{r:?}");
    // ...and the real token is still unused.
    assert!(enroll::register(&ep.endpoint(), None, &good, "h")
        .await
        .is_ok());
    assert!(matches!(
        enroll::register(&ep.endpoint(), None, "garbage", "h").await,
        Err(EnrollError::MalformedToken)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempdir("foreign");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let (ca, _) = ep.admin();
    // A well-formed agent certificate, but issued by a different Causeway CA.
    let rogue_ca = Ca::load_or_create(&dir.join("rogue-ca"), SystemTime::now()).expect("rogue CA");
    let (key, csr) = enroll::new_tls_key_and_csr("rogue").expect("csr");
    let id = AgentId::generate().expect("id");
    let cert = rogue_ca
        .sign_agent_csr(&csr, &id, SystemTime::now(), Duration::from_secs(86400))
        .expect("cert");
    let tls = endpoint_tls(ca.cert_pem(), cert.pem(), &key).expect("client config");
    let r = dial(&ep.endpoint(), None, tls).await;
    // TLS 1.3: the server's refusal may surface on the first read instead of the handshake.
    if let Ok(mut s) = r {
        let mut b = [0u8; 1];
        assert!(
            s.read(&mut b).await.map_or(true, |n| n == 0),
            "the rogue agent got a channel"
        );
    }
    assert!(ep.hub.connected_agents().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_agents_wait_for_approval() {
    let lab = lab();
    let dir = tempdir("approve");
    let ep = EndpointUnderTest::start(&dir, 0, true);
    let state = enroll::register(&ep.endpoint(), None, &ep.token(), "needs-approval")
        .await
        .expect("enrolled");
    let id = state.agent_id.clone();
    let _agent = run_agent(lab, state, ep.endpoint(), 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        ep.hub.connected_agents().is_empty(),
        "a pending agent must not receive traffic"
    );
    let (_, reg) = ep.admin();
    reg.approve(&AgentId::parse(&id).expect("id"))
        .expect("approve");
    until("the approved agent connects", || {
        ep.hub.connected_agents().contains(&id)
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reconnect_after_an_endpoint_restart() {
    let lab = lab();
    let dir = tempdir("restart");
    let mut ep = EndpointUnderTest::start(&dir, 0, false);
    let port = ep.addr.port();
    let state = enroll::register(&ep.endpoint(), None, &ep.token(), "restart-host")
        .await
        .expect("enrolled");
    let id = state.agent_id.clone();
    let _agent = run_agent(lab, state, ep.endpoint(), 2);
    until("connected", || ep.hub.connected_agents().contains(&id)).await;
    ep.kill();
    // Same data directory, same port: a restarted endpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ep2 = EndpointUnderTest::start(&dir, port, false);
    until("the agent reconnected by itself", || {
        ep2.hub.connected_agents().contains(&id)
    })
    .await;
    let alice = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    assert_eq!(
        ep2.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::Success
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_one_connection_and_nothing_else() {
    let lab = lab();
    let dir = tempdir("garbage");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let state = enroll::register(&ep.endpoint(), None, &ep.token(), "garbage-host")
        .await
        .expect("enrolled");
    let id = state.agent_id.clone();
    let tls = endpoint_tls(&state.ca_pem, &state.tls_cert_pem, &state.tls_key_pem).expect("tls");
    let _agent = run_agent(lab, state, ep.endpoint(), 1);
    until("connected", || ep.hub.connected_agents().contains(&id)).await;
    let bad_inputs: Vec<Vec<u8>> = vec![
        u32::MAX.to_be_bytes().to_vec(),         // oversized length
        vec![0, 0, 0, 0],                        // zero length
        vec![0, 0, 0, 3, 0x7f, 1, 2],            // unknown kind
        Frame::Ping(1).to_bytes()[..6].to_vec(), // truncated, then EOF
        Frame::Verdict {
            request_id: causeway_credential::RequestId([0; 16]),
            outcome: SignInOutcome::Success,
            directory_us: 0,
        }
        .to_bytes(), // Verdict before Hello
    ];
    for bad in bad_inputs {
        let mut s = dial(&ep.endpoint(), None, tls.clone())
            .await
            .expect("mTLS works");
        s.write_all(&bad).await.expect("write");
        let _ = s.shutdown().await;
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut rest)).await;
        assert!(
            r.is_ok(),
            "the hub did not close a connection that sent {bad:?}"
        );
    }
    // The well-behaved agent is still there and serving.
    assert!(ep.hub.connected_agents().contains(&id));
    let alice = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    assert_eq!(
        ep.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::Success
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent side of "malformed frames": a hub that sends garbage loses its channel, and the
/// agent's process goes on (its loop reconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drops_a_hub_that_sends_garbage() {
    let lab = lab();
    for garbage in [
        vec![0xffu8, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 1, 0x42],
        vec![0, 0, 0, 2, 2],
    ] {
        let (hub_side, agent_side) = tokio::io::duplex(4096);
        let me = Identity {
            agent_id: "agt-00000000000000dd".into(),
            max_in_flight: 4,
            renewer: None,
        };
        let v = Arc::new(Validator::new(
            EnvelopeOpener::new(causeway_credential::AgentKeyPair::generate()),
            directory(lab),
        ));
        let agent = tokio::spawn(async move { channel::run(agent_side, &me, v, |_| {}).await });
        let mut hub_side = hub_side;
        let mut hello = [0u8; 4];
        hub_side.read_exact(&mut hello).await.expect("hello header");
        hub_side.write_all(&garbage).await.expect("garbage");
        drop(hub_side); // a truncated frame followed by the end of the connection
        let r = tokio::time::timeout(Duration::from_secs(5), agent)
            .await
            .expect("agent reacted")
            .expect("no panic");
        assert!(
            matches!(
                r,
                Err(ChannelError::Frame(_))
                    | Err(ChannelError::Protocol(_))
                    | Err(ChannelError::Io(_))
            ),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_over_the_channel() {
    let lab = lab();
    let dir = tempdir("renew");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let state = enroll::register(&ep.endpoint(), None, &ep.token(), "renew-host")
        .await
        .expect("enrolled");
    let state_dir = dir.join("agent-state");
    state.save(&state_dir).expect("save");
    let id = state.agent_id.clone();
    let old_fp = {
        let (_, reg) = ep.admin();
        reg.agent(&AgentId::parse(&id).expect("id"))
            .expect("read")
            .expect("rec")
            .cert_fingerprint
    };
    let tls = Arc::new(RwLock::new(
        endpoint_tls(&state.ca_pem, &state.tls_cert_pem, &state.tls_key_pem).expect("tls"),
    ));
    let (nb, _) = validity(&state.tls_cert_pem).expect("validity");
    // Pretend 70 % of the life has passed: a window that ended a second after it began.
    let renewal = Arc::new(CertRenewal::new(
        state_dir.clone(),
        "renew-host".into(),
        state.ca_pem.clone(),
        (nb, nb + 1),
        tls.clone(),
    ));
    let me = Identity {
        agent_id: id.clone(),
        max_in_flight: 4,
        renewer: Some(renewal),
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
    let _task = tokio::spawn(keep_channel(
        ep.endpoint(),
        None,
        tls.clone(),
        me,
        v,
        backoff,
    ));
    let (_, reg) = ep.admin();
    let aid = AgentId::parse(&id).expect("id");
    until("the registry holds a renewed certificate", || {
        reg.agent(&aid)
            .ok()
            .flatten()
            .is_some_and(|r| r.cert_fingerprint != old_fp)
    })
    .await;
    let rec = reg.agent(&aid).expect("read").expect("rec");
    assert_eq!(
        rec.previous_cert_fingerprint.as_deref(),
        Some(old_fp.as_str())
    );
    // The agent saved the new certificate, and it opens channels.
    until("the agent saved it", || {
        AgentState::load(&state_dir).is_ok_and(|s| s.tls_cert_pem != state.tls_cert_pem)
    })
    .await;
    let saved = AgentState::load(&state_dir).expect("load");
    let fresh =
        endpoint_tls(&saved.ca_pem, &saved.tls_cert_pem, &saved.tls_key_pem).expect("new TLS");
    assert!(dial(&ep.endpoint(), None, fresh).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hub spoken by hand to a real agent channel (real validator, real DC behind it).
struct HandHub {
    io: tokio::io::DuplexStream,
    agent: tokio::task::JoinHandle<Result<channel::ChannelEnd, ChannelError>>,
    public: causeway_credential::AgentPublicKey,
}

impl HandHub {
    /// Starts a real agent channel and answers its Hello with a Welcome for `endpoint_id`.
    async fn start(lab: &'static Lab, endpoint_id: &str) -> Self {
        let keys = causeway_credential::AgentKeyPair::generate();
        let public = keys.public().clone();
        let v = Arc::new(Validator::new(EnvelopeOpener::new(keys), directory(lab)));
        let (io, agent_side) = tokio::io::duplex(64 * 1024);
        let me = Identity {
            agent_id: "agt-00000000000000ab".into(),
            max_in_flight: 4,
            renewer: None,
        };
        let agent = tokio::spawn(async move { channel::run(agent_side, &me, v, |_| {}).await });
        let mut hub = Self { io, agent, public };
        assert!(matches!(hub.read().await, Some(Frame::Hello { .. })));
        hub.send(&Frame::Welcome {
            endpoint_id: endpoint_id.into(),
            heartbeat_ms: 5000,
        })
        .await;
        hub
    }

    /// The next frame from the agent, or `None` once it has closed the channel.
    async fn read(&mut self) -> Option<Frame> {
        let mut h = [0u8; 4];
        self.io.read_exact(&mut h).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(h) as usize];
        self.io.read_exact(&mut body).await.ok()?;
        Some(Frame::decode(&body).expect("frame"))
    }

    async fn send(&mut self, f: &Frame) {
        self.io.write_all(&f.to_bytes()).await.expect("send");
    }

    /// Sends a Check and waits for its verdict.
    async fn check(
        &mut self,
        request_id: causeway_credential::RequestId,
        envelope: causeway_credential::SealedEnvelope,
    ) -> SignInOutcome {
        self.send(&Frame::Check {
            request_id,
            deadline_ms: 5000,
            envelope,
        })
        .await;
        loop {
            match self.read().await.expect("agent still up") {
                Frame::Verdict { outcome, .. } => return outcome,
                _ => continue,
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A hub (here: a test speaking the protocol by hand) that replays a Check, reorders two,
/// tampers with one or sends one expired gets no verdict on the password: the real agent
/// refuses the envelope and says why in its log, and never binds with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_reordered_tampered_or_expired_envelopes_are_refused_by_the_agent() {
    use causeway_credential::{ChannelSealer, EnvelopeContext, RequestId, SealedEnvelope};
    common::init_logs();
    let lab = lab();
    let mut hub = HandHub::start(lab, "ep-replay").await;
    let (mut sealer, key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    hub.send(&Frame::ChannelKey { key }).await;
    let password = Password::new(lab.user("alice", "PASSWORD").into()).expect("pw");
    let ctx = |ttl: u64| EnvelopeContext {
        request_id: RequestId::random(),
        user_name: lab.user("alice", "UPN").into(),
        endpoint_id: "ep-replay".into(),
        expires_at: unix_now() + ttl,
    };
    let mut seal = |c: &EnvelopeContext| sealer.seal(c, &password).expect("seal");

    let (c0, c1, c2, c3, c4) = (ctx(30), ctx(30), ctx(30), ctx(30), ctx(0));
    let (e0, e1, e2, e3, e4) = (seal(&c0), seal(&c1), seal(&c2), seal(&c3), seal(&c4));
    // The original opens and binds.
    assert_eq!(
        hub.check(c0.request_id, e0.clone()).await,
        SignInOutcome::Success
    );
    // Its replay does not.
    assert_eq!(
        hub.check(c0.request_id, e0).await,
        SignInOutcome::DirectoryUnavailable
    );
    // One ciphertext bit flipped.
    let mut tampered = e1.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        hub.check(c1.request_id, SealedEnvelope::from_bytes(tampered))
            .await,
        SignInOutcome::DirectoryUnavailable
    );
    // The later one first: it opens, and the earlier one cannot come after it.
    assert_eq!(hub.check(c3.request_id, e3).await, SignInOutcome::Success);
    assert_eq!(
        hub.check(c2.request_id, e2).await,
        SignInOutcome::DirectoryUnavailable
    );
    // Expired on arrival.
    assert_eq!(
        hub.check(c4.request_id, e4).await,
        SignInOutcome::DirectoryUnavailable
    );
    // An envelope of another channel to the same agent does not open on this one, even
    // with a sequence number this channel has not reached yet.
    let (mut other, _) = ChannelSealer::new(&hub.public).expect("encapsulate");
    let c5 = ctx(30);
    let e5 = (0..10)
        .map(|_| other.seal(&c5, &password).expect("seal"))
        .last()
        .expect("ten");
    assert_eq!(
        hub.check(c5.request_id, e5).await,
        SignInOutcome::DirectoryUnavailable
    );
}

/// A Check before the channel's key, or a second key, is a hub breaking the protocol: the
/// agent closes the channel instead of answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_before_the_channel_key_or_a_second_key_closes_the_channel() {
    use causeway_credential::{ChannelSealer, EnvelopeContext, RequestId};
    let lab = lab();
    let password = Password::new(lab.user("alice", "PASSWORD").into()).expect("pw");

    let mut hub = HandHub::start(lab, "ep-order").await;
    let (mut sealer, _key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    let c = EnvelopeContext {
        request_id: RequestId::random(),
        user_name: lab.user("alice", "UPN").into(),
        endpoint_id: "ep-order".into(),
        expires_at: unix_now() + 30,
    };
    let envelope = sealer.seal(&c, &password).expect("seal");
    hub.send(&Frame::Check {
        request_id: c.request_id,
        deadline_ms: 5000,
        envelope,
    })
    .await;
    while let Some(f) = hub.read().await {
        assert!(!matches!(f, Frame::Verdict { .. }), "answered {f:?}");
    }
    assert!(matches!(
        hub.agent.await.expect("task"),
        Err(ChannelError::Protocol(
            "hub sent a Check before the channel key"
        ))
    ));

    let mut hub = HandHub::start(lab, "ep-order").await;
    let (_, key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    hub.send(&Frame::ChannelKey { key: key.clone() }).await;
    hub.send(&Frame::ChannelKey { key }).await;
    while hub.read().await.is_some() {}
    assert!(matches!(
        hub.agent.await.expect("task"),
        Err(ChannelError::Protocol("hub sent a second channel key"))
    ));
}

/// A real HTTP CONNECT proxy (tinyproxy) between the agent and the endpoint: enrollment
/// and the agent channel both go through it, and sign-ins work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_works_through_a_connect_proxy() {
    let lab = lab();
    let dir = tempdir("proxy");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let log = dir.join("tinyproxy.log");
    std::fs::write(&log, b"").expect("log file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod dir");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).expect("chmod log");
    let conf = dir.join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "User nobody\nGroup nogroup\nPort {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nAllow 127.0.0.1\nLogFile \"{}\"\nLogLevel Info\nConnectPort {}\n",
            log.display(),
            ep.addr.port()
        ),
    )
    .expect("conf");
    let mut proxy = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy (scripts/install-deps.sh installs tinyproxy-bin)");
    until("the proxy listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let via = Endpoint {
        host: "127.0.0.1".into(),
        port,
    };

    let state = enroll::register(&ep.endpoint(), Some(&via), &ep.token(), "proxied-host")
        .await
        .expect("enrolled through the proxy");
    let id = state.agent_id.clone();
    let tls = Arc::new(RwLock::new(
        endpoint_tls(&state.ca_pem, &state.tls_cert_pem, &state.tls_key_pem).expect("tls"),
    ));
    let me = Identity {
        agent_id: id.clone(),
        max_in_flight: 8,
        renewer: None,
    };
    let v = Arc::new(Validator::new(
        EnvelopeOpener::new(state.hpke),
        directory(lab),
    ));
    let _task = tokio::spawn(keep_channel(
        ep.endpoint(),
        Some(via),
        tls,
        me,
        v,
        Backoff::default(),
    ));
    until("the agent connects through the proxy", || {
        ep.hub.connected_agents().contains(&id)
    })
    .await;
    let alice = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    assert_eq!(
        ep.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::Success
    );
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        seen.contains("CONNECT"),
        "tinyproxy saw the tunnels:\n{seen}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// HTTPS on the same port: /healthz, and a 404 for the rest, /metrics included (it has a
/// listener of its own: `web::serve_metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_over_https_on_the_agent_port_and_no_metrics_there() {
    let dir = tempdir("http");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let cfg = common::client_tls(ep.ca_pem.as_bytes(), b"http/1.1");
    let get = |path: &'static str| {
        let cfg = cfg.clone();
        let addr = ep.addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await
                .expect("TLS");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        }
    };
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"agents_connected\":0"), "{health}");
    let metrics = get("/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 404"), "{metrics}");
    assert!(!metrics.contains("causeway_"), "{metrics}");
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    let _ = std::fs::remove_dir_all(&dir);
}
