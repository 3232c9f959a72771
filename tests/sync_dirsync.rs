//! The AD connector's reading of DirSync against the lab's real Samba AD DC, as the
//! least-privilege `svc-sync` account: a full pass then deltas with the returned cookie see
//! a new object, a change of one attribute, and its deletion (a tombstone with the same
//! anchor).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use causeway_sync::ad::dirsync::{self, Cookie, Request};
use causeway_sync::ad::entry::{Entry, Guid};
use causeway_sync::ad::import;
use causeway_sync::ad::map::Kind;
use causeway_sync::space::ConnectorSpace;
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry};

use common::{admin, lab, tls_config, Lab};

async fn as_svc_sync(lab: &Lab) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new()
            .set_config(tls_config(Some(Path::new(lab.get("AD_CA_CERT")))))
            .set_conn_timeout(Duration::from_secs(10)),
        lab.get("AD_LDAPS_URL"),
    )
    .await
    .expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(lab.get("AD_SVC_SYNC_DN"), lab.get("AD_SVC_SYNC_PASSWORD"))
        .await
        .expect("bind round trip")
        .success()
        .expect("svc-sync bind accepted");
    ldap
}

/// One DirSync pass to the end through the connector's own pass: the checked entries and
/// the cookie to continue from.
/// What the tests' passes ask for.
fn attrs() -> Vec<String> {
    [
        "objectGUID",
        "objectSid",
        "objectClass",
        "isDeleted",
        "description",
        "displayName",
        "member",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn pass(ldap: &mut Ldap, base: &str, cookie: Cookie) -> (Vec<Entry>, Cookie) {
    let attrs = attrs();
    let mut out = Vec::new();
    let p = import::pass(
        ldap,
        base,
        &attrs,
        cookie,
        Duration::from_secs(30),
        |page, _| {
            for e in page {
                out.push(e?);
            }
            Ok::<_, causeway_sync::ad::entry::EntryError>(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("DirSync pass: {e}"));
    assert!(p.pages >= 1 && p.entries >= out.len() as u64);
    (out, p.cookie)
}

/// One modify as the administrator, which must succeed.
async fn modify(adm: &mut Ldap, dn: &str, mods: Vec<Mod<&str>>) {
    adm.modify(dn, mods)
        .await
        .expect("modify round trip")
        .success()
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

/// Adds a contact as the administrator (deleting a leftover of an earlier run first) and
/// returns its objectGUID.
async fn add_contact(adm: &mut Ldap, dn: &str, display: &str) -> Guid {
    let _ = adm.delete(dn).await;
    adm.add(
        dn,
        vec![
            ("objectClass", HashSet::from(["contact"])),
            ("displayName", HashSet::from([display])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .expect("contact added");
    object_guid(adm, dn).await
}

async fn object_guid(ldap: &mut Ldap, dn: &str) -> Guid {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["objectGUID"])
        .await
        .expect("search round trip")
        .success()
        .expect("base search");
    let e = SearchEntry::construct(entries.into_iter().next().expect("the object exists"));
    Guid::from_bytes(&e.bin_attrs["objectGUID"][0]).expect("16 bytes")
}

#[tokio::test]
async fn dirsync_sees_an_add_a_change_and_a_delete_with_one_anchor() {
    let lab = lab();
    let base = lab.get("AD_BASE_DN");
    let name = format!("sync-probe-{}", std::process::id());
    let dn = format!("CN={name},CN=Users,{base}");
    let mut adm = admin(lab).await;
    let _ = adm.delete(&dn).await;

    let mut sync = as_svc_sync(lab).await;
    let (_, cookie) = pass(&mut sync, base, Cookie::default()).await;
    assert!(!cookie.is_empty(), "a full pass ends with a cookie");

    let guid = add_contact(&mut adm, &dn, "Sync Probe").await;

    let (added, cookie) = pass(&mut sync, base, cookie).await;
    let e = added
        .iter()
        .find(|e| e.guid == guid)
        .expect("the delta after an add carries the new object");
    assert_eq!(e.dn, dn, "the plain DN, without the extended prefix");
    assert_eq!(e.text("displayname"), Some("Sync Probe"));
    assert!(!e.deleted);

    modify(
        &mut adm,
        &dn,
        vec![Mod::Replace("description", HashSet::from(["changed"]))],
    )
    .await;
    let (changed, cookie) = pass(&mut sync, base, cookie).await;
    let e = changed
        .iter()
        .find(|e| e.guid == guid)
        .expect("the delta after a modify carries the object");
    assert_eq!(e.text("description"), Some("changed"));
    assert!(
        !e.attrs.contains_key("displayname"),
        "a delta carries only what changed: {:?}",
        e.attrs.keys().collect::<Vec<_>>()
    );

    adm.delete(&dn)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let (deleted, _) = pass(&mut sync, base, cookie).await;
    let e = deleted.iter().find(|e| e.guid == guid).expect(
        "the delta after a delete carries the tombstone (svc-sync may list Deleted Objects)",
    );
    assert!(e.deleted, "isDeleted: TRUE");
    assert!(
        e.dn.contains("CN=Deleted Objects"),
        "a tombstone lives in Deleted Objects: {}",
        e.dn
    );
    let _ = sync.unbind().await;
    let _ = adm.unbind().await;
}

#[tokio::test]
async fn a_full_pass_reads_the_domain_with_anchors_and_kinds() {
    let lab = lab();
    let mut sync = as_svc_sync(lab).await;
    let (all, cookie) = pass(&mut sync, lab.get("AD_BASE_DN"), Cookie::default()).await;
    assert!(!cookie.is_empty());
    let mut adm = admin(lab).await;
    for (dn, kind) in [
        (lab.get("AD_ALICE_DN"), Kind::User),
        (lab.get("AD_OLIVIA_DN"), Kind::User),
        (lab.get("AD_GROUP_DN"), Kind::Group),
    ] {
        let guid = object_guid(&mut adm, dn).await;
        let e = all
            .iter()
            .find(|e| e.guid == guid)
            .unwrap_or_else(|| panic!("{dn} is in the full pass"));
        assert!(e.dn.eq_ignore_ascii_case(dn), "{} vs {dn}", e.dn);
        assert!(e
            .sid
            .as_ref()
            .is_some_and(|s| s.as_str().starts_with("S-1-5-21-")));
        assert_eq!(Kind::of(&e.attrs["objectclass"].values), Some(kind), "{dn}");
    }
    let mut guids: Vec<_> = all.iter().map(|e| e.guid).collect();
    guids.sort();
    guids.dedup();
    assert_eq!(guids.len(), all.len(), "each object once in a full pass");
    let _ = sync.unbind().await;
    let _ = adm.unbind().await;
}

#[tokio::test]
async fn a_cookie_the_dc_did_not_issue_is_refused_by_the_dc() {
    let lab = lab();
    let mut sync = as_svc_sync(lab).await;
    let req = Request {
        flags: dirsync::INCREMENTAL_VALUES,
        max_bytes: 1 << 20,
        cookie: Cookie::new(b"not a cookie from this DC".to_vec()).expect("short"),
    };
    let res = sync
        .with_controls(vec![RawControl::from(&req)])
        .search(
            lab.get("AD_BASE_DN"),
            Scope::Subtree,
            "(objectClass=contact)",
            vec!["objectGUID"],
        )
        .await
        .expect("search round trip");
    // The connector falls back to a full import on this answer (sync issue); what matters
    // here is that the DC says no rather than answering as if the cookie were valid.
    assert_ne!(res.1.rc, 0, "the DC accepted a forged cookie: {:?}", res.1);
    let _ = sync.unbind().await;
}

/// Runs a pass from the space's own watermark, merging each page with its cookie.
async fn pass_into(ldap: &mut Ldap, base: &str, space: &ConnectorSpace) -> import::Pass {
    let attrs = attrs();
    let from = space.cookie("lab").expect("watermark");
    import::pass(
        ldap,
        base,
        &attrs,
        from,
        Duration::from_secs(30),
        |page, cookie| {
            let entries: Vec<Entry> = page.into_iter().map(|e| e.expect("checked")).collect();
            space.merge_page("lab", &entries, cookie).map(|_| ())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("pass: {e}"))
}

#[tokio::test]
async fn the_connector_space_follows_the_directory_across_passes_and_restarts() {
    let lab = lab();
    let base = lab.get("AD_BASE_DN");
    let dir = std::env::temp_dir().join(format!("causeway-space-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("space.sqlite");
    let name = format!("space-probe-{}", std::process::id());
    let dn = format!("CN={name},CN=Users,{base}");
    let mut adm = admin(lab).await;
    let _ = adm.delete(&dn).await;
    let guid = add_contact(&mut adm, &dn, "Space Probe").await;
    let group_guid = object_guid(&mut adm, lab.get("AD_GROUP_DN")).await;

    let mut sync = as_svc_sync(lab).await;
    {
        let space = ConnectorSpace::open(&path).expect("open");
        pass_into(&mut sync, base, &space).await;
        let held = space
            .object("lab", &guid)
            .expect("read")
            .expect("the full pass holds it");
        assert_eq!(
            held.attrs["displayname"].values,
            vec![b"Space Probe".to_vec()]
        );
    }

    // Changes while the sync host is down: one attribute, and a group membership.
    modify(
        &mut adm,
        &dn,
        vec![Mod::Replace("description", HashSet::from(["changed"]))],
    )
    .await;
    let dn_ref = dn.as_str();
    modify(
        &mut adm,
        lab.get("AD_GROUP_DN"),
        vec![Mod::Add("member", HashSet::from([dn_ref]))],
    )
    .await;

    // A restart resumes from the stored cookie: the delta merges into the held objects.
    let space = ConnectorSpace::open(&path).expect("reopen");
    let before = space.len("lab").expect("len");
    let p = pass_into(&mut sync, base, &space).await;
    assert!(
        p.entries < before,
        "a resumed pass is a delta ({} entries), not a full import ({before} held)",
        p.entries
    );
    let held = space.object("lab", &guid).expect("read").expect("held");
    assert_eq!(
        held.attrs["displayname"].values,
        vec![b"Space Probe".to_vec()],
        "kept from the full pass"
    );
    assert_eq!(
        held.attrs["description"].values,
        vec![b"changed".to_vec()],
        "merged from the delta"
    );
    let group = space
        .object("lab", &group_guid)
        .expect("read")
        .expect("held");
    let guid_ref = format!("<GUID={guid}>");
    assert!(
        group.attrs["member"]
            .values
            .iter()
            .any(|m| m.starts_with(guid_ref.as_bytes())),
        "the incremental member value was added to the held list, naming the member by GUID: {:?}",
        group.attrs["member"]
            .values
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    );

    modify(
        &mut adm,
        lab.get("AD_GROUP_DN"),
        vec![Mod::Delete("member", HashSet::from([dn_ref]))],
    )
    .await;
    adm.delete(&dn)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    pass_into(&mut sync, base, &space).await;
    assert!(
        space
            .object("lab", &guid)
            .expect("read")
            .expect("held")
            .deleted
    );
    let group = space
        .object("lab", &group_guid)
        .expect("read")
        .expect("held");
    assert!(
        !group
            .attrs
            .get("member")
            .is_some_and(|v| v.values.iter().any(|m| m.starts_with(guid_ref.as_bytes()))),
        "the removed member value left the held list"
    );
    let _ = sync.unbind().await;
    let _ = adm.unbind().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_cookie_the_dc_refuses_falls_back_to_a_full_import_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab();
    let dir = std::env::temp_dir().join(format!("causeway-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let pw = dir.join("ad.pw");
    std::fs::write(&pw, lab.get("AD_SVC_SYNC_PASSWORD")).expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = format!(
        "[sync]\nstate_dir = \"state\"\nendpoints = [\"https://127.0.0.1\"]\n[[connector]]\nname = \"lab\"\nkind = \"ad\"\nservers = [\"{}\"]\nca_file = \"{}\"\nbind_dn = \"{}\"\nbind_password_file = \"ad.pw\"\nbase_dn = \"{}\"\n",
        lab.get("AD_LDAPS_URL"),
        lab.get("AD_CA_CERT"),
        lab.get("AD_SVC_SYNC_DN"),
        lab.get("AD_BASE_DN")
    );
    let cfg =
        causeway_sync::config::SyncConfig::parse(&text, &dir.join("sync.toml")).expect("valid");
    let space = ConnectorSpace::open(&dir.join("space.sqlite")).expect("open");
    // Held from before, but gone from the directory while the cookie was unusable (its
    // tombstone never came): the full import must not keep it live.
    let vanished = causeway_sync::ad::entry::Entry {
        guid: Guid::from_bytes(&[0x77; 16]).expect("16 bytes"),
        sid: None,
        dn: format!("CN=vanished,CN=Users,{}", lab.get("AD_BASE_DN")),
        deleted: false,
        attrs: Default::default(),
    };
    // As after a DC restore: the stored cookie is one the DC will not continue from.
    space
        .merge_page(
            "lab",
            &[vanished],
            &Cookie::new(b"not this DC's cookie".to_vec()).expect("short"),
        )
        .expect("watermark");
    space
        .set_attributes("lab", &cfg.connectors[0].import_attributes())
        .expect("attribute set");
    let report = causeway_sync::run::import(&cfg.connectors[0], &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("import: {e}"));
    assert!(report.cookie_refused && report.full, "{report}");
    assert!(
        report.to_string().contains("the stored cookie was refused"),
        "{report}"
    );
    assert!(report.merged.added >= 15, "{report}");
    assert_ne!(
        space.cookie("lab").expect("cookie").as_bytes(),
        b"not this DC's cookie"
    );
    let held = space
        .object("lab", &Guid::from_bytes(&[0x77; 16]).expect("16 bytes"))
        .expect("read")
        .expect("still held, as a deletion");
    assert!(held.deleted, "what the full import did not find is deleted");
    let _ = std::fs::remove_dir_all(&dir);
}
