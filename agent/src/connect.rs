//! Dialing out: TCP (directly or through an HTTP `CONNECT` proxy), then TLS with the
//! agent's client certificate and the endpoint's pinned CA, insisting on the agent
//! protocol's ALPN. And the loop that keeps a channel up: reconnect with jittered
//! exponential backoff, forever, until told to stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_proto::agent::{GoAwayReason, ALPN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::{error, info, warn};

use crate::channel::{self, ChannelEnd, CheckHandler, Identity};
use crate::config::Endpoint;

/// Why dialing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// TCP connect failed or timed out.
    #[error("cannot reach {0}: {1}")]
    Tcp(String, String),
    /// The proxy refused or answered nonsense.
    #[error("proxy refused CONNECT to {0}: {1}")]
    Proxy(String, String),
    /// The TLS handshake failed (wrong CA, revoked or expired certificate, ...).
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    /// The endpoint does not speak the agent protocol on this port.
    #[error("{0} did not accept the agent protocol (ALPN {1:?})")]
    Alpn(String, String),
}

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a proxy's answer read before giving up on it.
const MAX_PROXY_RESPONSE: usize = 8192;

/// Opens a TLS stream to `endpoint` for the agent protocol, through `proxy` when given.
pub async fn dial(
    endpoint: &Endpoint,
    proxy: Option<&Endpoint>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, DialError> {
    dial_alpn(endpoint, proxy, tls, ALPN).await
}

/// Opens a TLS stream to `endpoint` and insists that `alpn` was negotiated.
pub async fn dial_alpn(
    endpoint: &Endpoint,
    proxy: Option<&Endpoint>,
    tls: Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> Result<TlsStream<TcpStream>, DialError> {
    let target = format!("{}:{}", bracket(&endpoint.host), endpoint.port);
    let tcp = match proxy {
        None => tcp(&target).await?,
        Some(p) => {
            let proxy_addr = format!("{}:{}", bracket(&p.host), p.port);
            let mut s = tcp(&proxy_addr).await?;
            tokio::time::timeout(DIAL_TIMEOUT, connect_through(&mut s, &target))
                .await
                .map_err(|_| DialError::Proxy(target.clone(), "no answer in time".into()))??;
            s
        }
    };
    let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
        .map_err(|e| DialError::Tls(target.clone(), e.to_string()))?;
    let tls = tokio::time::timeout(
        DIAL_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| DialError::Tls(target.clone(), "handshake timed out".into()))?
    .map_err(|e| DialError::Tls(target.clone(), e.to_string()))?;
    let got = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if got.as_deref() != Some(alpn) {
        return Err(DialError::Alpn(
            target,
            String::from_utf8_lossy(&got.unwrap_or_default()).into_owned(),
        ));
    }
    Ok(tls)
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

async fn tcp(addr: &str) -> Result<TcpStream, DialError> {
    let s = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| DialError::Tcp(addr.into(), "timed out".into()))?
        .map_err(|e| DialError::Tcp(addr.into(), e.to_string()))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Asks an HTTP proxy for a tunnel to `target` and reads its answer, bounded.
async fn connect_through(s: &mut TcpStream, target: &str) -> Result<(), DialError> {
    let req = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: causeway-agent\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| DialError::Proxy(target.into(), e.to_string()))?;
    let mut buf = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte, so that nothing after the header (the TLS server's first bytes) is eaten.
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() >= MAX_PROXY_RESPONSE {
            return Err(DialError::Proxy(
                target.into(),
                "answer header too long".into(),
            ));
        }
        let n = s
            .read(&mut byte)
            .await
            .map_err(|e| DialError::Proxy(target.into(), e.to_string()))?;
        if n == 0 {
            return Err(DialError::Proxy(
                target.into(),
                "closed the connection".into(),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(DialError::Proxy(
            target.into(),
            format!("answered {:?}", status.chars().take(80).collect::<String>()),
        ));
    }
    Ok(())
}

/// Reconnect timing: exponential from `min` to `max`, with jitter in [d/2, d].
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A channel that lived this long resets the delay to `min`.
    pub healthy_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    d.mul_f64(0.5 + 0.5 * frac)
}

/// Keeps one channel to `endpoint` up for ever: dial, speak the protocol, and when it
/// ends, wait (jittered, exponential) and dial again. Each dial uses the TLS settings
/// current at that moment (a renewed certificate takes effect on the next connection).
pub async fn keep_channel<H: CheckHandler>(
    endpoint: Endpoint,
    proxy: Option<Endpoint>,
    tls: Arc<std::sync::RwLock<Arc<rustls::ClientConfig>>>,
    me: Identity,
    handler: Arc<H>,
    backoff: Backoff,
) {
    let (_never, stop) = tokio::sync::watch::channel(false);
    keep_channel_until(endpoint, proxy, tls, me, handler, backoff, stop).await;
}

/// [`keep_channel`] until `stop` is set: the channel then drains (see
/// [`channel::run_until`]) and is not dialled again.
pub async fn keep_channel_until<H: CheckHandler>(
    endpoint: Endpoint,
    proxy: Option<Endpoint>,
    tls: Arc<std::sync::RwLock<Arc<rustls::ClientConfig>>>,
    me: Identity,
    handler: Arc<H>,
    backoff: Backoff,
    mut stop: channel::Stop,
) {
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let mut delay = backoff.min;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let current = tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match dial(&endpoint, proxy.as_ref(), current).await {
            Err(e) => warn!(endpoint = %target, error = %e, "cannot open a channel"),
            Ok(stream) => {
                let r = channel::run_until(
                    stream,
                    &me,
                    handler.clone(),
                    |ep| {
                        info!(endpoint = %target, endpoint_id = ep, "channel up");
                    },
                    stop.clone(),
                )
                .await;
                match r {
                    Ok(ChannelEnd::Drained) => {
                        info!(endpoint = %target, "channel drained and closed");
                        return;
                    }
                    Ok(ChannelEnd::GoAway(
                        reason @ (GoAwayReason::Revoked | GoAwayReason::NotApproved),
                        detail,
                    )) => {
                        error!(endpoint = %target, ?reason, %detail, "the endpoint refuses this agent; an administrator must approve or re-register it");
                        delay = backoff.max;
                    }
                    Ok(ChannelEnd::GoAway(GoAwayReason::UnsupportedVersion, detail)) => {
                        error!(endpoint = %target, %detail, "the endpoint speaks another agent protocol version; upgrade the agent or the endpoint so both match");
                        delay = backoff.max;
                    }
                    Ok(ChannelEnd::GoAway(reason, detail)) => {
                        info!(endpoint = %target, ?reason, %detail, "channel closed by the endpoint")
                    }
                    Err(e) => warn!(endpoint = %target, error = %e, "channel lost"),
                }
            }
        }
        if started.elapsed() >= backoff.healthy_after {
            delay = backoff.min;
        }
        let wait = jitter(delay);
        info!(endpoint = %target, wait_ms = wait.as_millis() as u64, "reconnecting after a pause");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = channel::stopped(&mut stop) => return,
        }
        delay = (delay * 2).min(backoff.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(5) && j <= Duration::from_secs(10),
                "{j:?}"
            );
        }
    }

    async fn fake_proxy(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.expect("read");
            s.write_all(answer).await.expect("write");
            req.truncate(n);
            req
        });
        (addr, h)
    }

    #[tokio::test]
    async fn connect_through_a_proxy() {
        let (addr, h) = fake_proxy(b"HTTP/1.1 200 Connection established\r\n\r\nTLS").await;
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        connect_through(&mut s, "idp.example.com:8443")
            .await
            .expect("tunnel");
        let mut rest = [0u8; 3];
        s.read_exact(&mut rest)
            .await
            .expect("bytes after the header are left for TLS");
        assert_eq!(&rest, b"TLS");
        let req = String::from_utf8(h.await.expect("proxy")).expect("utf8");
        assert!(
            req.starts_with("CONNECT idp.example.com:8443 HTTP/1.1\r\n"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn proxy_refusals_and_floods_are_errors() {
        let (addr, _h) = fake_proxy(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let e = connect_through(&mut s, "idp:443")
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("407"), "{e}");

        static FLOOD: [u8; 9000] = [b'a'; 9000];
        let (addr, _h) = fake_proxy(&FLOOD).await;
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let e = connect_through(&mut s, "idp:443").await.expect_err("flood");
        assert!(e.to_string().contains("too long"), "{e}");
    }
}
