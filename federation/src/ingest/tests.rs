//! The channel's request mapping and its refusals, against an in-memory [`Synced`] (pure
//! logic: leases, runs and per-anchor state, nothing else) over an in-memory stream.

use std::collections::BTreeMap;
use std::sync::Mutex;

use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{
    Counts, Object, ObjectChange, ObjectKind, Request, RunKind, RunReport, RunStatus,
    MAX_MESSAGE_LEN,
};
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::channel::{serve, Context, Ended};
use super::*;

mod fake;
use fake::FakeSynced;

const ANCHOR: &str = "AAECAwQFBgcICQoLDA0ODw==";
const HOST: &str = "agt-00000000000000aa";
const OTHER: &str = "agt-00000000000000bb";

/// Allows the host until told otherwise; counts the enrollments it was asked for, and
/// records the (host, CSR) of each renewal.
struct FakeAuthority(
    Mutex<Result<(), Refusal>>,
    Mutex<usize>,
    Mutex<Vec<(String, String)>>,
);

impl SyncAuthority for FakeAuthority {
    fn authorize_sync(&self, _fp: &str) -> Result<String, HostRefused> {
        Ok(HOST.into())
    }
    fn sync_still_allowed(&self, _host_id: &str) -> Result<(), Refusal> {
        *crate::lock(&self.0)
    }
    fn enroll_sync(&self, _t: &str, _h: &str, _c: &str) -> Result<Enrollment, String> {
        *crate::lock(&self.1) += 1;
        Err("not in these tests".into())
    }
    fn renew_sync(&self, host_id: &str, csr_pem: &str) -> Result<String, String> {
        let allowed = *crate::lock(&self.0);
        allowed.map_err(|r| refusal_reason(r, Some(host_id)))?;
        crate::lock(&self.2).push((host_id.to_owned(), csr_pem.to_owned()));
        Ok(format!("cert for {host_id}"))
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
            authority: Arc::new(FakeAuthority(
                Mutex::new(Ok(())),
                Mutex::new(0),
                Mutex::new(Vec::new()),
            )),
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

/// Runs one enrollment on a pipe with `bytes` sent; returns the answer.
async fn enrollment(rig: &Rig, bytes: Vec<u8>) -> Response {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let authority: Arc<dyn SyncAuthority> = rig.authority.clone();
    let task = tokio::spawn(super::enroll::enroll(
        server,
        "192.0.2.1:4000".parse().expect("addr"),
        authority,
        Duration::from_secs(10),
    ));
    client.write_all(&bytes).await.expect("send");
    let answer = read(&mut client, MAX_MESSAGE_LEN).await.expect("answer");
    task.await.expect("enrollment task");
    answer
}

fn enroll_refused(r: Response) -> String {
    match r {
        Response::EnrollRefused { reason } => reason,
        other => panic!("expected EnrollRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn enrollment_refuses_big_lengths_other_requests_and_bad_bounds_before_the_authority() {
    let rig = Rig::new();
    // Above MAX_ENROLL_LEN (16 KiB) though far below an authenticated host's limit.
    let len = u32::try_from(causeway_proto::sync::MAX_ENROLL_LEN + 1).expect("fits");
    let reason = enroll_refused(enrollment(&rig, len.to_be_bytes().to_vec()).await);
    assert!(reason.contains(&len.to_string()), "{reason}");
    let reason = enroll_refused(enrollment(&rig, causeway_proto::sync::encode(&hello())).await);
    assert!(reason.contains("only an enroll request"), "{reason}");
    let bad_name = causeway_proto::sync::encode(&Request::Enroll {
        token: causeway_credential::Secret::new("cwt1.x".into()),
        host_name: "a\u{7}b".into(),
        csr_pem: "x".into(),
    });
    let reason = enroll_refused(enrollment(&rig, bad_name).await);
    assert!(reason.contains("host_name"), "{reason}");
    assert_eq!(
        *crate::lock(&rig.authority.1),
        0,
        "the authority was never asked"
    );
    // A well-formed request reaches it, and its refusal is passed on.
    let ok = causeway_proto::sync::encode(&Request::Enroll {
        token: causeway_credential::Secret::new("cwt1.x".into()),
        host_name: "sync-1".into(),
        csr_pem: "x".into(),
    });
    assert_eq!(
        enroll_refused(enrollment(&rig, ok).await),
        "not in these tests"
    );
    assert_eq!(*crate::lock(&rig.authority.1), 1);
}

#[tokio::test(start_paused = true)]
async fn an_enrollment_that_sends_nothing_is_closed_at_its_deadline() {
    let rig = Rig::new();
    let (mut client, server) = tokio::io::duplex(1 << 10);
    let authority: Arc<dyn SyncAuthority> = rig.authority.clone();
    let task = tokio::spawn(super::enroll::enroll(
        server,
        "192.0.2.1:4000".parse().expect("addr"),
        authority,
        Duration::from_secs(10),
    ));
    tokio::time::advance(Duration::from_secs(11)).await;
    task.await.expect("ended");
    let mut buf = [0u8; 1];
    assert_eq!(
        tokio::io::AsyncReadExt::read(&mut client, &mut buf)
            .await
            .expect("eof"),
        0
    );
}

#[tokio::test]
async fn a_renewal_is_signed_for_the_certificate_host_and_the_channel_goes_on() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    ask(&mut io, &hello()).await;
    let answer = ask(
        &mut io,
        &Request::Renew {
            csr_pem: "csr".into(),
        },
    )
    .await;
    assert_eq!(
        answer,
        Response::Renewed {
            cert_pem: format!("cert for {HOST}")
        }
    );
    assert_eq!(
        *crate::lock(&rig.authority.2),
        vec![(HOST.to_owned(), "csr".to_owned())]
    );
    // The channel goes on after a renewal.
    assert!(matches!(
        ask(
            &mut io,
            &Request::Lease {
                connector: "corp".into()
            }
        )
        .await,
        Response::Lease { granted: true, .. }
    ));
    drop(io);
    assert_eq!(task.await.expect("task"), Ended::Closed);
}

#[tokio::test]
async fn a_renewal_before_hello_closes_and_a_refused_one_is_refused_with_the_reason() {
    let rig = Rig::new();
    let (mut io, task) = rig.channel(HOST);
    let reason = refused_reason(
        ask(
            &mut io,
            &Request::Renew {
                csr_pem: "csr".into(),
            },
        )
        .await,
    );
    assert!(reason.contains("must be hello"), "{reason}");
    assert!(matches!(task.await.expect("task"), Ended::Malformed(_)));
    assert!(crate::lock(&rig.authority.2).is_empty());

    // Refused by the authority (here: the host lost its approval between the channel's
    // check and the signature): answered, nothing signed.
    struct Refusing;
    impl SyncAuthority for Refusing {
        fn authorize_sync(&self, _fp: &str) -> Result<String, HostRefused> {
            Ok(HOST.into())
        }
        fn sync_still_allowed(&self, _h: &str) -> Result<(), Refusal> {
            Ok(())
        }
        fn enroll_sync(&self, _t: &str, _h: &str, _c: &str) -> Result<Enrollment, String> {
            Err("no".into())
        }
        fn renew_sync(&self, _h: &str, _c: &str) -> Result<String, String> {
            Err("this sync host may not renew: revoked".into())
        }
        fn touch_sync(&self, _h: &str) {}
    }
    let (client, server) = tokio::io::duplex(1 << 16);
    let store = rig.store.clone();
    let metrics = rig.metrics.clone();
    let task = tokio::spawn(async move {
        let ctx = Context {
            store: store.as_ref(),
            authority: Arc::new(Refusing),
            metrics: &metrics,
            host: HOST,
            endpoint_id: "ep-1",
            lease: Duration::from_secs(60),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        };
        serve(server, &ctx).await
    });
    let mut io = client;
    ask(&mut io, &hello()).await;
    let reason = refused_reason(
        ask(
            &mut io,
            &Request::Renew {
                csr_pem: "csr".into(),
            },
        )
        .await,
    );
    assert_eq!(reason, "this sync host may not renew: revoked");
    drop(io);
    assert_eq!(task.await.expect("task"), Ended::Closed);
}
