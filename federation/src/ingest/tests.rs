//! The channel's request mapping and its refusals, against an in-memory [`Synced`] (pure
//! logic: leases, runs and per-anchor state, nothing else) over an in-memory stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{
    Counts, Object, ObjectChange, ObjectKind, Request, RunKind, RunRecord, RunReport, RunStatus,
    MAX_MESSAGE_LEN,
};
use causeway_store::{BatchResult, LeaseState, MatchPolicy, StoreError, SyncedRecord};
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::channel::{serve, Context, Ended};
use super::*;

const ANCHOR: &str = "AAECAwQFBgcICQoLDA0ODw==";
const HOST: &str = "agt-00000000000000aa";
const OTHER: &str = "agt-00000000000000bb";

/// Leases, runs and the anchors applied; records every holder it was called with.
#[derive(Default)]
struct FakeSynced {
    leases: Mutex<HashMap<String, (String, SystemTime)>>,
    runs: Mutex<Vec<RunRecord>>,
    objects: Mutex<BTreeMap<String, Object>>,
    holders: Mutex<Vec<String>>,
}

impl FakeSynced {
    fn saw(&self, holder: &str) {
        crate::lock(&self.holders).push(holder.to_owned());
    }

    fn holds(&self, connector: &str, holder: &str, now: SystemTime) -> bool {
        crate::lock(&self.leases)
            .get(connector)
            .is_some_and(|(h, until)| h == holder && *until > now)
    }

    fn state(&self, connector: &str, holder: &str) -> LeaseState {
        let leases = crate::lock(&self.leases);
        let l = leases.get(connector);
        LeaseState {
            granted: l.is_some_and(|(h, _)| h == holder),
            holder: l.map(|(h, _)| h.clone()),
            expires_at: l.map(|(_, t)| *t),
        }
    }
}

fn wrong(s: &str) -> StoreError {
    StoreError::WrongState(s.to_owned())
}

#[async_trait]
impl Synced for FakeSynced {
    async fn lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        self.saw(holder);
        {
            let mut leases = crate::lock(&self.leases);
            let free = leases
                .get(connector)
                .is_none_or(|(h, until)| h == holder || *until <= now);
            if free {
                leases.insert(connector.to_owned(), (holder.to_owned(), now + ttl));
            }
        }
        Ok(self.state(connector, holder))
    }

    async fn release(
        &self,
        connector: &str,
        holder: &str,
        _now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        self.saw(holder);
        let mut leases = crate::lock(&self.leases);
        if leases.get(connector).is_some_and(|(h, _)| h == holder) {
            leases.remove(connector);
        }
        drop(leases);
        Ok(self.state(connector, holder))
    }

    async fn start_run(
        &self,
        connector: &str,
        holder: &str,
        kind: RunKind,
        _policy: MatchPolicy,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        self.saw(holder);
        if !self.holds(connector, holder, now) {
            return Err(wrong(&format!(
                "{holder} does not hold the lease of {connector}"
            )));
        }
        let mut runs = crate::lock(&self.runs);
        let run = runs.len() as u64 + 1;
        runs.push(RunRecord {
            run,
            connector: connector.to_owned(),
            host: holder.to_owned(),
            kind,
            status: RunStatus::Running,
            started_at: secs(now),
            finished_at: None,
            counts: Counts::default(),
            errors: Vec::new(),
            detail: None,
        });
        Ok(run)
    }

    async fn apply_batch(
        &self,
        run: u64,
        holder: &str,
        changes: &[ObjectChange],
        now: SystemTime,
    ) -> Result<BatchResult, StoreError> {
        self.saw(holder);
        let connector = {
            let runs = crate::lock(&self.runs);
            let r = runs
                .iter()
                .find(|r| r.run == run && r.status == RunStatus::Running)
                .ok_or_else(|| wrong(&format!("no running run {run}")))?;
            r.connector.clone()
        };
        if !self.holds(&connector, holder, now) {
            return Err(wrong(&format!(
                "{holder} does not hold the lease of {connector}"
            )));
        }
        let mut counts = Counts::default();
        let mut objects = crate::lock(&self.objects);
        for c in changes {
            match c {
                ObjectChange::Upsert { object } => {
                    match objects.insert(object.anchor.clone(), object.clone()) {
                        None => counts.added += 1,
                        Some(old) if old == *object => counts.unchanged += 1,
                        Some(_) => counts.updated += 1,
                    }
                }
                ObjectChange::Delete { anchor, .. } => match objects.remove(anchor) {
                    Some(_) => counts.deleted += 1,
                    None => counts.unchanged += 1,
                },
            }
        }
        if let Some(r) = crate::lock(&self.runs).iter_mut().find(|r| r.run == run) {
            r.counts.add(&counts);
        }
        Ok(BatchResult {
            counts,
            errors: Vec::new(),
        })
    }

    async fn finish_run(
        &self,
        run: u64,
        holder: &str,
        report: &RunReport,
        now: SystemTime,
    ) -> Result<RunRecord, StoreError> {
        self.saw(holder);
        let mut runs = crate::lock(&self.runs);
        let r = runs
            .iter_mut()
            .find(|r| r.run == run && r.host == holder)
            .ok_or_else(|| wrong(&format!("{holder} has no run {run}")))?;
        r.status = report.status;
        r.finished_at = Some(secs(now));
        Ok(r.clone())
    }

    async fn runs(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        Ok(crate::lock(&self.runs)
            .iter()
            .rev()
            .filter(|r| connector.is_none_or(|c| r.connector == c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn synced_object(&self, anchor: &str) -> Result<Option<SyncedRecord>, StoreError> {
        let _ = anchor;
        Ok(None)
    }

    async fn synced_counts(&self) -> Result<Vec<(ObjectKind, u64)>, StoreError> {
        let objects = crate::lock(&self.objects);
        let mut by: BTreeMap<ObjectKind, u64> = BTreeMap::new();
        for o in objects.values() {
            *by.entry(o.kind).or_default() += 1;
        }
        Ok(by.into_iter().collect())
    }

    async fn groups_of(&self, _anchor: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Allows the host until told otherwise.
struct FakeAuthority(Mutex<Result<(), Refusal>>);

impl SyncAuthority for FakeAuthority {
    fn authorize_sync(&self, _fp: &str) -> Result<String, HostRefused> {
        Ok(HOST.into())
    }
    fn sync_still_allowed(&self, _host_id: &str) -> Result<(), Refusal> {
        *crate::lock(&self.0)
    }
    fn enroll_sync(&self, _t: &str, _h: &str, _c: &str) -> Result<Enrollment, String> {
        Err("not in these tests".into())
    }
    fn touch_sync(&self, _host_id: &str) {}
}

struct Rig {
    store: Arc<FakeSynced>,
    authority: Arc<FakeAuthority>,
    metrics: Arc<Metrics>,
}

impl Rig {
    fn new() -> Self {
        Self {
            store: Arc::new(FakeSynced::default()),
            authority: Arc::new(FakeAuthority(Mutex::new(Ok(())))),
            metrics: Metrics::new(),
        }
    }

    /// Serves a channel for `host` on one end of a pipe; returns the other end and the
    /// channel's task.
    fn channel(&self, host: &'static str) -> (DuplexStream, tokio::task::JoinHandle<Ended>) {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (store, authority, metrics) = (
            self.store.clone(),
            self.authority.clone(),
            self.metrics.clone(),
        );
        let task = tokio::spawn(async move {
            let ctx = Context {
                store: store.as_ref(),
                authority,
                metrics: &metrics,
                host,
                endpoint_id: "ep-1",
                lease: Duration::from_secs(60),
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
            };
            serve(server, &ctx).await
        });
        (client, task)
    }
}

async fn ask(io: &mut DuplexStream, req: &Request) -> Response {
    write(io, req).await.expect("send");
    read(io, MAX_MESSAGE_LEN).await.expect("answer")
}

fn hello() -> Request {
    Request::Hello {
        version: causeway_proto::sync::VERSION,
        software_version: "test".into(),
    }
}

fn user(anchor: &str, upn: &str) -> ObjectChange {
    ObjectChange::Upsert {
        object: Object {
            anchor: anchor.into(),
            kind: ObjectKind::User,
            dn: format!("CN={upn},DC=corp"),
            attrs: BTreeMap::from([("upn".into(), vec![upn.into()])]),
        },
    }
}

fn refused_reason(r: Response) -> String {
    match r {
        Response::Refused { reason } => reason,
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn an_export_maps_to_the_store_with_the_certificate_host_as_holder() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    assert_eq!(
        ask(&mut io, &hello()).await,
        Response::Welcome {
            endpoint_id: "ep-1".into(),
            lease_ms: 60_000
        }
    );
    match ask(
        &mut io,
        &Request::Lease {
            connector: "corp".into(),
        },
    )
    .await
    {
        Response::Lease {
            connector,
            granted: true,
            holder: Some(h),
            expires_in_ms,
        } => {
            assert_eq!((connector.as_str(), h.as_str()), ("corp", HOST));
            assert!(
                (59_000..=60_000).contains(&expires_in_ms),
                "{expires_in_ms}"
            );
        }
        other => panic!("{other:?}"),
    }
    let run = match ask(
        &mut io,
        &Request::StartRun {
            connector: "corp".into(),
            kind: RunKind::Full,
            soft_match: false,
        },
    )
    .await
    {
        Response::RunStarted { run } => run,
        other => panic!("{other:?}"),
    };
    let batch = Request::Batch {
        run,
        seq: 1,
        changes: vec![user(ANCHOR, "alice@corp.example")],
    };
    match ask(&mut io, &batch).await {
        Response::Applied {
            seq: 1,
            counts,
            errors,
        } => {
            assert_eq!((counts.added, counts.unchanged), (1, 0));
            assert!(errors.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // Resent after a crash: the store says unchanged, and the answer carries it.
    match ask(&mut io, &batch).await {
        Response::Applied { counts, .. } => assert_eq!((counts.added, counts.unchanged), (0, 1)),
        other => panic!("{other:?}"),
    }
    let report = RunReport {
        status: RunStatus::Succeeded,
        counts: Counts::default(),
        errors: Vec::new(),
        detail: None,
    };
    match ask(&mut io, &Request::FinishRun { run, report }).await {
        Response::RunFinished { record } => {
            assert_eq!((record.run, record.status), (run, RunStatus::Succeeded));
            assert_eq!(record.host, HOST);
        }
        other => panic!("{other:?}"),
    }
    match ask(
        &mut io,
        &Request::Runs {
            connector: None,
            limit: 5_000,
        },
    )
    .await
    {
        Response::Runs { runs } => assert_eq!(runs.len(), 1),
        other => panic!("{other:?}"),
    }
    match ask(
        &mut io,
        &Request::Release {
            connector: "corp".into(),
        },
    )
    .await
    {
        Response::Lease {
            granted, holder, ..
        } => assert_eq!((granted, holder), (false, None)),
        other => panic!("{other:?}"),
    }
    drop(io);
    assert_eq!(task.await.expect("task"), Ended::Closed);
    let holders = crate::lock(&rig.store.holders).clone();
    assert!(!holders.is_empty());
    assert!(holders.iter().all(|h| h == HOST), "{holders:?}");
    let text = String::from_utf8(rig.metrics.render(0)).expect("utf8");
    for line in [
        "causeway_sync_batches_total{outcome=\"applied\"} 2",
        "causeway_sync_objects_total{change=\"added\"} 1",
        "causeway_sync_objects_total{change=\"unchanged\"} 1",
        "causeway_sync_objects{kind=\"user\"} 1",
        "causeway_sync_run_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} missing from {text}");
    }
    assert!(text.contains("causeway_sync_last_success_timestamp_seconds{connector=\"corp\"}"));
}

#[tokio::test]
async fn another_hosts_batch_is_refused_while_the_lease_is_held_and_its_channel_goes_on() {
    let rig = Rig::new();
    let (mut first, _t1) = rig.channel(HOST);
    ask(&mut first, &hello()).await;
    ask(
        &mut first,
        &Request::Lease {
            connector: "corp".into(),
        },
    )
    .await;
    let run = match ask(
        &mut first,
        &Request::StartRun {
            connector: "corp".into(),
            kind: RunKind::Delta,
            soft_match: false,
        },
    )
    .await
    {
        Response::RunStarted { run } => run,
        other => panic!("{other:?}"),
    };
    let (mut second, _t2) = rig.channel(OTHER);
    ask(&mut second, &hello()).await;
    match ask(
        &mut second,
        &Request::Lease {
            connector: "corp".into(),
        },
    )
    .await
    {
        Response::Lease {
            granted: false,
            holder,
            ..
        } => assert_eq!(holder.as_deref(), Some(HOST)),
        other => panic!("{other:?}"),
    }
    let reason = refused_reason(
        ask(
            &mut second,
            &Request::Batch {
                run,
                seq: 1,
                changes: vec![user(ANCHOR, "mallory@corp.example")],
            },
        )
        .await,
    );
    assert!(
        reason.contains(OTHER) && reason.contains("lease"),
        "{reason}"
    );
    assert!(
        crate::lock(&rig.store.objects).is_empty(),
        "nothing applied"
    );
    // A refused call is not a broken channel.
    assert!(matches!(
        ask(
            &mut second,
            &Request::Runs {
                connector: None,
                limit: 1
            }
        )
        .await,
        Response::Runs { .. }
    ));
    let text = String::from_utf8(rig.metrics.render(0)).expect("utf8");
    assert!(
        text.contains("causeway_sync_batches_total{outcome=\"refused\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn requests_before_hello_and_wrong_versions_are_refused_and_close() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    let reason = refused_reason(
        ask(
            &mut io,
            &Request::Lease {
                connector: "corp".into(),
            },
        )
        .await,
    );
    assert!(reason.contains("first request must be hello"), "{reason}");
    assert!(matches!(task.await.expect("task"), Ended::Malformed(_)));
    assert!(
        crate::lock(&rig.store.holders).is_empty(),
        "the store was not called"
    );

    let (mut io, task) = rig.channel(HOST);
    let reason = refused_reason(
        ask(
            &mut io,
            &Request::Hello {
                version: 99,
                software_version: "x".into(),
            },
        )
        .await,
    );
    assert!(reason.contains("version 99"), "{reason}");
    assert!(matches!(task.await.expect("task"), Ended::Malformed(_)));
}

/// Sends raw bytes and reads the channel's answer and end.
async fn raw(rig: &Rig, bytes: &[u8], greet: bool) -> (String, Ended) {
    let (mut io, task) = rig.channel(HOST);
    if greet {
        ask(&mut io, &hello()).await;
    }
    io.write_all(bytes).await.expect("send");
    let answer: Response = read(&mut io, MAX_MESSAGE_LEN).await.expect("answer");
    (refused_reason(answer), task.await.expect("task"))
}

#[tokio::test]
async fn oversized_unknown_and_out_of_bounds_messages_are_refused_and_close() {
    let rig = Rig::new();
    // 4 GiB declared: refused on the header alone, before any body is read or allocated.
    let (reason, ended) = raw(&rig, &[0xff, 0xff, 0xff, 0xff], true).await;
    assert!(reason.contains("length 4294967295"), "{reason}");
    assert!(matches!(ended, Ended::Malformed(_)));

    let body = br#"{"type":"format_disk"}"#;
    let mut msg = (body.len() as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(body);
    let (reason, _) = raw(&rig, &msg, true).await;
    assert!(reason.contains("not a message"), "{reason}");

    // Parsed fine, but the anchor is not base64 of 16 bytes: `check` refuses it.
    let bad = causeway_proto::sync::encode(&Request::Batch {
        run: 1,
        seq: 1,
        changes: vec![user("not-an-anchor", "a@corp.example")],
    });
    let (reason, ended) = raw(&rig, &bad, true).await;
    assert!(reason.contains("anchor"), "{reason}");
    assert!(matches!(ended, Ended::Malformed(_)));
    assert!(crate::lock(&rig.store.objects).is_empty());
    assert!(crate::lock(&rig.store.holders).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_channel_is_cut_off_within_a_second_of_revocation() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    ask(&mut io, &hello()).await;
    *crate::lock(&rig.authority.0) = Err(Refusal::Revoked);
    tokio::time::advance(Duration::from_millis(1_100)).await;
    let answer: Response = read(&mut io, MAX_MESSAGE_LEN).await.expect("answer");
    assert!(refused_reason(answer).contains("revoked"));
    assert_eq!(task.await.expect("task"), Ended::CutOff(Refusal::Revoked));
}

#[tokio::test]
async fn a_request_from_a_host_revoked_since_the_last_check_is_not_applied() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    ask(&mut io, &hello()).await;
    *crate::lock(&rig.authority.0) = Err(Refusal::NotApproved);
    let reason = refused_reason(
        ask(
            &mut io,
            &Request::Lease {
                connector: "corp".into(),
            },
        )
        .await,
    );
    assert_eq!(
        reason,
        format!("waiting for approval: causeway certs approve {HOST}")
    );
    assert_eq!(
        task.await.expect("task"),
        Ended::CutOff(Refusal::NotApproved)
    );
    assert!(crate::lock(&rig.store.leases).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_silent_channel_is_closed_after_the_idle_timeout() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    ask(&mut io, &hello()).await;
    tokio::time::advance(DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1)).await;
    assert_eq!(task.await.expect("task"), Ended::Idle);
    let mut buf = [0u8; 1];
    assert_eq!(
        tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .expect("eof"),
        0
    );
}
