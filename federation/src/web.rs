//! The endpoint's HTTP side. Today: `/healthz` and Prometheus `/metrics`; the sign-in
//! page, SAML and WS-Federation routes join here. Served on the hub's TLS port: ALPN
//! `h2` / `http/1.1` (or none) comes here, the agent ALPNs go to the hub.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::hub::Hub;
use crate::signin::Path;
use causeway_credential::SignInOutcome;

/// The endpoint's metrics.
pub struct Metrics {
    registry: Registry,
    signins: IntCounterVec,
    latency: HistogramVec,
    agents: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers the endpoint's metrics.
    pub fn new() -> Arc<Self> {
        let registry = Registry::new_custom(Some("causeway".into()), None).expect("valid prefix");
        let signins = IntCounterVec::new(
            Opts::new(
                "signins_total",
                "Sign-in checks by outcome and by the path that answered",
            ),
            &["outcome", "path"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("signin_seconds", "Time to answer a sign-in check").buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["path"],
        )
        .expect("valid metric");
        let agents = IntGauge::new("agents_connected", "Agents with at least one open channel")
            .expect("valid metric");
        for c in [
            Box::new(signins.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(agents.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        // Every outcome appears from the start, at zero, so rates and alerts work at once.
        for o in SignInOutcome::ALL {
            for p in ["pass_through", "hash_sync", "none"] {
                signins.with_label_values(&[o.code(), p]);
            }
        }
        Arc::new(Self {
            registry,
            signins,
            latency,
            agents,
        })
    }

    /// Records one sign-in check.
    pub fn record(&self, outcome: SignInOutcome, path: Path, took: Duration) {
        let p = match path {
            Path::PassThrough => "pass_through",
            Path::HashSync => "hash_sync",
            Path::None => "none",
        };
        self.signins.with_label_values(&[outcome.code(), p]).inc();
        self.latency
            .with_label_values(&[p])
            .observe(took.as_secs_f64());
    }

    fn render(&self, hub: &Hub) -> Vec<u8> {
        self.agents
            .set(i64::try_from(hub.connected_agents().len()).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

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
            respond(
                StatusCode::OK,
                "application/json",
                format!("{{\"status\":\"ok\",\"agents_connected\":{agents}}}\n"),
            )
        }
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(&state.hub),
        ),
        (_, "/healthz" | "/metrics") => respond(
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

/// Serves HTTP/1.1 or HTTP/2 on one (TLS) connection until it closes. Header size and
/// the number of concurrent HTTP/2 streams are bounded; a slow client cannot hold the
/// connection open for ever.
pub async fn serve_connection<S>(
    stream: S,
    state: Arc<WebState>,
    peer: Option<std::net::SocketAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| route(state.clone(), req, peer));
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(256 * 1024)
        .header_read_timeout(Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
        .http2()
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    #[test]
    fn sign_ins_are_counted_by_outcome_and_path() {
        let m = Metrics::new();
        m.record(
            SignInOutcome::Success,
            Path::HashSync,
            Duration::from_millis(3),
        );
        m.record(
            SignInOutcome::Success,
            Path::HashSync,
            Duration::from_millis(4),
        );
        m.record(
            SignInOutcome::DirectoryUnavailable,
            Path::PassThrough,
            Duration::from_millis(9),
        );
        let text = String::from_utf8(m.render(&Hub::new(HubConfig::new("ep")))).expect("utf8");
        assert!(
            text.contains("causeway_signins_total{outcome=\"success\",path=\"hash_sync\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "causeway_signins_total{outcome=\"directory_unavailable\",path=\"pass_through\"} 1"
        ));
        assert!(text.contains("causeway_signin_seconds_bucket{path=\"hash_sync\",le=\"0.005\"} 2"));
        assert!(text.contains("causeway_agents_connected 0"));
    }
}
