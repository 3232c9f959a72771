//! What the hash-sync tests share: a recording man in the middle on the ingestion
//! channel (so a test reads every payload the sync host sent) and a whole-tree file read
//! (so it can scan what either side wrote for a hash or a password).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::endpoint::Endpoint;

/// Every file under `dir`, read whole (SQLite files with their -wal and -shm).
pub fn files(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Plaintext the recording proxy saw, both directions.
pub type Capture = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// A recording man in the middle on the ingestion channel, so the test reads every
/// payload: it terminates the sync host's TLS with a server certificate from the
/// endpoint's own CA (the test holds it) and dials the endpoint with the sync host's
/// certificate from `identity_dir`. Returns its URL and what it recorded.
pub async fn recording_proxy(ep: &Endpoint, identity_dir: &Path) -> (String, Capture) {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = causeway_certs::Ca::load(&ep.data().join("ca"), SystemTime::now()).expect("the CA");
    let issued = ca
        .issue_server_cert(&["127.0.0.1".into()], SystemTime::now())
        .expect("a server certificate");
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(issued.chain_der(), issued.private_key_der().expect("key"))
    .expect("server config");
    server.alpn_protocols = vec![causeway_proto::sync::ALPN.to_vec()];
    let read = |f: &str| std::fs::read_to_string(identity_dir.join(f)).expect(f);
    let client = causeway_certs::agent_client_config(
        &read("ca.pem"),
        &read("tls.pem"),
        &causeway_credential::Secret::new(read("tls.key")),
        vec![causeway_proto::sync::ALPN.to_vec()],
    )
    .expect("client config");
    let (acceptor, connector) = (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    );
    let upstream = ep.url.trim_start_matches("https://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let capture: Capture = Default::default();
    let cap = capture.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, connector, upstream, cap) = (
                acceptor.clone(),
                connector.clone(),
                upstream.clone(),
                cap.clone(),
            );
            tokio::spawn(async move {
                let Ok(down) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(tcp) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                let Ok(up) = connector.connect(name, tcp).await else {
                    return;
                };
                let (mut dr, mut dw) = tokio::io::split(down);
                let (mut ur, mut uw) = tokio::io::split(up);
                let tap = |cap: Capture| {
                    move |b: &[u8]| {
                        cap.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(b)
                    }
                };
                let (t1, t2) = (tap(cap.clone()), tap(cap));
                let a = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = dr.read(&mut buf).await {
                        t1(&buf[..n]);
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let b = async move {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = ur.read(&mut buf).await {
                        t2(&buf[..n]);
                        if dw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = dw.shutdown().await;
                };
                tokio::join!(a, b);
            });
        }
    });
    (url, capture)
}
