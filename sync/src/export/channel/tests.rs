//! Renewal against an endpoint written here over real TLS (the CA, certificates and
//! rustls configs Causeway uses): one that does not know `Renew` answers `Refused` and
//! closes, as an older endpoint does with a message it cannot parse.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use causeway_certs::{AgentId, Ca};
use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{Request, Response, ALPN, MAX_MESSAGE_LEN};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;

/// Serves every connection: Hello → Welcome, Lease → granted, Renew → Refused and
/// closed. Records each request's type.
async fn old_endpoint(ca: &Ca, seen: Arc<Mutex<Vec<&'static str>>>) -> u16 {
    let now = SystemTime::now();
    let server = ca
        .issue_server_cert(&["localhost".into()], now)
        .expect("server cert");
    let cfg = causeway_certs::server_config(
        server.chain_der(),
        server.private_key_der().expect("key"),
        ca.client_verifier().expect("verifier"),
        vec![ALPN.to_vec()],
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok(req) = read::<Request, _>(&mut tls, MAX_MESSAGE_LEN).await {
                    let (name, answer) = match req {
                        Request::Hello { .. } => (
                            "hello",
                            Response::Welcome {
                                endpoint_id: "ep-old".into(),
                                lease_ms: 60_000,
                            },
                        ),
                        Request::Lease { connector } => (
                            "lease",
                            Response::Lease {
                                connector,
                                granted: true,
                                holder: None,
                                expires_in_ms: 60_000,
                            },
                        ),
                        Request::Renew { .. } => (
                            "renew",
                            Response::Refused {
                                reason: "malformed message: not a message this endpoint knows"
                                    .into(),
                            },
                        ),
                        _ => (
                            "other",
                            Response::Refused {
                                reason: "no".into(),
                            },
                        ),
                    };
                    push(&seen, name);
                    let _ = write(&mut tls, &answer).await;
                    if name == "renew" {
                        let _ = tls.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    port
}

fn push(seen: &Mutex<Vec<&'static str>>, name: &'static str) {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(name);
}

#[tokio::test]
async fn an_endpoint_without_renewal_still_gets_the_export_and_is_asked_again_later() {
    let d = causeway_testkit::TempDir::new("sync-renew-old-endpoint");
    let issued = SystemTime::now();
    let ca = Ca::load_or_create(&d.path().join("ca"), issued).expect("ca");
    let (key, csr) = causeway_certs::new_key_and_csr("sync-1").expect("csr");
    let id = AgentId::generate().expect("id");
    let cert = ca
        .sign_agent_csr(&csr, &id, issued, Duration::from_secs(3600))
        .expect("cert");
    let identity = Identity {
        host_id: id.as_str().to_owned(),
        tls_key_pem: key,
        cert_pem: cert.pem().to_owned(),
        ca_pem: ca.cert_pem().to_owned(),
    };
    let state = d.path().join("state");
    identity.save(&state).expect("saved");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = old_endpoint(&ca, seen.clone()).await;
    let endpoints = vec![("localhost".to_owned(), port)];

    // Renewal is due (the decision takes `now`; TLS checks the certificate at the real time).
    let due = cert.not_after() - Duration::from_secs(60);
    assert!(identity.renewal_due(due));
    let mut retry_at = None;
    let (mut ch, renewed) = open_renewing(&endpoints, &identity, &state, due, &mut retry_at)
        .await
        .expect("the export goes on");
    assert!(renewed.is_none());
    assert_eq!(retry_at, Some(due + RENEW_RETRY));
    assert!(ch.lease("corp").await.expect("a usable channel").granted);
    assert_eq!(
        Identity::load(&state).expect("loads").cert_pem,
        identity.cert_pem
    );

    // Within the pause: no renewal asked; after it: asked again.
    let (_ch, _) = open_renewing(
        &endpoints,
        &identity,
        &state,
        due + Duration::from_secs(60),
        &mut retry_at,
    )
    .await
    .expect("opened");
    let (_ch, _) = open_renewing(
        &endpoints,
        &identity,
        &state,
        due + RENEW_RETRY,
        &mut retry_at,
    )
    .await
    .expect("opened");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["hello", "renew", "hello", "lease", "hello", "hello", "renew", "hello"]
    );
}
