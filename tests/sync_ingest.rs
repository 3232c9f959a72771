//! The sync ingestion API of a real `causeway serve` process, spoken by a sync host
//! written here (`causeway_proto::sync` over rustls, keys from `new_key_and_csr`): a host
//! enrolls with a `certs token --for sync` token, exports users and nested groups into
//! the real SQLite store, and the groups reach a SAML sign-in's groups claim. Also: each
//! role's certificate opens only its own channel, one host at a time exports for a
//! connector, and an unauthenticated 4 GiB length costs the endpoint nothing.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_credential::Secret;
use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{
    Object, ObjectChange, ObjectKind, Request, Response, RunKind, RunReport, RunStatus, ALPN,
    ENROLL_ALPN, MAX_MESSAGE_LEN, VERSION,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use common::endpoint::{b64decode, hidden, Browser, Endpoint};
use common::federation::{sign_in_from, unique_password};

const DOMAIN_CONFIG: &str = "[[domain]]\nname = \"corp.causeway.test\"\nmethod = \"phs\"\n";
const ALICE: &str = "alice@corp.causeway.test";
const ALICE_ID: &str = "AAECAwQFBgcICQoLDA0ODw==";
const BOB_ID: &str = "EBESExQVFhcYGRobHB0eHw==";
const ENGINEERING: &str = "ICEiIyQlJicoKSorLC0uLw==";
const STAFF: &str = "MDEyMzQ1Njc4OTo7PD0+Pw==";
const UNRELATED: &str = "QEFCQ0RFRkdISUpLTE1OTw==";

/// What a sync host keeps after enrolling (its key prints redacted).
#[derive(Debug)]
struct Enrolled {
    host_id: String,
    cert_pem: String,
    key_pem: Secret<String>,
    ca_pem: String,
    approved: bool,
}

fn ca_pem(ep: &Endpoint) -> String {
    std::fs::read_to_string(ep.data().join("ca").join("ca.pem")).expect("the endpoint's CA")
}

fn sync_token(ep: &Endpoint) -> String {
    ep.cli(&["certs", "token", "--for", "sync"], None)
        .trim()
        .to_owned()
}

async fn dial(ep: &Endpoint, cfg: rustls::ClientConfig) -> TlsStream<TcpStream> {
    let addr = ep.url.trim_start_matches("https://");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// A connection on the enrollment ALPN, trusting only the endpoint's CA.
async fn dial_enroll(ep: &Endpoint) -> TlsStream<TcpStream> {
    let mut cfg = causeway_certs::trusting_only(ca_pem(ep).as_bytes()).expect("client config");
    cfg.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
    dial(ep, cfg).await
}

/// A connection on `alpn` with a client certificate.
async fn dial_with(
    ep: &Endpoint,
    cert_pem: &str,
    key_pem: &Secret<String>,
    alpn: &[u8],
) -> TlsStream<TcpStream> {
    let cfg =
        causeway_certs::agent_client_config(&ca_pem(ep), cert_pem, key_pem, vec![alpn.to_vec()])
            .expect("client config");
    dial(ep, cfg).await
}

async fn ask(io: &mut TlsStream<TcpStream>, req: &Request) -> Response {
    write(io, req).await.expect("send");
    read(io, MAX_MESSAGE_LEN).await.expect("answer")
}

async fn enroll(ep: &Endpoint, token: &str, host_name: &str) -> Result<Enrolled, String> {
    let (key_pem, csr_pem) = causeway_certs::new_key_and_csr(host_name).expect("key and CSR");
    let mut io = dial_enroll(ep).await;
    let req = Request::Enroll {
        token: Secret::new(token.to_owned()),
        host_name: host_name.into(),
        csr_pem,
    };
    match ask(&mut io, &req).await {
        Response::Enrolled {
            host_id,
            cert_pem,
            ca_pem,
            approved,
        } => Ok(Enrolled {
            host_id,
            cert_pem,
            key_pem,
            ca_pem,
            approved,
        }),
        Response::EnrollRefused { reason } => Err(reason),
        other => panic!("unexpected answer to Enroll: {other:?}"),
    }
}

/// An open, greeted channel of `host`.
async fn channel(ep: &Endpoint, host: &Enrolled) -> TlsStream<TcpStream> {
    let mut io = dial_with(ep, &host.cert_pem, &host.key_pem, ALPN).await;
    match ask(&mut io, &hello()).await {
        Response::Welcome { lease_ms, .. } => assert_eq!(lease_ms, 60_000),
        other => panic!("expected Welcome: {other:?}"),
    }
    io
}

fn hello() -> Request {
    Request::Hello {
        version: VERSION,
        software_version: "sync-ingest-test".into(),
    }
}

fn object(anchor: &str, kind: ObjectKind, dn: &str, attrs: &[(&str, &[&str])]) -> ObjectChange {
    ObjectChange::Upsert {
        object: Object {
            anchor: anchor.into(),
            kind,
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect::<BTreeMap<_, _>>(),
        },
    }
}

fn refused(r: Response) -> String {
    match r {
        Response::Refused { reason } => reason,
        other => panic!("expected Refused, got {other:?}"),
    }
}

async fn lease(io: &mut TlsStream<TcpStream>, connector: &str) -> (bool, Option<String>) {
    match ask(
        io,
        &Request::Lease {
            connector: connector.into(),
        },
    )
    .await
    {
        Response::Lease {
            granted, holder, ..
        } => (granted, holder),
        other => panic!("expected Lease: {other:?}"),
    }
}

async fn start_run(io: &mut TlsStream<TcpStream>, connector: &str, soft_match: bool) -> u64 {
    match ask(
        io,
        &Request::StartRun {
            connector: connector.into(),
            kind: RunKind::Full,
            soft_match,
        },
    )
    .await
    {
        Response::RunStarted { run } => run,
        other => panic!("expected RunStarted: {other:?}"),
    }
}

/// Reads until the peer closes (bounded), so a test sees the end of a refused channel.
async fn closed(io: &mut TlsStream<TcpStream>) {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "the endpoint did not close the channel");
}

#[tokio::test]
async fn a_sync_host_exports_users_and_nested_groups_that_reach_the_groups_claim() {
    let ep = Endpoint::start("sync-ingest", DOMAIN_CONFIG, &["--demo-apps"]);
    // A cloud-only account first: the synchronised user takes it over by soft match
    // (keeping its password verifier), so that it can sign in by password hash.
    let pw = unique_password("sync");
    ep.cli(
        &["users", "add", "--upn", ALICE, "--password-stdin"],
        Some(&format!("{pw}\n")),
    );
    let token = sync_token(&ep);
    let host = enroll(&ep, &token, "sync-1.corp.causeway.test")
        .await
        .expect("enrolled");
    assert!(host.approved, "no approval required here");
    assert!(host.host_id.starts_with("agt-"), "{}", host.host_id);
    assert_eq!(host.ca_pem.trim(), ca_pem(&ep).trim());
    // One-time: the same token enrolls nobody else.
    let again = enroll(&ep, &token, "sync-2").await.expect_err("used token");
    assert!(again.contains("used"), "{again}");
    assert!(ep.logs().contains("sync host enrolled"), "{}", ep.logs());
    let list = ep.cli(&["certs", "list"], None);
    let row = list
        .lines()
        .find(|l| l.starts_with(&host.host_id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(row.contains(" sync ") && row.contains("approved"), "{row}");

    let mut io = channel(&ep, &host).await;
    assert_eq!(
        lease(&mut io, "corp").await,
        (true, Some(host.host_id.clone()))
    );
    let run = start_run(&mut io, "corp", true).await;
    let changes = vec![
        object(
            ALICE_ID,
            ObjectKind::User,
            "CN=Alice,OU=Staff,DC=corp,DC=causeway,DC=test",
            &[
                ("upn", &[ALICE]),
                ("display_name", &["Alice Synced"]),
                ("enabled", &["true"]),
            ],
        ),
        object(
            BOB_ID,
            ObjectKind::User,
            "CN=Bob,OU=Staff,DC=corp,DC=causeway,DC=test",
            &[("upn", &["bob@corp.causeway.test"]), ("enabled", &["true"])],
        ),
        object(
            ENGINEERING,
            ObjectKind::Group,
            "CN=Engineering,OU=Groups,DC=corp,DC=causeway,DC=test",
            &[("name", &["Engineering"]), ("members", &[ALICE_ID])],
        ),
        // Nested: Staff holds Engineering, so Alice is in Staff too.
        object(
            STAFF,
            ObjectKind::Group,
            "CN=Staff,OU=Groups,DC=corp,DC=causeway,DC=test",
            &[("name", &["Staff"]), ("members", &[ENGINEERING])],
        ),
        object(
            UNRELATED,
            ObjectKind::Group,
            "CN=Unrelated,OU=Groups,DC=corp,DC=causeway,DC=test",
            &[("name", &["Unrelated"]), ("members", &[BOB_ID])],
        ),
    ];
    let batch = Request::Batch {
        run,
        seq: 1,
        changes,
    };
    match ask(&mut io, &batch).await {
        Response::Applied {
            seq,
            counts,
            errors,
        } => {
            assert_eq!(seq, 1);
            assert!(errors.is_empty(), "{errors:?}");
            // Alice took the cloud account over (an update of it), the rest are new.
            assert_eq!(counts.added + counts.updated, 5, "{counts:?}");
            assert_eq!(counts.errors, 0, "{counts:?}");
        }
        other => panic!("expected Applied: {other:?}"),
    }
    // Resent, as after a crash: nothing changes twice.
    match ask(&mut io, &batch).await {
        Response::Applied { counts, .. } => assert_eq!(counts.unchanged, 5, "{counts:?}"),
        other => panic!("expected Applied: {other:?}"),
    }
    let report = RunReport {
        status: RunStatus::Succeeded,
        counts: Default::default(),
        errors: Vec::new(),
        detail: None,
    };
    match ask(&mut io, &Request::FinishRun { run, report }).await {
        Response::RunFinished { record } => {
            assert_eq!(record.status, RunStatus::Succeeded);
            assert_eq!(record.host, host.host_id);
            assert_eq!(record.connector, "corp");
        }
        other => panic!("expected RunFinished: {other:?}"),
    }
    let logs = ep.logs();
    assert!(logs.contains("sync batch applied"), "{logs}");
    assert!(logs.contains("sync run finished"), "{logs}");
    // Counts are logged, attribute values never (even at trace level).
    assert!(!logs.contains("Alice Synced"), "{logs}");

    // The store holds them: the users, with Alice under her anchor now.
    let users = ep.cli(&["users", "list"], None);
    assert!(users.contains(ALICE) && users.contains(ALICE_ID), "{users}");
    assert!(users.contains("bob@corp.causeway.test"), "{users}");
    let history = ep.cli(&["users", "history", ALICE], None);
    assert!(
        history.contains("sync:corp") && history.contains("soft-match"),
        "{history}"
    );

    // The metrics count the run.
    let (_, _, metrics) =
        Browser::new(&ep.dir.join("m")).get(&format!("{}/metrics", ep.metrics_url));
    for line in [
        "causeway_sync_batches_total{outcome=\"applied\"} 2",
        "causeway_sync_objects{kind=\"group\"} 3",
        "causeway_sync_objects{kind=\"user\"} 2",
        "causeway_sync_last_success_timestamp_seconds{connector=\"corp\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }

    // A SAML sign-in carries Alice's groups, nested ones included, and no others.
    let b = Browser::new(&ep.dir.join("browser"));
    let sp = format!("{}/demo/app1", ep.url);
    let page = sign_in_from(
        &ep,
        &b,
        &format!("{}/saml/idp-init?sp={}", ep.url, common::endpoint::pct(&sp)),
        ALICE,
        &pw,
    );
    let xml = String::from_utf8(b64decode(
        &hidden(&page, "SAMLResponse").expect("SAMLResponse"),
    ))
    .expect("utf8");
    let groups = attribute_values(
        &xml,
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    );
    assert_eq!(groups, vec!["Engineering", "Staff"], "{xml}");
    assert!(xml.contains(ALICE_ID), "NameID is the anchor: {xml}");
}

/// The values of the SAML attribute `name` in `xml`.
fn attribute_values(xml: &str, name: &str) -> Vec<String> {
    let key = format!("Name=\"{name}\"");
    let Some(i) = xml.find(&key) else {
        return Vec::new();
    };
    let rest = &xml[i..];
    let end = rest.find("</saml:Attribute>").expect("attribute end");
    rest[..end]
        .split("<saml:AttributeValue")
        .skip(1)
        .filter_map(|v| {
            let v = &v[v.find('>')? + 1..];
            Some(v[..v.find('<')?].to_owned())
        })
        .collect()
}

#[tokio::test]
async fn each_roles_certificate_opens_only_its_own_channel_and_approval_and_revocation_apply() {
    let ep = Endpoint::start("sync-roles", "", &["--require-approval"]);
    let host = enroll(&ep, &sync_token(&ep), "sync-roles-1")
        .await
        .expect("enrolled");
    assert!(!host.approved, "approval is required");
    // An agent token is no sync token, and the refusal spends nothing.
    let agent_token = ep.cli(&["certs", "token", "--for", "agent"], None);
    let refused_token = enroll(&ep, agent_token.trim(), "sync-roles-2")
        .await
        .expect_err("agent token");
    assert!(refused_token.contains("token"), "{refused_token}");

    // Pending: told what to run.
    let mut io = dial_with(&ep, &host.cert_pem, &host.key_pem, ALPN).await;
    let reason = refused(ask(&mut io, &hello()).await);
    assert_eq!(
        reason,
        format!(
            "waiting for approval: causeway certs approve {}",
            host.host_id
        )
    );
    closed(&mut io).await;
    ep.cli(&["certs", "approve", &host.host_id], None);
    let mut io = channel(&ep, &host).await;
    assert!(lease(&mut io, "corp").await.0);

    // A sync host's certificate on the agent channel: refused (GoAway), never a hub peer.
    let mut agent_side = dial_with(
        &ep,
        &host.cert_pem,
        &host.key_pem,
        causeway_proto::agent::ALPN,
    )
    .await;
    let frame = causeway_proto::agent::io::read_frame(&mut agent_side)
        .await
        .expect("a frame");
    assert!(
        matches!(frame, causeway_proto::agent::Frame::GoAway { .. }),
        "{frame:?}"
    );
    assert!(
        ep.logs().contains("refused an agent connection"),
        "{}",
        ep.logs()
    );

    // An agent's certificate on the sync channel: refused.
    let agent = causeway_agent::enroll::register(
        &causeway_agent::config::Endpoint {
            host: "127.0.0.1".into(),
            port: ep
                .url
                .rsplit(':')
                .next()
                .expect("port")
                .parse()
                .expect("port"),
        },
        None,
        agent_token.trim(),
        "agent-1",
    )
    .await
    .expect("the agent token still enrolls an agent");
    ep.cli(&["certs", "approve", &agent.agent_id], None);
    let mut io2 = dial_with(&ep, &agent.tls_cert_pem, &agent.tls_key_pem, ALPN).await;
    let reason = refused(ask(&mut io2, &hello()).await);
    assert!(reason.contains("not a sync host"), "{reason}");
    closed(&mut io2).await;

    // Revoked while connected and silent: cut off within seconds.
    ep.cli(&["certs", "revoke", &host.host_id], None);
    let answer: Response =
        tokio::time::timeout(Duration::from_secs(10), read(&mut io, MAX_MESSAGE_LEN))
            .await
            .expect("cut off in time")
            .expect("told why");
    assert!(refused(answer).contains("revoked"));
    closed(&mut io).await;
}

#[tokio::test]
async fn a_second_host_cannot_export_while_the_first_holds_the_lease() {
    let ep = Endpoint::start("sync-lease", DOMAIN_CONFIG, &[]);
    let first = enroll(&ep, &sync_token(&ep), "sync-a").await.expect("a");
    let second = enroll(&ep, &sync_token(&ep), "sync-b").await.expect("b");
    let mut a = channel(&ep, &first).await;
    let mut b = channel(&ep, &second).await;
    assert!(lease(&mut a, "corp").await.0);
    assert_eq!(
        lease(&mut b, "corp").await,
        (false, Some(first.host_id.clone())),
        "the holder is named"
    );
    let run = start_run(&mut a, "corp", false).await;
    let reason = refused(
        ask(
            &mut b,
            &Request::StartRun {
                connector: "corp".into(),
                kind: RunKind::Delta,
                soft_match: false,
            },
        )
        .await,
    );
    assert!(
        reason.contains(&first.host_id) || reason.contains("lease"),
        "{reason}"
    );
    // Even naming the first host's run, the second host's batch changes nothing.
    let batch = Request::Batch {
        run,
        seq: 1,
        changes: vec![object(
            BOB_ID,
            ObjectKind::User,
            "CN=Mallory,DC=corp,DC=causeway,DC=test",
            &[
                ("upn", &["mallory@corp.causeway.test"]),
                ("enabled", &["true"]),
            ],
        )],
    };
    let reason = refused(ask(&mut b, &batch).await);
    assert!(!reason.is_empty());
    let users = ep.cli(&["users", "list"], None);
    assert!(!users.contains("mallory"), "{users}");
    // The channel of the refused host goes on; the holder's batch applies.
    assert!(matches!(
        ask(
            &mut b,
            &Request::Runs {
                connector: None,
                limit: 10
            }
        )
        .await,
        Response::Runs { .. }
    ));
    assert!(matches!(
        ask(&mut a, &batch).await,
        Response::Applied { .. }
    ));
    let users = ep.cli(&["users", "list"], None);
    assert!(users.contains("mallory@corp.causeway.test"), "{users}");
}

#[tokio::test]
async fn an_unauthenticated_4_gib_length_on_the_enroll_alpn_is_refused_on_its_header() {
    let ep = Endpoint::start("sync-hostile", "", &[]);
    let mut io = dial_enroll(&ep).await;
    // The header alone: no body follows, so an endpoint that waited for 4 GiB (or
    // allocated them) would never answer.
    io.write_all(&u32::MAX.to_be_bytes()).await.expect("send");
    let answer: Response =
        tokio::time::timeout(Duration::from_secs(10), read(&mut io, MAX_MESSAGE_LEN))
            .await
            .expect("answered at once")
            .expect("an answer");
    match answer {
        Response::EnrollRefused { reason } => {
            assert!(reason.contains("4294967295"), "{reason}");
            assert!(
                reason.contains(&causeway_proto::sync::MAX_ENROLL_LEN.to_string()),
                "{reason}"
            );
        }
        other => panic!("expected EnrollRefused: {other:?}"),
    }
    closed(&mut io).await;
    // Without a client certificate the channel ALPN is refused too.
    let mut cfg = causeway_certs::trusting_only(ca_pem(&ep).as_bytes()).expect("client config");
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let mut io = dial(&ep, cfg).await;
    let reason = refused(ask(&mut io, &hello()).await);
    assert!(reason.contains("client certificate"), "{reason}");
}
