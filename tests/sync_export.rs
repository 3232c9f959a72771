//! `causeway sync` end to end: the lab's real Samba AD DC → a real `causeway sync`
//! process (registered with a one-time token) → the ingestion API of a real
//! `causeway serve` → its directory store. Each test makes its own OU in AD, scopes its
//! connector to it, changes it the way an administrator does, and checks what the
//! endpoint holds afterwards: objects and their anchors, history rows, run records,
//! leases, the deletion threshold, staging and dry runs, quarantine, soft match,
//! change notification and `kill -9`.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use causeway_store::{History as _, SqliteStore, Synced as _, Users as _};
use common::endpoint::{bin, Endpoint};
use common::{admin, lab, Lab};
use ldap3::{Ldap, Mod, Scope, SearchEntry};

/// An OU of this test's own in the lab's domain, removed (with what it holds) when dropped.
struct TestOu {
    dn: String,
    tag: String,
}

impl TestOu {
    async fn new(adm: &mut Ldap, name: &str) -> Self {
        let tag = format!("{name}{}", std::process::id() % 100_000);
        let dn = format!("OU=cw-{tag},{}", lab().get("AD_BASE_DN"));
        delete_tree(adm, &dn).await;
        adm.add(
            &dn,
            vec![("objectClass", HashSet::from(["organizationalUnit"]))],
        )
        .await
        .expect("add round trip")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        Self { dn, tag }
    }

    /// Adds an enabled user `sam` (at most 20 characters) with a password, under this OU.
    async fn user(&self, adm: &mut Ldap, sam: &str, mail: Option<&str>) -> String {
        let dn = format!("CN={sam},{}", self.dn);
        let upn = format!("{sam}@lab.causeway.test");
        let display = format!("Test {sam}");
        let pw: Vec<u8> = "\"Sync-Test-Pw-77!\""
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut attrs: Vec<(Vec<u8>, HashSet<Vec<u8>>)> = vec![
            (b"objectClass".to_vec(), HashSet::from([b"user".to_vec()])),
            (
                b"sAMAccountName".to_vec(),
                HashSet::from([sam.as_bytes().to_vec()]),
            ),
            (
                b"userPrincipalName".to_vec(),
                HashSet::from([upn.into_bytes()]),
            ),
            (
                b"displayName".to_vec(),
                HashSet::from([display.into_bytes()]),
            ),
            (b"givenName".to_vec(), HashSet::from([b"Test".to_vec()])),
            (b"unicodePwd".to_vec(), HashSet::from([pw])),
            (
                b"userAccountControl".to_vec(),
                HashSet::from([b"512".to_vec()]),
            ),
        ];
        if let Some(m) = mail {
            attrs.push((b"mail".to_vec(), HashSet::from([m.as_bytes().to_vec()])));
        }
        adm.add(&dn, attrs)
            .await
            .expect("add round trip")
            .success()
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        dn
    }

    async fn group(&self, adm: &mut Ldap, cn: &str, members: &[&str]) -> String {
        let dn = format!("CN={cn},{}", self.dn);
        let mut attrs = vec![
            ("objectClass", HashSet::from(["group"])),
            ("sAMAccountName", HashSet::from([cn])),
        ];
        if !members.is_empty() {
            attrs.push(("member", members.iter().copied().collect()));
        }
        adm.add(&dn, attrs)
            .await
            .expect("add round trip")
            .success()
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        dn
    }

    async fn contact(&self, adm: &mut Ldap, cn: &str) -> String {
        let dn = format!("CN={cn},{}", self.dn);
        adm.add(
            &dn,
            vec![
                ("objectClass", HashSet::from(["contact"])),
                ("displayName", HashSet::from([cn])),
            ],
        )
        .await
        .expect("add round trip")
        .success()
        .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        dn
    }
}

/// Deletes `dn` and everything under it (deepest first), if it exists.
async fn delete_tree(adm: &mut Ldap, dn: &str) {
    let Ok(r) = adm
        .search(dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
    else {
        return;
    };
    let Ok((entries, _)) = r.success() else {
        return;
    };
    let mut dns: Vec<String> = entries
        .into_iter()
        .map(|e| SearchEntry::construct(e).dn)
        .collect();
    dns.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in dns {
        let _ = adm.delete(&d).await;
    }
}

async fn modify(adm: &mut Ldap, dn: &str, mods: Vec<Mod<&str>>) {
    adm.modify(dn, mods)
        .await
        .expect("modify round trip")
        .success()
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

/// The anchor the endpoint knows `dn` by: base64 of its objectGUID.
async fn anchor_of(adm: &mut Ldap, dn: &str) -> String {
    let (entries, _) = adm
        .search(dn, Scope::Base, "(objectClass=*)", vec!["objectGUID"])
        .await
        .expect("search round trip")
        .success()
        .expect("base search");
    let e = SearchEntry::construct(entries.into_iter().next().expect("exists"));
    base64::engine::general_purpose::STANDARD.encode(&e.bin_attrs["objectGUID"][0])
}

/// A sync host: its own directory, configuration and state.
struct SyncHost {
    dir: PathBuf,
    daemon: Option<(Child, PathBuf)>,
}

/// What a test changes in the sync configuration.
#[derive(Default, Clone)]
struct Settings {
    batch_size: Option<u32>,
    delete_threshold: Option<u32>,
    staging: bool,
    soft_match: bool,
    filter: Option<String>,
    extra_ous: Vec<String>,
    /// Bind as the domain administrator (who may write ms-DS-ConsistencyGuid).
    as_admin: bool,
    write_consistency_guid: bool,
}

impl SyncHost {
    fn new(ep: &Endpoint, name: &str, ou: &TestOu, s: &Settings) -> Self {
        let dir = ep.dir.join(format!("sync-{name}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let pw = dir.join("ad.pw");
        let password = if s.as_admin {
            lab().get("AD_ADMIN_PASSWORD")
        } else {
            lab().get("AD_SVC_SYNC_PASSWORD")
        };
        std::fs::write(&pw, format!("{password}\n")).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let host = Self { dir, daemon: None };
        host.configure(ep, ou, s);
        host
    }

    fn configure(&self, ep: &Endpoint, ou: &TestOu, s: &Settings) {
        let lab = lab();
        let mut ous = vec![ou.dn.clone()];
        ous.extend(s.extra_ous.iter().cloned());
        let text = format!(
            r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]
staging = {staging}
poll_interval = "1h"
{batch}

[safety]
delete_threshold = {threshold}

[[connector]]
name = "lab-ad"
kind = "ad"
servers = ["{ad}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ad.pw"
base_dn = "{base}"
include_ous = {ous:?}
soft_match = {soft}
write_consistency_guid = {wcg}
{filter}
"#,
            ep = ep.url,
            staging = s.staging,
            batch = s
                .batch_size
                .map(|b| format!("batch_size = {b}"))
                .unwrap_or_default(),
            threshold = s.delete_threshold.unwrap_or(500),
            ad = lab.get("AD_LDAPS_URL"),
            ca = lab.get("AD_CA_CERT"),
            bind = if s.as_admin {
                lab.get("AD_ADMIN_DN")
            } else {
                lab.get("AD_SVC_SYNC_DN")
            },
            wcg = s.write_consistency_guid,
            base = lab.get("AD_BASE_DN"),
            soft = s.soft_match,
            filter = s
                .filter
                .as_ref()
                .map(|f| format!("filter = {f:?}"))
                .unwrap_or_default(),
        );
        std::fs::write(self.config(), text).expect("config");
    }

    fn config(&self) -> PathBuf {
        self.dir.join("sync.toml")
    }

    /// `causeway sync ARGS -c CONFIG`: success, stdout, stderr.
    fn sync(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = Command::new(bin());
        cmd.arg("sync").args(args).arg("-c").arg(self.config());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run causeway sync");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Makes a `--for sync` token on the endpoint and registers with it; returns the token.
    fn register(&self, ep: &Endpoint, name: &str) -> String {
        let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
        let token = token.trim().to_owned();
        let (ok, out, err) = self.sync(
            &["register", "--host-name", name],
            &[("CAUSEWAY_SYNC_TOKEN", &token)],
        );
        assert!(ok, "register: {out}\n{err}\nendpoint:\n{}", ep.logs());
        assert!(out.contains("registered as agt-"), "{out}");
        token
    }

    /// One round: `sync run --once`, which must succeed; returns stdout.
    fn once(&self, ep: &Endpoint) -> String {
        let (ok, out, err) = self.sync(&["run", "--once"], &[]);
        assert!(
            ok,
            "sync run --once:\n{out}\n{err}\nendpoint:\n{}",
            ep.logs()
        );
        out
    }

    /// Starts `sync run` (the daemon) with its log in the host's directory.
    fn start(&mut self) {
        let log = self.dir.join("run.log");
        let child = Command::new(bin())
            .args(["--log", "debug", "sync", "run", "-c"])
            .arg(self.config())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start causeway sync run");
        self.daemon = Some((child, log));
    }

    fn logs(&self) -> String {
        self.daemon
            .as_ref()
            .and_then(|(_, l)| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some((mut c, _)) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SyncHost {
    fn drop(&mut self) {
        self.kill();
    }
}

fn endpoint(name: &str, lease: &str) -> (Endpoint, SqliteStore) {
    let ep = Endpoint::start(name, &format!("[sync]\nlease = {lease:?}\n"), &[]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("open the store");
    (ep, store)
}

/// Waits (up to `secs`) for `f`, polling every 100 ms; panics with `what` and `logs`.
async fn until<F, Fut>(secs: u64, what: &str, logs: impl Fn() -> String, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "never: {what}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_absent(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} holds a secret");
    }
}

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
        || async {
            store
                .user_by_upn(&upn)
                .await
                .ok()
                .flatten()
                .is_some_and(|u| u.display_name.as_deref() == Some("Notified"))
        },
    )
    .await;
    eprintln!(
        "change visible at the endpoint after {:?}",
        changed.elapsed()
    );
    host.kill();
    delete_tree(&mut adm, &ou.dn).await;
}

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
        || async {
            store
                .user_by_upn(&upn)
                .await
                .ok()
                .flatten()
                .is_some_and(|u| u.display_name.as_deref() == Some("Taken Over"))
        },
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
