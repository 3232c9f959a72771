//! `causeway sync` end to end: the lab's real Samba AD DC → a real `causeway sync`
//! process (registered with a one-time token) → the ingestion API of a real
//! `causeway serve` → its directory store. Each test makes its own OU in AD, scopes its
//! connector to it, changes it the way an administrator does, and checks what the
//! endpoint holds afterwards: objects and their anchors, history rows, run records,
//! change notification, `ms-DS-ConsistencyGuid`, enrollment refusals. The safety
//! mechanisms are in `sync_safety.rs`.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use base64::Engine as _;
use causeway_store::{History as _, Synced as _, Users as _};
use common::sync_host::{
    anchor_of, assert_absent, delete_tree, endpoint, modify, shows_display_name, until, Settings,
    SyncHost, TestOu,
};
use common::{admin, lab, Lab};
use ldap3::{Mod, Scope, SearchEntry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_objects_follow_the_directory_through_every_change() {
    let lab: &Lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "e2e").await;
    let t = &ou.tag;
    let u1 = ou.user(&mut adm, &format!("su1{t}"), None).await;
    let u2 = ou.user(&mut adm, &format!("su2{t}"), None).await;
    let g1 = ou.group(&mut adm, &format!("sg1{t}"), &[&u1]).await;
    let _g2 = ou.group(&mut adm, &format!("sg2{t}"), &[&g1]).await;
    let c1 = ou.contact(&mut adm, &format!("sc1{t}")).await;
    let (a1, a2, ag1, ac1) = (
        anchor_of(&mut adm, &u1).await,
        anchor_of(&mut adm, &u2).await,
        anchor_of(&mut adm, &g1).await,
        anchor_of(&mut adm, &c1).await,
    );
    let upn1 = format!("su1{t}@lab.causeway.test");
    let upn2 = format!("su2{t}@lab.causeway.test");

    let (ep, store) = endpoint("sync-e2e", "60s");
    let host = SyncHost::new(&ep, "a", &ou, &Settings::default());
    let token = host.register(&ep, "sync-e2e");
    let first = host.once(&ep);
    assert!(first.contains("exported: "), "{first}");

    // Users are sign-in users, anchored on objectGUID; groups nest for the claim.
    let u = store
        .user_by_upn(&upn1)
        .await
        .expect("read")
        .expect("synced");
    assert_eq!(u.id.as_str(), a1);
    assert_eq!(
        u.display_name.as_deref(),
        Some(format!("Test su1{t}").as_str())
    );
    assert!(!u.disabled);
    assert!(store.user_by_upn(&upn2).await.expect("read").is_some());
    assert_eq!(
        store.groups_of(&a1).await.expect("groups"),
        vec![format!("sg1{t}"), format!("sg2{t}")],
        "direct and nested groups"
    );
    let c = store
        .synced_object(&ac1)
        .await
        .expect("read")
        .expect("contact synced");
    assert_eq!(c.object.kind.as_str(), "contact");
    assert!(store.synced_object(&ag1).await.expect("read").is_some());
    let created = store.history(&upn1).await.expect("history");
    assert_eq!(created.len(), 1, "{created:?}");

    // Nothing changed: a second round changes nothing and writes no history.
    let again = host.once(&ep);
    assert!(again.contains("0 added, 0 updated, 0 deleted"), "{again}");
    assert_eq!(store.history(&upn1).await.expect("history").len(), 1);

    // An attribute change, then a rename: the same anchor, updated.
    modify(
        &mut adm,
        &u1,
        vec![Mod::Replace(
            "displayName",
            HashSet::from(["Renamed Person"]),
        )],
    )
    .await;
    let renamed = format!("CN=su1r{t},{}", ou.dn);
    adm.modifydn(&u1, &format!("CN=su1r{t}"), true, None)
        .await
        .expect("modrdn round trip")
        .success()
        .expect("renamed");
    let out = host.once(&ep);
    assert!(out.contains("1 updated"), "{out}");
    let u = store
        .user_by_id(&u.id)
        .await
        .expect("read")
        .expect("same id");
    assert_eq!(u.display_name.as_deref(), Some("Renamed Person"));
    let o = store.synced_object(&a1).await.expect("read").expect("held");
    assert!(
        o.object.dn.eq_ignore_ascii_case(&renamed),
        "{}",
        o.object.dn
    );

    // Membership removed, then added back (DirSync sends only the changed value).
    let g1_now = format!("CN=sg1{t},{}", ou.dn);
    modify(
        &mut adm,
        &g1_now,
        vec![Mod::Delete("member", HashSet::from([renamed.as_str()]))],
    )
    .await;
    let out = host.once(&ep);
    assert!(
        store.groups_of(&a1).await.expect("groups").is_empty(),
        "{out}\n{:?}",
        store.synced_object(&ag1).await
    );
    modify(
        &mut adm,
        &g1_now,
        vec![Mod::Add("member", HashSet::from([renamed.as_str()]))],
    )
    .await;
    host.once(&ep);
    assert_eq!(store.groups_of(&a1).await.expect("groups").len(), 2);

    // Moving out of scope is a deletion at the endpoint (to the recycle bin).
    let moved = format!("CN=su2{t},CN=Users,{}", lab.get("AD_BASE_DN"));
    let _ = adm.delete(&moved).await;
    adm.modifydn(
        &u2,
        &format!("CN=su2{t}"),
        true,
        Some(&format!("CN=Users,{}", lab.get("AD_BASE_DN"))),
    )
    .await
    .expect("move round trip")
    .success()
    .expect("moved");
    // Deleting in AD is one too.
    adm.delete(&c1)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let out = host.once(&ep);
    assert!(
        out.contains("2 deleted"),
        "{out}\nthe plan now: {:?}\nu2: {:?}\nc1: {:?}",
        host.sync(&["plan"], &[]),
        store.synced_object(&a2).await,
        store.synced_object(&ac1).await,
    );
    assert!(store.user_by_upn(&upn2).await.expect("read").is_none());
    let gone = store
        .user_by_id(&causeway_store::ImmutableId::from_guid_bytes(
            base64::engine::general_purpose::STANDARD
                .decode(&a2)
                .expect("b64")
                .try_into()
                .expect("16"),
        ))
        .await
        .expect("read")
        .expect("in the recycle bin");
    assert!(gone.deleted_at.is_some());
    let c = store
        .synced_object(&ac1)
        .await
        .expect("read")
        .expect("kept");
    assert!(c.deleted_at.is_some(), "the contact is in the recycle bin");

    // Restored in AD (tombstone reanimation, with the show-deleted control): the same
    // anchor comes back at the endpoint, out of its recycle bin.
    let guid_text = {
        let b = base64::engine::general_purpose::STANDARD
            .decode(&ac1)
            .expect("b64");
        causeway_sync::ad::entry::Guid::from_bytes(&b)
            .expect("16 bytes")
            .to_string()
    };
    let show_deleted = ldap3::controls::RawControl {
        ctype: "1.2.840.113556.1.4.417".into(),
        crit: true,
        val: None,
    };
    let (found, _) = adm
        .with_controls(vec![show_deleted.clone()])
        .search(
            &format!("<GUID={guid_text}>"),
            Scope::Base,
            "(objectClass=*)",
            vec!["1.1"],
        )
        .await
        .expect("search round trip")
        .success()
        .expect("the tombstone is there");
    let tombstone = SearchEntry::construct(found.into_iter().next().expect("one")).dn;
    let back = format!("CN=sc1{t},{}", ou.dn);
    adm.with_controls(vec![show_deleted])
        .modify(
            &tombstone,
            vec![
                Mod::Delete("isDeleted", HashSet::new()),
                Mod::Replace("distinguishedName", HashSet::from([back.as_str()])),
            ],
        )
        .await
        .expect("modify round trip")
        .success()
        .unwrap_or_else(|e| panic!("reanimate {tombstone}: {e}"));
    let out = host.once(&ep);
    let c = store
        .synced_object(&ac1)
        .await
        .expect("read")
        .expect("kept");
    assert!(
        c.deleted_at.is_none(),
        "restored at the endpoint too: {out}"
    );
    assert_eq!(c.object.anchor, ac1, "under the same anchor");

    // The runs are recorded with their counts.
    let (ok, runs, _) = host.sync(&["runs"], &[]);
    assert!(ok, "{runs}");
    assert!(runs.contains("full succeeded"), "{runs}");
    assert!(runs.contains("delta succeeded"), "{runs}");

    // Nothing secret in any output or log.
    let everything = format!(
        "{first}{again}{out}{runs}{}{}",
        ep.logs(),
        std::fs::read_to_string(host.config()).unwrap_or_default()
    );
    assert_absent(
        "outputs and logs",
        &everything,
        &[
            lab.get("AD_SVC_SYNC_PASSWORD"),
            token.split('.').nth(1).unwrap_or("x"),
        ],
    );
    let _ = adm.delete(&moved).await;
    delete_tree(&mut adm, &ou.dn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_the_endpoint_within_seconds_by_change_notification() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "cn").await;
    let t = &ou.tag;
    let u = ou.user(&mut adm, &format!("nu{t}"), None).await;
    let upn = format!("nu{t}@lab.causeway.test");
    let (ep, store) = endpoint("sync-notify", "60s");
    let mut host = SyncHost::new(&ep, "a", &ou, &Settings::default());
    host.register(&ep, "sync-notify");
    host.start();
    until(
        60,
        "the first export",
        || host.logs(),
        || async { store.user_by_upn(&upn).await.ok().flatten().is_some() },
    )
    .await;
    until(
        30,
        "the notification search",
        || host.logs(),
        || async { host.logs().contains("watching for change notifications") },
    )
    .await;
    // The poll interval is an hour: only the notification can bring this in.
    let changed = Instant::now();
    modify(
        &mut adm,
        &u,
        vec![Mod::Replace("displayName", HashSet::from(["Notified"]))],
    )
    .await;
    until(
        20,
        "the change at the endpoint",
        || host.logs(),
        || shows_display_name(&store, &upn, "Notified"),
    )
    .await;
    eprintln!(
        "change visible at the endpoint after {:?}",
        changed.elapsed()
    );
    host.kill();
    delete_tree(&mut adm, &ou.dn).await;
}

#[test]
fn register_refuses_an_agent_token_and_a_bad_one_without_echoing_it() {
    let (ep, _store) = endpoint("sync-register", "60s");
    let ou = TestOu {
        dn: format!("OU=unused,{}", lab().get("AD_BASE_DN")),
        tag: String::new(),
    };
    let host = SyncHost::new(&ep, "a", &ou, &Settings::default());
    let agent_token = ep.cli(&["certs", "token", "--ttl", "10m"], None);
    let (ok, out, err) = host.sync(
        &["register"],
        &[("CAUSEWAY_SYNC_TOKEN", agent_token.trim())],
    );
    assert!(!ok, "an agent's token does not enroll a sync host: {out}");
    assert_absent(
        "register output",
        &format!("{out}{err}"),
        &[agent_token.trim()],
    );
    let (ok, _, err) = host.sync(&["register"], &[("CAUSEWAY_SYNC_TOKEN", "cwt1.nope")]);
    assert!(!ok);
    assert!(err.contains("malformed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_consistency_guid_copies_object_guid_and_keeps_the_anchor() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "cg").await;
    let t = &ou.tag;
    let u = ou.user(&mut adm, &format!("cg{t}"), None).await;
    let anchor = anchor_of(&mut adm, &u).await;
    let (ep, store) = endpoint("sync-consistency", "60s");
    let s = Settings {
        as_admin: true,
        write_consistency_guid: true,
        ..Settings::default()
    };
    let host = SyncHost::new(&ep, "a", &ou, &s);
    host.register(&ep, "sync-consistency");
    host.once(&ep);
    let (entries, _) = adm
        .search(
            &u,
            Scope::Base,
            "(objectClass=*)",
            vec!["mS-DS-ConsistencyGuid"],
        )
        .await
        .expect("search round trip")
        .success()
        .expect("base search");
    let e = SearchEntry::construct(entries.into_iter().next().expect("exists"));
    let written = e
        .bin_attrs
        .get("mS-DS-ConsistencyGuid")
        .and_then(|v| v.first())
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
    assert_eq!(
        written.as_deref(),
        Some(anchor.as_str()),
        "objectGUID copied into it"
    );
    // The next round reads the new value and changes nothing: the anchor was already it.
    let out = host.once(&ep);
    assert!(out.contains("0 added, 0 updated, 0 deleted"), "{out}");
    let user = store
        .user_by_upn(&format!("cg{t}@lab.causeway.test"))
        .await
        .expect("read")
        .expect("synced");
    assert_eq!(user.id.as_str(), anchor);
    delete_tree(&mut adm, &ou.dn).await;
}
