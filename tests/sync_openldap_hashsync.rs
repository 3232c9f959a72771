//! Password hash sync end to end from OpenLDAP: the lab's real slapd (`sambaNTPassword`)
//! → a real `causeway sync` (the verifier derived there) → the ingestion API of a real
//! `causeway serve` → its PHS sign-in, with no agent connected. A changed password works
//! within seconds of the change (OpenLDAP's content-sync notification wakes the sync
//! host) and the old one stops working; a re-sync of an unchanged password changes
//! nothing; the flags answer a right password as AD (and so PTA) would — disabled `533`,
//! expired `701`, must change `773` — and a wrong one stays a wrong password; a refused
//! batch changes nothing and is sent again. The NT hash (hex or raw) and the password are
//! in no log line, no file either side wrote.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use causeway_credential::{NtHash, Password, SignInOutcome};
use causeway_store::{History as _, SqliteStore, Verifiers as _};
use causeway_sync::ad::dirsync::Cookie;
use causeway_sync::ad::entry::Guid;
use causeway_sync::config::SyncConfig;
use causeway_sync::export::anchor_id;
use causeway_sync::export::channel::{Channel, ChannelError};
use causeway_sync::export::identity::Identity;
use causeway_sync::hashsync::{self, HashSyncError};
use causeway_sync::space::ConnectorSpace;
use common::endpoint::{bin, sign_in_fresh, Browser, Endpoint};
use common::ingest::{contains, files, recording_proxy};
use common::slapd::{as_admin, ldaps, Cleanup};
use common::{delete_tree, lab};
use ldap3::{Ldap, Mod, Scope, SearchEntry};

const CONNECTOR: &str = "lab-hs";
const P1: &str = "Hs-First-Pw-61!";
const P2: &str = "Hs-Second-Pw-62!";
const P3: &str = "Hs-Third-Pw-63!";
const CAROL_PW: &str = "Hs-Carol-Pw-64!";
const BOB_PW: &str = "Hs-Bob-Pw-65!";
const DAVE_PW: &str = "Hs-Dave-Pw-66!";

fn nt(pw: &str) -> [u8; 16] {
    *NtHash::from_password(&Password::new(pw.into()).expect("valid")).expose_secret()
}

fn nt_hex(pw: &str) -> String {
    nt(pw).iter().map(|b| format!("{b:02X}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

async fn anchor_of(ldap: &mut Ldap, dn: &str) -> String {
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"])
        .await
        .expect("search")
        .success()
        .expect("read");
    let e = SearchEntry::construct(entries.into_iter().next().expect("entry"));
    anchor_id(&Guid::parse(&e.attrs["entryUUID"][0]).expect("a UUID"))
}

async fn set_password(adm: &mut Ldap, dn: &str, pw: &str, at: u64) {
    let (hex, at) = (nt_hex(pw), at.to_string());
    adm.modify(
        dn,
        vec![
            Mod::Replace("sambaNTPassword", HashSet::from([hex.as_str()])),
            Mod::Replace("sambaPwdLastSet", HashSet::from([at.as_str()])),
        ],
    )
    .await
    .expect("modify")
    .success()
    .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
}

fn words(o: SignInOutcome) -> String {
    o.user_message().to_owned()
}

/// A sync host with one OpenLDAP connector that syncs password hashes; every output it
/// printed is kept for the leak scan.
struct Host {
    dir: PathBuf,
    outputs: String,
}

impl Host {
    fn new(ep: &Endpoint, ou: &str) -> Self {
        let lab = lab();
        let dir = ep.dir.join("sync-hs");
        std::fs::create_dir_all(&dir).expect("dir");
        let pw = dir.join("ldap.pw");
        std::fs::write(&pw, format!("{}\n", lab.get("SLAPD_SYNC_PASSWORD"))).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = format!(
            r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]
poll_interval = "1h"
hash_interval = "1h"

[[connector]]
name = "{CONNECTOR}"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ldap.pw"
base_dn = "{base}"
include_ous = ["{ou}"]
change_notification = true
password_hash_sync = true
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
            outputs: String::new(),
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.join("sync.toml")
    }

    fn sync(&mut self, ep: &Endpoint, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new(bin());
        cmd.args(["--log", "trace", "sync"])
            .args(args)
            .arg("-c")
            .arg(self.config());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run causeway sync");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        self.outputs.push_str(&format!("{stdout}\n{stderr}\n"));
        assert!(
            out.status.success(),
            "sync {args:?}:\n{stdout}\n{stderr}\nendpoint:\n{}",
            ep.logs()
        );
        stdout
    }
}

/// What the endpoint holds for a user: its verifier's text, history length and last
/// hash sync (to see that nothing changed).
async fn snapshot(store: &SqliteStore, upn: &str) -> (Option<String>, usize, Option<SystemTime>) {
    let (u, v) = store
        .verifier_of(upn)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{upn} is a user at the endpoint"));
    let h = store.history(upn).await.expect("history").len();
    (v.map(|v| v.expose_encoded()), h, u.password.last_hash_sync)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openldap_password_hashes_sync_as_verifiers_within_seconds() {
    let lab = lab();
    let mut adm = as_admin(lab).await;
    let t = std::process::id() % 100_000;
    let ou = format!("ou=cw-hs{t},{}", lab.get("SLAPD_PEOPLE_DN"));
    delete_tree(&mut adm, &ou).await;
    let _cleanup = Cleanup(ou.clone());
    let ou_name = format!("cw-hs{t}");
    adm.add(
        &ou,
        vec![
            ("objectClass", HashSet::from(["organizationalUnit"])),
            ("ou", HashSet::from([ou_name.as_str()])),
        ],
    )
    .await
    .expect("add")
    .success()
    .expect("the OU");
    // alice: normal; carol: must change (sambaPwdLastSet 0, as pwdLastSet 0 in AD); bob:
    // an administrator's lock; dave: his account expired in 2009 (sambaKickoffTime).
    let people = [
        ("hsa", P1, None),
        ("hsc", CAROL_PW, Some(("sambaPwdLastSet", "0"))),
        (
            "hsb",
            BOB_PW,
            Some(("pwdAccountLockedTime", "000001010000Z")),
        ),
        ("hsd", DAVE_PW, Some(("sambaKickoffTime", "1255392000"))),
    ];
    let mut dns = Vec::new();
    let mut upns = Vec::new();
    let set_at = now_secs().to_string();
    for (i, (name, pw, extra)) in people.iter().enumerate() {
        let uid = format!("{name}{t}");
        let dn = format!("uid={uid},{ou}");
        let mail = format!("{uid}@ldap.causeway.test");
        let sid = format!(
            "{}-{}",
            lab.get("SLAPD_DOMAIN_SID"),
            30_000 + t * 4 + i as u32
        );
        let hex = nt_hex(pw);
        let mut attrs = vec![
            (
                "objectClass",
                HashSet::from(["inetOrgPerson", "sambaSamAccount"]),
            ),
            ("uid", HashSet::from([uid.as_str()])),
            ("cn", HashSet::from([uid.as_str()])),
            ("sn", HashSet::from(["Hs"])),
            ("mail", HashSet::from([mail.as_str()])),
            ("sambaSID", HashSet::from([sid.as_str()])),
            ("sambaNTPassword", HashSet::from([hex.as_str()])),
            ("sambaAcctFlags", HashSet::from(["[U          ]"])),
        ];
        match extra {
            Some(("sambaPwdLastSet", v)) => attrs.push(("sambaPwdLastSet", HashSet::from([*v]))),
            Some((k, v)) => {
                attrs.push((k, HashSet::from([*v])));
                attrs.push(("sambaPwdLastSet", HashSet::from([set_at.as_str()])));
            }
            None => attrs.push(("sambaPwdLastSet", HashSet::from([set_at.as_str()]))),
        }
        adm.add(&dn, attrs)
            .await
            .expect("add")
            .success()
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
        dns.push(dn);
        upns.push(mail);
    }
    let (alice, carol, bob, dave) = (&upns[0], &upns[1], &upns[2], &upns[3]);
    let alice_anchor = anchor_of(&mut adm, &dns[0]).await;

    let ep = Endpoint::start(
        "sync-hs",
        "[sync]\nlease = \"60s\"\n\n[[domain]]\nname = \"ldap.causeway.test\"\nmethod = \"phs\"\n",
        &["--demo-apps"],
    );
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("store");
    let mut host = Host::new(&ep, &ou);
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    host.sync(
        &ep,
        &["register", "--host-name", "sync-hs"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    // From here on every ingestion message goes through the recording proxy.
    let (proxy, payloads) = recording_proxy(&ep, &host.dir.join("state/identity")).await;
    let text = std::fs::read_to_string(host.config()).expect("config");
    std::fs::write(host.config(), text.replace(&ep.url, &proxy)).expect("config");

    // The first round exports the users, then pushes their verifiers and flags.
    host.sync(&ep, &["run", "--once"], &[]);
    assert_eq!(sign_in_fresh(&ep, alice, P1), "signed in", "{}", ep.logs());
    assert_eq!(
        sign_in_fresh(&ep, carol, CAROL_PW),
        words(SignInOutcome::PasswordMustChange)
    );
    assert_eq!(
        sign_in_fresh(&ep, carol, P1),
        words(SignInOutcome::InvalidCredentials)
    );
    assert_eq!(
        sign_in_fresh(&ep, bob, BOB_PW),
        words(SignInOutcome::AccountDisabled)
    );
    assert_eq!(
        sign_in_fresh(&ep, bob, P1),
        words(SignInOutcome::InvalidCredentials)
    );
    assert_eq!(
        sign_in_fresh(&ep, dave, DAVE_PW),
        words(SignInOutcome::AccountExpired)
    );
    assert_eq!(
        sign_in_fresh(&ep, dave, P1),
        words(SignInOutcome::InvalidCredentials)
    );
    let (_, _, metrics) =
        Browser::new(&ep.dir.join("m")).get(&format!("{}/metrics", ep.metrics_url));
    for line in [
        "causeway_hash_sync_users_total{change=\"verifier\"} 4",
        "causeway_hash_sync_users_total{change=\"error\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }
    let shown = ep.cli(&["users", "show", alice], None);
    assert!(
        shown.contains("last hash sync: 20"),
        "an RFC 3339 time: {shown}"
    );
    let status = host.sync(&ep, &["status"], &[]);
    assert!(status.contains("password hash sync: last pass"), "{status}");
    assert!(status.contains("0 errors"), "{status}");
    let first = snapshot(&store, alice).await;
    assert!(first.0.is_some(), "alice has a verifier");

    // A re-sync of the same password (the entry changed otherwise, so the pass reads it)
    // pushes nothing: same verifier, no history row, same last hash sync.
    adm.modify(
        &dns[0],
        vec![Mod::Replace("description", HashSet::from(["touched"]))],
    )
    .await
    .expect("modify")
    .success()
    .expect("touched");
    host.sync(&ep, &["run", "--once"], &[]);
    assert_eq!(
        snapshot(&store, alice).await,
        first,
        "an unchanged password churns nothing"
    );

    // A refused batch (this host no longer holds the lease: `--once` gave it up) changes
    // nothing at the endpoint and is not remembered, so the next pass sends it again.
    set_password(&mut adm, &dns[0], P2, now_secs() + 1).await;
    let cfg = SyncConfig::load(&host.config()).expect("config");
    let c = cfg
        .connectors
        .iter()
        .find(|c| c.name == CONNECTOR)
        .expect("connector");
    let id = Identity::load(&cfg.state_dir).expect("identity");
    let space = ConnectorSpace::open(&cfg.state_dir.join("connector-space.sqlite")).expect("space");
    let marks_before = space.hash_marks(CONNECTOR).expect("marks");
    let read = hashsync::openldap::read(c, &Cookie::default())
        .await
        .expect("read slapd");
    let records: Vec<_> = read
        .records
        .into_iter()
        .filter_map(Result::ok)
        .filter(|r| anchor_id(&r.anchor) == alice_anchor)
        .collect();
    assert_eq!(records.len(), 1);
    let mut ch = Channel::open(&cfg.endpoints, &id).await.expect("channel");
    let refused =
        hashsync::push_records(&mut ch, &space, CONNECTOR, records, 500, SystemTime::now()).await;
    match refused {
        Err(HashSyncError::Channel(ChannelError::Refused(reason))) => {
            assert!(reason.contains("lease"), "{reason}")
        }
        other => panic!("expected a refusal: {other:?}"),
    }
    drop(ch);
    assert_eq!(
        snapshot(&store, alice).await,
        first,
        "a refused batch changes nothing"
    );
    assert_eq!(space.hash_marks(CONNECTOR).expect("marks"), marks_before);
    drop(space);

    // The daemon: its first round sends the refused change again; then a new password in
    // slapd wakes it through content sync and is usable within seconds.
    let log = host.dir.join("daemon.log");
    let mut daemon = Command::new(bin())
        .args(["--log", "trace", "sync", "run", "-c"])
        .arg(host.config())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start the sync daemon");
    let wait_for = |what: &str, f: &mut dyn FnMut() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "{what}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("the daemon's first hash pass and its watcher", &mut || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        l.contains("watching for content-sync changes") && l.contains("hash sync: ")
    });
    assert_eq!(
        sign_in_fresh(&ep, alice, P2),
        "signed in",
        "the refused change was retried"
    );
    assert_eq!(
        sign_in_fresh(&ep, alice, P1),
        words(SignInOutcome::InvalidCredentials)
    );
    let before = snapshot(&store, alice).await;
    let changed = Instant::now();
    set_password(&mut adm, &dns[0], P3, now_secs() + 2).await;
    let p3 = Password::new(P3.into()).expect("valid");
    loop {
        let found = store.verifier_of(alice).await.expect("read");
        if causeway_store::verify_found(found, &p3) == SignInOutcome::Success {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(30),
            "P3 never arrived: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = changed.elapsed();
    eprintln!(
        "hash sync: change in slapd to usable at the endpoint: {} ms",
        took.as_millis()
    );
    assert_eq!(sign_in_fresh(&ep, alice, P3), "signed in");
    assert_eq!(
        sign_in_fresh(&ep, alice, P2),
        words(SignInOutcome::InvalidCredentials)
    );
    let after = snapshot(&store, alice).await;
    assert_eq!(after.1, before.1 + 1, "one history row for one change");
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    host.outputs
        .push_str(&std::fs::read_to_string(&log).unwrap_or_default());

    // No NT hash (hex either case, raw) and no password anywhere either side wrote.
    let mut written = Vec::new();
    files(&host.dir, &mut written);
    files(&ep.data(), &mut written);
    let payloads = payloads.lock().expect("capture").clone();
    let seen = String::from_utf8_lossy(&payloads);
    assert!(
        seen.contains("\"type\":\"hash_batch\"") && seen.contains("v1;PPH1_MD4,"),
        "the proxy saw the hash batches"
    );
    written.push(("ingestion payloads".into(), payloads));
    written.push(("sync output".into(), host.outputs.clone().into_bytes()));
    written.push(("endpoint log".into(), ep.logs().into_bytes()));
    for pw in [P1, P2, P3, CAROL_PW, BOB_PW, DAVE_PW] {
        let hex = nt_hex(pw);
        let plain: [Vec<u8>; 4] = [
            hex.clone().into_bytes(),
            hex.to_lowercase().into_bytes(),
            nt(pw).to_vec(),
            pw.as_bytes().to_vec(),
        ];
        // The connector space keeps attribute values in base64: look for that form too.
        let b64 = base64::engine::general_purpose::STANDARD;
        let needles: Vec<Vec<u8>> = plain
            .iter()
            .flat_map(|n| [n.clone(), b64.encode(n).into_bytes()])
            .collect();
        for (path, bytes) in &written {
            for n in &needles {
                assert!(
                    !contains(bytes, n),
                    "{} holds the NT hash or password of {pw:?}",
                    path.display()
                );
            }
        }
    }
}
