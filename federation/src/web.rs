//! The endpoint's HTTP side: `/healthz`, the sign-in page, SAML and WS-Federation, served
//! on the public TLS port (the acceptor hands [`HttpHandler`] the connections with ALPN
//! `h2` / `http/1.1` or none); and Prometheus `/metrics` on a listener of its own, loopback
//! by default, so that the public port does not hand out counts by outcome.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_credential::Secret;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::acceptor::{AcceptBackoff, Accepted, Handler, Serving, Throttle};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// What the HTTP side needs.
#[derive(Debug)]
pub struct WebState {
    /// The hub (health and agent counts).
    pub hub: Arc<Hub>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The sign-in side (login page, SAML, WS-Federation), when served.
    pub portal: Option<Arc<crate::portal::Portal>>,
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        content_type.parse().expect("valid header"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        "no-store".parse().expect("valid header"),
    );
    h.insert(
        "x-content-type-options",
        "nosniff".parse().expect("valid header"),
    );
    r
}

async fn route(
    state: Arc<WebState>,
    req: Request<Incoming>,
    peer: Option<std::net::SocketAddr>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            let agents = state.hub.connected_agents().len();
            let keys = state.portal.as_ref().map(|p| p.key_health());
            respond(
                StatusCode::OK,
                "application/json",
                healthz_body(agents, keys.as_ref(), std::time::SystemTime::now()),
            )
        }
        // Not here: the metrics listener serves it (see [`serve_metrics`]). Answered before
        // the portal so that no route of its own can expose it by accident.
        (_, "/metrics") => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        (_, "/healthz") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => match &state.portal {
            Some(p) => p.handle(req, peer).await,
            None => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
    })
}

/// `/healthz`: agents connected and, with a sign-in side, the token-signing key's time left
/// and whether its successor is published (monitoring alerts before tokens stop).
fn healthz_body(
    agents: usize,
    keys: Option<&causeway_certs::signing::KeyHealth>,
    now: std::time::SystemTime,
) -> String {
    // `status` first, as before the key's detail was added.
    let keys = keys.map_or_else(String::new, |k| {
        let detail = serde_json::json!({
            "seconds_left": k.seconds_left(now),
            "next_published": k.next_id.is_some(),
            "next_signs_in_s": k.next_activates.map(|t| t.duration_since(now).map_or(0, |d| d.as_secs())),
        });
        format!(",\"signing_key\":{detail}")
    });
    format!("{{\"status\":\"ok\",\"agents_connected\":{agents}{keys}}}\n")
}

/// The HTTP side's timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// An HTTP/1 request's header must arrive within this.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight (just opened, HTTP/1 keep-alive, HTTP/2
    /// with no open stream) is closed after this.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// HTTP/2 pings while streams are open, so that a peer that vanished is found out (an idle
/// connection is closed by the idle deadline instead).
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// After the idle deadline, how long a graceful close (HTTP/2 GOAWAY) may take before the
/// connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Whether a connection has a request in flight, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

/// One request in flight; the connection is idle again once every one is dropped.
struct InFlight(Arc<Activity>);

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Returns once the connection has had no request in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wake = if self.in_flight.load(Ordering::SeqCst) > 0 {
                Instant::now() + timeout
            } else {
                let deadline = *crate::lock(&self.idle_since) + timeout;
                // Checked again under the count: a request may have begun meanwhile.
                if deadline <= Instant::now() && self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                deadline.max(Instant::now() + Duration::from_millis(1))
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *crate::lock(&self.0.idle_since) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one (TLS) connection until it closes. Header size and
/// the number of concurrent HTTP/2 streams are bounded; the header must arrive within
/// `limits.header_read_timeout`, and a connection with no request in flight is closed
/// after `limits.idle_timeout`, whatever the protocol (including one that never sends a
/// byte).
pub async fn serve_connection<S>(
    stream: S,
    state: Arc<WebState>,
    peer: Option<std::net::SocketAddr>,
    limits: HttpLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_connection_until(stream, state, peer, limits, std::future::pending()).await;
}

/// [`serve_connection`] until `stopping` completes: then the connection closes gracefully
/// (the request in flight is answered, HTTP/2 says GOAWAY, an idle connection closes at
/// once), within the endpoint's drain deadline.
pub(crate) async fn serve_connection_until<S>(
    stream: S,
    state: Arc<WebState>,
    peer: Option<std::net::SocketAddr>,
    limits: HttpLimits,
    stopping: impl std::future::Future<Output = ()> + Send,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let a = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let (busy, state) = (a.begin(), state.clone());
        async move {
            let r = route(state, req, peer).await;
            drop(busy);
            r
        }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(256 * 1024)
        .header_read_timeout(limits.header_read_timeout)
        .timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .timer(hyper_util::rt::TokioTimer::new());
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            return;
        }
        () = activity.idle_for(limits.idle_timeout) => {}
        () = stopping => {
            tracing::debug!(?peer, "endpoint stopping; closing the HTTP connection once its requests are answered");
            conn.as_mut().graceful_shutdown();
            // The acceptor's drain deadline bounds this wait.
            let _ = conn.await;
            return;
        }
    }
    tracing::debug!(?peer, "HTTP connection idle; closing it");
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

/// The HTTP side as the acceptor's [`Handler`]: serves each connection it is given with
/// [`serve_connection`], holding the connection's admission until it closes.
#[derive(Debug)]
pub struct HttpHandler {
    state: Arc<WebState>,
    limits: HttpLimits,
}

impl HttpHandler {
    /// Serves `state` with these timeouts.
    pub fn new(state: Arc<WebState>, limits: HttpLimits) -> Arc<Self> {
        Arc::new(Self { state, limits })
    }
}

impl Handler for HttpHandler {
    fn serve(self: Arc<Self>, conn: Accepted) -> Serving {
        Box::pin(async move {
            let Accepted {
                tls,
                peer,
                admission,
            } = conn;
            let stopping = admission.stopping();
            serve_connection_until(tls, self.state.clone(), Some(peer), self.limits, stopping)
                .await;
            drop(admission);
        })
    }
}

/// Connections the metrics listener holds at once (scrapers are few).
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Whether a scrape may read the metrics: with a `token`, only `Authorization: Bearer
/// <token>` may (compared in constant time).
fn scrape_allowed(req: &Request<Incoming>, token: Option<&Secret<String>>) -> bool {
    let Some(token) = token else {
        return true;
    };
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| bool::from(given.ct_eq(token.expose_secret().as_bytes())))
}

/// Serves Prometheus `GET /metrics` (plain HTTP/1.1; everything else is a 404) on
/// `listener` until the task is dropped. Meant for loopback or a management network;
/// with `token`, a scrape must also send it as a bearer token (401 otherwise).
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<WebState>,
    token: Option<Arc<Secret<String>>>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::default();
    let mut log = Throttle::new(Duration::from_secs(60));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                if let Some(suppressed) = log.hit(std::time::Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "metrics listener: accept failed; backing off");
                }
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        backoff.succeeded();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (state, token) = (state.clone(), token.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let allowed = scrape_allowed(&req, token.as_deref());
                async move {
                    Ok::<_, Infallible>(match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") if !allowed => {
                            let mut r = respond(
                                StatusCode::UNAUTHORIZED,
                                "text/plain",
                                "a bearer token is required\n",
                            );
                            r.headers_mut().insert(
                                hyper::header::WWW_AUTHENTICATE,
                                "Bearer realm=\"causeway-metrics\""
                                    .parse()
                                    .expect("valid header"),
                            );
                            r
                        }
                        (&Method::GET, "/metrics") => {
                            if let Some(p) = &state.portal {
                                state
                                    .metrics
                                    .signing_keys(&p.key_health(), std::time::SystemTime::now());
                            }
                            respond(
                                StatusCode::OK,
                                "text/plain; version=0.0.4",
                                state.metrics.render(state.hub.connected_agents().len()),
                            )
                        }
                        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            // A scrape takes milliseconds; nothing may hold one of the few slots for long.
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    fn state() -> Arc<WebState> {
        Arc::new(WebState {
            hub: Hub::new(HubConfig::new("ep")),
            metrics: Metrics::new(),
            portal: None,
        })
    }

    const IDLE: HttpLimits = HttpLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(1),
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_at_the_idle_deadline() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(4096);
        let t0 = Instant::now();
        tokio::spawn(serve_connection(server, state(), None, IDLE));
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await.expect("read");
        assert_eq!(n, 0, "closed without a word");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_restarts_after_each_request_and_then_closes_keep_alive() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let t0 = Instant::now();
        tokio::spawn(serve_connection(server, state(), None, IDLE));
        let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..3 {
            // Each request comes just before the deadline of the previous idle period.
            tokio::time::sleep(Duration::from_millis(900)).await;
            client.write_all(get).await.expect("send");
            let mut buf = vec![0u8; 4096];
            let n = client.read(&mut buf).await.expect("read");
            let head = String::from_utf8_lossy(&buf[..n]);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        }
        let mut buf = [0u8; 16];
        assert_eq!(
            client.read(&mut buf).await.expect("read"),
            0,
            "closed once idle"
        );
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(3700) && took < Duration::from_millis(4800),
            "{took:?}"
        );
    }

    #[test]
    fn healthz_reports_the_signing_keys_time_left_and_successor() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let plain: serde_json::Value =
            serde_json::from_str(&healthz_body(2, None, now)).expect("json");
        assert_eq!(
            plain,
            serde_json::json!({"status": "ok", "agents_connected": 2})
        );
        let k = causeway_certs::signing::KeyHealth {
            active_id: Some("a".into()),
            active_expires: Some(now + Duration::from_secs(7200)),
            next_id: Some("b".into()),
            next_activates: Some(now + Duration::from_secs(60)),
        };
        let v: serde_json::Value =
            serde_json::from_str(&healthz_body(0, Some(&k), now)).expect("json");
        assert_eq!(v["signing_key"]["seconds_left"], 7200);
        assert_eq!(v["signing_key"]["next_published"], true);
        assert_eq!(v["signing_key"]["next_signs_in_s"], 60);
    }

    #[tokio::test]
    async fn metrics_are_served_on_their_own_listener_and_404_on_the_public_side() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let st = state();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_metrics(listener, st.clone(), None));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let m = get("/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("causeway_connections_open"), "{m}");
        assert!(get("/healthz").await.starts_with("HTTP/1.1 404"));
        // The public side's router.
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve_connection(server, st, None, IDLE));
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut out = String::new();
        client.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
    }

    #[tokio::test]
    async fn with_a_token_a_scrape_must_bring_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = Arc::new(Secret::new("s3cret-metrics-token-1f9".to_owned()));
        tokio::spawn(serve_metrics(listener, state(), Some(token)));
        let get = |auth: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("send");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let none = get("").await;
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(none.contains("www-authenticate: Bearer"), "{none}");
        assert!(!none.contains("causeway_"), "{none}");
        let wrong = get("Authorization: Bearer s3cret-metrics-token-1f8\r\n").await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let prefix = get("Authorization: Bearer s3cret\r\n").await;
        assert!(prefix.starts_with("HTTP/1.1 401"), "{prefix}");
        let right = get("Authorization: Bearer s3cret-metrics-token-1f9\r\n").await;
        assert!(right.starts_with("HTTP/1.1 200"), "{right}");
        assert!(right.contains("causeway_connections_open"), "{right}");
    }
}
