//! The SQLite backend against the backend-independent contract (`causeway_store::conformance`),
//! every check on fresh files of its own; and the registry with the real CA, as the hub
//! enrolls an agent.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, SystemTime};

use causeway_certs::{AgentId, Ca, CertsError, TokenError, DEFAULT_AGENT_CERT_VALIDITY};
use causeway_store::{
    AgentRegistration, AgentStatus, Agents, SqliteAgents, SqliteStore, TokenPurpose,
};

/// A fresh directory per check: unique per process and check, emptied first.
fn fresh_dir(kind: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "causeway-store-conformance-{kind}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test dir");
    d
}

fn sqlite_directory() -> SqliteStore {
    SqliteStore::open(&fresh_dir("dir").join("directory.sqlite")).expect("open")
}

fn sqlite_agents() -> SqliteAgents {
    SqliteAgents::open(&fresh_dir("agents").join("registry.sqlite")).expect("open")
}

causeway_store::conformance_suite!(directory: sqlite_directory(), agents: sqlite_agents());

/// The whole enrollment as the hub performs it, with the real CA: a token pinned to the
/// CA, a CSR signed for a new id, the token used up, the agent registered under the
/// issued certificate's fingerprint (the one the hub computes from a TLS client
/// certificate, see `causeway-certs`' tests) and found by it, pending until approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_with_the_real_ca() {
    let dir = fresh_dir("enroll");
    let now = SystemTime::now();
    let ca = Ca::load_or_create(&dir.join("ca"), now).expect("CA");
    let sqlite = SqliteAgents::open(&ca.registry_path()).expect("registry");
    // Through the trait, as async code uses it (the inherent methods are the blocking ones).
    let registry: &dyn Agents = &sqlite;
    let token = registry
        .create_token(
            TokenPurpose::Agent,
            &ca.fingerprint_sha256(),
            Duration::from_secs(3600),
            now,
        )
        .await
        .expect("token");
    // Agent: the token's tail pins the CA it will meet.
    let tail = token.expose_secret().rsplit('.').next().expect("tail");
    assert!(ca.fingerprint_sha256().starts_with(tail));

    let (_key, csr) = causeway_certs::new_key_and_csr("agent-host").expect("key and CSR");
    let id = AgentId::generate().expect("id");
    let cert = ca
        .sign_agent_csr(&csr, &id, now, DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    registry
        .consume_token(token.expose_secret(), TokenPurpose::Agent, now)
        .await
        .expect("token accepted");
    registry
        .register_agent(
            AgentRegistration {
                agent_id: id.clone(),
                host_name: "dc-agent-1".into(),
                role: causeway_store::HostRole::Agent,
                hpke_public_key: [9; 32],
                cert_fingerprint: cert.fingerprint().to_owned(),
                cert_not_after: cert.not_after(),
            },
            true,
            now,
        )
        .await
        .expect("registered");
    assert!(matches!(
        registry
            .consume_token(token.expose_secret(), TokenPurpose::Agent, now)
            .await,
        Err(CertsError::Token(TokenError::AlreadyUsed))
    ));
    let fp = causeway_certs::fingerprint_of_der(cert.der());
    let rec = registry
        .lookup_by_fingerprint(&fp)
        .await
        .expect("lookup")
        .expect("known agent");
    assert_eq!(rec.id, id);
    assert_eq!(rec.status, AgentStatus::Pending, "waits for approval");
    registry.approve(&id).await.expect("approve");
    registry.touch(&id, now).await.expect("touch");
    assert_eq!(
        registry.agent(&id).await.expect("read").map(|r| r.status),
        Some(AgentStatus::Approved)
    );
}
