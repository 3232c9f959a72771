//! `causeway sync check` with `password_hash_sync = true`, against the lab's real Samba
//! AD DC and OpenLDAP: the check reads one password hash the way a hash pass will, says
//! yes for the sync accounts, names the missing rights (and how to grant them) for alice,
//! and never prints a password or a hash.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use causeway_testkit::TempDir;
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
    let lab = lab();
    let d = TempDir::new(&format!("sync-check-phs-{tag}"));
    std::fs::write(d.path().join("sync.toml"), config(lab, ad.0, ldap.0)).expect("write");
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
