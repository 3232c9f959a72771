//! The contract every backend keeps, as async checks that take any implementation of the
//! traits and panic on a broken promise. A backend runs them all with one line in its
//! tests (each check gets a fresh, empty store from the expressions given):
//!
//! ```ignore
//! causeway_store::conformance_suite!(directory: fresh_directory(), agents: fresh_agents());
//! ```
//!
//! Times are injected (`at(..)`), never read from the clock, so the checks are exact.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_certs::{AgentId, CertsError, TokenError};
use causeway_credential::{Password, PhsVerifier, SignInOutcome};

mod hashsync;
mod synced;
mod synced_match;
pub use hashsync::*;
pub use synced::*;
pub use synced_match::*;

use crate::{
    verify_password, AdUser, AgentRegistration, AgentStatus, Agents, DirectoryStore, ImmutableId,
    NewUser, Source, StoreError, TokenPurpose,
};

/// Runs every check with fresh stores from `$directory` and `$agents` (expressions
/// evaluated once per check), as `#[tokio::test]`s on a multi-threaded runtime.
#[macro_export]
macro_rules! conformance_suite {
    (directory: $directory:expr, agents: $agents:expr $(,)?) => {
        $crate::conformance_suite!(@dir $directory;
            users_lifecycle_with_history,
            failed_changes_leave_the_store_as_it_was,
            password_checks_reveal_nothing_to_a_wrong_password,
            ad_users_upsert_by_immutable_id,
            sync_cannot_take_over_a_cloud_only_account,
            the_recycle_bin_keeps_an_older_user_of_the_same_upn,
            sync_leases_are_exclusive_until_they_lapse,
            a_batch_of_every_kind_applies_once,
            updates_renames_deletes_and_reanimation_keep_the_anchor,
            objects_in_error_leave_nothing_and_the_rest_applies,
            a_batch_without_the_lease_changes_nothing,
            soft_match_takes_over_only_unprotected_cloud_users,
            groups_of_follows_nesting_and_ends_cycles,
            runs_are_listed_newest_first_with_their_counts,
            protection_is_recorded_and_shown,
            hash_sync_applies_once_and_only_under_the_lease,
        );
        $crate::conformance_suite!(@agents $agents;
            agent_tokens_are_single_use_and_checked_in_order,
            racing_token_consumers_exactly_one_wins,
            agents_register_approve_revoke_and_renew,
        );
    };
    (@dir $make:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let store = $make;
            $crate::conformance::$check(&store).await;
        }
    )*};
    (@agents $make:expr; $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let agents: ::std::sync::Arc<dyn $crate::Agents> = ::std::sync::Arc::new($make);
            $crate::conformance::$check(agents).await;
        }
    )*};
}

const T0: u64 = 1_790_000_000;

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

fn pw(s: &str) -> Password {
    Password::new(s.into()).expect("valid")
}

fn new(upn: &str) -> NewUser {
    NewUser {
        upn: upn.into(),
        display_name: Some("Break Glass".into()),
        mail: None,
    }
}

/// Add, read (case-insensitively, by UPN and by id), disable, set a password, delete to
/// the recycle bin, restore with the same id; one history row per change, in order, with
/// its actor, time and snapshot, and never a verifier.
pub async fn users_lifecycle_with_history(s: &dyn DirectoryStore) {
    let u = s
        .add_cloud_user(
            &new("admin@corp.example"),
            &PhsVerifier::derive(&pw("Glass-Pw-1")),
            "cli",
            at(T0),
        )
        .await
        .expect("add");
    assert_eq!(u.source, Source::Cloud);
    assert!(u.has_verifier && !u.disabled);
    assert_eq!((u.created_at, u.updated_at), (at(T0), at(T0)));
    let by_upn = s
        .user_by_upn("ADMIN@corp.EXAMPLE")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(by_upn.id, u.id, "UPNs compare case-insensitively");
    assert_eq!(
        s.user_by_id(&u.id).await.expect("read").as_ref(),
        Some(&u),
        "by id"
    );
    s.set_disabled("admin@corp.example", true, "ops", at(T0 + 1))
        .await
        .expect("disable");
    s.set_verifier(
        "admin@corp.example",
        &PhsVerifier::derive(&pw("Glass-Pw-2")),
        "ops",
        at(T0 + 2),
    )
    .await
    .expect("new password");
    let gone = s
        .delete_user("admin@corp.example", "ops", at(T0 + 3))
        .await
        .expect("delete");
    assert_eq!(gone.deleted_at, Some(at(T0 + 3)));
    assert!(s
        .user_by_upn("admin@corp.example")
        .await
        .expect("read")
        .is_none());
    assert!(
        s.user_by_id(&u.id)
            .await
            .expect("read")
            .expect("still there")
            .deleted_at
            .is_some(),
        "by id, the recycle bin is visible"
    );
    assert_eq!(s.list_users(false).await.expect("list").len(), 0);
    assert_eq!(
        s.list_users(true).await.expect("list").len(),
        1,
        "in the recycle bin"
    );
    let back = s
        .restore_user("admin@corp.example", "ops", at(T0 + 4))
        .await
        .expect("restore");
    assert_eq!(back.id, u.id, "restored with the same immutable id");
    assert_eq!(back.deleted_at, None);
    let h = s.history("admin@corp.example").await.expect("history");
    let actions: Vec<&str> = h.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "disable", "set-password", "delete", "restore"]
    );
    assert!(h.windows(2).all(|w| w[0].seq < w[1].seq), "ordered");
    assert_eq!(h[1].actor, "ops");
    assert_eq!(h[1].at, at(T0 + 1));
    assert!(h[1].snapshot.contains("\"disabled\":true"));
    assert!(h[2].snapshot.contains("\"verifier_changed\":true"));
    assert!(
        !h.iter().any(|e| e.snapshot.contains("PPH1")),
        "history never holds verifiers"
    );
}

/// Refused changes (duplicate UPN in any case, malformed UPN or attribute, unknown user,
/// restoring a live user) leave users and history exactly as they were: a change and its
/// history row are one transaction.
pub async fn failed_changes_leave_the_store_as_it_was(s: &dyn DirectoryStore) {
    let v = PhsVerifier::derive(&pw("Glass-Pw-1"));
    s.add_cloud_user(&new("a@corp.example"), &v, "cli", at(T0))
        .await
        .expect("add");
    let before = (
        s.list_users(true).await.expect("list"),
        s.history("a@corp.example").await.expect("h"),
    );
    assert!(matches!(
        s.add_cloud_user(&new("A@CORP.example"), &v, "cli", at(T0))
            .await,
        Err(StoreError::Duplicate(_))
    ));
    for bad in ["no-at-sign", "a b@corp.example"] {
        assert!(matches!(
            s.add_cloud_user(&new(bad), &v, "cli", at(T0)).await,
            Err(StoreError::InvalidUpn(_))
        ));
    }
    let bad_name = NewUser {
        display_name: Some("x\u{7}".into()),
        ..new("c@corp.example")
    };
    assert!(matches!(
        s.add_cloud_user(&bad_name, &v, "cli", at(T0)).await,
        Err(StoreError::InvalidAttribute { .. })
    ));
    assert!(matches!(
        s.set_disabled("nobody@corp.example", true, "ops", at(T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.set_verifier("nobody@corp.example", &v, "ops", at(T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.restore_user("a@corp.example", "ops", at(T0)).await,
        Err(StoreError::WrongState(_))
    ));
    let after = (
        s.list_users(true).await.expect("list"),
        s.history("a@corp.example").await.expect("h"),
    );
    assert_eq!(before, after);
}

/// Verifier set/read through [`verify_password`]: a wrong password never learns whether
/// the account is disabled; a deleted user is unknown.
pub async fn password_checks_reveal_nothing_to_a_wrong_password(s: &dyn DirectoryStore) {
    s.add_cloud_user(
        &new("u@corp.example"),
        &PhsVerifier::derive(&pw("Right-Pw-1")),
        "cli",
        at(T0),
    )
    .await
    .expect("add");
    let check =
        |upn: &'static str, p: &'static str| async move { verify_password(s, upn, &pw(p)).await };
    assert_eq!(
        check("u@corp.example", "Right-Pw-1").await,
        SignInOutcome::Success
    );
    assert_eq!(
        check("U@Corp.Example", "Right-Pw-1").await,
        SignInOutcome::Success
    );
    assert_eq!(
        check("u@corp.example", "Wrong-Pw-1").await,
        SignInOutcome::InvalidCredentials
    );
    assert_eq!(
        check("ghost@corp.example", "Right-Pw-1").await,
        SignInOutcome::UnknownUser
    );
    s.set_verifier(
        "u@corp.example",
        &PhsVerifier::derive(&pw("Right-Pw-2")),
        "ops",
        at(T0),
    )
    .await
    .expect("new password");
    assert_eq!(
        check("u@corp.example", "Right-Pw-1").await,
        SignInOutcome::InvalidCredentials,
        "the old verifier is gone"
    );
    let (user, v) = s
        .verifier_of("u@corp.example")
        .await
        .expect("read")
        .expect("found");
    assert!(user.has_verifier && v.is_some_and(|v| v.verify(&pw("Right-Pw-2"))));
    s.set_disabled("u@corp.example", true, "ops", at(T0))
        .await
        .expect("disable");
    assert_eq!(
        check("u@corp.example", "Wrong-Pw-1").await,
        SignInOutcome::InvalidCredentials,
        "a wrong password learns nothing"
    );
    assert_eq!(
        check("u@corp.example", "Right-Pw-2").await,
        SignInOutcome::AccountDisabled
    );
    s.delete_user("u@corp.example", "ops", at(T0))
        .await
        .expect("delete");
    assert_eq!(
        check("u@corp.example", "Right-Pw-2").await,
        SignInOutcome::UnknownUser
    );
}

/// Sync matches on the immutable id: a rename keeps the identity (and the verifier when
/// none is supplied), the old UPN stops resolving, and another object may not take a live
/// UPN.
pub async fn ad_users_upsert_by_immutable_id(s: &dyn DirectoryStore) {
    let id = ImmutableId::from_guid_bytes([7; 16]);
    let mut u = AdUser {
        id: id.clone(),
        upn: "alice@lab.example".into(),
        display_name: Some("Alice".into()),
        mail: None,
        disabled: false,
    };
    let v = PhsVerifier::derive(&pw("Blue-Harbor-41"));
    let r = s
        .upsert_ad_user(&u, Some(&v), "sync", at(T0))
        .await
        .expect("create");
    assert_eq!((r.source, r.has_verifier, &r.id), (Source::Ad, true, &id));
    u.upn = "alice.lab@lab.example".into();
    u.disabled = true;
    let renamed = s
        .upsert_ad_user(&u, None, "sync", at(T0 + 1))
        .await
        .expect("update");
    assert_eq!(renamed.id, id, "a rename keeps the immutable id");
    assert_eq!(renamed.created_at, at(T0));
    assert!(s
        .user_by_upn("alice@lab.example")
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        s.user_by_id(&id).await.expect("read").map(|u| u.upn),
        Some("alice.lab@lab.example".to_owned())
    );
    assert_eq!(
        verify_password(s, "alice.lab@lab.example", &pw("Blue-Harbor-41")).await,
        SignInOutcome::AccountDisabled,
        "no verifier given keeps the stored one"
    );
    let h = s.history("alice.lab@lab.example").await.expect("history");
    assert_eq!(
        h.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["sync-create", "sync-update"]
    );
    let other = AdUser {
        id: ImmutableId::from_guid_bytes([8; 16]),
        ..u.clone()
    };
    assert!(matches!(
        s.upsert_ad_user(&other, None, "sync", at(T0 + 2)).await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(s.user_by_id(&other.id).await.expect("read").is_none());
}

/// A synchronised object whose id collides with a cloud-only (break-glass) account does
/// not take it over: refused, nothing written.
pub async fn sync_cannot_take_over_a_cloud_only_account(s: &dyn DirectoryStore) {
    let glass = s
        .add_cloud_user(
            &new("glass@corp.example"),
            &PhsVerifier::derive(&pw("Glass-Pw-1")),
            "cli",
            at(T0),
        )
        .await
        .expect("add");
    let hostile = AdUser {
        id: glass.id.clone(),
        upn: "glass@corp.example".into(),
        display_name: None,
        mail: None,
        disabled: false,
    };
    let r = s
        .upsert_ad_user(
            &hostile,
            Some(&PhsVerifier::derive(&pw("Attacker-Pw-1"))),
            "sync",
            at(T0 + 1),
        )
        .await;
    assert!(matches!(r, Err(StoreError::WrongState(_))), "{r:?}");
    assert_eq!(
        verify_password(s, "glass@corp.example", &pw("Glass-Pw-1")).await,
        SignInOutcome::Success
    );
    assert_eq!(s.history("glass@corp.example").await.expect("h").len(), 1);
}

/// A UPN freed by a deletion can be used again; the recycle bin keeps the older user, a
/// restore that would clash with the live one is refused, and the UPN's history covers
/// both users.
pub async fn the_recycle_bin_keeps_an_older_user_of_the_same_upn(s: &dyn DirectoryStore) {
    let v = PhsVerifier::derive(&pw("Glass-Pw-1"));
    let first = s
        .add_cloud_user(&new("reuse@corp.example"), &v, "cli", at(T0))
        .await
        .expect("add");
    s.delete_user("reuse@corp.example", "ops", at(T0 + 1))
        .await
        .expect("delete");
    let second = s
        .add_cloud_user(&new("reuse@corp.example"), &v, "cli", at(T0 + 2))
        .await
        .expect("the name is free again");
    assert_ne!(first.id, second.id);
    assert_eq!(s.list_users(true).await.expect("list").len(), 2);
    assert!(matches!(
        s.restore_user("reuse@corp.example", "ops", at(T0 + 3))
            .await,
        Err(StoreError::WrongState(_))
    ));
    assert_eq!(
        s.history("reuse@corp.example")
            .await
            .expect("h")
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["create", "delete", "create"]
    );
}

const HOUR: Duration = Duration::from_secs(3600);

fn ca_fp() -> String {
    causeway_certs::fingerprint_of_der(b"a stand-in for the CA certificate")
}

fn registration(n: u8) -> AgentRegistration {
    AgentRegistration {
        agent_id: AgentId::generate().expect("id"),
        host_name: format!("dc-agent-{n}.corp.example"),
        role: crate::HostRole::Agent,
        hpke_public_key: [n; 32],
        cert_fingerprint: causeway_certs::fingerprint_of_der(&[n; 8]),
        cert_not_after: at(T0 + 30 * 86_400),
    }
}

fn token_err(r: Result<(), CertsError>) -> TokenError {
    match r {
        Err(CertsError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

/// A token works once; then it is `AlreadyUsed`. Malformed beats unknown beats used beats
/// expired; a token for another CA is unknown; an expired one is refused at its expiry.
pub async fn agent_tokens_are_single_use_and_checked_in_order(a: Arc<dyn Agents>) {
    let p = TokenPurpose::Agent;
    let tok = a
        .create_token(p, &ca_fp(), HOUR, at(T0))
        .await
        .expect("token");
    let text = tok.expose_secret().to_owned();
    assert!(text.starts_with("cwt1.") && text.ends_with(&ca_fp()));
    a.consume_token(&text, p, at(T0 + 1))
        .await
        .expect("first use");
    assert_eq!(
        token_err(a.consume_token(&text, p, at(T0 + 2)).await),
        TokenError::AlreadyUsed
    );
    assert_eq!(
        token_err(a.consume_token("cwt1.nope", p, at(T0)).await),
        TokenError::Malformed
    );
    let other_ca = format!(
        "{}.{}",
        text.rsplit_once('.').expect("dot").0,
        "0".repeat(64)
    );
    assert_eq!(
        token_err(a.consume_token(&other_ca, p, at(T0)).await),
        TokenError::Unknown
    );
    let short = a
        .create_token(p, &ca_fp(), Duration::from_secs(60), at(T0))
        .await
        .expect("token");
    assert_eq!(
        token_err(a.consume_token(short.expose_secret(), p, at(T0 + 60)).await),
        TokenError::Expired
    );
    assert!(matches!(
        a.create_token(p, &ca_fp(), Duration::from_secs(59), at(T0))
            .await,
        Err(CertsError::InvalidLifetime { .. })
    ));
    assert!(matches!(
        a.create_token(p, "not-a-fingerprint", HOUR, at(T0)).await,
        Err(CertsError::MalformedFingerprint(_))
    ));
}

/// Of many concurrent uses of one token, exactly one succeeds.
pub async fn racing_token_consumers_exactly_one_wins(a: Arc<dyn Agents>) {
    let tok = a
        .create_token(TokenPurpose::Agent, &ca_fp(), HOUR, at(T0))
        .await
        .expect("token");
    let text: Arc<str> = tok.expose_secret().as_str().into();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (a, text) = (a.clone(), text.clone());
            tokio::spawn(async move { a.consume_token(&text, TokenPurpose::Agent, at(T0)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => won += 1,
            Err(e) => assert!(
                matches!(e, CertsError::Token(TokenError::AlreadyUsed)),
                "{e:?}"
            ),
        }
    }
    assert_eq!(won, 1);
}

/// Register (pending with approval required, approved without), look up by current and
/// previous fingerprint after a renewal, approve, revoke (final: no approve, no renewal),
/// `touch` never moves back; every change moves the generation, reads do not.
pub async fn agents_register_approve_revoke_and_renew(a: Arc<dyn Agents>) {
    let g0 = a.generation().await.expect("generation");
    let one = registration(1);
    let rec = a
        .register_agent(one.clone(), true, at(T0))
        .await
        .expect("register");
    assert_eq!(rec.status, AgentStatus::Pending);
    let g1 = a.generation().await.expect("generation");
    assert!(g1 > g0, "registering moves the generation");
    assert!(matches!(
        a.register_agent(one.clone(), true, at(T0)).await,
        Err(CertsError::DuplicateAgent(_))
    ));
    let two = registration(2);
    assert_eq!(
        a.register_agent(two.clone(), false, at(T0 + 1))
            .await
            .expect("register")
            .status,
        AgentStatus::Approved
    );
    let same_cert = AgentRegistration {
        cert_fingerprint: one.cert_fingerprint.clone(),
        ..registration(3)
    };
    assert!(matches!(
        a.register_agent(same_cert, true, at(T0)).await,
        Err(CertsError::DuplicateCertificate(_))
    ));
    let listed: Vec<AgentId> = a
        .list_agents()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        listed,
        [one.agent_id.clone(), two.agent_id.clone()],
        "oldest first"
    );

    let g2 = a.generation().await.expect("generation");
    a.approve(&one.agent_id).await.expect("approve");
    assert_eq!(
        a.agent(&one.agent_id)
            .await
            .expect("read")
            .map(|r| r.status),
        Some(AgentStatus::Approved)
    );
    let g3 = a.generation().await.expect("generation");
    assert!(g3 > g2, "approving moves the generation");
    a.approve(&one.agent_id)
        .await
        .expect("again: nothing to do");

    let renewed = causeway_certs::fingerprint_of_der(b"renewed");
    a.record_renewal(&one.agent_id, &renewed, at(T0 + 60 * 86_400))
        .await
        .expect("renew");
    a.record_renewal(&one.agent_id, &renewed, at(T0 + 60 * 86_400))
        .await
        .expect("a retried renewal is harmless");
    for fp in [&renewed, &one.cert_fingerprint] {
        assert_eq!(
            a.lookup_by_fingerprint(fp)
                .await
                .expect("lookup")
                .map(|r| r.id),
            Some(one.agent_id.clone()),
            "current and previous certificates both resolve"
        );
    }
    let g4 = a.generation().await.expect("generation");
    assert!(g4 > g3, "renewing moves the generation");

    a.touch(&one.agent_id, at(T0 + 100)).await.expect("touch");
    a.touch(&one.agent_id, at(T0 + 50)).await.expect("touch");
    assert_eq!(
        a.agent(&one.agent_id)
            .await
            .expect("read")
            .map(|r| r.last_seen),
        Some(at(T0 + 100)),
        "last_seen never moves back"
    );
    assert_eq!(
        a.generation().await.expect("generation"),
        g4,
        "reads and touches do not"
    );

    a.revoke(&one.agent_id).await.expect("revoke");
    assert!(a.generation().await.expect("generation") > g4);
    assert_eq!(
        a.revoked_ids().await.expect("revoked"),
        std::slice::from_ref(&one.agent_id)
    );
    assert!(matches!(
        a.approve(&one.agent_id).await,
        Err(CertsError::AgentRevoked(_))
    ));
    assert!(matches!(
        a.record_renewal(
            &one.agent_id,
            &causeway_certs::fingerprint_of_der(b"again"),
            at(T0)
        )
        .await,
        Err(CertsError::AgentRevoked(_))
    ));
    a.revoke(&one.agent_id).await.expect("again: nothing to do");
    let ghost = AgentId::generate().expect("id");
    assert!(matches!(
        a.touch(&ghost, at(T0)).await,
        Err(CertsError::UnknownAgent(_))
    ));
    assert!(a.agent(&ghost).await.expect("read").is_none());
}
