//! Password hash sync end to end from AD: the lab's real Samba DC, replicated over MS-DRSR
//! (`IDL_DRSGetNCChanges`) as `svc-sync` → a real `causeway sync` (the verifier derived
//! there) → the ingestion API of a real `causeway serve` → its PHS sign-in, with no agent.
//! The NT hashes our DRSR client reads equal what impacket's `secretsdump` and
//! `samba-tool user getpassword` read from the same DC; every lab user's synced verifier
//! takes the lab password and no other; must-change, disabled and expired users get the
//! answers PTA gives; a password set with `samba-tool` is usable within seconds (change
//! notification wakes the sync host) and the old one stops working; a bind account
//! without the replication rights fails the pass with an error naming them, visible in
//! `sync status`, and nothing is applied; so do a dead DRSUAPI port and a GetNCChanges
//! reply cut mid-PDU by a proxy, and the next pass converges. No NT hash and no password
//! is in any log line (trace, sspi's included), any file either side wrote, or any
//! ingestion payload.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use causeway_credential::{NtHash, Password, SignInOutcome};
use causeway_store::{SqliteStore, Verifiers as _};
use causeway_sync::ad::dirsync::Cookie;
use causeway_sync::config::SyncConfig;
use causeway_sync::export::channel::Channel;
use causeway_sync::export::identity::Identity;
use causeway_sync::hashsync;
use causeway_sync::space::ConnectorSpace;
use common::endpoint::{bin, sign_in_fresh, Endpoint};
use common::ingest::{contains, files, recording_proxy};
use common::samba::{cutting_proxy, hex, samba_tool, samba_tool_nt, secretsdump_nts, Cleanup};
use common::sync_host::TestOu;
use common::{admin, lab};

const CONNECTOR: &str = "lab-ad-hs";
/// What `TestOu::user` gives a new user.
const P1: &str = "Sync-Test-Pw-77!";
const P2: &str = "Ad-Hs-Second-Pw-62!";
/// Not anyone's password.
const WRONG: &str = "Not-The-Password-9";

/// The lab users in the synced scope (`CN=Users` and `OU=Staff`), by their lab.env key.
const LAB_USERS: [&str; 13] = [
    "ALICE", "BOB", "CAROL", "DAVE", "ERIN", "FRANK", "GINA", "HANK", "IVAN", "OLIVIA", "KIM",
    "LIAM", "NORA",
];

fn md4_hex(pw: &str) -> String {
    hex(NtHash::from_password(&Password::new(pw.into()).expect("valid")).expose_secret())
}

fn words(o: SignInOutcome) -> String {
    o.user_message().to_owned()
}

/// A sync host with one AD connector that syncs password hashes; every output it
/// printed is kept for the leak scan.
struct Host {
    dir: PathBuf,
    outputs: String,
}

impl Host {
    /// `lab_scope`: the lab's own users (`CN=Users`, `OU=Staff`) are in scope beside `ou`.
    fn new(ep: &Endpoint, ou: &str, lab_scope: bool) -> Self {
        let lab = lab();
        let dir = ep.dir.join("sync-ad-hs");
        std::fs::create_dir_all(&dir).expect("dir");
        for (file, pw) in [
            ("ad.pw", lab.get("AD_SVC_SYNC_PASSWORD")),
            ("alice.pw", lab.get("AD_ALICE_PASSWORD")),
        ] {
            let p = dir.join(file);
            std::fs::write(&p, format!("{pw}\n")).expect("pw");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let base = lab.get("AD_BASE_DN");
        let text = format!(
            r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]
poll_interval = "1h"
hash_interval = "1h"

[[connector]]
name = "{CONNECTOR}"
kind = "ad"
servers = ["{ad}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ad.pw"
base_dn = "{base}"
include_ous = [{lab_ous}"{ou}"]
change_notification = true
password_hash_sync = true
"#,
            ep = ep.url,
            ad = lab.get("AD_LDAPS_URL"),
            ca = lab.get("AD_CA_CERT"),
            bind = lab.get("AD_SVC_SYNC_DN"),
            lab_ous = if lab_scope {
                format!("\"CN=Users,{base}\", \"OU=Staff,{base}\", ")
            } else {
                String::new()
            },
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

    fn connector(&self) -> causeway_sync::config::Connector {
        let cfg = SyncConfig::load(&self.config()).expect("config");
        cfg.connectors
            .into_iter()
            .find(|c| c.name == CONNECTOR)
            .expect("connector")
    }

    fn sync(&mut self, ep: &Endpoint, args: &[&str], env: &[(&str, &str)]) -> String {
        let (ok, stdout, stderr) = self.try_sync(args, env);
        assert!(
            ok,
            "sync {args:?}:\n{stdout}\n{stderr}\nendpoint:\n{}",
            ep.logs()
        );
        stdout
    }

    /// `causeway --log trace sync ARGS -c CONFIG`: success, stdout, stderr.
    fn try_sync(&mut self, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
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
        (out.status.success(), stdout, stderr)
    }

    /// Sets (or with `None` removes) the connector's `drsuapi_port`.
    fn drsuapi_port(&self, port: Option<u16>) {
        let text = std::fs::read_to_string(self.config()).expect("config");
        let mut text: String = text
            .lines()
            .filter(|l| !l.starts_with("drsuapi_port"))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(p) = port {
            text.push_str(&format!("drsuapi_port = {p}\n"));
        }
        std::fs::write(self.config(), text).expect("config");
    }
}

/// What the endpoint holds for a user: its verifier's text and last hash sync.
async fn snapshot(store: &SqliteStore, upn: &str) -> (Option<String>, Option<SystemTime>) {
    let (u, v) = store
        .verifier_of(upn)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{upn} is a user at the endpoint"));
    (v.map(|v| v.expose_encoded()), u.password.last_hash_sync)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_password_hashes_replicate_over_drsr_and_sign_in_through_phs_within_seconds() {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "ahs").await;
    let _cleanup = Cleanup(ou.dn.clone());
    let sam = format!("ahs{}", ou.tag);
    let new_dn = ou.user(&mut adm, &sam, None).await;
    let new_upn = format!("{sam}@lab.causeway.test");

    let ep = Endpoint::start(
        "sync-ad-hs",
        "[sync]\nlease = \"60s\"\n\n[[domain]]\nname = \"lab.causeway.test\"\nmethod = \"phs\"\n",
        &["--demo-apps"],
    );
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("store");
    let mut host = Host::new(&ep, &ou.dn, true);
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    host.sync(
        &ep,
        &["register", "--host-name", "sync-ad-hs"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    // From here on every ingestion message goes through the recording proxy.
    let (proxy, payloads) = recording_proxy(&ep, &host.dir.join("state/identity")).await;
    let text = std::fs::read_to_string(host.config()).expect("config");
    std::fs::write(host.config(), text.replace(&ep.url, &proxy)).expect("config");

    // The first round exports the users, then replicates their hashes and pushes verifiers.
    host.sync(&ep, &["run", "--once"], &[]);

    // 1. Our DRSR client's NT hashes = impacket's = samba-tool's = MD4 of the lab password;
    // each synced verifier takes the lab password and no other.
    let read = hashsync::ad::read(&host.connector(), &Cookie::default())
        .await
        .expect("replicate as svc-sync");
    assert!(read.full, "an empty cookie is a full replication");
    let ours: HashMap<String, String> = read
        .records
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|r| Some((r.dn.to_lowercase(), hex(r.nt.as_ref()?.expose_secret()))))
        .collect();
    let scratch = ep.dir.join("secretsdump");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let sams: Vec<&str> = LAB_USERS
        .iter()
        .map(|k| lab.get(&format!("AD_{k}_SAM")))
        .collect();
    let dumped = secretsdump_nts(lab, &scratch, &sams);
    let mut secrets: Vec<String> = vec![P1.into(), P2.into()];
    for key in LAB_USERS {
        let (sam, upn, dn, pw) = (
            lab.get(&format!("AD_{key}_SAM")),
            lab.get(&format!("AD_{key}_UPN")),
            lab.get(&format!("AD_{key}_DN")),
            lab.get(&format!("AD_{key}_PASSWORD")),
        );
        secrets.push(pw.into());
        let md4 = md4_hex(pw);
        assert_eq!(
            ours.get(&dn.to_lowercase()),
            Some(&md4),
            "{sam}: our DRSR read"
        );
        assert_eq!(dumped.get(sam), Some(&md4), "{sam}: secretsdump");
        assert_eq!(samba_tool_nt(lab, sam), md4, "{sam}: samba-tool");
        let (_, v) = store
            .verifier_of(upn)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("{upn} was exported"));
        let v = v.unwrap_or_else(|| panic!("{upn} has a synced verifier"));
        assert!(v.verify(&Password::new(pw.into()).expect("valid")), "{upn}");
        for other in [WRONG, P1, lab.get("AD_ALICE_PASSWORD")] {
            if other != pw {
                assert!(
                    !v.verify(&Password::new(other.into()).expect("valid")),
                    "{upn} takes another password"
                );
            }
        }
    }
    assert_eq!(ours.get(&new_dn.to_lowercase()), Some(&md4_hex(P1)));

    // 3. The flags answer a right password as AD (and so PTA) does; a wrong one stays wrong.
    let (alice, alice_pw) = (lab.get("AD_ALICE_UPN"), lab.get("AD_ALICE_PASSWORD"));
    assert_eq!(
        sign_in_fresh(&ep, alice, alice_pw),
        "signed in",
        "{}",
        ep.logs()
    );
    assert_eq!(
        sign_in_fresh(&ep, lab.get("AD_OLIVIA_UPN"), lab.get("AD_OLIVIA_PASSWORD")),
        "signed in"
    );
    for (key, outcome) in [
        ("CAROL", SignInOutcome::PasswordMustChange),
        ("BOB", SignInOutcome::AccountDisabled),
        ("DAVE", SignInOutcome::AccountExpired),
    ] {
        let upn = lab.get(&format!("AD_{key}_UPN"));
        let pw = lab.get(&format!("AD_{key}_PASSWORD"));
        assert_eq!(sign_in_fresh(&ep, upn, pw), words(outcome), "{upn}");
        assert_eq!(
            sign_in_fresh(&ep, upn, WRONG),
            words(SignInOutcome::InvalidCredentials),
            "{upn}"
        );
    }
    let shown = ep.cli(&["users", "show", alice], None);
    // An RFC 3339 time (this century), not Unix seconds.
    assert!(shown.contains("last hash sync: 20"), "{shown}");
    let status = host.sync(&ep, &["status"], &[]);
    assert!(status.contains("password hash sync: last pass"), "{status}");

    // 5. A bind account without the two replication rights (alice): the pass fails with an
    // error that names them and how to grant them, `sync status` shows it, and nothing
    // at the endpoint changes.
    let before = snapshot(&store, alice).await;
    let good = std::fs::read_to_string(host.config()).expect("config");
    std::fs::write(
        host.config(),
        good.replace(lab.get("AD_SVC_SYNC_DN"), lab.get("AD_ALICE_DN"))
            .replace("\"ad.pw\"", "\"alice.pw\""),
    )
    .expect("config");
    {
        let cfg = SyncConfig::load(&host.config()).expect("config");
        let c = host.connector();
        let id = Identity::load(&cfg.state_dir).expect("identity");
        let space =
            ConnectorSpace::open(&cfg.state_dir.join("connector-space.sqlite")).expect("space");
        let mut ch = Channel::open(&cfg.endpoints, &id).await.expect("channel");
        let marks = space.hash_marks(CONNECTOR).expect("marks");
        let cookie = space.hash_cookie(CONNECTOR).expect("cookie");
        let e = hashsync::pass(&c, &space, &mut ch, 500, SystemTime::now())
            .await
            .expect_err("alice may not replicate");
        let msg = e.to_string();
        assert!(
            msg.contains("Replicating Directory Changes\"")
                && msg.contains("Replicating Directory Changes All")
                && msg.contains("samba-tool dsacl"),
            "{msg}"
        );
        assert_eq!(space.hash_marks(CONNECTOR).expect("marks"), marks);
        assert_eq!(space.hash_cookie(CONNECTOR).expect("cookie"), cookie);
    }
    let status = host.sync(&ep, &["status"], &[]);
    assert!(
        status.contains("last pass failed") && status.contains("Replicating Directory Changes All"),
        "{status}"
    );
    assert_eq!(snapshot(&store, alice).await, before, "nothing applied");
    std::fs::write(host.config(), &good).expect("config");

    // 2. The daemon: a password set in AD wakes it (change notification), the hash pass
    // follows the woken round, and the new password is usable within seconds.
    assert_eq!(sign_in_fresh(&ep, &new_upn, P1), "signed in");
    let log = host.dir.join("daemon.log");
    let mut daemon = Command::new(bin())
        .args(["--log", "trace", "sync", "run", "-c"])
        .arg(host.config())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start the sync daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("watching for change notifications") && l.contains("hash sync: ") {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never settled: {l}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changed = Instant::now();
    samba_tool(
        lab,
        &["user", "setpassword", &sam, &format!("--newpassword={P2}")],
    );
    let p2 = Password::new(P2.into()).expect("valid");
    loop {
        let found = store.verifier_of(&new_upn).await.expect("read");
        if causeway_store::verify_found(found, &p2) == SignInOutcome::Success {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(30),
            "P2 never arrived: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "hash sync: samba-tool setpassword to usable at the endpoint: {} ms",
        changed.elapsed().as_millis()
    );
    assert_eq!(sign_in_fresh(&ep, &new_upn, P2), "signed in");
    assert_eq!(
        sign_in_fresh(&ep, &new_upn, P1),
        words(SignInOutcome::InvalidCredentials)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    host.outputs
        .push_str(&std::fs::read_to_string(&log).unwrap_or_default());

    // 4. No NT hash (hex either case, raw, base64) and no password anywhere either side
    // wrote, in any log line or in any ingestion payload.
    let mut written = Vec::new();
    files(&host.dir, &mut written);
    files(&ep.data(), &mut written);
    let payloads = payloads.lock().expect("capture").clone();
    let seen = String::from_utf8_lossy(&payloads);
    assert!(
        seen.contains("\"type\":\"hash_batch\"") && seen.contains("v1;PPH1_MD4,"),
        "the proxy saw the hash batches"
    );
    assert!(
        host.outputs.contains("sspi::") && host.outputs.contains("causeway_drsr"),
        "the scanned logs hold the trace of the NTLM and sealing code"
    );
    written.push(("ingestion payloads".into(), payloads));
    written.push(("sync output".into(), host.outputs.clone().into_bytes()));
    written.push(("endpoint log".into(), ep.logs().into_bytes()));
    let b64 = base64::engine::general_purpose::STANDARD;
    for pw in &secrets {
        let nt = *NtHash::from_password(&Password::new(pw.clone()).expect("valid")).expose_secret();
        let plain: [Vec<u8>; 4] = [
            hex(&nt).into_bytes(),
            hex(&nt).to_uppercase().into_bytes(),
            nt.to_vec(),
            pw.as_bytes().to_vec(),
        ];
        let needles: Vec<Vec<u8>> = plain
            .iter()
            .flat_map(|n| [n.clone(), b64.encode(n).into_bytes()])
            .collect();
        for (path, bytes) in &written {
            // The alice.pw / ad.pw files are the operator's own secrets, not something
            // either side wrote.
            if path.extension().is_some_and(|e| e == "pw") {
                continue;
            }
            for n in &needles {
                assert!(
                    !contains(bytes, n),
                    "{} holds the NT hash or password of a user",
                    path.display()
                );
            }
        }
    }
}

/// Whether `upn`'s verifier at the endpoint takes `pw`.
async fn takes(store: &SqliteStore, upn: &str, pw: &str) -> bool {
    let found = store.verifier_of(upn).await.expect("read");
    causeway_store::verify_found(found, &Password::new(pw.into()).expect("valid"))
        == SignInOutcome::Success
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_drsuapi_port_and_a_reply_cut_mid_replication_fail_clearly_apply_nothing_and_the_next_pass_converges(
) {
    let lab = lab();
    let mut adm = admin(lab).await;
    let ou = TestOu::new(&mut adm, "ahf").await;
    let _cleanup = Cleanup(ou.dn.clone());
    let sam = format!("ahf{}", ou.tag);
    ou.user(&mut adm, &sam, None).await;
    let upn = format!("{sam}@lab.causeway.test");
    let ep = Endpoint::start(
        "sync-ad-hf",
        "[sync]\nlease = \"60s\"\n\n[[domain]]\nname = \"lab.causeway.test\"\nmethod = \"phs\"\n",
        &[],
    );
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("store");
    let mut host = Host::new(&ep, &ou.dn, false);
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    host.sync(
        &ep,
        &["register", "--host-name", "sync-ad-hf"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    host.sync(&ep, &["run", "--once"], &[]);
    assert!(takes(&store, &upn, P1).await, "{}", ep.logs());
    let state = host.dir.join("state/connector-space.sqlite");
    let marks = || {
        let space = ConnectorSpace::open(&state).expect("space");
        (
            space.hash_marks(CONNECTOR).expect("marks"),
            space.hash_cookie(CONNECTOR).expect("cookie"),
        )
    };

    // Where the endpoint mapper says DRSUAPI is, to put the proxy in front of it.
    let drsuapi = {
        let assoc = causeway_drsr::rpc::Association::connect(
            &causeway_drsr::rpc::Target {
                host: lab.get("AD_HOST").parse().expect("an IP"),
                port: None,
                server_name: lab.get("AD_DC_FQDN").into(),
            },
            &causeway_drsr::rpc::DRSUAPI,
            &causeway_drsr::rpc::Credentials::Ntlm {
                domain: lab.get("AD_DOMAIN").into(),
                user: "svc-sync".into(),
                password: Password::new(lab.get("AD_SVC_SYNC_PASSWORD").into()).expect("valid"),
            },
            &causeway_drsr::rpc::Limits::default(),
        )
        .await
        .expect("bind to DRSUAPI");
        assoc.peer()
    };

    samba_tool(
        lab,
        &["user", "setpassword", &sam, &format!("--newpassword={P2}")],
    );
    let before = marks();

    // A dead DRSUAPI port (nothing listens on port 1 of the DC's address).
    host.drsuapi_port(Some(1));
    let _ = host.try_sync(&["run", "--once"], &[]);
    let status = host.sync(&ep, &["status"], &[]);
    let dead = format!("{}:1", lab.get("AD_HOST"));
    assert!(
        status.contains("last pass failed") && status.contains(&dead),
        "{status}"
    );
    assert!(takes(&store, &upn, P1).await && !takes(&store, &upn, P2).await);
    assert_eq!(marks(), before, "nothing applied");

    // A replication reply cut in the middle: a clear error, nothing half-applied.
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let port = cutting_proxy(drsuapi, cut.clone()).await;
    host.drsuapi_port(Some(port));
    let _ = host.try_sync(&["run", "--once"], &[]);
    let status = host.sync(&ep, &["status"], &[]);
    assert!(
        status.contains("last pass failed") && status.contains("in the middle of a PDU"),
        "{status}"
    );
    assert!(takes(&store, &upn, P1).await && !takes(&store, &upn, P2).await);
    assert_eq!(marks(), before, "nothing half-applied");

    // The next pass (same proxy, no cut) converges.
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    host.sync(&ep, &["run", "--once"], &[]);
    assert!(takes(&store, &upn, P2).await, "{}", host.outputs);
    assert!(!takes(&store, &upn, P1).await);
    let status = host.sync(&ep, &["status"], &[]);
    assert!(!status.contains("last pass failed"), "{status}");
    assert_ne!(marks(), before);
}

/// `drsr_auth = "kerberos"`: the same replication, sealed with a Kerberos ticket for the
/// DC's `host/` principal from its KDC instead of NTLM, reads the same NT hashes (the
/// 32-byte AES session key decrypts them). No endpoint is involved: the read is the
/// sync host's alone.
#[tokio::test]
async fn kerberos_replicates_the_same_hashes_as_ntlm() {
    let lab = lab();
    let dir = common::endpoint::temp_dir("sync-ad-krb");
    let pw = dir.join("ad.pw");
    std::fs::write(&pw, format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD"))).expect("pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let base = lab.get("AD_BASE_DN");
    let config = |auth: &str| {
        format!(
            "[sync]\nstate_dir = \"state\"\nendpoints = [\"https://127.0.0.1:1\"]\n\n\
             [[connector]]\nname = \"{CONNECTOR}\"\nkind = \"ad\"\nservers = [\"{}\"]\n\
             ca_file = \"{}\"\nbind_dn = \"{}\"\nbind_password_file = \"ad.pw\"\n\
             base_dn = \"{base}\"\npassword_hash_sync = true\n{auth}\n",
            lab.get("AD_LDAPS_URL"),
            lab.get("AD_CA_CERT"),
            lab.get("AD_SVC_SYNC_DN"),
        )
    };
    let read_with = |auth: &'static str| {
        let path = dir.join(format!("sync-{}.toml", auth.len()));
        std::fs::write(&path, config(auth)).expect("config");
        let c = SyncConfig::load(&path)
            .expect("valid config")
            .connectors
            .remove(0);
        async move {
            hashsync::ad::read(&c, &Cookie::default())
                .await
                .unwrap_or_else(|e| panic!("replicate with {auth:?}: {e}"))
                .records
                .into_iter()
                .filter_map(Result::ok)
                .filter_map(|r| Some((r.dn.to_lowercase(), hex(r.nt.as_ref()?.expose_secret()))))
                .collect::<HashMap<String, String>>()
        }
    };
    let kerberos = read_with("drsr_auth = \"kerberos\"").await;
    let ntlm = read_with("").await;
    let alice = lab.get("AD_ALICE_DN").to_lowercase();
    assert_eq!(
        kerberos.get(&alice).map(String::as_str),
        Some(md4_hex(lab.get("AD_ALICE_PASSWORD")).as_str()),
        "alice's hash over Kerberos"
    );
    assert_eq!(kerberos, ntlm, "Kerberos and NTLM read the same hashes");

    // A kdc only makes sense with Kerberos, and drsr_auth only on AD: both refused at
    // their line.
    let path = dir.join("bad.toml");
    std::fs::write(&path, config("kdc = \"127.0.0.2:88\"")).expect("config");
    let e = SyncConfig::load(&path)
        .expect_err("kdc without kerberos")
        .to_string();
    assert!(e.contains("kdc is only used with drsr_auth"), "{e}");
    assert!(e.contains("bad.toml:14:"), "the error names the line: {e}");
    std::fs::write(&path, config("drsr_auth = \"basic\"")).expect("config");
    let e = SyncConfig::load(&path)
        .expect_err("unknown auth")
        .to_string();
    assert!(e.contains("use \"ntlm\" or \"kerberos\""), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
