//! `causeway sync check` with `password_hash_sync = true`, against the lab's real Samba
//! AD DC and OpenLDAP: the check reads one password hash the way a hash pass will, says
//! yes for the sync accounts, names the missing rights (and how to grant them) for alice,
//! and never prints a password or a hash. `sync object` of alice pushes her password hash
//! to a real `causeway serve` with a PHS domain, and a second run pushes nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use causeway_store::{History as _, SqliteStore, Verifiers as _};
use causeway_testkit::TempDir;
use common::endpoint::{bin, sign_in_fresh, Endpoint};
use common::{lab, Lab};

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn config(lab: &Lab, ad_bind: &str, ldap_bind: &str) -> String {
    format!(
        r#"
[sync]
state_dir = "state"
endpoints = ["https://127.0.0.1:8443"]

[[connector]]
name = "lab-ad"
kind = "ad"
servers = ["{ad}"]
ca_file = "{ad_ca}"
bind_dn = "{ad_bind}"
bind_password_file = "ad.pw"
base_dn = "{base}"
password_hash_sync = true

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ldap_ca}"
bind_dn = "{ldap_bind}"
bind_password_env = "CAUSEWAY_TEST_LDAP_BIND_PW"
base_dn = "{ldap_base}"
password_hash_sync = true
"#,
        ad = lab.get("AD_LDAPS_URL"),
        ad_ca = lab.get("AD_CA_CERT"),
        base = lab.get("AD_BASE_DN"),
        ldaps = lab
            .get("SLAPD_LDAPS_URL")
            .replace("127.0.0.1", lab.get("SLAPD_TLS_SERVER_NAME")),
        ldap_ca = lab.get("SLAPD_CA_CERT"),
        ldap_base = lab.get("SLAPD_BASE_DN"),
    )
}

/// Runs `causeway sync check` with `ad` and `ldap` as (bind DN, password) of the two
/// connectors: success, stdout, stderr.
fn check(tag: &str, ad: (&str, &str), ldap: (&str, &str)) -> (bool, String, String) {
    check_with(tag, ad, ldap, |t| t)
}

/// [`check`] with the configuration's text changed by `edit` first.
fn check_with(
    tag: &str,
    ad: (&str, &str),
    ldap: (&str, &str),
    edit: impl FnOnce(String) -> String,
) -> (bool, String, String) {
    let lab = lab();
    let d = TempDir::new(&format!("sync-check-phs-{tag}"));
    std::fs::write(d.path().join("sync.toml"), edit(config(lab, ad.0, ldap.0))).expect("write");
    private(&d.path().join("ad.pw"), &format!("{}\n", ad.1));
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["sync", "check", "-c"])
        .arg(d.path().join("sync.toml"))
        .env("CAUSEWAY_TEST_LDAP_BIND_PW", ldap.1)
        .output()
        .expect("run causeway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lab's NT hash of `password` (MD4 of UTF-16LE) in hex, upper and lower case, to
/// prove it is not printed.
fn nt_hex(password: &str) -> [String; 2] {
    let pw = causeway_credential::Password::new(password.to_owned()).expect("a password");
    let nt = causeway_credential::NtHash::from_password(&pw);
    let hex: String = nt
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    [hex.clone(), hex.to_uppercase()]
}

#[test]
fn the_sync_accounts_can_read_a_password_hash_and_each_step_is_a_line() {
    let lab = lab();
    let (ok, out, err) = check(
        "ok",
        (lab.get("AD_SVC_SYNC_DN"), lab.get("AD_SVC_SYNC_PASSWORD")),
        (lab.get("SLAPD_SYNC_DN"), lab.get("SLAPD_SYNC_PASSWORD")),
    );
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "connector lab-ad: ok",
        &format!(
            "ok  endpoint mapper at {}:135 maps DRSUAPI to port ",
            lab.get("AD_HOST")
        ),
        &format!("ok  DRSUAPI answers on {}:", lab.get("AD_HOST")),
        "ok  sealed NTLM bind (packet privacy) as lab.causeway.test\\svc-sync accepted",
        &format!(
            "ok  IDL_DRSBind accepted; domain naming context {}",
            lab.get("AD_BASE_DN")
        ),
        &format!(
            "ok  EXOP_REPL_OBJ of {} returned a decryptable unicodePwd",
            lab.get("AD_SVC_SYNC_DN")
        ),
        "connector lab-ldap: ok",
        &format!("is readable by {}", lab.get("SLAPD_SYNC_DN")),
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    for secret in [
        lab.get("AD_SVC_SYNC_PASSWORD"),
        lab.get("SLAPD_SYNC_PASSWORD"),
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "a password was printed"
        );
    }
    for h in nt_hex(lab.get("AD_SVC_SYNC_PASSWORD"))
        .into_iter()
        .chain(nt_hex(lab.get("SLAPD_ALICE_PASSWORD")))
    {
        assert!(
            !out.contains(&h) && !err.contains(&h),
            "an NT hash was printed"
        );
    }
}

#[test]
fn alice_is_told_both_replication_rights_and_the_slapd_acl_line() {
    let lab = lab();
    let (ok, out, err) = check(
        "alice",
        (lab.get("AD_ALICE_DN"), lab.get("AD_ALICE_PASSWORD")),
        (lab.get("SLAPD_ALICE_DN"), lab.get("SLAPD_ALICE_PASSWORD")),
    );
    assert!(!ok, "alice passed a hash-sync check:\n{out}");
    // Everything before the rights works for her: the failing line is the rights one.
    assert!(
        out.contains("ok  sealed NTLM bind (packet privacy) as lab.causeway.test\\alice accepted"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.contains("EXOP_REPL_OBJ of"))
        .unwrap_or_else(|| panic!("no replication line in:\n{out}"));
    assert!(line.trim_start().starts_with("ERR"), "{line}");
    for want in [
        "\"Replicating Directory Changes\" (1131f6aa-9c07-11d1-f79f-00c04fc2dcd2)",
        "\"Replicating Directory Changes All\" (1131f6ad-9c07-11d1-f79f-00c04fc2dcd2)",
        "samba-tool dsacl set --action=allow --objectdn=DC=lab,DC=causeway,DC=test",
        "dsacls \"DC=lab,DC=causeway,DC=test\" /G \"alice@lab.causeway.test:CA;Replicating Directory Changes\"",
    ] {
        assert!(line.contains(want), "missing {want:?} in:\n{line}");
    }
    // The SDDL names alice's real SID, as the lab's own grant to svc-sync does.
    let sddl = line
        .split("--sddl='")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("an sddl");
    let sid = sddl
        .split_once("00c04fc2dcd2;;")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(sid, _)| sid)
        .expect("a SID");
    assert!(sid.starts_with("S-1-5-21-"), "{sddl}");
    assert_eq!(
        sddl,
        format!(
            "(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;{sid})(OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;{sid})"
        )
    );
    let ldap = out
        .lines()
        .find(|l| l.contains("may not read sambaNTPassword"))
        .unwrap_or_else(|| panic!("no sambaNTPassword line in:\n{out}"));
    assert!(
        ldap.contains(&format!(
            "`access to attrs=sambaNTPassword by dn.exact=\"{}\" read`",
            lab.get("SLAPD_ALICE_DN")
        )),
        "{ldap}"
    );
    assert!(out.contains("connector lab-ldap: PROBLEM"), "{out}");
    for secret in [
        lab.get("AD_ALICE_PASSWORD"),
        lab.get("SLAPD_ALICE_PASSWORD"),
    ] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "a password was printed"
        );
    }
}

#[test]
fn an_openldap_scope_without_samba_users_is_said_to_have_no_hash_to_read() {
    let lab = lab();
    // ou=system holds the sync account and no sambaSamAccount user.
    let base = lab.get("SLAPD_BASE_DN");
    let system = format!("ou=system,{base}");
    let (ok, out, _) = check_with(
        "nosamba",
        (lab.get("AD_SVC_SYNC_DN"), lab.get("AD_SVC_SYNC_PASSWORD")),
        (lab.get("SLAPD_SYNC_DN"), lab.get("SLAPD_SYNC_PASSWORD")),
        |t| {
            t.replace(
                &format!("base_dn = \"{base}\""),
                &format!("base_dn = \"{system}\""),
            )
        },
    );
    assert!(!ok, "{out}");
    assert!(out.contains("connector lab-ad: ok"), "{out}");
    assert!(
        out.contains(&format!(
            "ERR no user with objectClass sambaSamAccount under {system} is visible to {}",
            lab.get("SLAPD_SYNC_DN")
        )),
        "{out}"
    );
}

/// Runs `causeway sync ARGS -c DIR/sync.toml`, asserting success: stdout and stderr.
fn sync_in(dir: &Path, ep: &Endpoint, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("sync")
        .args(args)
        .arg("-c")
        .arg(dir.join("sync.toml"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run causeway sync");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "sync {args:?}:\n{o}\n{e}\nendpoint:\n{}",
        ep.logs()
    );
    (o, e)
}

/// The endpoint's verifier text and history length for `upn` (to see that nothing moved).
async fn snapshot(store: &SqliteStore, upn: &str) -> (Option<String>, usize) {
    let (_, v) = store
        .verifier_of(upn)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{upn} is a user at the endpoint"));
    let h = store.history(upn).await.expect("history").len();
    (v.map(|v| v.expose_encoded()), h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_object_pushes_alices_hash_so_her_lab_password_works_and_a_rerun_pushes_nothing() {
    let lab = lab();
    let ep = Endpoint::start(
        "sync-object-phs",
        "[sync]\nlease = \"60s\"\n\n[[domain]]\nname = \"lab.causeway.test\"\nmethod = \"phs\"\n",
        &["--demo-apps"],
    );
    let dir = ep.dir.join("sync-host");
    std::fs::create_dir_all(&dir).expect("dir");
    private(
        &dir.join("ad.pw"),
        &format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD")),
    );
    std::fs::write(
        dir.join("sync.toml"),
        format!(
            r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]

[[connector]]
name = "lab-ad"
kind = "ad"
servers = ["{ad}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ad.pw"
base_dn = "{base}"
password_hash_sync = true
"#,
            ep = ep.url,
            ad = lab.get("AD_LDAPS_URL"),
            ca = lab.get("AD_CA_CERT"),
            bind = lab.get("AD_SVC_SYNC_DN"),
            base = lab.get("AD_BASE_DN"),
        ),
    )
    .expect("config");
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    sync_in(
        &dir,
        &ep,
        &["register", "--host-name", "sync-object"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    let (alice, pw) = (lab.get("AD_ALICE_UPN"), lab.get("AD_ALICE_PASSWORD"));
    // Before: the endpoint has never heard of alice.
    assert_ne!(sign_in_fresh(&ep, alice, pw), "signed in");

    let (out, err) = sync_in(&dir, &ep, &["object", alice], &[]);
    assert!(out.contains("  export: sent as run "), "{out}");
    assert!(
        out.contains("  password hash: pushed a new verifier"),
        "{out}\n{err}"
    );
    assert_eq!(sign_in_fresh(&ep, alice, pw), "signed in", "{}", ep.logs());
    assert_ne!(sign_in_fresh(&ep, alice, "Not-Her-Password-1"), "signed in");
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("store");
    let first = snapshot(&store, alice).await;
    assert!(first.0.is_some(), "alice has a verifier");

    // Again: the same password, nothing to push, and the endpoint's verifier (its salt)
    // and history are as they were.
    let (out, err) = sync_in(&dir, &ep, &["object", alice], &[]);
    assert!(
        out.contains("  password hash: unchanged: nothing pushed"),
        "{out}\n{err}"
    );
    assert_eq!(snapshot(&store, alice).await, first);
    assert_eq!(sign_in_fresh(&ep, alice, pw), "signed in");

    let hashes = nt_hex(pw);
    for text in [&out, &err, &ep.logs()] {
        assert!(!text.contains(pw), "alice's password was printed");
        for h in &hashes {
            assert!(!text.contains(h.as_str()), "alice's NT hash was printed");
        }
    }
}
