//! Pass-through authentication over the real transport: Causeway's CA and registry on
//! disk, the hub's TLS listener, agents that enroll with one-time tokens and dial out
//! with mutual TLS — and the real Samba DC behind them.

mod common;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use causeway_agent::channel::Identity;
use causeway_agent::config::Endpoint;
use causeway_agent::connect::{dial, keep_channel, Backoff};
use causeway_agent::enroll::{self, EnrollError};
use causeway_agent::runtime::{endpoint_tls, validity, CertRenewal};
use causeway_agent::state::AgentState;
use causeway_agent::validator::Validator;
use causeway_certs::{AgentId, Ca};
use causeway_credential::{EnvelopeOpener, SignInOutcome};
use causeway_store::TokenPurpose;
use common::agent_hub::*;
use common::lab;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    // The agent dials again (its backoff is 100 ms to 1 s): wait until two attempts were
    // refused, then it is still out.
    let refused = ep.refused();
    until("the revoked agent was refused twice more", || {
        ep.refused() >= refused + 2
    })
    .await;
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
    // Until the pending agent has dialled and been refused twice (not a fixed pause).
    until("the pending agent was refused twice", || ep.refused() >= 2).await;
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
    // Same data directory, same port: a restarted endpoint (the agent redials the URL it
    // was given, so the port must stay). `kill` joined the endpoint's runtime, so its
    // listener is closed, and tokio sets SO_REUSEADDR, so connections still in TIME_WAIT
    // do not stop the new bind: no pause needed.
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
