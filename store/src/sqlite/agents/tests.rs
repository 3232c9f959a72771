//! SQLite-specific promises of the agent registry file (the backend-independent ones are
//! in `crate::conformance`): file modes, what is on disk, sharing between handles and
//! processes' first opens.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::UNIX_EPOCH;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::*;
use crate::agents::{MAX_TOKEN_LEN, MAX_TOKEN_TTL};
use causeway_certs::fingerprint_of_der;

use causeway_testkit::TempDir as TestDir;

const NOW: u64 = 1_795_564_800;
const HOUR: Duration = Duration::from_secs(3600);

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn ca_fp() -> String {
    fingerprint_of_der(b"a stand-in for the CA certificate")
}

fn fp(n: u8) -> String {
    fingerprint_of_der(&[n; 8])
}

fn open(d: &TestDir) -> SqliteAgents {
    SqliteAgents::open(&d.path().join("registry.sqlite")).expect("open")
}

fn token_err(r: Result<(), CertsError>) -> TokenError {
    match r {
        Err(CertsError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

fn registration(n: u8) -> AgentRegistration {
    AgentRegistration {
        agent_id: AgentId::generate().expect("id"),
        host_name: format!("dc-agent-{n}.corp.example"),
        role: HostRole::Agent,
        hpke_public_key: [n; 32],
        cert_fingerprint: fp(n),
        cert_not_after: t(NOW + 30 * 86_400),
    }
}

/// Every byte of the database and its WAL/SHM side files.
fn all_db_bytes(path: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(b) = std::fs::read(&p) {
            all.extend_from_slice(&b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn registry_file_is_private_and_created_once() {
    let d = TestDir::new("reg-mode");
    let path = d.path().join("registry.sqlite");
    let r = SqliteAgents::open(&path).expect("open");
    r.create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
    }
    let mode: String = r
        .lock()
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
    drop(r);
    SqliteAgents::open(&path).expect("reopen");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = SqliteAgents::open(&path).expect_err("refused");
    assert!(
        matches!(err, CertsError::InsecureFile { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn tokens_are_single_use() {
    let d = TestDir::new("reg-token");
    let r = open(&d);
    let token = r
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    let tok = token.expose_secret();
    let parts: Vec<&str> = tok.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "cwt1");
    assert_eq!(parts[1].len(), 43);
    assert_eq!(parts[2], ca_fp(), "the token pins the whole CA fingerprint");
    assert_eq!(tok.len(), 4 + 1 + 43 + 1 + 64);
    assert!(!format!("{token:?}").contains(parts[1]));

    r.consume_token(tok, TokenPurpose::Agent, t(NOW + 60))
        .expect("first use");
    assert_eq!(
        token_err(r.consume_token(tok, TokenPurpose::Agent, t(NOW + 61))),
        TokenError::AlreadyUsed
    );
    // Used beats expired: the operator learns the more useful fact.
    assert_eq!(
        token_err(r.consume_token(tok, TokenPurpose::Agent, t(NOW + 7200))),
        TokenError::AlreadyUsed
    );
}

#[test]
fn expired_unknown_and_malformed_tokens_are_told_apart() {
    let d = TestDir::new("reg-token-errors");
    let r = open(&d);
    let token = r
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    let tok = token.expose_secret().clone();
    assert_eq!(
        token_err(r.consume_token(&tok, TokenPurpose::Agent, t(NOW + 3600))),
        TokenError::Expired
    );
    assert_eq!(
        token_err(r.consume_token(&tok, TokenPurpose::Agent, t(NOW + 3599 + 86_400))),
        TokenError::Expired
    );

    // Well-formed, never issued.
    let unknown = format!(
        "cwt1.{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]),
        ca_fp()
    );
    assert_eq!(
        token_err(r.consume_token(&unknown, TokenPurpose::Agent, t(NOW))),
        TokenError::Unknown
    );
    // Our secret, but pinned to another CA: not a token we issued.
    let fresh = r
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    let secret = fresh.expose_secret().split('.').nth(1).expect("secret");
    let other_ca = format!("cwt1.{secret}.{}", "0123456789abcdef".repeat(4));
    assert_eq!(
        token_err(r.consume_token(&other_ca, TokenPurpose::Agent, t(NOW))),
        TokenError::Unknown
    );
    // ... and that attempt did not use it up.
    r.consume_token(fresh.expose_secret(), TokenPurpose::Agent, t(NOW))
        .expect("still usable");

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
    let prefix = &ca_fp();
    let too_long = "a".repeat(MAX_TOKEN_LEN + 1);
    let malformed = [
        String::new(),
        "garbage".into(),
        "cwt1".into(),
        format!("cwt2.{b64}.{prefix}"),
        format!("cwt1.{b64}"),
        format!("cwt1.{b64}.{prefix}.x"),
        format!("cwt1..{prefix}"),
        format!("cwt1.{b64}.{}", prefix.to_uppercase()),
        format!("cwt1.{b64}.{}", &prefix[..63]),
        format!("cwt1.{}.{prefix}", &b64[..42]),
        format!("cwt1.{b64}=.{prefix}"),
        format!("cwt1.{}+.{prefix}", &b64[..42]),
        format!(" cwt1.{b64}.{prefix}"),
        // 43 characters whose last one carries bits beyond 32 bytes (non-canonical).
        format!("cwt1.{}B.{prefix}", &b64[..42]),
        too_long,
    ];
    for m in &malformed {
        assert_eq!(
            token_err(r.consume_token(m, TokenPurpose::Agent, t(NOW))),
            TokenError::Malformed,
            "{m:?}"
        );
    }
    // Messages never quote the token.
    for e in [
        TokenError::Malformed,
        TokenError::Unknown,
        TokenError::AlreadyUsed,
        TokenError::Expired,
    ] {
        let msg = CertsError::from(e).to_string();
        assert!(!msg.contains(&tok[5..20]), "{msg}");
        assert!(msg.contains("causeway certs token"), "{msg}");
    }
}

#[test]
fn token_lifetimes_and_fingerprints_are_checked() {
    let d = TestDir::new("reg-token-args");
    let r = open(&d);
    for ttl in [
        Duration::ZERO,
        Duration::from_secs(59),
        MAX_TOKEN_TTL + Duration::from_secs(1),
    ] {
        assert!(matches!(
            r.create_token(TokenPurpose::Agent, &ca_fp(), ttl, t(NOW)),
            Err(CertsError::InvalidLifetime { .. })
        ));
    }
    assert!(matches!(
        r.create_token(TokenPurpose::Agent, "abc", HOUR, t(NOW)),
        Err(CertsError::MalformedFingerprint(_))
    ));
    assert!(matches!(
        r.create_token(TokenPurpose::Agent, &ca_fp().to_uppercase(), HOUR, t(NOW)),
        Err(CertsError::MalformedFingerprint(_))
    ));
}

#[test]
fn racing_consumers_exactly_one_wins() {
    let d = TestDir::new("reg-token-race");
    let path = d.path().join("registry.sqlite");
    let r = SqliteAgents::open(&path).expect("open");
    for round in 0..3 {
        let token = r
            .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
            .expect("token");
        let tok: Arc<str> = Arc::from(token.expose_secret().as_str());
        let barrier = Arc::new(Barrier::new(8));
        let results: Vec<Result<(), CertsError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (tok, barrier, path) = (tok.clone(), barrier.clone(), path.clone());
                    s.spawn(move || {
                        // One handle per thread, as separate processes would have.
                        let mine = SqliteAgents::open(&path).expect("open");
                        barrier.wait();
                        mine.consume_token(&tok, TokenPurpose::Agent, t(NOW + 1))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for e in results.into_iter().filter_map(Result::err) {
            assert!(
                matches!(e, CertsError::Token(TokenError::AlreadyUsed)),
                "round {round}: {e:?}"
            );
        }
    }
}

#[test]
fn the_database_never_holds_a_token_secret() {
    let d = TestDir::new("reg-token-disk");
    let path = d.path().join("registry.sqlite");
    let r = SqliteAgents::open(&path).expect("open");
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(
            r.create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
                .expect("token"),
        );
    }
    r.consume_token(tokens[0].expose_secret(), TokenPurpose::Agent, t(NOW))
        .expect("use one");
    let check = |bytes: &[u8]| {
        assert!(bytes.len() > 4096, "the database was read");
        for tok in &tokens {
            let secret_b64 = tok.expose_secret().split('.').nth(1).expect("secret");
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret_b64)
                .expect("b64");
            assert!(
                !contains(bytes, secret_b64.as_bytes()),
                "base64 secret on disk"
            );
            assert!(!contains(bytes, &raw), "raw secret on disk");
            // What is stored is the hash.
            let hash = Sha256::digest(&raw);
            assert!(contains(bytes, hash.as_slice()), "hash is stored");
        }
    };
    check(&all_db_bytes(&path));
    // Also after a checkpoint moves everything into the main file.
    r.lock()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    check(&all_db_bytes(&path));
}

#[test]
fn agents_register_approve_revoke_and_renew() {
    let d = TestDir::new("reg-agents");
    let r = open(&d);
    let g0 = r.generation().expect("gen");
    assert!(r.list_agents().expect("list").is_empty());

    let a = registration(1);
    let rec = r.register_agent(a.clone(), true, t(NOW)).expect("register");
    assert_eq!(rec.status, AgentStatus::Pending);
    assert_eq!(rec.first_seen, t(NOW));
    assert_eq!(rec.last_seen, t(NOW));
    assert_eq!(rec.previous_cert_fingerprint, None);
    assert!(r.generation().expect("gen") > g0);
    let b = registration(2);
    r.register_agent(b.clone(), false, t(NOW + 10))
        .expect("register");

    let list = r.list_agents().expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], rec);
    assert_eq!(list[1].id, b.agent_id);
    assert_eq!(list[1].status, AgentStatus::Approved);
    assert_eq!(list[1].hpke_public_key, [2; 32]);
    assert_eq!(list[1].host_name, b.host_name);
    assert_eq!(list[1].cert_not_after, b.cert_not_after);

    // Duplicates are refused.
    assert!(matches!(
        r.register_agent(a.clone(), true, t(NOW)),
        Err(CertsError::DuplicateAgent(_))
    ));
    let mut same_cert = registration(3);
    same_cert.cert_fingerprint = a.cert_fingerprint.clone();
    assert!(matches!(
        r.register_agent(same_cert, true, t(NOW)),
        Err(CertsError::DuplicateCertificate(_))
    ));

    // Approval.
    let g = r.generation().expect("gen");
    r.approve(&a.agent_id).expect("approve");
    r.approve(&a.agent_id).expect("approving twice is fine");
    assert_eq!(
        r.agent(&a.agent_id).expect("get").expect("present").status,
        AgentStatus::Approved
    );
    assert_eq!(r.generation().expect("gen"), g + 1);

    // Lookup by certificate.
    let found = r
        .lookup_by_fingerprint(&a.cert_fingerprint)
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, a.agent_id);
    assert!(r.lookup_by_fingerprint(&fp(99)).expect("lookup").is_none());
    assert!(matches!(
        r.lookup_by_fingerprint("not-a-fingerprint"),
        Err(CertsError::MalformedFingerprint(_))
    ));

    // Renewal: the old certificate stays accepted during the overlap.
    let new_fp = fp(11);
    r.record_renewal(&a.agent_id, &new_fp, t(NOW + 60 * 86_400))
        .expect("renew");
    r.record_renewal(&a.agent_id, &new_fp, t(NOW + 60 * 86_400))
        .expect("a retried renewal is harmless");
    let after = r.agent(&a.agent_id).expect("get").expect("present");
    assert_eq!(after.cert_fingerprint, new_fp);
    assert_eq!(
        after.previous_cert_fingerprint.as_deref(),
        Some(a.cert_fingerprint.as_str())
    );
    assert_eq!(after.cert_not_after, t(NOW + 60 * 86_400));
    for f in [&new_fp, &a.cert_fingerprint] {
        assert_eq!(
            r.lookup_by_fingerprint(f)
                .expect("lookup")
                .expect("found")
                .id,
            a.agent_id
        );
    }
    // A second renewal drops the oldest certificate.
    r.record_renewal(&a.agent_id, &fp(12), t(NOW + 90 * 86_400))
        .expect("renew again");
    assert!(r
        .lookup_by_fingerprint(&a.cert_fingerprint)
        .expect("lookup")
        .is_none());
    assert!(r.lookup_by_fingerprint(&new_fp).expect("lookup").is_some());
    // Another agent's certificate cannot be claimed.
    assert!(matches!(
        r.record_renewal(&a.agent_id, &b.cert_fingerprint, t(NOW)),
        Err(CertsError::DuplicateCertificate(_))
    ));

    // Touch moves last_seen forward only.
    r.touch(&a.agent_id, t(NOW + 500)).expect("touch");
    r.touch(&a.agent_id, t(NOW + 100)).expect("touch");
    assert_eq!(
        r.agent(&a.agent_id)
            .expect("get")
            .expect("present")
            .last_seen,
        t(NOW + 500)
    );

    // Revocation is final.
    assert!(r.revoked_ids().expect("revoked").is_empty());
    let g = r.generation().expect("gen");
    r.revoke(&a.agent_id).expect("revoke");
    r.revoke(&a.agent_id).expect("revoking twice is fine");
    assert_eq!(r.generation().expect("gen"), g + 1);
    assert_eq!(r.revoked_ids().expect("revoked"), vec![a.agent_id.clone()]);
    let revoked = r
        .lookup_by_fingerprint(&fp(12))
        .expect("lookup")
        .expect("still known");
    assert_eq!(revoked.status, AgentStatus::Revoked);
    let err = r.approve(&a.agent_id).expect_err("final");
    assert!(matches!(err, CertsError::AgentRevoked(_)), "{err:?}");
    assert!(err.to_string().contains("new token"), "{err}");
    assert!(matches!(
        r.record_renewal(&a.agent_id, &fp(13), t(NOW)),
        Err(CertsError::AgentRevoked(_))
    ));

    // Unknown ids are errors, not silent no-ops.
    let ghost = AgentId::generate().expect("id");
    for res in [
        r.approve(&ghost),
        r.revoke(&ghost),
        r.touch(&ghost, t(NOW)),
        r.record_renewal(&ghost, &fp(14), t(NOW)),
    ] {
        assert!(matches!(res, Err(CertsError::UnknownAgent(_))), "{res:?}");
    }
    assert!(r.agent(&ghost).expect("get").is_none());
}

#[test]
fn host_names_are_checked() {
    let d = TestDir::new("reg-host");
    let r = open(&d);
    for (name, ok) in [
        ("dc01", true),
        ("ünïcode-host", true),
        (&"h".repeat(255) as &str, true),
        (&"h".repeat(256), false),
        ("", false),
        ("evil\nhost", false),
        ("evil\u{1b}[31mhost", false),
        ("tab\there", false),
    ] {
        let mut reg = registration(40);
        reg.cert_fingerprint = fingerprint_of_der(name.as_bytes());
        reg.host_name = name.to_owned();
        let res = r.register_agent(reg, true, t(NOW));
        assert_eq!(res.is_ok(), ok, "{name:?}: {res:?}");
        if !ok {
            assert!(matches!(res, Err(CertsError::InvalidHostName(_))));
        }
    }
    let mut reg = registration(41);
    reg.cert_fingerprint = "ABC".into();
    assert!(matches!(
        r.register_agent(reg, true, t(NOW)),
        Err(CertsError::MalformedFingerprint(_))
    ));
}

#[test]
fn two_handles_on_one_file_see_each_other() {
    let d = TestDir::new("reg-two");
    let path = d.path().join("registry.sqlite");
    let server = SqliteAgents::open(&path).expect("server");
    let cli = SqliteAgents::open(&path).expect("cli");

    let token = cli
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    server
        .consume_token(token.expose_secret(), TokenPurpose::Agent, t(NOW))
        .expect("the server sees the CLI's token");
    assert_eq!(
        token_err(cli.consume_token(token.expose_secret(), TokenPurpose::Agent, t(NOW))),
        TokenError::AlreadyUsed
    );

    let a = registration(5);
    server
        .register_agent(a.clone(), true, t(NOW))
        .expect("register");
    let g = server.generation().expect("gen");
    assert_eq!(cli.list_agents().expect("list").len(), 1);
    cli.approve(&a.agent_id).expect("approve from the CLI");
    assert_eq!(
        server
            .lookup_by_fingerprint(&a.cert_fingerprint)
            .expect("lookup")
            .expect("found")
            .status,
        AgentStatus::Approved
    );
    cli.revoke(&a.agent_id).expect("revoke from the CLI");
    assert!(server.generation().expect("gen") >= g + 2);
    assert_eq!(server.revoked_ids().expect("revoked"), vec![a.agent_id]);
}

#[test]
fn concurrent_first_opens_and_writes_do_not_fail() {
    let d = TestDir::new("reg-concurrent");
    let path = d.path().join("registry.sqlite");
    let barrier = Arc::new(Barrier::new(4));
    std::thread::scope(|s| {
        for i in 0..4u8 {
            let (barrier, path) = (barrier.clone(), path.clone());
            s.spawn(move || {
                barrier.wait();
                let r = SqliteAgents::open(&path).expect("open");
                for j in 0..10u8 {
                    r.create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
                        .expect("token");
                    let mut reg = registration(i * 16 + j);
                    reg.cert_fingerprint = fingerprint_of_der(&[i, j, 0xaa]);
                    r.register_agent(reg, true, t(NOW)).expect("register");
                }
            });
        }
    });
    let r = SqliteAgents::open(&path).expect("open");
    assert_eq!(r.list_agents().expect("list").len(), 40);
    assert_eq!(r.generation().expect("gen"), 40);
}

#[test]
fn debug_shows_no_connection_internals() {
    let d = TestDir::new("reg-debug");
    let r = open(&d);
    let shown = format!("{r:?}");
    assert!(shown.contains("registry.sqlite"), "{shown}");
}

#[test]
fn a_token_made_for_one_role_is_unknown_to_the_other() {
    let d = TestDir::new("reg-purpose");
    let r = open(&d);
    let for_sync = r
        .create_token(TokenPurpose::Sync, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    let for_agent = r
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, t(NOW))
        .expect("token");
    assert_eq!(
        token_err(r.consume_token(for_sync.expose_secret(), TokenPurpose::Agent, t(NOW))),
        TokenError::Unknown
    );
    assert_eq!(
        token_err(r.consume_token(for_agent.expose_secret(), TokenPurpose::Sync, t(NOW))),
        TokenError::Unknown
    );
    // A refusal for the wrong purpose does not spend the token.
    r.consume_token(for_sync.expose_secret(), TokenPurpose::Sync, t(NOW))
        .expect("sync token for sync");
    r.consume_token(for_agent.expose_secret(), TokenPurpose::Agent, t(NOW))
        .expect("agent token for agent");
}

#[test]
fn sync_hosts_are_registered_with_their_role() {
    let d = TestDir::new("reg-role");
    let r = open(&d);
    let agent = registration(1);
    let sync = AgentRegistration {
        role: HostRole::Sync,
        hpke_public_key: [0; 32],
        ..registration(2)
    };
    assert_eq!(
        r.register_agent(sync.clone(), true, t(NOW))
            .expect("register")
            .role,
        HostRole::Sync
    );
    r.register_agent(agent.clone(), true, t(NOW + 1))
        .expect("register");
    let roles: Vec<(AgentId, HostRole)> = r
        .list_agents()
        .expect("list")
        .into_iter()
        .map(|a| (a.id, a.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            (sync.agent_id.clone(), HostRole::Sync),
            (agent.agent_id.clone(), HostRole::Agent)
        ]
    );
    let found = r
        .lookup_by_fingerprint(&sync.cert_fingerprint)
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (found.role, found.hpke_public_key),
        (HostRole::Sync, [0; 32])
    );
    // Approval and revocation work alike for both roles.
    r.approve(&sync.agent_id).expect("approve");
    r.revoke(&sync.agent_id).expect("revoke");
    assert_eq!(
        r.agent(&sync.agent_id)
            .expect("get")
            .expect("present")
            .status,
        AgentStatus::Revoked
    );
}

#[test]
fn a_version_1_registry_is_migrated_and_its_agents_stay_agents() {
    let d = TestDir::new("reg-v1");
    let path = d.path().join("registry.sqlite");
    // A registry as the previous release wrote it: schema version 1, one agent.
    {
        let (conn, _) = crate::sqlite::open::open(
            &path,
            &Schema {
                migrations: &SCHEMA.migrations[..1],
            },
        )
        .expect("open v1");
        conn.execute(
            "INSERT INTO agents (id, host_name, status, cert_sha256, previous_cert_sha256, \
             cert_not_after, hpke_public_key, first_seen, last_seen) \
             VALUES ('agt-0123456789abcdef', 'dc01', 'approved', ?1, NULL, 1, ?2, 1, 1)",
            rusqlite::params![fp(1), [5u8; 32].as_slice()],
        )
        .expect("insert");
    }
    let r = SqliteAgents::open(&path).expect("migrate");
    let list = r.list_agents().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].role, HostRole::Agent);
    assert_eq!(list[0].hpke_public_key, [5; 32]);
    // The CHECK holds: no role outside the two.
    let bad = r.lock().execute("UPDATE agents SET role = 'admin'", []);
    assert!(bad.is_err(), "{bad:?}");
}
