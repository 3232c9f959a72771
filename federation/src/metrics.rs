//! The endpoint's Prometheus metrics: sign-ins by outcome and path, connections open and
//! refused, agents connected, sync ingestion (batches, objects, runs). A leaf module: the acceptor, the sign-in side and the HTTP
//! side all count here, so it imports none of them (callers pass labels and counts in).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_certs::signing::KeyHealth;
use causeway_credential::SignInOutcome;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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

/// The `outcome` labels of sync batches, created at zero: applied, refused (lease held
/// elsewhere, unknown run), failed (the store failed).
pub(crate) const SYNC_BATCH_OUTCOMES: [&str; 3] = ["applied", "refused", "failed"];

/// The `change` labels of synchronised objects, created at zero.
pub(crate) const SYNC_CHANGES: [&str; 5] = ["added", "updated", "deleted", "unchanged", "error"];

/// The `kind` labels of synchronised objects held, created at zero (proto's kinds).
pub(crate) const SYNC_KINDS: [&str; 5] = ["user", "group", "contact", "device", "ou"];

/// The `change` labels of password hash sync, created at zero: a verifier replaced,
/// flags alone changed, already as given, not applied.
pub(crate) const HASH_CHANGES: [&str; 4] = ["verifier", "flags", "unchanged", "error"];

/// The sync ingestion's metrics.
struct SyncMetrics {
    hash: IntCounterVec,
    batches: IntCounterVec,
    objects: IntCounterVec,
    held: IntGaugeVec,
    last_success: GaugeVec,
    run_seconds: Histogram,
}

impl SyncMetrics {
    fn new() -> Self {
        let batches = IntCounterVec::new(
            Opts::new("sync_batches_total", "Sync batches received, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let objects = IntCounterVec::new(
            Opts::new(
                "sync_objects_total",
                "Synchronised object changes applied, by what the change did",
            ),
            &["change"],
        )
        .expect("valid metric");
        let held = IntGaugeVec::new(
            Opts::new("sync_objects", "Live synchronised objects held, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let last_success = GaugeVec::new(
            Opts::new(
                "sync_last_success_timestamp_seconds",
                "When a connector's last successful run finished (Unix time)",
            ),
            &["connector"],
        )
        .expect("valid metric");
        let run_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sync_run_duration_seconds",
                "Duration of finished sync runs",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0,
            ]),
        )
        .expect("valid metric");
        for o in SYNC_BATCH_OUTCOMES {
            batches.with_label_values(&[o]);
        }
        let hash = IntCounterVec::new(
            Opts::new(
                "hash_sync_users_total",
                "Password hash sync changes received, by what the change did",
            ),
            &["change"],
        )
        .expect("valid metric");
        for c in HASH_CHANGES {
            hash.with_label_values(&[c]);
        }
        for c in SYNC_CHANGES {
            objects.with_label_values(&[c]);
        }
        for k in SYNC_KINDS {
            held.with_label_values(&[k]);
        }
        Self {
            hash,
            batches,
            objects,
            held,
            last_success,
            run_seconds,
        }
    }

    fn collectors(&self) -> [Box<dyn prometheus::core::Collector>; 6] {
        [
            Box::new(self.hash.clone()),
            Box::new(self.batches.clone()),
            Box::new(self.objects.clone()),
            Box::new(self.held.clone()),
            Box::new(self.last_success.clone()),
            Box::new(self.run_seconds.clone()),
        ]
    }
}

/// The endpoint's metrics.
pub struct Metrics {
    sync: SyncMetrics,
    registry: Registry,
    signins: IntCounterVec,
    latency: HistogramVec,
    agents: IntGauge,
    connections_open: IntGauge,
    connections_refused: IntCounterVec,
    signing_key_left: IntGauge,
    next_key_published: IntGauge,
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
        let signing_key_left = IntGauge::new(
            "signing_key_seconds_left",
            "Seconds until the token-signing key expires (0: none signs); alert well before 0",
        )
        .expect("valid metric");
        let next_key_published = IntGauge::new(
            "signing_next_key_published",
            "1 when the next token-signing key is published in metadata, else 0",
        )
        .expect("valid metric");
        let sync = SyncMetrics::new();
        for c in [
            Box::new(signins.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(agents.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_refused.clone()),
            Box::new(signing_key_left.clone()),
            Box::new(next_key_published.clone()),
        ]
        .into_iter()
        .chain(sync.collectors())
        {
            registry.register(c).expect("unique metric");
        }
        // Every outcome appears from the start, at zero, so rates and alerts work at once.
        for o in SignInOutcome::ALL {
            for p in SIGNIN_PATHS {
                signins.with_label_values(&[o.code(), p]);
            }
        }
        Arc::new(Self {
            sync,
            registry,
            signins,
            latency,
            agents,
            connections_open,
            connections_refused,
            signing_key_left,
            next_key_published,
        })
    }

    /// Sets the token-signing gauges from `health` as of `now`.
    pub(crate) fn signing_keys(&self, health: &KeyHealth, now: SystemTime) {
        self.signing_key_left
            .set(i64::try_from(health.seconds_left(now)).unwrap_or(i64::MAX));
        self.next_key_published
            .set(i64::from(health.next_id.is_some()));
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

    /// Counts one sync batch with `outcome` (one of [`SYNC_BATCH_OUTCOMES`]).
    pub(crate) fn sync_batch(&self, outcome: &str) {
        self.sync.batches.with_label_values(&[outcome]).inc();
    }

    /// Adds a hash batch's counts (labels of [`HASH_CHANGES`]).
    pub(crate) fn hash_sync(&self, c: &causeway_proto::sync::HashCounts) {
        for (label, n) in
            HASH_CHANGES
                .into_iter()
                .zip([c.verifiers, c.flags, c.unchanged, c.errors])
        {
            self.sync.hash.with_label_values(&[label]).inc_by(n);
        }
    }

    /// Adds a batch's `(change, count)` pairs (labels of [`SYNC_CHANGES`]).
    pub(crate) fn sync_objects(&self, changes: &[(&str, u64)]) {
        for (change, n) in changes {
            self.sync.objects.with_label_values(&[change]).inc_by(*n);
        }
    }

    /// Sets the live objects held, `(kind, count)`; a kind not given is held by none.
    pub(crate) fn sync_kinds(&self, by_kind: &[(&str, u64)]) {
        for k in SYNC_KINDS {
            let n = by_kind.iter().find(|(x, _)| *x == k).map_or(0, |(_, n)| *n);
            self.sync
                .held
                .with_label_values(&[k])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records a finished run of `connector` that took `took`; a successful one finished
    /// at `now_secs` (Unix time) is the connector's last success.
    pub(crate) fn sync_run_finished(
        &self,
        connector: &str,
        succeeded: bool,
        took: Duration,
        now_secs: u64,
    ) {
        self.sync.run_seconds.observe(took.as_secs_f64());
        if succeeded {
            self.sync
                .last_success
                .with_label_values(&[connector])
                .set(now_secs as f64);
        }
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
    fn sync_batches_objects_and_runs_are_counted() {
        let m = Metrics::new();
        let before = String::from_utf8(m.render(0)).expect("utf8");
        assert!(
            before.contains("causeway_sync_batches_total{outcome=\"refused\"} 0"),
            "{before}"
        );
        assert!(before.contains("causeway_sync_objects{kind=\"group\"} 0"));
        m.sync_batch("applied");
        m.sync_batch("applied");
        m.sync_objects(&[("added", 3), ("unchanged", 1)]);
        m.sync_objects(&[("added", 2)]);
        m.sync_kinds(&[("user", 4), ("group", 2)]);
        m.sync_kinds(&[("user", 5)]);
        m.sync_run_finished("corp", true, Duration::from_secs(7), 1_700_000_000);
        m.sync_run_finished("lab", false, Duration::from_secs(2), 1_700_000_001);
        let text = String::from_utf8(m.render(0)).expect("utf8");
        for line in [
            "causeway_sync_batches_total{outcome=\"applied\"} 2",
            "causeway_sync_objects_total{change=\"added\"} 5",
            "causeway_sync_objects_total{change=\"unchanged\"} 1",
            "causeway_sync_objects{kind=\"user\"} 5",
            "causeway_sync_objects{kind=\"group\"} 0",
            "causeway_sync_last_success_timestamp_seconds{connector=\"corp\"} 1700000000",
            "causeway_sync_run_duration_seconds_count 2",
            "causeway_sync_run_duration_seconds_bucket{le=\"5\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            !text.contains("connector=\"lab\""),
            "a failed run is no success"
        );
    }

    #[test]
    fn signing_key_time_left_and_successor_are_gauges() {
        let m = Metrics::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let mut h = KeyHealth {
            active_id: Some("a".into()),
            active_expires: Some(now + Duration::from_secs(3600)),
            ..KeyHealth::default()
        };
        m.signing_keys(&h, now);
        let text = String::from_utf8(m.render(0)).expect("utf8");
        assert!(
            text.contains("causeway_signing_key_seconds_left 3600"),
            "{text}"
        );
        assert!(
            text.contains("causeway_signing_next_key_published 0"),
            "{text}"
        );
        h.next_id = Some("b".into());
        m.signing_keys(&h, now + Duration::from_secs(600));
        let text = String::from_utf8(m.render(0)).expect("utf8");
        assert!(
            text.contains("causeway_signing_key_seconds_left 3000"),
            "{text}"
        );
        assert!(
            text.contains("causeway_signing_next_key_published 1"),
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
