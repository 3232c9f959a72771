//! The public port against connection abuse by peers without an account (issue #9), on
//! real `causeway serve` processes over loopback: idle connections are closed, connections
//! are capped globally and per source, a flood under a low open-file limit is refused
//! cleanly, and `/metrics` lives on its own listener only.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::endpoint::{Browser, Endpoint};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A second source address on loopback (127.0.0.2 is the lab's Samba).
const OTHER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

fn public_addr(ep: &Endpoint) -> SocketAddr {
    ep.url
        .trim_start_matches("https://")
        .parse()
        .expect("endpoint address")
}

fn client_tls(ep: &Endpoint, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ep.data().join("ca").join("ca.pem")).expect("the endpoint's CA");
    common::client_tls(&pem, alpn)
}

/// A TLS connection from `source`; `Err` if the endpoint closed it instead of completing
/// the handshake (what a refused connection looks like).
async fn connect_from(
    to: SocketAddr,
    source: Ipv4Addr,
    tls: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((source, 0)))?;
    let tcp = sock.connect(to).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake did not finish in 10 s"))?
}

/// Reads until the endpoint closes the connection (EOF or reset); panics after `bound`.
async fn closed_within(s: &mut TlsStream<TcpStream>, bound: Duration, what: &str) {
    let mut buf = [0u8; 1024];
    let r = tokio::time::timeout(bound, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "{what}: still open after {bound:?}");
}

/// One value of the metrics listener's text, e.g. `causeway_connections_open`.
fn metric(ep: &Endpoint, series: &str) -> Option<i64> {
    let (status, _, body) =
        Browser::new(&ep.dir.join("scrape")).get(&format!("{}/metrics", ep.metrics_url));
    assert_eq!(status, 200, "{body}");
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `f` every 100 ms until it holds; panics with `what` after `bound`.
fn eventually(bound: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn healthz(ep: &Endpoint) -> (u16, String) {
    let (status, _, body) =
        Browser::new(&ep.dir.join("health")).get(&format!("{}/healthz", ep.url));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tls_connection_is_closed_at_the_idle_deadline_over_h1_and_h2() {
    let ep = Endpoint::start(
        "idle",
        "[server]\nidle_timeout = \"1s\"\nhandshake_timeout = \"1s\"\n",
        &[],
    );
    // Not even a ClientHello: closed at the handshake deadline (1 s here; the bound is
    // below the old fixed 10 s, so this fails if the setting is ignored).
    let mut tcp = TcpStream::connect(public_addr(&ep)).await.expect("connect");
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "a silent TCP connection outlived handshake_timeout: {r:?}"
    );
    // Nothing sent after the handshake, with either ALPN.
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut s = connect_from(public_addr(&ep), Ipv4Addr::LOCALHOST, client_tls(&ep, alpn))
            .await
            .expect("connected");
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn));
        closed_within(
            &mut s,
            Duration::from_secs(10),
            &String::from_utf8_lossy(alpn),
        )
        .await;
    }
    // HTTP/2 after a request: the connection is closed once it has no stream open.
    let s = connect_from(
        public_addr(&ep),
        Ipv4Addr::LOCALHOST,
        client_tls(&ep, b"h2"),
    )
    .await
    .expect("connected");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("{}/healthz", ep.url))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .expect("request");
    let res = send.send_request(req).await.expect("response");
    assert_eq!(res.status(), 200);
    drop(res);
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(
        ended.is_ok(),
        "the idle HTTP/2 connection was not closed: {}",
        ep.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_source_and_global_caps_are_refused_and_counted() {
    let ep = Endpoint::start(
        "caps",
        "[server]\nidle_timeout = \"5m\"\nmax_connections = 5\nmax_connections_per_source = 3\n",
        &[],
    );
    // The start-up probe's connections are gone before counting starts.
    eventually(Duration::from_secs(10), "probes closed", || {
        metric(&ep, "causeway_connections_open") == Some(0)
    });
    let h1 = || client_tls(&ep, b"http/1.1");
    let mut local = Vec::new();
    for i in 0..3 {
        local.push(
            connect_from(public_addr(&ep), Ipv4Addr::LOCALHOST, h1())
                .await
                .unwrap_or_else(|e| panic!("connection {i} from 127.0.0.1: {e}")),
        );
    }
    assert!(
        connect_from(public_addr(&ep), Ipv4Addr::LOCALHOST, h1())
            .await
            .is_err(),
        "a fourth connection from 127.0.0.1 is over max_connections_per_source"
    );
    let mut other = Vec::new();
    for i in 0..2 {
        other.push(
            connect_from(public_addr(&ep), OTHER_SOURCE, h1())
                .await
                .unwrap_or_else(|e| panic!("connection {i} from {OTHER_SOURCE}: {e}")),
        );
    }
    assert!(
        connect_from(public_addr(&ep), OTHER_SOURCE, h1())
            .await
            .is_err(),
        "a sixth connection is over max_connections"
    );
    assert_eq!(metric(&ep, "causeway_connections_open"), Some(5));
    assert_eq!(
        metric(
            &ep,
            "causeway_connections_refused_total{reason=\"max_connections_per_source\"}"
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &ep,
            "causeway_connections_refused_total{reason=\"max_connections\"}"
        ),
        Some(1)
    );
    // Closing one frees a slot for a fresh connection from the same source.
    drop(local.pop());
    eventually(Duration::from_secs(10), "/healthz after a close", || {
        healthz(&ep).0 == 200
    });
    let refusals = ep
        .logs()
        .matches("connection refused: limit reached")
        .count();
    assert_eq!(
        refusals,
        1,
        "the second refusal is inside the minute: {}",
        ep.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_under_a_low_file_limit_is_refused_cleanly_and_reaped() {
    // Soft 160, hard 320: serve raises the soft limit to 320 and derives its caps from it.
    let ep = Endpoint::start_under(
        common::endpoint::temp_dir("flood"),
        "[server]\nidle_timeout = \"2s\"\nmax_connections_per_source = 1000\n",
        &[],
        &["prlimit", "--nofile=160:320", "--"],
    );
    let logs = ep.logs();
    assert!(logs.contains("fd_limit=320"), "{logs}");
    let cap: usize = logs
        .split("max_connections=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("max_connections in the start-up log");
    assert!(cap < 320, "the derived cap {cap} fits the file limit");
    // More connections than the process has file descriptors, all at once.
    const FLOOD: usize = 400;
    let tls = client_tls(&ep, b"http/1.1");
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        flood.spawn(connect_from(
            public_addr(&ep),
            Ipv4Addr::LOCALHOST,
            tls.clone(),
        ));
    }
    let mut open = Vec::new();
    while let Some(r) = flood.join_next().await {
        if let Ok(s) = r.expect("task") {
            open.push(s);
        }
    }
    assert!(
        !open.is_empty() && open.len() <= cap,
        "{} of {FLOOD} admitted, cap {cap}",
        open.len()
    );
    // The idle ones are reaped at the idle deadline; then /healthz answers again.
    for s in &mut open {
        closed_within(s, Duration::from_secs(15), "a flood connection").await;
    }
    eventually(Duration::from_secs(10), "/healthz after the flood", || {
        healthz(&ep).0 == 200
    });
    let logs = ep.logs();
    let accept_errors = logs.matches("accept failed").count();
    assert!(
        accept_errors <= 2,
        "{accept_errors} accept-error lines:\n{logs}"
    );
    assert!(
        logs.matches("connection refused: limit reached").count() <= 2,
        "refusals are logged once a minute:\n{logs}"
    );
    let refused = metric(
        &ep,
        "causeway_connections_refused_total{reason=\"max_connections\"}",
    )
    .expect("counter");
    assert!(
        usize::try_from(refused).expect("non-negative") >= FLOOD - cap,
        "{refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_on_their_own_listener_and_404_on_the_public_port() {
    let ep = Endpoint::start("metrics", "", &[]);
    assert!(
        ep.metrics_url.starts_with("http://127.0.0.1:"),
        "{}",
        ep.metrics_url
    );
    assert!(metric(&ep, "causeway_connections_open").is_some());
    assert_eq!(
        metric(
            &ep,
            "causeway_signins_total{outcome=\"invalid_credentials\",path=\"pass_through\"}"
        ),
        Some(0)
    );
    let b = Browser::new(&ep.dir.join("public"));
    let (status, _, body) = b.get(&format!("{}/metrics", ep.url));
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("causeway_"), "{body}");
    let (status, body) = healthz(&ep);
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["agents_connected"], 0);
    // A fresh endpoint's first key: a year left, no successor yet.
    let left = health["signing_key"]["seconds_left"]
        .as_u64()
        .expect("seconds");
    assert!(left > 364 * 86_400, "{body}");
    assert_eq!(health["signing_key"]["next_published"], false, "{body}");
    let gauge = metric(&ep, "causeway_signing_key_seconds_left").expect("gauge");
    assert!(gauge > 364 * 86_400, "{gauge}");
    assert_eq!(metric(&ep, "causeway_signing_next_key_published"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_channels_are_counted_apart_so_browsers_cannot_starve_them() {
    use causeway_agent::channel::Identity;
    use causeway_agent::config::Endpoint as AgentEndpoint;
    use causeway_agent::connect::{keep_channel, Backoff};
    use causeway_agent::validator::{
        DcTarget, DirectorySettings, LoginResolution, Transport, Validator,
    };
    use std::sync::RwLock;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ep = Endpoint::start(
        "agents",
        "[server]\nidle_timeout = \"5m\"\nmax_connections = 3\nmax_connections_per_source = 3\n",
        &[],
    );
    let token = ep.cli(&["certs", "token"], None);
    let to = public_addr(&ep);
    let at = AgentEndpoint {
        host: "127.0.0.1".into(),
        port: to.port(),
    };
    let state = causeway_agent::enroll::register(&at, None, token.trim(), "agent-host")
        .await
        .expect("enrolled");
    // The channels only need the endpoint: no sign-in reaches the (unreachable) DC here.
    let validator = Arc::new(Validator::new(
        causeway_credential::EnvelopeOpener::new(state.hpke),
        DirectorySettings {
            dcs: vec![DcTarget {
                url: "ldaps://127.0.0.1:1".into(),
                transport: Transport::Ldaps,
            }],
            tls: Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            op_timeout: Duration::from_secs(1),
            pool_per_dc: 1,
            cool_down: Duration::from_secs(5),
            login: LoginResolution::AsTyped,
        },
    ));
    let tls = Arc::new(RwLock::new(
        causeway_agent::runtime::endpoint_tls(
            &state.ca_pem,
            &state.tls_cert_pem,
            &state.tls_key_pem,
        )
        .expect("agent TLS"),
    ));
    let me = Identity {
        agent_id: state.agent_id.clone(),
        max_in_flight: 4,
        renewer: None,
    };
    let backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(1),
        healthy_after: Duration::from_secs(5),
    };
    let channels: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(keep_channel(
                at.clone(),
                None,
                tls.clone(),
                me.clone(),
                validator.clone(),
                backoff.clone(),
            ))
        })
        .collect();
    eventually(Duration::from_secs(20), "two agent channels up", || {
        metric(&ep, "causeway_agents_connected") == Some(1)
            && metric(&ep, "causeway_connections_open") == Some(2)
    });
    // Both channels come from 127.0.0.1, yet the browsers there still get the whole
    // general pool and the source's three slots.
    let mut browsers = Vec::new();
    for i in 0..3 {
        browsers.push(
            connect_from(to, Ipv4Addr::LOCALHOST, client_tls(&ep, b"http/1.1"))
                .await
                .unwrap_or_else(|e| panic!("browser {i} beside two agent channels: {e}")),
        );
    }
    assert!(
        connect_from(to, Ipv4Addr::LOCALHOST, client_tls(&ep, b"http/1.1"))
            .await
            .is_err(),
        "the general pool is full"
    );
    // With the browsers holding every general slot, the agent is still connected.
    assert_eq!(metric(&ep, "causeway_agents_connected"), Some(1));
    assert_eq!(metric(&ep, "causeway_connections_open"), Some(5));
    for c in channels {
        c.abort();
    }
}
