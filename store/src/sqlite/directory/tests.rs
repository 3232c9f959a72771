//! SQLite-specific promises of the directory file (the backend-independent ones are in
//! `crate::conformance`): schema upgrades, pruning, file modes, sharing between handles.

use std::os::unix::fs::PermissionsExt;

use causeway_credential::{Password, PhsVerifier};

use super::*;
use crate::directory::LockoutStore;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d.join("directory.sqlite")
}

fn new(upn: &str) -> NewUser {
    NewUser {
        upn: upn.into(),
        display_name: None,
        mail: None,
    }
}

fn verifier(p: &str) -> PhsVerifier {
    PhsVerifier::derive(&Password::new(p.into()).expect("valid"))
}

/// A store written by an older build (schema 1) gains the lockout table, the synced
/// objects, runs and leases, and the users' protection flag on open, keeps its users,
/// and is refused by nothing; a newer schema is refused by name.
#[test]
fn a_version_1_store_is_upgraded_in_place() {
    let dir = std::env::temp_dir().join(format!("causeway-store-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("directory.sqlite");
    {
        let v1 = Schema {
            migrations: &SCHEMA.migrations[..1],
        };
        let (conn, _) = open(&path, &v1).expect("a version 1 file");
        conn.execute(
            "INSERT INTO users (id, upn, source, created_at, updated_at) VALUES ('aWQ=', 'old@corp.example', 'cloud', 0, 0)",
            [],
        )
        .expect("a user from before");
    }
    let s = SqliteStore::open(&path).expect("upgrade");
    assert!(s
        .db()
        .user_by_upn("old@corp.example")
        .expect("read")
        .is_some());
    let old = s.db().user_by_upn("old@corp.example").expect("read");
    assert_eq!(
        old.map(|u| u.protected),
        Some(false),
        "not protected by default"
    );
    s.save_lockout("n:x@corp.example", Some("{}"), SystemTime::now())
        .expect("the new table is there");
    let lease = s
        .db()
        .lease("corp", "h1", crate::DEFAULT_LEASE, SystemTime::now())
        .expect("the sync tables are there");
    assert!(lease.granted);
    assert_eq!(s.db().synced_counts().expect("counts").len(), 5);
    assert_eq!(s.load_lockout(10).expect("rows").len(), 1);
    let version: i64 = s
        .db()
        .lock()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA.version());
    s.db()
        .lock()
        .pragma_update(None, "user_version", 99)
        .expect("from the future");
    drop(s);
    let e = SqliteStore::open(&path).expect_err("newer schema");
    assert!(e.to_string().contains("schema version 99"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pruning keeps the most recently written rows of the retention period, so names
/// sprayed between restarts cannot grow the file without bound.
#[test]
fn lockout_rows_are_pruned_by_age_then_by_count() {
    let dir = std::env::temp_dir().join(format!("causeway-store-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let s = SqliteStore::open(&dir.join("directory.sqlite")).expect("create");
    let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    for i in 0..10u64 {
        s.save_lockout(
            &format!("n:user{i}@corp.example"),
            Some("{}"),
            t0 + std::time::Duration::from_secs(i * 60),
        )
        .expect("row");
    }
    // Two rows are older than the cut; of the eight left, the five newest stay.
    let cut = t0 + std::time::Duration::from_secs(2 * 60);
    assert_eq!(s.prune_lockout(5, cut).expect("prune"), 5);
    let left: Vec<String> = s
        .load_lockout(100)
        .expect("rows")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        left,
        (5..10)
            .rev()
            .map(|i| format!("n:user{i}@corp.example"))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.prune_lockout(5, cut).expect("again"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The file and its WAL side files are created 0600; a file others can read is refused
/// with the operator's fix in the message.
#[test]
fn the_file_is_private_and_a_loose_one_is_refused() {
    let path = tmp("mode");
    let s = SqliteStore::open(&path).expect("open");
    s.db()
        .add_cloud_user(
            &new("m@corp.example"),
            &verifier("Mode-Pw-1"),
            "cli",
            SystemTime::UNIX_EPOCH,
        )
        .expect("add");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
    }
    drop(s);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = SqliteStore::open(&path).expect_err("loose");
    assert!(
        matches!(e, StoreError::InsecureFile { mode: 0o644, .. }),
        "{e:?}"
    );
    let shown = path.display();
    assert_eq!(
        e.to_string(),
        format!("directory store {shown} is accessible to other users (mode 644); run: chmod 600 {shown}")
    );
}

/// Two handles on one file (the endpoint and `causeway users`) see each other's writes.
#[test]
fn two_handles_see_each_other() {
    let path = tmp("shared");
    let a = SqliteStore::open(&path).expect("open a");
    let b = SqliteStore::open(&path).expect("open b");
    a.db()
        .add_cloud_user(
            &new("x@corp.example"),
            &verifier("Shared-Pw-1"),
            "cli",
            SystemTime::UNIX_EPOCH,
        )
        .expect("add");
    b.db()
        .set_disabled("x@corp.example", true, "ops", SystemTime::UNIX_EPOCH)
        .expect("b sees a's user");
    assert!(
        a.db()
            .user_by_upn("x@corp.example")
            .expect("read")
            .expect("found")
            .disabled
    );
}

/// Neither the password nor its UTF-16 form reaches the file or its side files.
#[test]
fn the_file_holds_no_password() {
    let path = tmp("nopw");
    let s = SqliteStore::open(&path).expect("open");
    s.db()
        .add_cloud_user(
            &new("y@corp.example"),
            &verifier("Never-Stored-77"),
            "cli",
            SystemTime::UNIX_EPOCH,
        )
        .expect("add");
    drop(s);
    let dir = path.parent().expect("dir");
    let wide: Vec<u8> = "Never-Stored-77".bytes().flat_map(|b| [b, 0]).collect();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(!bytes.windows(15).any(|w| w == b"Never-Stored-77"));
        assert!(!bytes.windows(wide.len()).any(|w| w == wide.as_slice()));
    }
}
