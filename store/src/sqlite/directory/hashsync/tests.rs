use std::collections::BTreeMap;

use causeway_credential::{Password, PhsVerifier, SignInOutcome};

use super::super::SqliteStore;
use super::*;
use crate::directory::{verify_found, History as _, Verifiers as _};
use crate::synced::{MatchPolicy, Object, ObjectChange, ObjectKind, RunKind, Synced as _};

const ANCHOR: &str = "AAECAwQFBgcICQoLDA0ODw==";
const OTHER: &str = "DwAAAAAAAAAAAAAAAAAAAA==";

fn pw(s: &str) -> Password {
    Password::new(s.into()).expect("valid")
}

fn change(verifier: Option<PhsVerifier>) -> VerifierChange {
    VerifierChange {
        anchor: ANCHOR.into(),
        verifier,
        must_change: false,
        disabled: false,
        account_expires: None,
        changed_at: Some(1_700_000_000),
    }
}

async fn store_with_user(name: &str) -> (SqliteStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("causeway-hs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let s = SqliteStore::open(&dir.join("directory.sqlite")).expect("store");
    let now = SystemTime::now();
    s.lease("ldap", "h1", crate::DEFAULT_LEASE, now)
        .await
        .expect("lease");
    let run = s
        .start_run("ldap", "h1", RunKind::Full, MatchPolicy::default(), now)
        .await
        .expect("run");
    let object = Object {
        anchor: ANCHOR.into(),
        kind: ObjectKind::User,
        dn: "uid=alice,ou=people,dc=x".into(),
        attrs: BTreeMap::from([
            ("upn".into(), vec!["alice@corp.example".into()]),
            ("enabled".into(), vec!["true".into()]),
        ]),
    };
    let r = s
        .apply_batch(run, "h1", &[ObjectChange::Upsert { object }], now)
        .await
        .expect("batch");
    assert_eq!(r.counts.added, 1, "{r:?}");
    (s, dir)
}

/// A verifier change reaches the user's row with its flags and last hash sync, under
/// the lease only; an unchanged resend writes nothing (no history churn); a flags-only
/// change keeps the verifier; an unknown anchor is reported and the rest applied.
#[tokio::test]
async fn verifier_changes_apply_once_and_flags_keep_the_verifier() {
    let (s, dir) = store_with_user("apply").await;
    let now = SystemTime::now();
    let refused = s
        .apply_verifiers(
            "ldap",
            "h2",
            &[change(Some(PhsVerifier::derive(&pw("P-1"))))],
            now,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::WrongState(_))),
        "{refused:?}"
    );
    assert!(
        !s.user_by_id_sync(ANCHOR).has_verifier,
        "nothing applied without the lease"
    );

    let mut unknown = change(None);
    unknown.anchor = OTHER.into();
    let (c, errors) = s
        .apply_verifiers(
            "ldap",
            "h1",
            &[change(Some(PhsVerifier::derive(&pw("P-1")))), unknown],
            now,
        )
        .await
        .expect("applied");
    assert_eq!((c.verifiers, c.errors), (1, 1));
    assert_eq!(errors[0].anchor.as_deref(), Some(OTHER));
    let found = s.verifier_of("alice@corp.example").await.expect("read");
    let (user, _) = found.clone().expect("row");
    assert!(user.password.last_hash_sync.is_some());
    assert_eq!(
        verify_found(found.clone(), &pw("P-1")),
        SignInOutcome::Success
    );
    assert_eq!(
        verify_found(found, &pw("P-2")),
        SignInOutcome::InvalidCredentials
    );
    let history = s
        .history("alice@corp.example")
        .await
        .expect("history")
        .len();

    let (c, _) = s
        .apply_verifiers("ldap", "h1", &[change(None)], now)
        .await
        .expect("applied");
    assert_eq!(c.unchanged, 1);
    assert_eq!(
        s.history("alice@corp.example").await.expect("h").len(),
        history
    );

    let mut must = change(None);
    must.must_change = true;
    let (c, _) = s
        .apply_verifiers("ldap", "h1", &[must], now)
        .await
        .expect("applied");
    assert_eq!(c.flags, 1);
    let found = s.verifier_of("alice@corp.example").await.expect("read");
    assert_eq!(
        verify_found(found.clone(), &pw("P-1")),
        SignInOutcome::PasswordMustChange
    );
    assert_eq!(
        verify_found(found, &pw("P-2")),
        SignInOutcome::InvalidCredentials
    );
    let h = s.history("alice@corp.example").await.expect("h");
    assert_eq!(h.len(), history + 1);
    assert_eq!(h[h.len() - 1].action, "password-flags");
    assert!(
        !h.iter().any(|e| e.snapshot.contains("PPH1")),
        "no verifier in history"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An account's expiry is judged at the sign-in's `now`: a right password succeeds before
/// it and is `AccountExpired` from it on; a wrong one is `InvalidCredentials` either way.
#[tokio::test]
async fn expiry_is_judged_at_the_given_time() {
    let (s, dir) = store_with_user("expiry").await;
    let now = SystemTime::now();
    let mut c = change(Some(PhsVerifier::derive(&pw("P-1"))));
    c.account_expires = Some(2_000_000_000);
    s.apply_verifiers("ldap", "h1", &[c], now)
        .await
        .expect("applied");
    let found = s.verifier_of("alice@corp.example").await.expect("read");
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    use crate::directory::verify_found_at;
    assert_eq!(
        verify_found_at(found.clone(), &pw("P-1"), at(1_999_999_999)),
        SignInOutcome::Success
    );
    assert_eq!(
        verify_found_at(found.clone(), &pw("P-1"), at(2_000_000_000)),
        SignInOutcome::AccountExpired
    );
    assert_eq!(
        verify_found_at(found, &pw("P-2"), at(2_000_000_000)),
        SignInOutcome::InvalidCredentials
    );
    let _ = std::fs::remove_dir_all(dir);
}

impl SqliteStore {
    fn user_by_id_sync(&self, id: &str) -> crate::UserRecord {
        self.db()
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
                [id],
                row_to_user,
            )
            .expect("row")
    }
}
