//! The OpenLDAP connector's import against the lab's real slapd, as the sync account over
//! LDAPS: a full RFC 4533 pass holds alice under her entryUUID; passes from the stored
//! cookie then see exactly an added entry, its change, and its deletion (a tombstone with
//! the same anchor, inferred from slapd's present phase); `causeway sync import` from the
//! stored cookie reports a delta.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use causeway_sync::config::SyncConfig;
use causeway_sync::openldap::uuid_anchor;
use causeway_sync::run::import;
use causeway_sync::space::ConnectorSpace;
use ldap3::{Ldap, Mod, Scope, SearchEntry};

use common::lab;
use common::slapd::as_admin;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An entry's entryUUID, as the anchor's text.
async fn entry_uuid(ldap: &mut Ldap, dn: &str) -> String {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"])
        .await
        .expect("search round trip")
        .success()
        .expect("base search");
    let e = SearchEntry::construct(entries.into_iter().next().expect("the entry exists"));
    e.attrs["entryUUID"][0].clone()
}

#[tokio::test]
async fn content_sync_full_then_add_change_delete_from_the_cookie() {
    let lab = lab();
    let d = std::env::temp_dir().join(format!("causeway-sync-ol-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    let d = Dir(d);
    let pw = d.0.join("ldap.pw");
    std::fs::write(&pw, format!("{}\n", lab.get("SLAPD_SYNC_PASSWORD"))).expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg_path = d.0.join("sync.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"
[sync]
state_dir = "{state}"
endpoints = ["https://127.0.0.1:8443"]

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{dn}"
bind_password_file = "{pw}"
base_dn = "{base}"
"#,
            state = d.0.display(),
            ldaps = lab
                .get("SLAPD_LDAPS_URL")
                .replace("127.0.0.1", lab.get("SLAPD_TLS_SERVER_NAME")),
            ca = lab.get("SLAPD_CA_CERT"),
            dn = lab.get("SLAPD_SYNC_DN"),
            pw = pw.display(),
            base = lab.get("SLAPD_BASE_DN"),
        ),
    )
    .expect("write config");
    let cfg = SyncConfig::load(&cfg_path).unwrap_or_else(|e| panic!("config: {e}"));
    let c = &cfg.connectors[0];
    let space = ConnectorSpace::open(&d.0.join("connector-space.sqlite")).expect("space");
    let mut admin = as_admin(lab).await;

    // A leftover of an interrupted run goes before the full pass, so it is not a change.
    let new_dn = format!(
        "uid=ol-test-{},{}",
        std::process::id(),
        lab.get("SLAPD_PEOPLE_DN")
    );
    let _ = admin.delete(&new_dn).await;

    // Full: alice is held under her entryUUID (the plain UUID's text).
    let full = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("full: {e}"));
    assert!(full.full && full.errors.is_empty(), "{full}");
    let alice = entry_uuid(&mut admin, lab.get("SLAPD_ALICE_DN")).await;
    let live = space.live(&c.name).expect("live");
    let (g, dn) = live
        .iter()
        .find(|(g, _)| g.to_string() == alice)
        .expect("alice held under her entryUUID");
    assert!(dn.eq_ignore_ascii_case(lab.get("SLAPD_ALICE_DN")));
    let held = space.object(&c.name, g).expect("read").expect("held");
    assert!(held.attrs.contains_key("uid") && !held.deleted);
    let before: HashSet<_> = live.keys().copied().collect();

    // Added.
    let new_dn = format!(
        "uid=ol-test-{},{}",
        std::process::id(),
        lab.get("SLAPD_PEOPLE_DN")
    );
    let _ = admin.delete(&new_dn).await;
    admin
        .add(
            &new_dn,
            vec![
                ("objectClass", HashSet::from(["inetOrgPerson"])),
                ("cn", HashSet::from(["ol test"])),
                ("sn", HashSet::from(["test"])),
            ],
        )
        .await
        .expect("add round trip")
        .success()
        .expect("add accepted");
    let uuid = entry_uuid(&mut admin, &new_dn).await;
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("delta: {e}"));
    assert!(!r.full, "{r}");
    assert_eq!(
        (r.merged.added, r.merged.changed, r.merged.deleted),
        (1, 0, 0),
        "{r}"
    );
    let live = space.live(&c.name).expect("live");
    let (anchor, _) = live
        .iter()
        .find(|(g, _)| g.to_string() == uuid)
        .expect("the new entry is held under its entryUUID");
    let anchor = *anchor;
    assert_eq!(live.len(), before.len() + 1);

    // Changed.
    admin
        .modify(
            &new_dn,
            vec![Mod::Replace("description", HashSet::from(["changed"]))],
        )
        .await
        .expect("modify round trip")
        .success()
        .expect("modify accepted");
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("delta: {e}"));
    assert_eq!(
        (r.merged.added, r.merged.changed, r.merged.deleted),
        (0, 1, 0),
        "{r}"
    );
    let held = space.object(&c.name, &anchor).expect("read").expect("held");
    assert_eq!(held.attrs["description"].values, vec![b"changed".to_vec()]);

    // Deleted: a tombstone with the same anchor; nothing else is touched.
    admin
        .delete(&new_dn)
        .await
        .expect("delete round trip")
        .success()
        .expect("delete accepted");
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("delta: {e}"));
    assert_eq!(
        (r.merged.added, r.merged.changed, r.merged.deleted),
        (0, 0, 1),
        "{r}"
    );
    let held = space
        .object(&c.name, &anchor)
        .expect("read")
        .expect("tombstone kept");
    assert!(held.deleted);
    let now: HashSet<_> = space.live(&c.name).expect("live").keys().copied().collect();
    assert_eq!(now, before);
    drop(space);

    // The command, from the stored cookie: a delta.
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["sync", "import", "-c"])
        .arg(&cfg_path)
        .args(["--connector", "lab-ldap"])
        .output()
        .expect("run causeway");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("delta") && !stdout.contains("full import"),
        "{stdout}"
    );
}

#[test]
fn entry_uuid_text_and_wire_bytes_name_the_same_anchor() {
    let g = uuid_anchor(&[
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ])
    .expect("16 bytes");
    assert_eq!(g.to_string(), "12345678-9abc-def0-0123-456789abcdef");
}
