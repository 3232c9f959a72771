//! SQLite-specific promises of the directory file (the backend-independent ones are in
//! `crate::conformance`): schema upgrades, pruning, file modes, sharing between handles.

use std::os::unix::fs::PermissionsExt;

use causeway_credential::{Password, PhsVerifier};

use super::synced::MAX_GROUPS;
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

fn synced_anchor(i: u32, tag: u8) -> String {
    let mut b = [tag; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    ImmutableId::from_guid_bytes(b).as_str().to_owned()
}

fn synced_run(s: &SqliteStore, now: SystemTime) -> u64 {
    assert!(
        s.db()
            .lease("corp", "h", crate::DEFAULT_LEASE, now)
            .expect("lease")
            .granted
    );
    s.db()
        .start_run("corp", "h", crate::RunKind::Full, Default::default(), now)
        .expect("start")
}

/// What a sync host sends is bounded here too, not only by the ingestion API: a batch
/// over `MAX_BATCH` is refused whole, a run lists at most `MAX_ERRORS` errors (the rest
/// are counted), and the `groups` claim stops at `MAX_GROUPS`.
#[test]
fn batches_error_lists_and_group_walks_are_bounded() {
    use crate::synced::{Object, ObjectChange, ObjectKind};
    use causeway_proto::sync::{MAX_BATCH, MAX_ERRORS};

    let s = SqliteStore::open(&tmp("bounds")).expect("open");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let run = synced_run(&s, now);
    let upsert = |anchor: String, kind, attrs: &[(&str, Vec<String>)]| ObjectChange::Upsert {
        object: Object {
            anchor,
            kind,
            dn: "CN=x,DC=corp".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        },
    };
    let too_many = vec![upsert(synced_anchor(0, 1), ObjectKind::Ou, &[]); MAX_BATCH + 1];
    let e = s
        .db()
        .apply_batch(run, "h", &too_many, now)
        .expect_err("too many");
    assert!(e.to_string().contains("nothing was applied"), "{e}");
    assert!(s
        .db()
        .synced_object(&synced_anchor(0, 1))
        .expect("read")
        .is_none());
    // Users without a UPN: every one an error.
    for tag in [2, 3] {
        let bad: Vec<_> = (0..MAX_BATCH as u32)
            .map(|i| upsert(synced_anchor(i, tag), ObjectKind::User, &[]))
            .collect();
        let r = s.db().apply_batch(run, "h", &bad, now).expect("applied");
        assert_eq!(r.errors.len(), MAX_BATCH);
    }
    let rec = &s.db().runs(None, 1).expect("runs")[0];
    assert_eq!(
        (rec.counts.errors, rec.errors.len()),
        (2 * MAX_BATCH as u64, MAX_ERRORS)
    );
    // One user in MAX_GROUPS + 1 groups.
    let user = synced_anchor(0, 4);
    let groups: Vec<_> = (0..=MAX_GROUPS as u32)
        .map(|i| {
            upsert(
                synced_anchor(i, 5),
                ObjectKind::Group,
                &[
                    ("name", vec![format!("g{i:04}")]),
                    ("members", vec![user.clone()]),
                ],
            )
        })
        .collect();
    for chunk in groups.chunks(MAX_BATCH) {
        let r = s.db().apply_batch(run, "h", chunk, now).expect("groups");
        assert_eq!(r.counts.errors, 0, "{:?}", r.errors.first());
    }
    assert_eq!(s.db().groups_of(&user).expect("groups").len(), MAX_GROUPS);
}
