use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use causeway_credential::{Password, PhsVerifier, SignInOutcome};

use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d.join("directory.sqlite")
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

const T0: u64 = 1_790_000_000;

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn lifecycle_with_history() {
    let path = tmp("life");
    let s = SqliteStore::open(&path).expect("open");
    let u = s
        .add_cloud_user(
            &new("admin@corp.example"),
            &PhsVerifier::derive(&pw("Glass-Pw-1")),
            "cli",
            at(T0),
        )
        .expect("add");
    assert_eq!(u.source, Source::Cloud);
    assert!(u.has_verifier && !u.disabled);
    assert_eq!(
        s.user_by_upn("ADMIN@corp.EXAMPLE")
            .expect("read")
            .expect("found")
            .id,
        u.id,
        "UPNs compare case-insensitively"
    );
    s.set_disabled("admin@corp.example", true, "ops", at(T0 + 1))
        .expect("disable");
    s.set_verifier(
        "admin@corp.example",
        &PhsVerifier::derive(&pw("Glass-Pw-2")),
        "ops",
        at(T0 + 2),
    )
    .expect("new password");
    s.delete_user("admin@corp.example", "ops", at(T0 + 3))
        .expect("delete");
    assert!(s.user_by_upn("admin@corp.example").expect("read").is_none());
    assert_eq!(s.list_users(false).expect("list").len(), 0);
    assert_eq!(
        s.list_users(true).expect("list").len(),
        1,
        "in the recycle bin"
    );
    let back = s
        .restore_user("admin@corp.example", "ops", at(T0 + 4))
        .expect("restore");
    assert_eq!(back.id, u.id, "restored with the same immutable id");
    let h = s.history("admin@corp.example").expect("history");
    let actions: Vec<&str> = h.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["create", "disable", "set-password", "delete", "restore"]
    );
    assert_eq!(h[1].actor, "ops");
    assert_eq!(h[1].at, at(T0 + 1));
    assert!(h[1].snapshot.contains("\"disabled\":true"));
    assert!(h[2].snapshot.contains("\"verifier_changed\":true"));
    assert!(
        !h.iter().any(|e| e.snapshot.contains("PPH1")),
        "history never holds verifiers"
    );
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn failed_changes_leave_the_store_as_it_was() {
    let s = SqliteStore::open(&tmp("atomic")).expect("open");
    let v = PhsVerifier::derive(&pw("Glass-Pw-1"));
    s.add_cloud_user(&new("a@corp.example"), &v, "cli", at(T0))
        .expect("add");
    let before = (
        s.list_users(true).expect("list"),
        s.history("a@corp.example").expect("h"),
    );
    assert!(matches!(
        s.add_cloud_user(&new("A@CORP.example"), &v, "cli", at(T0)),
        Err(StoreError::Duplicate(_))
    ));
    assert!(matches!(
        s.add_cloud_user(&new("no-at-sign"), &v, "cli", at(T0)),
        Err(StoreError::InvalidUpn(_))
    ));
    assert!(matches!(
        s.add_cloud_user(&new("a b@corp.example"), &v, "cli", at(T0)),
        Err(StoreError::InvalidUpn(_))
    ));
    let bad_name = NewUser {
        display_name: Some("x\u{7}".into()),
        ..new("c@corp.example")
    };
    assert!(matches!(
        s.add_cloud_user(&bad_name, &v, "cli", at(T0)),
        Err(StoreError::InvalidAttribute { .. })
    ));
    assert!(matches!(
        s.set_disabled("nobody@corp.example", true, "ops", at(T0)),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.restore_user("a@corp.example", "ops", at(T0)),
        Err(StoreError::WrongState(_))
    ));
    let after = (
        s.list_users(true).expect("list"),
        s.history("a@corp.example").expect("h"),
    );
    assert_eq!(before, after);
}

#[test]
fn password_checks_reveal_nothing_to_a_wrong_password() {
    let s = SqliteStore::open(&tmp("verify")).expect("open");
    s.add_cloud_user(
        &new("u@corp.example"),
        &PhsVerifier::derive(&pw("Right-Pw-1")),
        "cli",
        at(T0),
    )
    .expect("add");
    assert_eq!(
        verify_password(&s, "u@corp.example", &pw("Right-Pw-1")),
        SignInOutcome::Success
    );
    assert_eq!(
        verify_password(&s, "U@Corp.Example", &pw("Right-Pw-1")),
        SignInOutcome::Success
    );
    assert_eq!(
        verify_password(&s, "u@corp.example", &pw("Wrong-Pw-1")),
        SignInOutcome::InvalidCredentials
    );
    assert_eq!(
        verify_password(&s, "ghost@corp.example", &pw("Right-Pw-1")),
        SignInOutcome::UnknownUser
    );
    s.set_disabled("u@corp.example", true, "ops", at(T0))
        .expect("disable");
    assert_eq!(
        verify_password(&s, "u@corp.example", &pw("Wrong-Pw-1")),
        SignInOutcome::InvalidCredentials,
        "a wrong password learns nothing"
    );
    assert_eq!(
        verify_password(&s, "u@corp.example", &pw("Right-Pw-1")),
        SignInOutcome::AccountDisabled
    );
    s.delete_user("u@corp.example", "ops", at(T0))
        .expect("delete");
    assert_eq!(
        verify_password(&s, "u@corp.example", &pw("Right-Pw-1")),
        SignInOutcome::UnknownUser
    );
}

#[test]
fn two_handles_see_each_other_and_loose_files_are_refused() {
    let path = tmp("shared");
    let a = SqliteStore::open(&path).expect("open a");
    let b = SqliteStore::open(&path).expect("open b");
    a.add_cloud_user(
        &new("x@corp.example"),
        &PhsVerifier::derive(&pw("Shared-Pw-1")),
        "cli",
        at(T0),
    )
    .expect("add");
    b.set_disabled("x@corp.example", true, "ops", at(T0))
        .expect("b sees a's user");
    assert!(
        a.user_by_upn("x@corp.example")
            .expect("read")
            .expect("found")
            .disabled
    );
    drop((a, b));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::InsecureFile { mode: 0o644, .. })
    ));
}

#[test]
fn the_file_holds_no_password() {
    let path = tmp("nopw");
    let s = SqliteStore::open(&path).expect("open");
    s.add_cloud_user(
        &new("y@corp.example"),
        &PhsVerifier::derive(&pw("Never-Stored-77")),
        "cli",
        at(T0),
    )
    .expect("add");
    drop(s);
    let dir = path.parent().expect("dir");
    for entry in std::fs::read_dir(dir).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(!bytes.windows(15).any(|w| w == b"Never-Stored-77"));
        let wide: Vec<u8> = "Never-Stored-77".bytes().flat_map(|b| [b, 0]).collect();
        assert!(!bytes.windows(wide.len()).any(|w| w == wide.as_slice()));
    }
}

#[test]
fn ad_users_upsert_by_immutable_id() {
    let s = SqliteStore::open(&tmp("ad")).expect("open");
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
        .expect("create");
    assert_eq!((r.source, r.has_verifier), (Source::Ad, true));
    // A rename keeps the identity; no verifier keeps the stored one.
    u.upn = "alice.lab@lab.example".into();
    u.disabled = true;
    s.upsert_ad_user(&u, None, "sync", at(T0 + 1))
        .expect("update");
    assert!(s.user_by_upn("alice@lab.example").expect("read").is_none());
    assert_eq!(
        verify_password(&s, "alice.lab@lab.example", &pw("Blue-Harbor-41")),
        SignInOutcome::AccountDisabled
    );
    let h = s.history("alice.lab@lab.example").expect("history");
    assert_eq!(
        h.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["sync-create", "sync-update"]
    );
    // Another object may not take a live UPN.
    let other = AdUser {
        id: ImmutableId::from_guid_bytes([8; 16]),
        ..u.clone()
    };
    assert!(matches!(
        s.upsert_ad_user(&other, None, "sync", at(T0 + 2)),
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        ImmutableId::from_guid_bytes([0; 16]).as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA=="
    );
}

#[test]
fn sync_cannot_take_over_a_cloud_only_account() {
    let s = SqliteStore::open(&tmp("takeover")).expect("open");
    let glass = s
        .add_cloud_user(
            &new("glass@corp.example"),
            &PhsVerifier::derive(&pw("Glass-Pw-1")),
            "cli",
            at(T0),
        )
        .expect("add");
    let hostile = AdUser {
        id: glass.id.clone(),
        upn: "glass@corp.example".into(),
        display_name: None,
        mail: None,
        disabled: false,
    };
    let r = s.upsert_ad_user(
        &hostile,
        Some(&PhsVerifier::derive(&pw("Attacker-Pw-1"))),
        "sync",
        at(T0 + 1),
    );
    assert!(matches!(r, Err(StoreError::WrongState(_))), "{r:?}");
    assert_eq!(
        verify_password(&s, "glass@corp.example", &pw("Glass-Pw-1")),
        SignInOutcome::Success
    );
    assert_eq!(s.history("glass@corp.example").expect("h").len(), 1);
}
