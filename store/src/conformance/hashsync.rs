//! The password hash sync contract ([`Synced::apply_verifiers`]): verifier changes for a
//! connector's synced users, applied only under its lease, all or nothing; an unchanged
//! resend writes nothing; the flags answer a right password as AD would, at the sign-in's
//! time. Every time is injected.

use causeway_credential::{Password, PhsVerifier, SignInOutcome};

use super::synced::{anchor, dump, refused, run_at, up, user, SyncedDirectory, CORP, TTL};
use super::{at, T0};
use crate::{verify_found_at, VerifierChange};

fn pw(s: &str) -> Password {
    Password::new(s.into()).expect("valid")
}

fn change(n: u8, verifier: Option<PhsVerifier>) -> VerifierChange {
    VerifierChange {
        anchor: anchor(n),
        verifier,
        must_change: false,
        disabled: false,
        account_expires: None,
        changed_at: Some(T0),
    }
}

/// A verifier reaches the user with its flags and last hash sync under the lease only;
/// an unknown anchor is reported and the rest applied; a resend of the same state writes
/// nothing; flags alone keep the verifier; a batch without the lease changes nothing.
pub async fn hash_sync_applies_once_and_only_under_the_lease(s: &dyn SyncedDirectory) {
    let upn = "hana@corp.example";
    let run = run_at(s, "h1", false, T0).await;
    s.apply_batch(run, "h1", &[up(&user(1, upn))], at(T0))
        .await
        .expect("the user");
    let anchors = vec![anchor(1)];
    let before = dump(s, &anchors, false).await;
    let v1 = || Some(PhsVerifier::derive(&pw("Pw-One-1")));
    refused(
        s.apply_verifiers(CORP, "h2", &[change(1, v1())], at(T0 + 1))
            .await,
        &["h1"],
    );
    assert_eq!(
        dump(s, &anchors, false).await,
        before,
        "nothing without the lease"
    );

    let (c, errors) = s
        .apply_verifiers(CORP, "h1", &[change(1, v1()), change(9, None)], at(T0 + 2))
        .await
        .expect("applied");
    assert_eq!((c.verifiers, c.errors), (1, 1), "{c:?}");
    assert_eq!(errors[0].anchor.as_deref(), Some(anchor(9).as_str()));
    let found = s.verifier_of(upn).await.expect("read");
    let (u, _) = found.clone().expect("row");
    assert_eq!(u.password.last_hash_sync, Some(at(T0 + 2)));
    let now = at(T0 + 3);
    assert_eq!(
        verify_found_at(found.clone(), &pw("Pw-One-1"), now),
        SignInOutcome::Success
    );
    assert_eq!(
        verify_found_at(found, &pw("Pw-Two-2"), now),
        SignInOutcome::InvalidCredentials
    );
    let rows = s.history(upn).await.expect("history");
    assert_eq!(rows.last().map(|r| r.action.as_str()), Some("set-password"));
    assert!(
        !rows.iter().any(|r| r.snapshot.contains("PPH1")),
        "no verifier in history"
    );

    let settled = dump(s, &anchors, false).await;
    let (c, _) = s
        .apply_verifiers(CORP, "h1", &[change(1, None)], at(T0 + 4))
        .await
        .expect("applied");
    assert_eq!(c.unchanged, 1);
    assert_eq!(
        dump(s, &anchors, false).await,
        settled,
        "an unchanged resend writes nothing"
    );

    let mut flags = change(1, None);
    flags.must_change = true;
    flags.account_expires = Some(T0 + 100);
    let (c, _) = s
        .apply_verifiers(CORP, "h1", &[flags], at(T0 + 5))
        .await
        .expect("applied");
    assert_eq!(c.flags, 1);
    let found = s.verifier_of(upn).await.expect("read");
    let right = |t| verify_found_at(found.clone(), &pw("Pw-One-1"), at(t));
    assert_eq!(right(T0 + 6), SignInOutcome::PasswordMustChange);
    assert_eq!(
        right(T0 + 100),
        SignInOutcome::AccountExpired,
        "expired from its time on"
    );
    assert_eq!(
        verify_found_at(found.clone(), &pw("Pw-Two-2"), at(T0 + 100)),
        SignInOutcome::InvalidCredentials,
        "a wrong password stays wrong"
    );
    let mut off = change(1, None);
    off.disabled = true;
    off.must_change = true;
    s.apply_verifiers(CORP, "h1", &[off], at(T0 + 7))
        .await
        .expect("applied");
    let found = s.verifier_of(upn).await.expect("read");
    assert_eq!(
        verify_found_at(found, &pw("Pw-One-1"), at(T0 + 8)),
        SignInOutcome::AccountDisabled,
        "disabled before must-change, as AD answers 533 first"
    );

    // The lease lapsed: refused, nothing applied.
    let settled = dump(s, &anchors, false).await;
    let later = at(T0 + 7) + TTL + TTL;
    refused(
        s.apply_verifiers(CORP, "h1", &[change(1, v1())], later)
            .await,
        &["h1"],
    );
    assert_eq!(dump(s, &anchors, false).await, settled);
}
