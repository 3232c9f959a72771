//! A sync host for the lab tests (`tests/sync_export.rs`, `tests/sync_safety.rs`): an OU of
//! the test's own in the lab's first forest with users, groups and contacts made as its
//! administrator, a real `causeway serve`, and `causeway sync` processes registered with it
//! (one-shot rounds or the daemon, `kill -9` included).

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use causeway_store::SqliteStore;
use ldap3::{Ldap, Mod, Scope, SearchEntry};

pub use super::delete_tree;
use super::endpoint::{bin, Endpoint};
use super::lab;

/// An OU of this test's own in the lab's domain, removed (with what it holds) when dropped.
pub struct TestOu {
    pub dn: String,
    pub tag: String,
}

impl TestOu {
    pub async fn new(adm: &mut Ldap, name: &str) -> Self {
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
    pub async fn user(&self, adm: &mut Ldap, sam: &str, mail: Option<&str>) -> String {
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

    pub async fn group(&self, adm: &mut Ldap, cn: &str, members: &[&str]) -> String {
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

    pub async fn contact(&self, adm: &mut Ldap, cn: &str) -> String {
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

pub async fn modify(adm: &mut Ldap, dn: &str, mods: Vec<Mod<&str>>) {
    adm.modify(dn, mods)
        .await
        .expect("modify round trip")
        .success()
        .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

/// The anchor the endpoint knows `dn` by: base64 of its objectGUID.
pub async fn anchor_of(adm: &mut Ldap, dn: &str) -> String {
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
pub struct SyncHost {
    pub dir: PathBuf,
    daemon: Option<(Child, PathBuf)>,
}

/// What a test changes in the sync configuration.
#[derive(Default, Clone)]
pub struct Settings {
    pub batch_size: Option<u32>,
    pub delete_threshold: Option<u32>,
    pub staging: bool,
    pub soft_match: bool,
    pub filter: Option<String>,
    pub extra_ous: Vec<String>,
    /// Bind as the domain administrator (who may write ms-DS-ConsistencyGuid).
    pub as_admin: bool,
    pub write_consistency_guid: bool,
}

impl SyncHost {
    pub fn new(ep: &Endpoint, name: &str, ou: &TestOu, s: &Settings) -> Self {
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

    pub fn configure(&self, ep: &Endpoint, ou: &TestOu, s: &Settings) {
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

    pub fn config(&self) -> PathBuf {
        self.dir.join("sync.toml")
    }

    /// `causeway sync ARGS -c CONFIG`: success, stdout, stderr.
    pub fn sync(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
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
    pub fn register(&self, ep: &Endpoint, name: &str) -> String {
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
    pub fn once(&self, ep: &Endpoint) -> String {
        let (ok, out, err) = self.sync(&["run", "--once"], &[]);
        assert!(
            ok,
            "sync run --once:\n{out}\n{err}\nendpoint:\n{}",
            ep.logs()
        );
        out
    }

    /// Starts `sync run` (the daemon) with its log in the host's directory.
    pub fn start(&mut self) {
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

    pub fn logs(&self) -> String {
        self.daemon
            .as_ref()
            .and_then(|(_, l)| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
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

pub fn endpoint(name: &str, lease: &str) -> (Endpoint, SqliteStore) {
    let ep = Endpoint::start(name, &format!("[sync]\nlease = {lease:?}\n"), &[]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("open the store");
    (ep, store)
}

/// Waits (up to `secs`) for `f`, polling every 100 ms; panics with `what` and `logs`.
pub async fn until<F, Fut>(secs: u64, what: &str, logs: impl Fn() -> String, mut f: F)
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

pub fn assert_absent(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} holds a secret");
    }
}

/// Whether the endpoint's store holds live user `upn` with display name `name` (what the
/// tests wait for after changing it in AD).
pub async fn shows_display_name(store: &SqliteStore, upn: &str, name: &str) -> bool {
    use causeway_store::Users as _;
    store
        .user_by_upn(upn)
        .await
        .ok()
        .flatten()
        .is_some_and(|u| u.display_name.as_deref() == Some(name))
}

/// Synchronises the users of the lab's AD that `filter` picks (under `CN=Users`) as an
/// administrator would: a `--for sync` token, `causeway sync register` as `host` and one
/// `causeway sync run --once`; `extra` is added to the connector (e.g.
/// `password_hash_sync = true`). Panics with both processes' output on failure.
pub fn sync_lab_users_once(ep: &Endpoint, lab: &super::Lab, filter: &str, host: &str, extra: &str) {
    let dir = ep.dir.join("sync");
    std::fs::create_dir_all(&dir).expect("sync dir");
    let pw = dir.join("ad.pw");
    std::fs::write(&pw, format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD"))).expect("pw");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let cfg = dir.join("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nstate_dir = \"state\"\nendpoints = [{:?}]\n\n[[connector]]\nname = \"lab\"\nkind = \"ad\"\nservers = [{:?}]\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = \"ad.pw\"\nbase_dn = {:?}\ninclude_ous = [\"CN=Users,{}\"]\nfilter = {filter:?}\n{extra}",
            ep.url,
            lab.get("AD_LDAPS_URL"),
            lab.get("AD_CA_CERT"),
            lab.get("AD_SVC_SYNC_DN"),
            lab.get("AD_BASE_DN"),
            lab.get("AD_BASE_DN"),
        ),
    )
    .expect("sync config");
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    for args in [
        &["register", "--host-name", host][..],
        &["run", "--once"][..],
    ] {
        let out = std::process::Command::new(super::endpoint::bin())
            .arg("sync")
            .args(args)
            .arg("-c")
            .arg(&cfg)
            .env("CAUSEWAY_SYNC_TOKEN", token.trim())
            .output()
            .expect("run causeway sync");
        assert!(
            out.status.success(),
            "sync {args:?}: {}{}\nendpoint:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            ep.logs()
        );
    }
}
