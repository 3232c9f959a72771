//! `causeway sync`'s safety mechanisms end to end, against the lab's Samba AD DC and a
//! real endpoint: `kill -9` mid-export, two hosts and one lease, the deletion threshold
//! and approval, staging, dry runs and on-demand sync, quarantine and soft match.

mod common;

use std::collections::HashSet;

use causeway_store::{History as _, Synced as _, Users as _};
use common::sync_host::{
    delete_tree, endpoint, modify, shows_display_name, until, Settings, SyncHost, TestOu,
};
use common::{admin, lab};
use ldap3::Mod;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_export_then_a_restart_loses_and_duplicates_nothing() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "k9").await;
    let t = &ou.tag;
    // Enough one-object batches that the export is still going when the log shows three.
    let n = 120;
    let mut upns = Vec::new();
    for i in 0..n {
        ou.user(&mut adm, &format!("k{i}{t}"), None).await;
        upns.push(format!("k{i}{t}@lab.causeway.test"));
    }
    let (ep, store) = endpoint("sync-kill", "60s");
    let mut host = SyncHost::new(
        &ep,
        "a",
        &ou,
        &Settings {
            batch_size: Some(1),
            ..Settings::default()
        },
    );
    host.register(&ep, "sync-kill");
    host.start();
    until(
        60,
        "three acknowledged batches",
        || host.logs(),
        || async { host.logs().matches("batch acknowledged").count() >= 3 },
    )
    .await;
    host.kill();
    let mut before = 0;
    for u in &upns {
        before += usize::from(store.user_by_upn(u).await.expect("read").is_some());
    }
    assert!(
        before < n,
        "killed mid-export: {before} of {n} were already there"
    );
    host.once(&ep);
    for u in &upns {
        assert!(
            store.user_by_upn(u).await.expect("read").is_some(),
            "{u} exported"
        );
        let h = store.history(u).await.expect("history");
        assert_eq!(h.len(), 1, "{u} was created exactly once: {h:?}");
    }
    // The endpoint's run records add up: every object added once over the two runs.
    let runs = store.runs(Some("lab-ad"), 10).await.expect("runs");
    let added: u64 = runs.iter().map(|r| r.counts.added).sum();
    assert_eq!(
        added,
        n as u64 + 1,
        "{n} users and the OU, once each: {runs:?}"
    );
    delete_tree(&mut adm, &ou.dn).await;
}

/// The first full import sends users while it reads: with more in-scope users than one
/// page of its paged read holds (500), a batch is acknowledged before the import pass
/// ends. At the end each user is there once, and the plan after the import re-sent none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_full_import_exports_users_while_it_reads_and_resends_none() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "ew").await;
    let t = &ou.tag;
    let n = 520;
    let mut upns = Vec::new();
    for i in 0..n {
        ou.user(&mut adm, &format!("e{i}{t}"), None).await;
        upns.push(format!("e{i}{t}@lab.causeway.test"));
    }
    let (ep, store) = endpoint("sync-early", "60s");
    let mut host = SyncHost::new(
        &ep,
        "a",
        &ou,
        &Settings {
            batch_size: Some(10),
            ..Settings::default()
        },
    );
    host.register(&ep, "sync-early");
    host.start();
    until(
        300,
        "the first run finished",
        || host.logs(),
        || async { host.logs().contains("timing: finish run") },
    )
    .await;
    let logs = host.logs();
    host.kill();
    let at = |what: &str| {
        logs.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{logs}"))
    };
    let (acked, imported) = (at("batch acknowledged"), at("timing: import pass"));
    assert!(
        acked < imported,
        "a batch was acknowledged while the import read:\n{logs}"
    );
    for u in &upns {
        let h = store.history(u).await.expect("history");
        assert_eq!(h.len(), 1, "{u} was created exactly once: {h:?}");
    }
    let runs = store.runs(Some("lab-ad"), 10).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        runs[0].counts.added,
        n as u64 + 1,
        "the users and the OU: {runs:?}"
    );
    assert_eq!(
        runs[0].counts.updated, 0,
        "no user was sent twice: {runs:?}"
    );
    delete_tree(&mut adm, &ou.dn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sync_hosts_share_one_lease_and_the_standby_takes_over() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "aa").await;
    let t = &ou.tag;
    let u = ou.user(&mut adm, &format!("aa{t}"), None).await;
    let upn = format!("aa{t}@lab.causeway.test");
    let (ep, store) = endpoint("sync-lease", "5s");
    let mut a = SyncHost::new(&ep, "a", &ou, &Settings::default());
    let mut b = SyncHost::new(&ep, "b", &ou, &Settings::default());
    a.register(&ep, "sync-a");
    b.register(&ep, "sync-b");
    a.start();
    until(
        60,
        "host a exports",
        || a.logs(),
        || async { store.user_by_upn(&upn).await.ok().flatten().is_some() },
    )
    .await;
    b.start();
    until(
        60,
        "host b waits as a standby",
        || b.logs(),
        || async { b.logs().contains("standby") },
    )
    .await;
    a.kill();
    modify(
        &mut adm,
        &u,
        vec![Mod::Replace("displayName", HashSet::from(["Taken Over"]))],
    )
    .await;
    until(
        60,
        "host b takes over and exports the change",
        || b.logs(),
        || shows_display_name(&store, &upn, "Taken Over"),
    )
    .await;
    // The round that exported says so once it has finished (after the batch's answer).
    until(
        30,
        "host b says it took over",
        || b.logs(),
        || async { b.logs().contains("lease granted; taking over") },
    )
    .await;
    let runs = store.runs(Some("lab-ad"), 10).await.expect("runs");
    let hosts: HashSet<&str> = runs.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(
        hosts.len(),
        2,
        "both hosts ran, one after the other: {runs:?}"
    );
    b.kill();
    delete_tree(&mut adm, &ou.dn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_threshold_stops_a_run_until_it_is_approved() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "th").await;
    let t = &ou.tag;
    for i in 0..3 {
        ou.user(&mut adm, &format!("t{i}{t}"), None).await;
    }
    let (ep, store) = endpoint("sync-threshold", "60s");
    let s = Settings {
        delete_threshold: Some(2),
        ..Settings::default()
    };
    let host = SyncHost::new(&ep, "a", &ou, &s);
    host.register(&ep, "sync-threshold");
    host.once(&ep);
    // A filter change that takes every user out of scope: three deletions, over the limit.
    host.configure(
        &ep,
        &ou,
        &Settings {
            filter: Some("(!(objectClass=user))".into()),
            ..s.clone()
        },
    );
    let (ok, out, err) = host.sync(&["run", "--once"], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("STOPPED: 3 deletions"), "{out}");
    for i in 0..3 {
        let upn = format!("t{i}{t}@lab.causeway.test");
        assert!(
            store.user_by_upn(&upn).await.expect("read").is_some(),
            "nothing deleted yet"
        );
    }
    let run: u64 = out
        .split("run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a run number in {out}"));
    let (_, runs, _) = host.sync(&["runs"], &[]);
    assert!(runs.contains("stopped"), "{runs}");
    assert!(runs.contains("would delete: out of scope"), "{runs}");
    let (ok, approved, err) = host.sync(&["approve", &run.to_string()], &[]);
    assert!(ok, "{approved}{err}");
    let out = host.once(&ep);
    assert!(out.contains("3 deleted"), "{out}");
    assert!(store
        .user_by_upn(&format!("t0{t}@lab.causeway.test"))
        .await
        .expect("read")
        .is_none());
    delete_tree(&mut adm, &ou.dn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_dry_run_and_on_demand() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "st").await;
    let t = &ou.tag;
    ou.user(&mut adm, &format!("st{t}"), None).await;
    let upn = format!("st{t}@lab.causeway.test");
    let (ep, store) = endpoint("sync-staging", "60s");
    let staging = Settings {
        staging: true,
        ..Settings::default()
    };
    let host = SyncHost::new(&ep, "a", &ou, &staging);
    host.register(&ep, "sync-staging");
    let out = host.once(&ep);
    assert!(out.contains("staging, nothing exported"), "{out}");
    assert!(store.user_by_upn(&upn).await.expect("read").is_none());
    let (ok, status, err) = host.sync(&["status"], &[]);
    assert!(ok, "{status}{err}");
    assert!(status.contains("2 to add"), "the OU and the user: {status}");

    host.configure(&ep, &ou, &Settings::default());
    let (ok, dry, err) = host.sync(&["run", "--dry-run"], &[]);
    assert!(ok, "{dry}{err}");
    assert!(dry.contains(&format!("+ user CN=st{t}")), "{dry}");
    assert!(store.user_by_upn(&upn).await.expect("read").is_none());

    let (ok, one, err) = host.sync(&["object", &upn], &[]);
    assert!(ok, "{one}{err}");
    assert!(one.contains("export: sent as run"), "{one}");
    assert!(store.user_by_upn(&upn).await.expect("read").is_some());
    delete_tree(&mut adm, &ou.dn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_mail_is_quarantined_and_heals_and_soft_match_needs_consent() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "dq").await;
    let t = &ou.tag;
    let shared = format!("shared{t}@lab.causeway.test");
    ou.user(&mut adm, &format!("da{t}"), Some(&shared)).await;
    let db = ou.user(&mut adm, &format!("db{t}"), Some(&shared)).await;
    let (ep, store) = endpoint("sync-quarantine", "60s");
    // A cloud-only account with the UPN of a user about to be synced.
    let sm = format!("sm{t}@lab.causeway.test");
    ep.cli(
        &["users", "add", "--upn", &sm, "--password-stdin"],
        Some("Cloud-Only-Pw-9\n"),
    );
    let host = SyncHost::new(&ep, "a", &ou, &Settings::default());
    host.register(&ep, "sync-quarantine");
    host.once(&ep);
    let (a, b) = (
        store
            .user_by_upn(&format!("da{t}@lab.causeway.test"))
            .await
            .expect("read"),
        store
            .user_by_upn(&format!("db{t}@lab.causeway.test"))
            .await
            .expect("read"),
    );
    assert_eq!(
        usize::from(a.is_some()) + usize::from(b.is_some()),
        1,
        "one of the two holds the mail address, the other is quarantined"
    );
    let (_, runs, _) = host.sync(&["runs"], &[]);
    assert!(runs.contains("quarantined: mail"), "{runs}");
    modify(
        &mut adm,
        &db,
        vec![Mod::Replace(
            "mail",
            HashSet::from([format!("fixed{t}@lab.causeway.test").as_str()]),
        )],
    )
    .await;
    host.once(&ep);
    assert!(store
        .user_by_upn(&format!("da{t}@lab.causeway.test"))
        .await
        .expect("read")
        .is_some());
    assert!(store
        .user_by_upn(&format!("db{t}@lab.causeway.test"))
        .await
        .expect("read")
        .is_some());

    // Soft match: refused without consent, and the cloud account is left alone …
    ou.user(&mut adm, &format!("sm{t}"), None).await;
    host.once(&ep);
    let cloud = store
        .user_by_upn(&sm)
        .await
        .expect("read")
        .expect("still there");
    assert_eq!(cloud.source, causeway_store::Source::Cloud);
    let (_, runs, _) = host.sync(&["runs"], &[]);
    assert!(runs.contains(&sm), "the run names the clash: {runs}");
    // … and with soft_match the AD user takes the account over.
    host.configure(
        &ep,
        &ou,
        &Settings {
            soft_match: true,
            ..Settings::default()
        },
    );
    host.once(&ep);
    let merged = store.user_by_upn(&sm).await.expect("read").expect("kept");
    assert_eq!(merged.source, causeway_store::Source::Ad);
    assert_ne!(merged.id, cloud.id, "now anchored on the AD object");
    delete_tree(&mut adm, &ou.dn).await;
}
