//! The endpoint's Prometheus metrics: sign-ins by outcome and path, connections open and
//! refused, agents connected. A leaf module: the acceptor, the sign-in side and the HTTP
//! side all count here, so it imports none of them (callers pass labels and counts in).

use std::sync::Arc;
use std::time::Duration;

use causeway_credential::SignInOutcome;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The `path` labels of sign-in metrics, created at zero (see `signin::Path::label`).
pub(crate) const SIGNIN_PATHS: [&str; 3] = ["pass_through", "hash_sync", "none"];

/// The `reason` labels of refused connections: the setting that was reached (see
/// `acceptor::Refused::label`), created at zero.
pub(crate) const REFUSAL_REASONS: [&str; 3] = [
    "max_connections",
    "max_connections_per_source",
    "max_agent_channels",
];

/// The endpoint's metrics.
pub struct Metrics {
    registry: Registry,
    signins: IntCounterVec,
    latency: HistogramVec,
    agents: IntGauge,
    connections_open: IntGauge,
    connections_refused: IntCounterVec,
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
        let connections_open = IntGauge::new(
            "connections_open",
            "Connections open on the public port (handshakes, HTTP, agent channels)",
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "connections_refused_total",
                "Connections closed at once because a limit was reached, by the setting",
            ),
            &["reason"],
        )
        .expect("valid metric");
        for r in REFUSAL_REASONS {
            connections_refused.with_label_values(&[r]);
        }
        for c in [
            Box::new(signins.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(agents.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        // Every outcome appears from the start, at zero, so rates and alerts work at once.
        for o in SignInOutcome::ALL {
            for p in SIGNIN_PATHS {
                signins.with_label_values(&[o.code(), p]);
            }
        }
        Arc::new(Self {
            registry,
            signins,
            latency,
            agents,
            connections_open,
            connections_refused,
        })
    }

    /// The gauge of open connections (the acceptor increments and decrements it).
    pub(crate) fn connections_open(&self) -> IntGauge {
        self.connections_open.clone()
    }

    /// Counts one connection refused because the limit `reason` was reached.
    pub(crate) fn connection_refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    /// Records one sign-in check answered by the path labelled `path`.
    pub(crate) fn record(&self, outcome: SignInOutcome, path: &str, took: Duration) {
        self.signins
            .with_label_values(&[outcome.code(), path])
            .inc();
        self.latency
            .with_label_values(&[path])
            .observe(took.as_secs_f64());
    }

    /// The metrics in Prometheus' text format, with `agents_connected` agents connected.
    pub(crate) fn render(&self, agents_connected: usize) -> Vec<u8> {
        self.agents
            .set(i64::try_from(agents_connected).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_are_counted_by_outcome_and_path() {
        let m = Metrics::new();
        m.record(
            SignInOutcome::Success,
            "hash_sync",
            Duration::from_millis(3),
        );
        m.record(
            SignInOutcome::Success,
            "hash_sync",
            Duration::from_millis(4),
        );
        m.record(
            SignInOutcome::DirectoryUnavailable,
            "pass_through",
            Duration::from_millis(9),
        );
        let text = String::from_utf8(m.render(0)).expect("utf8");
        assert!(
            text.contains("causeway_signins_total{outcome=\"success\",path=\"hash_sync\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "causeway_signins_total{outcome=\"directory_unavailable\",path=\"pass_through\"} 1"
        ));
        assert!(text.contains("causeway_signin_seconds_bucket{path=\"hash_sync\",le=\"0.005\"} 2"));
        assert!(text.contains("causeway_agents_connected 0"));
        assert!(text.contains("causeway_connections_open 0"), "{text}");
        assert!(
            text.contains(
                "causeway_connections_refused_total{reason=\"max_connections_per_source\"} 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn agents_connected_is_the_count_given_at_render() {
        let m = Metrics::new();
        let text = String::from_utf8(m.render(3)).expect("utf8");
        assert!(text.contains("causeway_agents_connected 3"), "{text}");
    }
}
