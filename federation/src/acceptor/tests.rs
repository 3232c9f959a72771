use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn gate(max: usize, per_source: usize, agents: usize) -> Arc<Gate> {
    let limits = ConnectionLimits {
        max_connections: max,
        max_connections_per_source: per_source,
        max_agent_channels: agents,
        ..ConnectionLimits::default()
    };
    Gate::new(&limits, Metrics::new(), Shutdown::new())
}

fn v4(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

#[test]
fn a_source_over_its_cap_is_refused_and_its_entry_goes_at_zero() {
    let g = gate(10, 2, 1);
    let a = g.admit(v4(1)).expect("first");
    let b = g.admit(v4(1)).expect("second");
    assert_eq!(g.admit(v4(1)).err(), Some(Refused::PerSource));
    // Another source is not affected.
    let c = g.admit(v4(2)).expect("other source");
    drop(a);
    let a = g.admit(v4(1)).expect("a slot was given back");
    drop((a, b, c));
    assert!(
        crate::lock(&g.sources).is_empty(),
        "no entry outlives its last connection"
    );
    assert_eq!(g.general.available_permits(), 10);
}

#[test]
fn the_global_cap_refuses_and_gives_the_source_slot_back() {
    let g = gate(2, 5, 1);
    let _a = g.admit(v4(1)).expect("1");
    let _b = g.admit(v4(2)).expect("2");
    assert_eq!(g.admit(v4(3)).err(), Some(Refused::Global));
    assert!(!crate::lock(&g.sources).contains_key(&SourceKey::of(v4(3))));
}

#[test]
fn ipv6_sources_are_keyed_by_their_64() {
    let g = gate(10, 1, 1);
    let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("v6");
    let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("v6");
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("v6");
    let _x = g.admit(IpAddr::V6(a)).expect("first in the /64");
    assert_eq!(g.admit(IpAddr::V6(b)).err(), Some(Refused::PerSource));
    let _y = g.admit(IpAddr::V6(c)).expect("another /64");
    // An IPv4-mapped address counts as the IPv4 address.
    let _z = g.admit(v4(7)).expect("v4");
    let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
    assert_eq!(g.admit(IpAddr::V6(mapped)).err(), Some(Refused::PerSource));
}

#[test]
fn agent_channels_leave_the_general_pool_and_have_their_own_cap() {
    let g = gate(1, 1, 1);
    let agent = g
        .admit(v4(1))
        .expect("handshake slot")
        .move_to_agents()
        .expect("agent slot");
    // The browser pool and the source's slot are free again while the agent stays.
    let browser = g.admit(v4(1)).expect("browser after the agent moved");
    drop(browser);
    let second = g.admit(v4(1)).expect("second agent's handshake");
    assert!(matches!(
        second.move_to_agents(),
        Err((_, Refused::AgentChannels))
    ));
    drop(agent);
    assert_eq!(g.general.available_permits(), 1);
    assert_eq!(g.agents.available_permits(), 1);
}

#[test]
fn connections_open_follows_admissions() {
    let g = gate(4, 4, 4);
    let open = || g.metrics.connections_open().get();
    let a = g.admit(v4(1)).expect("a");
    let b = g.admit(v4(1)).expect("b").move_to_agents().expect("agent");
    assert_eq!(open(), 2);
    drop(a);
    assert_eq!(open(), 1);
    drop(b);
    assert_eq!(open(), 0);
}

#[test]
fn every_refusal_reason_is_counted_from_zero() {
    let text = String::from_utf8(Metrics::new().render(0)).expect("utf8");
    for r in Refused::ALL {
        let line = format!(
            "causeway_connections_refused_total{{reason=\"{}\"}} 0",
            r.label()
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}

#[test]
fn a_repeated_warning_is_logged_once_then_once_a_minute_with_a_count() {
    let t0 = Instant::now();
    let mut t = Throttle::new(Duration::from_secs(60));
    assert_eq!(t.hit(t0), Some(0), "the first is logged");
    // Ten a second for a minute: all suppressed.
    for i in 1..600 {
        assert_eq!(t.hit(t0 + Duration::from_millis(100 * i)), None);
    }
    assert_eq!(
        t.hit(t0 + Duration::from_secs(60)),
        Some(599),
        "a minute later, one line says how many were kept quiet"
    );
    assert_eq!(t.hit(t0 + Duration::from_secs(61)), None);
}

#[test]
fn accept_backoff_doubles_to_a_second_and_resets() {
    let mut b = AcceptBackoff::default();
    let waits: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    b.succeeded();
    assert_eq!(b.failed(), Duration::from_millis(10));
}

/// Routing by ALPN over a real TLS handshake: each handler answers with its name, and
/// a handler that must not see the connection panics (in this task, so the test fails).
mod routing {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const AGENT: &[u8] = b"causeway-agent/1";
    const OTHER: &[u8] = b"something-else/1";

    struct Answers(&'static [u8]);

    impl Handler for Answers {
        fn serve(self: Arc<Self>, mut conn: Accepted) -> Serving {
            Box::pin(async move {
                conn.tls.write_all(self.0).await.expect("answer");
                conn.tls.shutdown().await.expect("close");
            })
        }
    }

    struct Panics;

    impl Handler for Panics {
        fn serve(self: Arc<Self>, _conn: Accepted) -> Serving {
            panic!("routed to a handler that must not see this connection")
        }
    }

    struct Tls {
        server: Arc<rustls::ServerConfig>,
        roots: rustls::RootCertStore,
    }

    fn tls() -> Tls {
        let dir = std::env::temp_dir().join(format!(
            "causeway-acceptor-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let now = std::time::SystemTime::now();
        let ca = causeway_certs::Ca::load_or_create(&dir, now).expect("ca");
        let cert = ca
            .issue_server_cert(&["localhost".to_owned()], now)
            .expect("server cert");
        let server = causeway_certs::server_config(
            cert.chain_der(),
            cert.private_key_der().expect("key"),
            ca.enrollment_client_verifier().expect("verifier"),
            vec![
                AGENT.to_vec(),
                OTHER.to_vec(),
                b"h2".to_vec(),
                b"http/1.1".to_vec(),
            ],
        )
        .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("root");
        let _ = std::fs::remove_dir_all(&dir);
        Tls {
            server: Arc::new(server),
            roots,
        }
    }

    /// What a client offering `alpn` reads before the connection closes (`Err` if it
    /// was closed without a TLS close_notify, as the acceptor does when nothing serves
    /// that ALPN).
    async fn route(tls: &Tls, routes: Routes, alpn: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(tls.roots.clone())
        .with_no_client_auth();
        client.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let gate = gate(4, 4, 4);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
        let server = async {
            let (tcp, peer) = listener.accept().await.expect("accept");
            let admission = gate.admit(peer.ip()).expect("admitted");
            connection(
                tcp,
                peer,
                admission,
                Duration::from_secs(10),
                acceptor,
                Arc::new(routes),
            )
            .await;
        };
        let client = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut s = connector.connect(name, tcp).await.expect("handshake");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.map(|_| out)
        };
        let ((), read) = tokio::join!(server, client);
        assert_eq!(
            gate.general.available_permits(),
            4,
            "the admission ends with the connection"
        );
        read
    }

    fn agents_and_web(agent: Arc<dyn Handler>, web: Arc<dyn Handler>) -> Routes {
        Routes::new().alpn(AGENT, agent).http(web)
    }

    #[tokio::test]
    async fn the_agent_alpn_goes_to_the_agent_handler_only() {
        let tls = tls();
        let r = agents_and_web(Arc::new(Answers(b"agent")), Arc::new(Panics));
        let read = route(&tls, r, Some(AGENT)).await.expect("served");
        assert_eq!(read, b"agent");
    }

    #[tokio::test]
    async fn http_alpns_and_none_go_to_the_http_handler_only() {
        let tls = tls();
        for alpn in [Some(&b"h2"[..]), Some(b"http/1.1"), None] {
            let r = agents_and_web(Arc::new(Panics), Arc::new(Answers(b"web")));
            let read = route(&tls, r, alpn).await.expect("served");
            assert_eq!(read, b"web", "{alpn:?}");
        }
    }

    #[tokio::test]
    async fn an_alpn_nobody_serves_is_closed_without_a_handler() {
        let tls = tls();
        let r = agents_and_web(Arc::new(Panics), Arc::new(Panics));
        let read = route(&tls, r, Some(OTHER)).await;
        assert!(read.map_or(true, |r| r.is_empty()), "closed unanswered");
    }

    #[tokio::test]
    async fn without_an_http_handler_http_is_closed() {
        let tls = tls();
        let r = Routes::new().alpn(AGENT, Arc::new(Panics));
        for alpn in [Some(&b"h2"[..]), None] {
            let read = route(&tls, r.clone(), alpn).await;
            assert!(
                read.map_or(true, |r| r.is_empty()),
                "{alpn:?} closed unanswered"
            );
        }
    }

    #[tokio::test]
    async fn a_peer_hanging_up_mid_handshake_is_routine_but_a_peer_speaking_no_tls_is_not() {
        let tls = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
        for (sent, routine) in [(&b""[..], true), (b"GET / HTTP/1.1\r\n\r\n", false)] {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(sent).await.expect("write");
            drop(c);
            let (tcp, _) = listener.accept().await.expect("accept");
            let e = acceptor.accept(tcp).await.expect_err("no handshake");
            assert_eq!(closed_during_handshake(&e), routine, "{sent:?}: {e}");
        }
    }

    /// Holds its connection until the endpoint stops, then closes it.
    struct UntilStopped;

    impl Handler for UntilStopped {
        fn serve(self: Arc<Self>, mut conn: Accepted) -> Serving {
            Box::pin(async move {
                conn.tls.write_all(b"open").await.expect("answer");
                conn.admission.stopping().await;
                conn.tls.write_all(b" bye").await.expect("answer");
                conn.tls.shutdown().await.expect("close");
            })
        }
    }

    #[tokio::test]
    async fn once_stopped_the_acceptor_refuses_connections_and_returns_when_open_ones_closed() {
        let tls = tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::new();
        let serving = tokio::spawn(serve_until(
            listener,
            tls.server.clone(),
            ConnectionLimits::default(),
            Routes::new().http(Arc::new(UntilStopped)),
            Metrics::new(),
            shutdown.clone(),
            Duration::from_secs(60),
        ));
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(tls.roots.clone())
        .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .expect("handshake");
        let mut open = [0u8; 4];
        s.read_exact(&mut open).await.expect("served");
        shutdown.stop();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.expect("closed cleanly");
        assert_eq!(rest, b" bye", "the handler saw the stop and finished");
        assert!(
            serving.await.expect("join"),
            "drained: every connection closed before the deadline"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listening socket is closed"
        );
    }
}
