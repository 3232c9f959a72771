//! Real mutual-TLS handshakes over loopback TCP between the hub's and the agent's rustls
//! configurations, and an enrollment's certificate side (the registry's side is tested in
//! `causeway-store`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_certs::{
    agent_client_config, fingerprint_of_der, server_config, AgentId, Ca, CertsError, IssuedCert,
    DEFAULT_AGENT_CERT_VALIDITY,
};
use causeway_credential::Secret;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const AGENT_ALPN: &[u8] = b"causeway-agent/1";
const ENROLL_ALPN: &[u8] = b"causeway-enroll/1";

use causeway_testkit::TempDir as TestDir;

/// What an agent does at `causeway agent register`: a fresh key and a CSR for it.
fn agent_key_and_csr() -> (Secret<String>, String) {
    causeway_certs::new_key_and_csr("agent-host").expect("key and CSR")
}

struct Agent {
    key: Secret<String>,
    cert: IssuedCert,
}

fn enroll_agent(ca: &Ca) -> Agent {
    let (key, csr) = agent_key_and_csr();
    let id = AgentId::generate().expect("id");
    let cert = ca
        .sign_agent_csr(&csr, &id, SystemTime::now(), DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    Agent { key, cert }
}

fn hub_config(ca: &Ca, verifier_allows_enrollment: bool) -> Arc<rustls::ServerConfig> {
    let server = ca
        .issue_server_cert(
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            SystemTime::now(),
        )
        .expect("server cert");
    let verifier = if verifier_allows_enrollment {
        ca.enrollment_client_verifier()
    } else {
        ca.client_verifier()
    }
    .expect("verifier");
    Arc::new(
        server_config(
            server.chain_der(),
            server.private_key_der().expect("key"),
            verifier,
            vec![AGENT_ALPN.to_vec(), ENROLL_ALPN.to_vec()],
        )
        .expect("server config"),
    )
}

#[derive(Debug)]
struct ServerSaw {
    alpn: Option<Vec<u8>>,
    client_cert_fingerprint: Option<String>,
}

/// One connection: the server accepts, the client connects, they exchange ping/pong.
/// Returns what each side saw (or its error).
async fn exchange(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (
    Result<ServerSaw, std::io::Error>,
    Result<Option<Vec<u8>>, std::io::Error>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        tls.write_all(b"pong").await?;
        tls.flush().await?;
        let (_, conn) = tls.get_ref();
        Ok::<_, std::io::Error>(ServerSaw {
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            client_cert_fingerprint: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| fingerprint_of_der(c)),
        })
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let client_result = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        let (_, conn) = tls.get_ref();
        Ok::<_, std::io::Error>(conn.alpn_protocol().map(<[u8]>::to_vec))
    }
    .await;
    let server_result = tokio::time::timeout(Duration::from_secs(10), server_task)
        .await
        .expect("server finished")
        .expect("server task");
    (server_result, client_result)
}

fn agent_config(pinned_ca_pem: &str, agent: &Agent) -> Arc<rustls::ClientConfig> {
    Arc::new(
        agent_client_config(
            pinned_ca_pem,
            agent.cert.pem(),
            &agent.key,
            vec![AGENT_ALPN.to_vec()],
        )
        .expect("client config"),
    )
}

#[tokio::test]
async fn mutual_tls_handshake_succeeds_with_alpn() {
    let d = TestDir::new("mtls");
    let ca = Ca::load_or_create(&d.path().join("ca"), SystemTime::now()).expect("CA");
    let agent = enroll_agent(&ca);
    let (server, client) =
        exchange(hub_config(&ca, false), agent_config(ca.cert_pem(), &agent)).await;
    let saw = server.expect("server accepted the agent");
    assert_eq!(saw.alpn.as_deref(), Some(AGENT_ALPN));
    assert_eq!(
        saw.client_cert_fingerprint.as_deref(),
        Some(agent.cert.fingerprint())
    );
    assert_eq!(
        client.expect("client completed").as_deref(),
        Some(AGENT_ALPN)
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let d = TestDir::new("mtls-foreign");
    let ca = Ca::load_or_create(&d.path().join("ca"), SystemTime::now()).expect("CA");
    let rogue_ca = Ca::load_or_create(&d.path().join("rogue"), SystemTime::now()).expect("CA");
    // The rogue agent trusts our CA (it knows the server) but its certificate is not ours.
    let rogue = enroll_agent(&rogue_ca);
    for allow_enrollment in [false, true] {
        let (server, _client) = exchange(
            hub_config(&ca, allow_enrollment),
            agent_config(ca.cert_pem(), &rogue),
        )
        .await;
        let err = server.expect_err("server refused the foreign certificate");
        assert!(
            err.to_string().contains("UnknownIssuer"),
            "{allow_enrollment}: {err}"
        );
    }
}

#[tokio::test]
async fn a_client_pinning_another_ca_refuses_the_server() {
    let d = TestDir::new("mtls-pin");
    let ca = Ca::load_or_create(&d.path().join("ca"), SystemTime::now()).expect("CA");
    let other = Ca::load_or_create(&d.path().join("other"), SystemTime::now()).expect("CA");
    let agent = enroll_agent(&ca);
    let (_server, client) = exchange(
        hub_config(&ca, false),
        agent_config(other.cert_pem(), &agent),
    )
    .await;
    let err = client.expect_err("client refused the server");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn enrollment_connections_may_come_without_a_certificate() {
    let d = TestDir::new("mtls-enroll");
    let ca = Ca::load_or_create(&d.path().join("ca"), SystemTime::now()).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).expect("root");
    let mut bare = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    bare.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
    let bare = Arc::new(bare);

    let (server, client) = exchange(hub_config(&ca, true), bare.clone()).await;
    let saw = server.expect("certificate-less enrollment accepted");
    assert_eq!(saw.alpn.as_deref(), Some(ENROLL_ALPN));
    assert_eq!(saw.client_cert_fingerprint, None);
    client.expect("client completed");

    // The strict verifier demands a certificate.
    let (server, _) = exchange(hub_config(&ca, false), bare).await;
    assert!(server.is_err(), "{server:?}");
}

#[test]
fn bad_pem_inputs_to_the_agent_config_are_named() {
    let d = TestDir::new("cfg-pem");
    let ca = Ca::load_or_create(&d.path().join("ca"), SystemTime::now()).expect("CA");
    let agent = enroll_agent(&ca);
    let two_cas = format!("{}{}", ca.cert_pem(), ca.cert_pem());
    for (pinned, chain, key, what) in [
        ("nope", agent.cert.pem(), &agent.key, "pinned CA"),
        (two_cas.as_str(), agent.cert.pem(), &agent.key, "pinned CA"),
        (ca.cert_pem(), "nope", &agent.key, "agent certificate"),
        (
            ca.cert_pem(),
            agent.cert.pem(),
            &Secret::new("nope".to_owned()),
            "agent key",
        ),
    ] {
        let err = agent_client_config(pinned, chain, key, vec![]).expect_err("refused");
        assert!(matches!(err, CertsError::BadPem { .. }), "{err:?}");
        assert!(err.to_string().contains(what), "{err}");
    }
    // A key that does not match the certificate.
    let (other_key, _) = agent_key_and_csr();
    let err = agent_client_config(ca.cert_pem(), agent.cert.pem(), &other_key, vec![])
        .expect_err("mismatch");
    assert!(matches!(err, CertsError::Tls { .. }), "{err:?}");
}

/// An enrollment's certificate side as the hub performs it: a CSR signed for a new id,
/// then the first channel connection, whose client certificate the hub names by the same
/// fingerprint the registry stores for the agent.
#[tokio::test]
async fn enrollment_then_connection_end_to_end() {
    let d = TestDir::new("e2e");
    let now = SystemTime::now();
    let ca = Ca::load_or_create(&d.path().join("ca"), now).expect("CA");
    let (key, csr) = agent_key_and_csr();
    let id = AgentId::generate().expect("id");
    let cert = ca
        .sign_agent_csr(&csr, &id, now, DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    let registered_as = cert.fingerprint().to_owned();

    let agent = Agent { key, cert };
    let (server, _) = exchange(hub_config(&ca, false), agent_config(ca.cert_pem(), &agent)).await;
    let fp = server
        .expect("connected")
        .client_cert_fingerprint
        .expect("cert");
    assert_eq!(
        fp, registered_as,
        "the hub finds the agent by what was registered"
    );
}
