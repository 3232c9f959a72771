//! The OpenLDAP connector's `modifyTimestamp` fallback (for servers without syncprov),
//! forced with `delta = "modify_timestamp"` against the lab's real slapd (which offers
//! content sync: the stored cookie shows the fallback ran). Its base is an OU this test
//! creates, so the counts of each `causeway sync import` are exact: a full import, a quiet
//! delta (the watermark's own second re-read changes nothing), then an addition, a change
//! and a deletion (seen by comparing entryUUIDs), each alone; `causeway sync run` takes
//! them to a real endpoint; and switching to content sync and back imports everything.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use causeway_store::{SqliteStore, Users as _};
use causeway_sync::openldap::mts;
use causeway_sync::space::ConnectorSpace;
use common::endpoint::{bin, Endpoint};
use common::slapd::{as_admin, ldaps, Cleanup};
use common::{delete_tree, lab, Lab};
use ldap3::{Ldap, Mod};

async fn add_person(ldap: &mut Ldap, dn: &str, uid: &str, mail: &str) {
    ldap.add(
        dn,
        vec![
            ("objectClass", HashSet::from(["inetOrgPerson"])),
            ("uid", HashSet::from([uid])),
            ("cn", HashSet::from([uid])),
            ("sn", HashSet::from(["Mts"])),
            ("mail", HashSet::from([mail])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .unwrap_or_else(|e| panic!("add {dn}: {e}"));
}

/// A sync host with one OpenLDAP connector whose base is the test's OU.
struct SyncHost {
    dir: PathBuf,
}

impl SyncHost {
    fn new(ep: &Endpoint, base: &str) -> Self {
        let lab = lab();
        let dir = ep.dir.join("sync-mts");
        std::fs::create_dir_all(&dir).expect("dir");
        let pw = dir.join("ldap.pw");
        std::fs::write(&pw, format!("{}\n", lab.get("SLAPD_SYNC_PASSWORD"))).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let h = Self { dir };
        h.configure(ep, base, "modify_timestamp");
        h
    }

    fn configure(&self, ep: &Endpoint, base: &str, delta: &str) {
        let lab = lab();
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
delta = "{delta}"
"#,
            ep = ep.url,
            ldaps = ldaps(lab),
            ca = lab.get("SLAPD_CA_CERT"),
            bind = lab.get("SLAPD_SYNC_DN"),
        );
        std::fs::write(self.dir.join("sync.toml"), text).expect("config");
    }

    /// `causeway sync ARGS -c CONFIG`: (success, stdout and stderr).
    fn try_sync(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let mut cmd = Command::new(bin());
        cmd.arg("sync")
            .args(args)
            .arg("-c")
            .arg(self.dir.join("sync.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run causeway sync");
        (
            out.status.success(),
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn sync(&self, ep: &Endpoint, args: &[&str], env: &[(&str, &str)]) -> String {
        let (ok, out) = self.try_sync(args, env);
        assert!(ok, "sync {args:?}:\n{out}\nendpoint:\n{}", ep.logs());
        out
    }

    /// `sync import`: whether it was a full import, and (added, changed, deleted).
    fn import(&self, ep: &Endpoint) -> (bool, (u64, u64, u64), String) {
        let out = self.sync(ep, &["import"], &[]);
        let line = out
            .lines()
            .find(|l| l.starts_with("lab-ldap: "))
            .unwrap_or_else(|| panic!("a report line: {out}"))
            .to_owned();
        let n = |word: &str| -> u64 {
            let end = line
                .find(&format!(" {word},"))
                .unwrap_or_else(|| panic!("{word} in {line}"));
            let start = line[..end]
                .rfind(|c: char| !c.is_ascii_digit())
                .map_or(0, |i| i + 1);
            line[start..end].parse().expect("a count")
        };
        let full = line.starts_with("lab-ldap: full import");
        assert!(full || line.starts_with("lab-ldap: delta"), "{line}\n{out}");
        (full, (n("added"), n("changed"), n("deleted")), out)
    }

    /// The stored watermark's bytes.
    fn cookie(&self) -> Vec<u8> {
        let space = ConnectorSpace::open(&self.dir.join("state/connector-space.sqlite"))
            .expect("open the connector space");
        space.cookie("lab-ldap").expect("read").as_bytes().to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_timestamp_fallback_sees_adds_changes_and_deletions_and_exports_them() {
    let lab: &Lab = lab();
    let mut adm = as_admin(lab).await;
    let people = lab.get("SLAPD_PEOPLE_DN");
    let t = std::process::id() % 100_000;
    let ou = format!("ou=cw-mts{t},{people}");
    delete_tree(&mut adm, &ou).await;
    let _cleanup = Cleanup(ou.clone());
    let ou_name = format!("cw-mts{t}");
    adm.add(
        &ou,
        vec![
            ("objectClass", HashSet::from(["organizationalUnit"])),
            ("ou", HashSet::from([ou_name.as_str()])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .expect("the OU is added");
    let [ann, ben, cat] = ["mts-ann", "mts-ben", "mts-cat"].map(|n| format!("{n}{t}"));
    let dn = |uid: &str| format!("uid={uid},{ou}");
    let mail = |uid: &str| format!("{uid}@ldap.causeway.test");
    add_person(&mut adm, &dn(&ann), &ann, &mail(&ann)).await;
    add_person(&mut adm, &dn(&ben), &ben, &mail(&ben)).await;

    let ep = Endpoint::start("sync-mts", "[sync]\nlease = \"60s\"\n", &[]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("open the store");
    let host = SyncHost::new(&ep, &ou);

    // sync check: the forced fallback is named, and is no problem (slapd offers paged
    // results).
    let (ok, out) = host.try_sync(&["check"], &[]);
    assert!(ok && !out.contains("ERR"), "{out}");
    assert!(
        out.contains("ok  delta = \"modify_timestamp\": changes are found by modifyTimestamp"),
        "{out}"
    );

    // Full: the OU and both people, by the fallback (its cookie, though slapd offers
    // content sync).
    let (full, counts, out) = host.import(&ep);
    assert!(full, "{out}");
    assert_eq!(counts, (3, 0, 0), "{out}");
    let c = host.cookie();
    assert!(
        c.starts_with(b"mts1:") && c.len() == "mts1:YYYYMMDDHHMMSSZ".len(),
        "{}",
        String::from_utf8_lossy(&c)
    );

    // A quiet delta: the entries of the watermark's second are read again, and nothing
    // changes.
    let (full, counts, out) = host.import(&ep);
    assert!(!full, "{out}");
    assert_eq!(counts, (0, 0, 0), "{out}");

    // Exported: both people at the endpoint.
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    let token = token.trim().to_owned();
    let out = host.sync(
        &ep,
        &["register", "--host-name", "sync-mts"],
        &[("CAUSEWAY_SYNC_TOKEN", &token)],
    );
    assert!(out.contains("registered as agt-"), "{out}");
    let out = host.sync(&ep, &["run", "--once"], &[]);
    assert!(out.contains("exported: "), "{out}");
    for uid in [&ann, &ben] {
        assert!(
            store.user_by_upn(&mail(uid)).await.expect("read").is_some(),
            "{uid} at the endpoint: {out}"
        );
    }

    // Added.
    add_person(&mut adm, &dn(&cat), &cat, &mail(&cat)).await;
    let (full, counts, out) = host.import(&ep);
    assert!(!full, "{out}");
    assert_eq!(counts, (1, 0, 0), "{out}");

    // Changed.
    adm.modify(
        &dn(&ann),
        vec![Mod::Replace("displayName", HashSet::from(["Ann Renamed"]))],
    )
    .await
    .expect("modify round trip")
    .success()
    .expect("modified");
    let (full, counts, out) = host.import(&ep);
    assert!(!full, "{out}");
    assert_eq!(counts, (0, 1, 0), "{out}");

    // Deleted: no timestamp shows it, the entryUUID comparison does.
    adm.delete(&dn(&ben))
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let (full, counts, out) = host.import(&ep);
    assert!(!full, "{out}");
    assert_eq!(counts, (0, 0, 1), "{out}");
    assert!(host.cookie().starts_with(b"mts1:"));

    // The endpoint follows: the new one, the change, the deletion.
    let out = host.sync(&ep, &["run", "--once"], &[]);
    assert!(out.contains("exported: "), "{out}");
    let u = store
        .user_by_upn(&mail(&ann))
        .await
        .expect("read")
        .expect("ann stays");
    assert_eq!(u.display_name.as_deref(), Some("Ann Renamed"), "{out}");
    assert!(store
        .user_by_upn(&mail(&cat))
        .await
        .expect("read")
        .is_some());
    assert!(
        store
            .user_by_upn(&mail(&ben))
            .await
            .expect("read")
            .is_none(),
        "ben is gone at the endpoint: {out}"
    );

    // Page by page: the fallback's reads with one entry a page (the OU, ann and cat are
    // left) name every entry once, in as many pages, and the present list agrees with them.
    let attrs = vec![
        "*".to_owned(),
        "entryUUID".to_owned(),
        "modifyTimestamp".to_owned(),
    ];
    let mut sizes = Vec::new();
    let mut anchors = BTreeSet::new();
    let timeout = Duration::from_secs(30);
    let r = mts::read(&mut adm, &ou, "(objectClass=*)", &attrs, 1, timeout, |p| {
        sizes.push(p.entries.len());
        anchors.extend(p.anchors);
        Ok::<_, String>(())
    })
    .await
    .unwrap_or_else(|e| panic!("read: {e:?}"));
    assert_eq!((r.pages, r.entries), (3, 3), "{r:?}");
    assert_eq!(sizes, vec![1, 1, 1]);
    assert!(r.newest.is_some() && !r.anchorless, "{r:?}");
    let present = mts::present(&mut adm, &ou, 1, timeout)
        .await
        .unwrap_or_else(|e| panic!("present: {e}"));
    assert_eq!(present, anchors);
    let space = ConnectorSpace::open(&host.dir.join("state/connector-space.sqlite"))
        .expect("open the connector space");
    let live: BTreeSet<_> = space.live("lab-ldap").expect("live").into_keys().collect();
    assert_eq!(live, present, "the held live set is what slapd has");
    drop(space);

    // Switching modes: a content-sync cookie is no watermark, nor the reverse.
    host.configure(&ep, &ou, "content_sync");
    let (full, _, out) = host.import(&ep);
    assert!(full, "{out}");
    assert!(!host.cookie().starts_with(b"mts1:"));
    host.configure(&ep, &ou, "modify_timestamp");
    let (full, _, out) = host.import(&ep);
    assert!(full, "{out}");
    assert!(host.cookie().starts_with(b"mts1:"));
    let (full, counts, out) = host.import(&ep);
    assert!(!full, "{out}");
    assert_eq!(counts, (0, 0, 0), "{out}");

    let _ = adm.unbind().await;
}
