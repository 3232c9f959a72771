//! The [`crate::Synced`] contract, continued: soft match and protection, the `groups`
//! claim through nested groups, and the run records.

use causeway_credential::PhsVerifier;

use super::synced::{
    anchor, del, group, refused, run_at, up, user, SyncedDirectory, CORP, HOST, TTL,
};
use super::{at, new, pw, T0};
use crate::{MatchPolicy, ObjectKind, RunKind, RunReport, RunStatus, Source, StoreError};

/// With soft match a new user takes over the unprotected cloud-only user of its UPN, or
/// of its primary SMTP address: same row, id = anchor, source AD, verifier and history
/// kept. Without it, or for a protected account, it is an error and nothing changes.
pub async fn soft_match_takes_over_only_unprotected_cloud_users(s: &dyn SyncedDirectory) {
    let v = PhsVerifier::derive(&pw("Glass-Pw-1"));
    let cloud = s
        .add_cloud_user(&new("gina@corp.example"), &v, "cli", at(T0))
        .await
        .expect("add");
    let mut by_mail = new("hank.cloud@corp.example");
    by_mail.mail = Some("Hank@Corp.example".into());
    s.add_cloud_user(&by_mail, &v, "cli", at(T0))
        .await
        .expect("add");
    let glass = s
        .add_cloud_user(&new("glass@corp.example"), &v, "cli", at(T0))
        .await
        .expect("add");
    let p = s
        .set_protected("glass@corp.example", true, "ops", at(T0))
        .await
        .expect("protect");
    assert!(p.protected);
    let off = run_at(s, HOST, false, T0 + 1).await;
    let r = s
        .apply_batch(off, HOST, &[up(&user(1, "gina@corp.example"))], at(T0 + 1))
        .await
        .expect("apply");
    assert!(r.errors[0].error.contains(cloud.id.as_str()), "{r:?}");
    assert_eq!(
        s.user_by_upn("gina@corp.example")
            .await
            .expect("r")
            .map(|u| u.id),
        Some(cloud.id.clone()),
        "without soft match nothing is taken over"
    );
    let on = run_at(s, HOST, true, T0 + 2).await;
    let mut hank = user(2, "hank@corp.example");
    hank.attrs.insert(
        "proxy_addresses".into(),
        vec![
            "smtp:alias@corp.example".into(),
            "SMTP:hank@corp.example".into(),
        ],
    );
    let batch = [
        up(&user(1, "gina@corp.example")),
        up(&hank),
        up(&user(3, "glass@corp.example")),
    ];
    let r = s
        .apply_batch(on, HOST, &batch, at(T0 + 2))
        .await
        .expect("apply");
    assert_eq!((r.counts.updated, r.counts.errors), (2, 1), "{r:?}");
    assert!(r.errors[0].error.contains("protected"), "{r:?}");
    assert!(r.errors[0].error.contains(glass.id.as_str()), "{r:?}");
    let gina = s
        .user_by_upn("gina@corp.example")
        .await
        .expect("r")
        .expect("taken");
    assert_eq!(
        (gina.id.as_str(), gina.source),
        (anchor(1).as_str(), Source::Ad)
    );
    assert!(
        s.user_by_id(&cloud.id).await.expect("r").is_none(),
        "one row, not two"
    );
    let (_, verifier) = s
        .verifier_of("gina@corp.example")
        .await
        .expect("r")
        .expect("u");
    assert!(
        verifier.is_some(),
        "the cloud password keeps working until hash sync"
    );
    assert_eq!(
        s.history("gina@corp.example")
            .await
            .expect("h")
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["create", "soft-match"]
    );
    let hank = s
        .user_by_upn("hank@corp.example")
        .await
        .expect("r")
        .expect("by mail");
    assert_eq!(hank.id.as_str(), anchor(2));
    assert!(s
        .user_by_upn("hank.cloud@corp.example")
        .await
        .expect("r")
        .is_none());
    let kept = s
        .user_by_upn("glass@corp.example")
        .await
        .expect("r")
        .expect("kept");
    assert_eq!((kept.id, kept.source), (glass.id, Source::Cloud));
    refused(
        s.set_protected("gina@corp.example", true, "ops", at(T0 + 3))
            .await,
        &["AD"],
    );
    s.set_protected("glass@corp.example", false, "ops", at(T0 + 3))
        .await
        .expect("unprotect");
    let r = s
        .apply_batch(on, HOST, &[up(&user(3, "glass@corp.example"))], at(T0 + 4))
        .await
        .expect("apply");
    assert_eq!(r.counts.updated, 1, "unprotected, it is matched: {r:?}");
}

/// `groups_of` follows nested groups upwards, through live groups only, ends cycles, and
/// names groups by `name`, else `display_name`, else the first RDN value; sorted.
pub async fn groups_of_follows_nesting_and_ends_cycles(s: &dyn SyncedDirectory) {
    let run = run_at(s, HOST, false, T0).await;
    let mut named = group(13, "CN-Name", &[anchor(12)]);
    named
        .attrs
        .insert("display_name".into(), vec!["Alpha".into()]);
    let batch = [
        up(&user(1, "ivy@corp.example")),
        up(&group(11, "Direct", &[anchor(1)])),
        up(&group(12, "Middle", &[anchor(11)])),
        up(&named),
        // 11 is in 14 is in 11: a cycle.
        up(&group(14, "Cycle", &[anchor(11), anchor(14)])),
        up(&group(11, "Direct", &[anchor(1), anchor(14)])),
        up(&group(15, "Gone", &[anchor(1)])),
        up(&group(16, "Unrelated", &[])),
    ];
    let r = s
        .apply_batch(run, HOST, &batch, at(T0))
        .await
        .expect("apply");
    assert_eq!(r.counts.errors, 0, "{r:?}");
    s.apply_batch(run, HOST, &[del(15, ObjectKind::Group)], at(T0 + 1))
        .await
        .expect("delete");
    assert_eq!(
        s.groups_of(&anchor(1)).await.expect("groups"),
        ["Alpha", "Cycle", "Direct", "Middle"]
    );
    assert_eq!(s.groups_of(&anchor(12)).await.expect("groups"), ["Alpha"]);
    s.apply_batch(run, HOST, &[up(&group(11, "Direct", &[]))], at(T0 + 2))
        .await
        .expect("membership removed");
    assert!(s.groups_of(&anchor(1)).await.expect("groups").is_empty());
}

/// Runs are listed newest first, per connector or all, limited; finishing records the
/// status, adds only the report's `quarantined` and `errors` to the batches' counts and
/// its errors to theirs, once; only the run's host may finish it, once.
pub async fn runs_are_listed_newest_first_with_their_counts(s: &dyn SyncedDirectory) {
    let first = run_at(s, HOST, false, T0).await;
    s.apply_batch(first, HOST, &[up(&user(1, "jo@corp.example"))], at(T0))
        .await
        .expect("apply");
    let bad = s
        .apply_batch(first, HOST, &[up(&user(2, "jo@corp.example"))], at(T0))
        .await
        .expect("apply");
    assert_eq!(
        s.lease("other", "h9", TTL, at(T0))
            .await
            .map(|l| l.granted)
            .ok(),
        Some(true)
    );
    let elsewhere = s
        .start_run(
            "other",
            "h9",
            RunKind::Full,
            MatchPolicy::default(),
            at(T0 + 1),
        )
        .await
        .expect("start");
    let second = run_at(s, HOST, false, T0 + 2).await;
    assert!(first < elsewhere && elsewhere < second);
    let all: Vec<u64> = s
        .runs(None, 10)
        .await
        .expect("runs")
        .iter()
        .map(|r| r.run)
        .collect();
    assert_eq!(all, [second, elsewhere, first]);
    let corp: Vec<u64> = s
        .runs(Some(CORP), 1)
        .await
        .expect("runs")
        .iter()
        .map(|r| r.run)
        .collect();
    assert_eq!(corp, [second]);
    let mut report = RunReport {
        status: RunStatus::Succeeded,
        counts: Default::default(),
        errors: bad.errors.clone(),
        detail: None,
    };
    report.counts.added = 99;
    report.counts.quarantined = 2;
    report.counts.errors = 1;
    refused(
        s.finish_run(first, "h9", &report, at(T0 + 3)).await,
        &[HOST, "h9"],
    );
    let rec = s
        .finish_run(first, HOST, &report, at(T0 + 3))
        .await
        .expect("finish");
    assert_eq!(
        (rec.status, rec.finished_at, rec.started_at),
        (RunStatus::Succeeded, Some(T0 + 3), T0)
    );
    assert_eq!(
        (
            rec.counts.added,
            rec.counts.quarantined,
            rec.counts.errors,
            rec.errors.len()
        ),
        (1, 2, 2, 1),
        "the batches' applied counts are kept; a repeated error is listed once: {rec:?}"
    );
    refused(
        s.finish_run(first, HOST, &report, at(T0 + 4)).await,
        &["already"],
    );
    assert_eq!(s.runs(None, 10).await.expect("runs")[2], rec);
}

/// Protecting a cloud-only user is a change with its history row, shown on the record;
/// an unknown user is not found.
pub async fn protection_is_recorded_and_shown(s: &dyn SyncedDirectory) {
    let v = PhsVerifier::derive(&pw("Glass-Pw-1"));
    let u = s
        .add_cloud_user(&new("keep@corp.example"), &v, "cli", at(T0))
        .await
        .expect("add");
    assert!(!u.protected, "not protected by default");
    let p = s
        .set_protected("KEEP@corp.example", true, "ops", at(T0 + 1))
        .await
        .expect("protect");
    assert_eq!((p.protected, p.updated_at), (true, at(T0 + 1)));
    let read = s
        .user_by_upn("keep@corp.example")
        .await
        .expect("r")
        .expect("u");
    assert!(read.protected);
    s.set_protected("keep@corp.example", false, "ops", at(T0 + 2))
        .await
        .expect("unprotect");
    let h = s.history("keep@corp.example").await.expect("history");
    assert_eq!(
        h.iter()
            .map(|e| (e.action.as_str(), e.actor.as_str()))
            .collect::<Vec<_>>(),
        [("create", "cli"), ("protect", "ops"), ("unprotect", "ops")]
    );
    assert!(
        h[1].snapshot.contains("\"protected\":true"),
        "{}",
        h[1].snapshot
    );
    assert!(matches!(
        s.set_protected("nobody@corp.example", true, "ops", at(T0))
            .await,
        Err(StoreError::NotFound(_))
    ));
}
