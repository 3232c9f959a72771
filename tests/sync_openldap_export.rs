//! `causeway sync` end to end from OpenLDAP: the lab's real slapd → a real `causeway sync`
//! process (registered with a one-time token) → the ingestion API of a real
//! `causeway serve` → its directory store. The lab's people arrive as users anchored on
//! their entryUUID with mail as UPN, ppolicy-locked ones disabled, `lab-users` as their
//! group; this test's own entries (under an OU of its own in `ou=people`) then change,
//! unlock and go, and the endpoint follows with the same anchors. The import asks for the
//! operational attributes the mapping reads, and redoes a copy made without them.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use causeway_store::{History as _, ImmutableId, SqliteStore, Synced as _, Users as _};
use causeway_sync::ad::entry::Guid;
use causeway_sync::export::anchor_id;
use common::endpoint::{bin, Endpoint};
use common::slapd::{as_admin, ldaps, Cleanup};
use common::{delete_tree, lab, Lab};
use ldap3::{Ldap, Mod, Scope, SearchEntry};

/// A password this test gives its own entry: it must never be seen outside slapd.
const TEST_PASSWORD: &str = "Olx-Test-Pw-58!";

/// One attribute's values of an entry, read as the admin (`+` too: operational ones).
async fn read(ldap: &mut Ldap, dn: &str, attr: &str) -> Vec<String> {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .expect("search round trip")
        .success()
        .unwrap_or_else(|e| panic!("read {dn}: {e}"));
    let e = SearchEntry::construct(entries.into_iter().next().expect("the entry exists"));
    e.attrs.get(attr).cloned().unwrap_or_default()
}

/// The id the endpoint knows an entry by: base64 of its entryUUID as sync's anchor.
async fn anchor_of(ldap: &mut Ldap, dn: &str) -> String {
    let uuid = read(ldap, dn, "entryUUID").await;
    anchor_id(&Guid::parse(&uuid[0]).expect("an entryUUID is a UUID"))
}

async fn add(ldap: &mut Ldap, dn: &str, attrs: Vec<(&str, HashSet<&str>)>) {
    ldap.add(dn, attrs)
        .await
        .expect("add round trip")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
}

async fn modify(ldap: &mut Ldap, dn: &str, mods: Vec<Mod<&str>>) {
    ldap.modify(dn, mods)
        .await
        .expect("modify round trip")
        .success()
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

/// A sync host with one OpenLDAP connector; every output it printed is kept.
struct SyncHost {
    dir: PathBuf,
    outputs: std::cell::RefCell<String>,
}

impl SyncHost {
    fn new(ep: &Endpoint, include_ous: &[String]) -> Self {
        let lab = lab();
        let dir = ep.dir.join("sync-ol");
        std::fs::create_dir_all(&dir).expect("dir");
        let pw = dir.join("ldap.pw");
        std::fs::write(&pw, format!("{}\n", lab.get("SLAPD_SYNC_PASSWORD"))).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]
poll_interval = "1h"

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ldap.pw"
base_dn = "{base}"
include_ous = {include_ous:?}
"#,
            ep = ep.url,
            ldaps = ldaps(lab),
            ca = lab.get("SLAPD_CA_CERT"),
            bind = lab.get("SLAPD_SYNC_DN"),
            base = lab.get("SLAPD_BASE_DN"),
        );
        std::fs::write(dir.join("sync.toml"), text).expect("config");
        Self {
            dir,
            outputs: Default::default(),
        }
    }

    /// `causeway sync ARGS -c CONFIG`, which must succeed; returns stdout.
    fn sync(&self, ep: &Endpoint, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(bin());
        cmd.arg("sync")
            .args(args)
            .arg("-c")
            .arg(self.dir.join("sync.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run causeway sync");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.outputs
            .borrow_mut()
            .push_str(&format!("{stdout}\n{stderr}\n"));
        assert!(
            out.status.success(),
            "sync {args:?}:\n{stdout}\n{stderr}\nendpoint:\n{}",
            ep.logs()
        );
        stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_people_and_groups_reach_the_endpoint_and_follow_changes() {
    let lab: &Lab = lab();
    let mut adm = as_admin(lab).await;
    let people = lab.get("SLAPD_PEOPLE_DN");
    let group_dn = lab.get("SLAPD_GROUP_DN");
    let groups_ou = group_dn.split_once(',').expect("a group under an OU").1;

    // This test's own entries, under an OU of its own (a leftover of an interrupted run
    // goes first).
    let t = std::process::id() % 100_000;
    let ou = format!("ou=cw-olx{t},{people}");
    delete_tree(&mut adm, &ou).await;
    let _cleanup = Cleanup(ou.clone());
    let ou_name = format!("cw-olx{t}");
    add(
        &mut adm,
        &ou,
        vec![
            ("objectClass", HashSet::from(["organizationalUnit"])),
            ("ou", HashSet::from([ou_name.as_str()])),
        ],
    )
    .await;
    let [dora_uid, ed_uid, fay_uid, gus_uid] =
        ["olx-dora", "olx-ed", "olx-fay", "olx-gus"].map(|n| format!("{n}{t}"));
    let person = |uid: &str| format!("uid={uid},{ou}");
    let mail = |uid: &str| format!("{uid}@ldap.causeway.test");
    let (dora, ed, fay, gus) = (
        person(&dora_uid),
        person(&ed_uid),
        person(&fay_uid),
        person(&gus_uid),
    );
    let (dora_mail, ed_mail, fay_mail, gus_mail) = (
        mail(&dora_uid),
        mail(&ed_uid),
        mail(&fay_uid),
        mail(&gus_uid),
    );
    let employee = format!("E-{t}");
    add(
        &mut adm,
        &dora,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([dora_uid.as_str()])),
            ("cn", HashSet::from(["Dora Olx"])),
            ("sn", HashSet::from(["Olx"])),
            ("givenName", HashSet::from(["Dora"])),
            ("displayName", HashSet::from(["Dora Test"])),
            ("mail", HashSet::from([dora_mail.as_str()])),
            ("departmentNumber", HashSet::from(["4711"])),
            ("employeeNumber", HashSet::from([employee.as_str()])),
            ("userPassword", HashSet::from([TEST_PASSWORD])),
        ],
    )
    .await;
    // An administrator's lock (ppolicy's "locked until cleared" time).
    add(
        &mut adm,
        &ed,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([ed_uid.as_str()])),
            ("cn", HashSet::from(["Ed Olx"])),
            ("sn", HashSet::from(["Olx"])),
            ("mail", HashSet::from([ed_mail.as_str()])),
            ("pwdAccountLockedTime", HashSet::from(["000001010000Z"])),
        ],
    )
    .await;
    // A Unix account whose shadowExpire day (1970-01-02) is long past.
    add(
        &mut adm,
        &fay,
        vec![
            (
                "objectClass",
                HashSet::from(["inetOrgPerson", "shadowAccount"]),
            ),
            ("uid", HashSet::from([fay_uid.as_str()])),
            ("cn", HashSet::from(["Fay Olx"])),
            ("sn", HashSet::from(["Olx"])),
            ("mail", HashSet::from([fay_mail.as_str()])),
            ("shadowExpire", HashSet::from(["1"])),
        ],
    )
    .await;
    add(
        &mut adm,
        &gus,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([gus_uid.as_str()])),
            ("cn", HashSet::from(["Gus Olx"])),
            ("sn", HashSet::from(["Olx"])),
            ("mail", HashSet::from([gus_mail.as_str()])),
        ],
    )
    .await;
    let team_name = format!("olx-team{t}");
    let team = format!("cn={team_name},{ou}");
    let dora_unique = format!("{dora}#'0101'B");
    add(
        &mut adm,
        &team,
        vec![
            ("objectClass", HashSet::from(["groupOfUniqueNames"])),
            ("cn", HashSet::from([team_name.as_str()])),
            (
                "uniqueMember",
                HashSet::from([dora_unique.as_str(), gus.as_str()]),
            ),
        ],
    )
    .await;
    let alice = lab.get("SLAPD_ALICE_DN");
    let (erin, bob) = (lab.get("SLAPD_ERIN_DN"), lab.get("SLAPD_BOB_DN"));
    let mail_of = |v: Vec<String>| v.into_iter().next().expect("the lab gives a mail");
    let alice_mail = mail_of(read(&mut adm, alice, "mail").await);
    let erin_mail = mail_of(read(&mut adm, erin, "mail").await);
    let bob_mail = mail_of(read(&mut adm, bob, "mail").await);
    let (a_alice, a_dora, a_ed, a_fay, a_gus, a_team) = (
        anchor_of(&mut adm, alice).await,
        anchor_of(&mut adm, &dora).await,
        anchor_of(&mut adm, &ed).await,
        anchor_of(&mut adm, &fay).await,
        anchor_of(&mut adm, &gus).await,
        anchor_of(&mut adm, &team).await,
    );
    // Hashes the sync account may read (for password hash sync): never exported.
    let mut hashes = read(&mut adm, alice, "userPassword").await;
    hashes.extend(read(&mut adm, alice, "sambaNTPassword").await);
    assert!(!hashes.is_empty(), "the admin reads alice's hashes");

    let ep = Endpoint::start("sync-ol", "[sync]\nlease = \"60s\"\n", &[]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("open the store");
    let host = SyncHost::new(&ep, &[people.to_owned(), groups_ou.to_owned()]);
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    let token = token.trim().to_owned();
    let out = host.sync(
        &ep,
        &["register", "--host-name", "sync-ol"],
        &[("CAUSEWAY_SYNC_TOKEN", &token)],
    );
    assert!(out.contains("registered as agt-"), "{out}");
    let first = host.sync(&ep, &["run", "--once"], &[]);
    assert!(first.contains("exported: "), "{first}");

    // The lab's people: users by their mail, anchored on entryUUID, cn as display name.
    let user = |upn: String| {
        let store = &store;
        async move {
            store
                .user_by_upn(&upn)
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("{upn} is a user at the endpoint"))
        }
    };
    let u = user(alice_mail.clone()).await;
    assert_eq!(u.id.as_str(), a_alice);
    assert_eq!(u.mail.as_deref(), Some(alice_mail.as_str()));
    assert_eq!(u.display_name.as_deref(), Some(lab.get("SLAPD_ALICE_UID")));
    assert!(!u.disabled, "alice is not locked");
    assert!(user(erin_mail).await.disabled, "erin is locked by ppolicy");
    assert!(
        user(bob_mail).await.disabled,
        "bob has an administrator's lock"
    );
    assert!(
        store
            .groups_of(&a_alice)
            .await
            .expect("groups")
            .contains(&"lab-users".to_owned()),
        "SLAPD_GROUP_DN's members are in it"
    );
    let group = store
        .synced_object(&anchor_of(&mut adm, group_dn).await)
        .await
        .expect("read")
        .expect("lab-users synced");
    assert_eq!(group.object.kind.as_str(), "group");

    // This test's entries: every mapped field, the lock, the expiry, uniqueMember.
    let u = user(dora_mail.clone()).await;
    assert_eq!(u.id.as_str(), a_dora);
    assert_eq!(u.display_name.as_deref(), Some("Dora Test"));
    assert!(!u.disabled);
    let o = store
        .synced_object(&a_dora)
        .await
        .expect("read")
        .expect("dora synced");
    let attr = |name: &str| o.object.attrs.get(name).cloned().unwrap_or_default();
    assert_eq!(attr("given_name"), vec!["Dora"]);
    assert_eq!(attr("surname"), vec!["Olx"]);
    assert_eq!(attr("department"), vec!["4711"]);
    assert_eq!(attr("employee_id"), vec![employee.clone()]);
    assert_eq!(attr("upn"), vec![dora_mail.clone()]);
    assert!(
        !format!("{:?}", o.object).contains("{SSHA}") && !o.object.attrs.contains_key("password"),
        "no password attribute is exported: {:?}",
        o.object.attrs.keys()
    );
    assert_eq!(
        store.groups_of(&a_dora).await.expect("groups"),
        vec![team_name.clone()],
        "a uniqueMember with its optional UID"
    );
    assert!(user(ed_mail.clone()).await.disabled, "pwdAccountLockedTime");
    assert!(user(fay_mail.clone()).await.disabled, "past shadowExpire");
    let f = store
        .synced_object(&a_fay)
        .await
        .expect("read")
        .expect("fay synced");
    assert_eq!(f.object.attrs["account_expires"], vec!["86400"]);
    let members = |a: &str| {
        let store = &store;
        let a = a.to_owned();
        async move {
            let mut m = store
                .synced_object(&a)
                .await
                .expect("read")
                .expect("synced")
                .object
                .attrs
                .get("members")
                .cloned()
                .unwrap_or_default();
            m.sort();
            m
        }
    };
    let mut both = vec![a_dora.clone(), a_gus.clone()];
    both.sort();
    assert_eq!(members(&a_team).await, both);

    // Nothing changed: none of these changes at the endpoint, and no user gets a history
    // row (operational attributes such as entryCSN do not churn the export). Checked per
    // object, not by the run's counts: other tests may write to ou=people meanwhile.
    let a_group = anchor_of(&mut adm, group_dn).await;
    let watched = [&a_alice, &a_dora, &a_ed, &a_fay, &a_gus, &a_team, &a_group];
    let upns = [&alice_mail, &dora_mail, &ed_mail, &fay_mail, &gus_mail];
    let mut before = Vec::new();
    for a in watched {
        before.push(
            store
                .synced_object(a)
                .await
                .expect("read")
                .expect("synced")
                .object,
        );
    }
    let mut rows = Vec::new();
    for u in upns {
        rows.push(store.history(u).await.expect("history").len());
    }
    assert!(
        rows.iter().all(|&n| n >= 1),
        "each user has its creation row"
    );
    host.sync(&ep, &["run", "--once"], &[]);
    for (a, was) in watched.into_iter().zip(before) {
        let o = store.synced_object(a).await.expect("read").expect("synced");
        assert_eq!(o.object, was, "{a} changed though slapd did not");
    }
    for (u, &n) in upns.into_iter().zip(&rows) {
        assert_eq!(store.history(u).await.expect("history").len(), n, "{u}");
    }

    // An attribute change, an unlock (the attribute goes) and a deletion.
    modify(
        &mut adm,
        &dora,
        vec![Mod::Replace("displayName", HashSet::from(["Dora Renamed"]))],
    )
    .await;
    modify(
        &mut adm,
        &ed,
        vec![Mod::Delete("pwdAccountLockedTime", HashSet::new())],
    )
    .await;
    adm.delete(&gus)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let out = host.sync(&ep, &["run", "--once"], &[]);
    assert!(out.contains("exported: "), "{out}");
    let u = store
        .user_by_id(&ImmutableId::from_guid_bytes(guid_bytes(&a_dora)))
        .await
        .expect("read")
        .expect("the same id");
    assert_eq!(u.display_name.as_deref(), Some("Dora Renamed"));
    assert!(
        store.history(&dora_mail).await.expect("history").len() > rows[1],
        "a change writes a history row (so the quiet round above wrote none)"
    );
    let u = user(ed_mail).await;
    assert_eq!(u.id.as_str(), a_ed);
    assert!(
        !u.disabled,
        "unlocked: the cleared lock reached the endpoint"
    );
    assert!(store.user_by_upn(&gus_mail).await.expect("read").is_none());
    let gone = store
        .user_by_id(&ImmutableId::from_guid_bytes(guid_bytes(&a_gus)))
        .await
        .expect("read")
        .expect("in the recycle bin");
    assert!(gone.deleted_at.is_some());
    assert_eq!(
        members(&a_team).await,
        vec![a_dora.clone()],
        "a deleted member leaves"
    );

    // No password, hash or token in anything either side printed.
    let printed = format!("{}\n{}", host.outputs.borrow(), ep.logs());
    let mut secrets = vec![
        lab.get("SLAPD_SYNC_PASSWORD").to_owned(),
        lab.get("SLAPD_ADMIN_PASSWORD").to_owned(),
        TEST_PASSWORD.to_owned(),
        token,
    ];
    secrets.extend(hashes);
    for s in &secrets {
        assert!(!printed.contains(s.as_str()), "a secret was printed");
    }

    let _ = adm.unbind().await;
}

/// The 16 bytes of an anchor as the endpoint writes it (base64).
fn guid_bytes(anchor: &str) -> [u8; 16] {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(anchor)
        .expect("base64")
        .try_into()
        .expect("16 bytes")
}

/// The import asks slapd by name for the operational attributes the mapping reads (`*`
/// leaves them out), and a copy imported without them (by an older release) is imported
/// again whole: a delta would never bring them for entries that did not change.
#[tokio::test]
async fn operational_attributes_are_imported_and_a_copy_without_them_is_redone() {
    use causeway_sync::config::SyncConfig;
    use causeway_sync::run::import;
    use causeway_sync::space::ConnectorSpace;

    let lab: &Lab = lab();
    let dir = common::endpoint::temp_dir("sync-ol-attrs");
    let pw = dir.join("ldap.pw");
    std::fs::write(&pw, format!("{}\n", lab.get("SLAPD_SYNC_PASSWORD"))).expect("pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cfg_path = dir.join("sync.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"[sync]
state_dir = "state"
endpoints = ["https://127.0.0.1:8443"]

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ldap.pw"
base_dn = "{people}"
"#,
            ldaps = ldaps(lab),
            ca = lab.get("SLAPD_CA_CERT"),
            bind = lab.get("SLAPD_SYNC_DN"),
            people = lab.get("SLAPD_PEOPLE_DN"),
        ),
    )
    .expect("config");
    let cfg = SyncConfig::load(&cfg_path).unwrap_or_else(|e| panic!("config: {e}"));
    let c = &cfg.connectors[0];
    let space = ConnectorSpace::open(&dir.join("connector-space.sqlite")).expect("space");
    let mut adm = as_admin(lab).await;
    let erin = lab.get("SLAPD_ERIN_DN");
    let uuid = read(&mut adm, erin, "entryUUID").await;
    let g = Guid::parse(&uuid[0]).expect("a UUID");
    let _ = adm.unbind().await;

    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("full: {e}"));
    assert!(r.full && !r.attributes_grew, "{r}");
    let held = space.object(&c.name, &g).expect("read").expect("erin held");
    for a in ["pwdaccountlockedtime", "entryuuid", "mail"] {
        assert!(
            held.attrs.contains_key(a),
            "{a} held: {:?}",
            held.attrs.keys()
        );
    }
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("delta: {e}"));
    assert!(!r.full && !r.attributes_grew, "{r}");

    // What a copy made before these were asked for says it holds.
    space
        .set_attributes(&c.name, &["*".to_owned()])
        .expect("write");
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("redo: {e}"));
    assert!(r.full && r.attributes_grew, "{r}");
    let r = import(c, &space, |_| {})
        .await
        .unwrap_or_else(|e| panic!("delta: {e}"));
    assert!(!r.full && !r.attributes_grew, "{r}");
    drop(space);
    let _ = std::fs::remove_dir_all(&dir);
}
