//! The [`Synced`] contract: leases, and batches applied once, atomically per object and
//! only under the lease (soft match, groups and runs are in `synced_match.rs`). Every
//! time is injected.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{at, T0};
use crate::{
    DirectoryStore, ImmutableId, MatchPolicy, Object, ObjectChange, ObjectKind, RunKind, RunReport,
    RunStatus, Source, StoreError, Synced,
};

/// A store with both the directory and the sync ingestion capabilities.
pub trait SyncedDirectory: DirectoryStore + Synced {}

impl<T: DirectoryStore + Synced + ?Sized> SyncedDirectory for T {}

pub(super) const TTL: Duration = Duration::from_secs(60);
pub(super) const CORP: &str = "corp";
pub(super) const HOST: &str = "sync-host-1";

pub(super) fn anchor(n: u8) -> String {
    ImmutableId::from_guid_bytes([n; 16]).as_str().to_owned()
}

pub(super) fn obj(kind: ObjectKind, n: u8, dn: &str, attrs: &[(&str, &[&str])]) -> Object {
    Object {
        anchor: anchor(n),
        kind,
        dn: dn.into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect::<BTreeMap<_, _>>(),
    }
}

pub(super) fn user(n: u8, upn: &str) -> Object {
    obj(
        ObjectKind::User,
        n,
        &format!("CN=User {n},OU=Staff,DC=corp,DC=example"),
        &[
            ("upn", &[upn]),
            ("display_name", &["A User"]),
            ("enabled", &["true"]),
        ],
    )
}

pub(super) fn group(n: u8, name: &str, members: &[String]) -> Object {
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    obj(
        ObjectKind::Group,
        n,
        &format!("CN={name},OU=Groups,DC=corp,DC=example"),
        &[("members", &members)],
    )
}

pub(super) fn up(o: &Object) -> ObjectChange {
    ObjectChange::Upsert { object: o.clone() }
}

pub(super) fn del(n: u8, kind: ObjectKind) -> ObjectChange {
    ObjectChange::Delete {
        anchor: anchor(n),
        kind,
        why: "deleted in the source".into(),
    }
}

/// Takes `CORP`'s lease for `host` at `t` and starts a run with `soft_match`.
pub(super) async fn run_at(s: &dyn SyncedDirectory, host: &str, soft_match: bool, t: u64) -> u64 {
    let l = s.lease(CORP, host, TTL, at(t)).await.expect("lease");
    assert!(l.granted, "{l:?}");
    s.start_run(
        CORP,
        host,
        RunKind::Delta,
        MatchPolicy { soft_match },
        at(t),
    )
    .await
    .expect("start")
}

/// Everything a caller can read (runs too when `runs`), for before/after comparisons.
pub(super) async fn dump(s: &dyn SyncedDirectory, anchors: &[String], runs: bool) -> String {
    let users = s.list_users(true).await.expect("list");
    let mut out = format!("{users:?}\n");
    for u in &users {
        out += &format!("{:?}\n", s.history(&u.upn).await.expect("history"));
    }
    for a in anchors {
        out += &format!("{:?}\n", s.synced_object(a).await.expect("object"));
        out += &format!("{:?}\n", s.groups_of(a).await.expect("groups"));
    }
    out += &format!("{:?}\n", s.synced_counts().await.expect("counts"));
    if runs {
        out += &format!("{:?}\n", s.runs(None, 100).await.expect("runs"));
    }
    out
}

pub(super) fn refused(r: Result<impl std::fmt::Debug, StoreError>, names: &[&str]) {
    match r {
        Err(StoreError::WrongState(why)) => {
            for n in names {
                assert!(why.contains(n), "{why:?} should name {n}");
            }
        }
        other => panic!("expected a refusal naming {names:?}, got {other:?}"),
    }
}

/// A lease is granted when free, renewed by its holder, refused (naming the holder) to
/// another host until it lapses, then granted to that host; released only by its holder.
/// A run starts only under an unexpired lease.
pub async fn sync_leases_are_exclusive_until_they_lapse(s: &dyn SyncedDirectory) {
    let a = s.lease(CORP, "h1", TTL, at(T0)).await.expect("lease");
    assert_eq!(
        (a.granted, a.holder.as_deref(), a.expires_at),
        (true, Some("h1"), Some(at(T0 + 60)))
    );
    let b = s.lease(CORP, "h2", TTL, at(T0 + 30)).await.expect("lease");
    assert_eq!(
        (b.granted, b.holder.as_deref(), b.expires_at),
        (false, Some("h1"), Some(at(T0 + 60)))
    );
    refused(
        s.start_run(
            CORP,
            "h2",
            RunKind::Full,
            MatchPolicy::default(),
            at(T0 + 30),
        )
        .await,
        &["h1", CORP],
    );
    let renewed = s.lease(CORP, "h1", TTL, at(T0 + 50)).await.expect("renew");
    assert_eq!(
        renewed.expires_at,
        Some(at(T0 + 110)),
        "renewal moves expiry"
    );
    assert!(
        !s.lease(CORP, "h2", TTL, at(T0 + 109))
            .await
            .expect("l")
            .granted
    );
    refused(
        s.start_run(
            CORP,
            "h1",
            RunKind::Full,
            MatchPolicy::default(),
            at(T0 + 110),
        )
        .await,
        &["lapsed"],
    );
    let taken = s
        .lease(CORP, "h2", TTL, at(T0 + 110))
        .await
        .expect("lapsed");
    assert!(taken.granted && taken.holder.as_deref() == Some("h2"));
    let other = s.lease("other", "h1", TTL, at(T0 + 110)).await.expect("l");
    assert!(other.granted, "leases are per connector");
    let not_mine = s.release(CORP, "h1", at(T0 + 111)).await.expect("release");
    assert_eq!(
        (not_mine.granted, not_mine.holder.as_deref()),
        (false, Some("h2"))
    );
    assert!(
        !s.lease(CORP, "h1", TTL, at(T0 + 112))
            .await
            .expect("l")
            .granted
    );
    let gone = s.release(CORP, "h2", at(T0 + 113)).await.expect("release");
    assert_eq!(gone.holder, None);
    assert!(
        s.lease(CORP, "h1", TTL, at(T0 + 114))
            .await
            .expect("l")
            .granted
    );
    let run = s
        .start_run(
            CORP,
            "h1",
            RunKind::Full,
            MatchPolicy::default(),
            at(T0 + 114),
        )
        .await
        .expect("start under the lease");
    assert_eq!(s.runs(Some(CORP), 10).await.expect("runs")[0].run, run);
}

/// A batch of every kind is created (users are sign-in users too, id = anchor, with a
/// history row by `sync:<connector>`); the same batch resent is all `unchanged` and
/// writes no history; counts and run counts add up.
pub async fn a_batch_of_every_kind_applies_once(s: &dyn SyncedDirectory) {
    let run = run_at(s, HOST, false, T0).await;
    let mut alice = user(1, "alice@corp.example");
    alice
        .attrs
        .insert("mail".into(), vec!["alice@corp.example".into()]);
    let batch = [
        up(&alice),
        up(&group(2, "Staff", &[anchor(1)])),
        up(&obj(
            ObjectKind::Contact,
            3,
            "CN=Vendor,DC=corp",
            &[("mail", &["v@x.example"])],
        )),
        up(&obj(
            ObjectKind::Device,
            4,
            "CN=PC1,DC=corp",
            &[("name", &["PC1"])],
        )),
        up(&obj(ObjectKind::Ou, 5, "OU=Staff,DC=corp", &[])),
    ];
    let r = s
        .apply_batch(run, HOST, &batch, at(T0 + 1))
        .await
        .expect("apply");
    assert_eq!((r.counts.added, r.counts.errors), (5, 0), "{r:?}");
    let u = s
        .user_by_upn("ALICE@corp.example")
        .await
        .expect("read")
        .expect("a sign-in user");
    assert_eq!(
        (u.id.as_str(), u.source, u.disabled, u.mail.as_deref()),
        (
            anchor(1).as_str(),
            Source::Ad,
            false,
            Some("alice@corp.example")
        )
    );
    let rec = s
        .synced_object(&anchor(3))
        .await
        .expect("read")
        .expect("contact");
    assert_eq!((rec.connector.as_str(), rec.created_at), (CORP, at(T0 + 1)));
    assert_eq!(
        rec.object,
        obj(
            ObjectKind::Contact,
            3,
            "CN=Vendor,DC=corp",
            &[("mail", &["v@x.example"])]
        )
    );
    assert_eq!(s.groups_of(&anchor(1)).await.expect("groups"), ["Staff"]);
    let h = s.history("alice@corp.example").await.expect("history");
    assert_eq!(
        h.iter()
            .map(|e| (e.action.as_str(), e.actor.as_str()))
            .collect::<Vec<_>>(),
        [("create", "sync:corp")]
    );
    let anchors: Vec<String> = (1..=5).map(anchor).collect();
    let before = dump(s, &anchors, false).await;
    let again = s
        .apply_batch(run, HOST, &batch, at(T0 + 2))
        .await
        .expect("resend");
    assert_eq!(
        (
            again.counts.unchanged,
            again.counts.added,
            again.counts.updated
        ),
        (5, 0, 0)
    );
    assert_eq!(
        dump(s, &anchors, false).await,
        before,
        "a resent batch changes nothing but the run's counts"
    );
    let counts = s.synced_counts().await.expect("counts");
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    let rec = &s.runs(Some(CORP), 1).await.expect("runs")[0];
    assert_eq!((rec.counts.added, rec.counts.unchanged), (5, 5));
}

/// An update and a rename keep the anchor; a delete sends the object (and its sign-in
/// user) to the recycle bin, idempotently; the same anchor sent again reanimates it.
pub async fn updates_renames_deletes_and_reanimation_keep_the_anchor(s: &dyn SyncedDirectory) {
    let run = run_at(s, HOST, false, T0).await;
    let mut u = user(1, "bob@corp.example");
    s.apply_batch(
        run,
        HOST,
        &[up(&u), up(&group(2, "Staff", &[anchor(1)]))],
        at(T0),
    )
    .await
    .expect("create");
    u.attrs
        .insert("upn".into(), vec!["robert@corp.example".into()]);
    u.attrs.insert("enabled".into(), vec!["false".into()]);
    u.dn = "CN=Robert,OU=Staff,DC=corp,DC=example".into();
    let r = s
        .apply_batch(run, HOST, &[up(&u)], at(T0 + 1))
        .await
        .expect("rename");
    assert_eq!(r.counts.updated, 1, "{r:?}");
    assert!(s
        .user_by_upn("bob@corp.example")
        .await
        .expect("read")
        .is_none());
    let renamed = s
        .user_by_upn("robert@corp.example")
        .await
        .expect("read")
        .expect("renamed");
    assert_eq!(
        (renamed.id.as_str(), renamed.disabled),
        (anchor(1).as_str(), true)
    );
    let gone = [del(1, ObjectKind::User), del(2, ObjectKind::Group)];
    let r = s
        .apply_batch(run, HOST, &gone, at(T0 + 2))
        .await
        .expect("delete");
    assert_eq!(r.counts.deleted, 2, "{r:?}");
    assert!(s
        .user_by_upn("robert@corp.example")
        .await
        .expect("read")
        .is_none());
    let binned = s
        .synced_object(&anchor(1))
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(binned.deleted_at, Some(at(T0 + 2)));
    assert!(s.groups_of(&anchor(1)).await.expect("groups").is_empty());
    let r = s
        .apply_batch(run, HOST, &gone, at(T0 + 3))
        .await
        .expect("again");
    assert_eq!(
        (r.counts.unchanged, r.counts.deleted),
        (2, 0),
        "deletes are idempotent"
    );
    let unknown = s
        .apply_batch(run, HOST, &[del(9, ObjectKind::User)], at(T0 + 3))
        .await;
    assert_eq!(unknown.expect("unknown").counts.unchanged, 1);
    let r = s
        .apply_batch(run, HOST, &[up(&u)], at(T0 + 4))
        .await
        .expect("reanimate");
    assert_eq!(r.counts.updated, 1, "{r:?}");
    let back = s
        .user_by_upn("robert@corp.example")
        .await
        .expect("read")
        .expect("back");
    assert_eq!(
        (back.id.as_str(), back.created_at),
        (anchor(1).as_str(), at(T0))
    );
    assert_eq!(
        s.synced_object(&anchor(1))
            .await
            .expect("r")
            .expect("o")
            .deleted_at,
        None
    );
    let h = s.history("robert@corp.example").await.expect("history");
    assert_eq!(
        h.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["create", "update", "delete", "restore"]
    );
    assert!(
        h[2].snapshot.contains("deleted in the source"),
        "{}",
        h[2].snapshot
    );
}

/// Objects that cannot be applied are errors of their own and leave nothing behind
/// (a UPN another user holds — the error names both — an anchor of another kind or
/// connector, a user without a UPN, a group with a member that is not an anchor); the
/// rest of the batch is applied.
pub async fn objects_in_error_leave_nothing_and_the_rest_applies(s: &dyn SyncedDirectory) {
    let run = run_at(s, HOST, false, T0).await;
    s.apply_batch(run, HOST, &[up(&user(1, "carol@corp.example"))], at(T0))
        .await
        .expect("first");
    let mut no_upn = user(4, "x@corp.example");
    no_upn.attrs.remove("upn");
    let batch = [
        up(&user(2, "Carol@corp.example")),
        up(&obj(ObjectKind::Group, 1, "CN=Same anchor,DC=corp", &[])),
        up(&no_upn),
        up(&obj(
            ObjectKind::Group,
            5,
            "CN=Bad,DC=corp",
            &[("members", &["not-an-anchor"])],
        )),
        up(&user(3, "dave@corp.example")),
    ];
    let r = s
        .apply_batch(run, HOST, &batch, at(T0 + 1))
        .await
        .expect("apply");
    assert_eq!(
        (r.counts.added, r.counts.errors, r.errors.len()),
        (1, 4, 4),
        "{r:?}"
    );
    let clash = &r.errors[0];
    assert_eq!(clash.anchor.as_deref(), Some(anchor(2).as_str()));
    for named in ["Carol@corp.example", anchor(1).as_str(), anchor(2).as_str()] {
        assert!(
            clash.error.contains(named),
            "{:?} should name {named}",
            clash.error
        );
    }
    assert!(r.errors[1].error.contains("user"), "{:?}", r.errors[1]);
    assert!(r.errors[2].error.contains("upn"), "{:?}", r.errors[2]);
    assert!(r.errors[3].error.contains("member"), "{:?}", r.errors[3]);
    for n in [2, 4, 5] {
        assert!(
            s.synced_object(&anchor(n)).await.expect("read").is_none(),
            "{n}"
        );
    }
    assert_eq!(
        s.list_users(true).await.expect("list").len(),
        2,
        "carol and dave"
    );
    assert_eq!(
        s.synced_object(&anchor(1))
            .await
            .expect("r")
            .expect("o")
            .object
            .kind,
        ObjectKind::User
    );
    let other = s.lease("other", HOST, TTL, at(T0 + 2)).await.expect("l");
    assert!(other.granted);
    let run2 = s
        .start_run(
            "other",
            HOST,
            RunKind::Full,
            MatchPolicy::default(),
            at(T0 + 2),
        )
        .await
        .expect("start");
    let r = s
        .apply_batch(
            run2,
            HOST,
            &[up(&user(1, "carol@corp.example"))],
            at(T0 + 2),
        )
        .await
        .expect("apply");
    assert!(r.errors[0].error.contains(CORP), "{r:?}");
    let rec = &s.runs(Some(CORP), 1).await.expect("runs")[0];
    assert_eq!((rec.counts.errors, rec.errors.len()), (4, 4), "{rec:?}");
}

/// A batch is refused whole, changing nothing, unless its run is running and its host
/// holds the lease: a host whose lease lapsed and was taken, another host, a finished run.
pub async fn a_batch_without_the_lease_changes_nothing(s: &dyn SyncedDirectory) {
    let run = run_at(s, "h1", false, T0).await;
    s.apply_batch(run, "h1", &[up(&user(1, "erin@corp.example"))], at(T0))
        .await
        .expect("first");
    assert!(
        s.lease(CORP, "h2", TTL, at(T0 + 61))
            .await
            .expect("l")
            .granted
    );
    let anchors: Vec<String> = (1..=2).map(anchor).collect();
    let before = dump(s, &anchors, true).await;
    let batch = [
        up(&user(1, "erin.new@corp.example")),
        up(&user(2, "frank@corp.example")),
        del(1, ObjectKind::User),
    ];
    refused(
        s.apply_batch(run, "h1", &batch, at(T0 + 61)).await,
        &["h2", "nothing"],
    );
    refused(s.apply_batch(run, "h2", &batch, at(T0 + 61)).await, &["h1"]);
    refused(
        s.apply_batch(run + 100, "h2", &batch, at(T0 + 61)).await,
        &["no run"],
    );
    assert_eq!(dump(s, &anchors, true).await, before);
    let report = RunReport {
        status: RunStatus::Failed,
        counts: Default::default(),
        errors: vec![],
        detail: Some("lost the lease".into()),
    };
    s.finish_run(run, "h1", &report, at(T0 + 62))
        .await
        .expect("finish");
    assert!(
        s.lease(CORP, "h1", TTL, at(T0 + 200))
            .await
            .expect("l")
            .granted
    );
    refused(
        s.apply_batch(run, "h1", &batch, at(T0 + 200)).await,
        &["finished"],
    );
    assert!(s
        .user_by_upn("frank@corp.example")
        .await
        .expect("r")
        .is_none());
}
