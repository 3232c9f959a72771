//! A small HTTPS client (hyper over rustls, HTTP/1.1 keep-alive) for fetching SP metadata
//! by URL and for the SSO benchmark's browsers. Trust: the system's CA bundle plus an
//! optional extra CA file (a private CA, or Causeway's own).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::Request;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A TLS client config trusting the system bundle and `extra_ca` (PEM).
pub(crate) fn tls_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut add = |p: &Path, required: bool| -> Result<()> {
        match CertificateDer::pem_file_iter(p) {
            Ok(it) => {
                for c in it {
                    let c = c.with_context(|| format!("{}: not PEM certificates", p.display()))?;
                    let _ = roots.add(c);
                }
                Ok(())
            }
            Err(e) if required => Err(anyhow!("cannot read {}: {e}", p.display())),
            Err(_) => Ok(()),
        }
    };
    add(Path::new(SYSTEM_BUNDLE), false)?;
    if let Some(p) = extra_ca {
        add(p, true)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// One keep-alive HTTPS connection.
pub(crate) struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

/// Splits `https://host:port/path?q` into (host, port, path-and-query).
pub(crate) fn split_url(url: &str) -> Result<(String, u16, String)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| anyhow!("{url:?}: only https:// URLs are fetched"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse().context("bad port")?,
        ),
        _ => (hostport.to_owned(), 443),
    };
    Ok((host, port, path.to_owned()))
}

impl Conn {
    /// Connects to `host:port`.
    pub(crate) async fn connect(
        host: &str,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| anyhow!("connecting to {host}:{port} timed out"))?
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
        Self::over(tcp, host, port, tls).await
    }

    /// Connects to `addr` from the local address `source` (another loopback address, so
    /// that a benchmark's clients count as distinct sources).
    pub(crate) async fn connect_from(
        source: std::net::IpAddr,
        addr: std::net::SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let tcp = tls_stream_from(source, addr).await?;
        Self::over(tcp, &addr.ip().to_string(), addr.port(), tls).await
    }

    async fn over(
        tcp: tokio::net::TcpStream,
        host: &str,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| anyhow!("{host:?} is not a server name"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {host}:{port} failed"))?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            send,
            authority: if port == 443 {
                host.to_owned()
            } else {
                format!("{host}:{port}")
            },
        })
    }

    /// Sends a request; returns status, headers and a body of at most `max` bytes.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        max: usize,
    ) -> Result<(u16, hyper::HeaderMap, Bytes)> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.send.ready().await?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = Limited::new(resp.into_body(), max)
            .collect()
            .await
            .map_err(|e| anyhow!("response body: {e}"))?
            .to_bytes();
        Ok((status, headers, body))
    }
}

/// A TCP connection to `addr` from the local address `source`.
pub(crate) async fn tls_stream_from(
    source: std::net::IpAddr,
    addr: std::net::SocketAddr,
) -> Result<tokio::net::TcpStream> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.bind(std::net::SocketAddr::new(source, 0))
        .with_context(|| format!("cannot bind to {source}"))?;
    tokio::time::timeout(Duration::from_secs(10), sock.connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr} from {source}"))
}

/// GETs `url` (at most `max` bytes, 200 only).
pub(crate) async fn get(url: &str, extra_ca: Option<&Path>, max: usize) -> Result<String> {
    let (host, port, path) = split_url(url)?;
    let mut c = Conn::connect(&host, port, tls_config(extra_ca)?).await?;
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        c.send("GET", &path, &[], None, max),
    )
    .await
    .map_err(|_| anyhow!("{url}: no answer within 20 s"))??;
    if status != 200 {
        bail!("{url} answered HTTP {status}");
    }
    String::from_utf8(body.to_vec()).map_err(|_| anyhow!("{url}: the answer is not UTF-8 text"))
}
