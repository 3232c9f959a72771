//! `causeway sync check` against the lab's real Samba AD DC and OpenLDAP: the command a new
//! administrator runs first. It must say yes for the least-privilege sync accounts, say
//! exactly what is missing for an ordinary user, and never print a password.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use causeway_testkit::TempDir;
use common::{lab, Lab};

fn dir(tag: &str) -> TempDir {
    TempDir::new(&format!("sync-check-{tag}"))
}

fn private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn config(lab: &Lab, bind_dn: &str) -> String {
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
bind_dn = "{bind_dn}"
bind_password_file = "ad.pw"
base_dn = "{base}"

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["{ldaps}"]
ca_file = "{ldap_ca}"
bind_dn = "{ldap_dn}"
bind_password_env = "CAUSEWAY_TEST_LDAP_SYNC_PW"
base_dn = "{ldap_base}"
"#,
        // The DC's certificate carries its loopback address as well as its name.
        ad = lab.get("AD_LDAPS_URL"),
        ad_ca = lab.get("AD_CA_CERT"),
        base = lab.get("AD_BASE_DN"),
        ldaps = lab
            .get("SLAPD_LDAPS_URL")
            .replace("127.0.0.1", lab.get("SLAPD_TLS_SERVER_NAME")),
        ldap_ca = lab.get("SLAPD_CA_CERT"),
        ldap_dn = lab.get("SLAPD_SYNC_DN"),
        ldap_base = lab.get("SLAPD_BASE_DN"),
    )
}

/// Runs `causeway sync SUBCOMMAND ARGS… -c DIR/sync.toml [EXTRA…]` with the OpenLDAP
/// connector's password in its variable: success, stdout, stderr.
fn sync(d: &Path, args: &[&str], extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .arg("sync")
        .args(args)
        .arg("-c")
        .arg(d.join("sync.toml"))
        .args(extra)
        .env(
            "CAUSEWAY_TEST_LDAP_SYNC_PW",
            lab().get("SLAPD_SYNC_PASSWORD"),
        )
        .output()
        .expect("run causeway");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(d: &Path, ad_password: &str) -> (bool, String, String) {
    private(&d.join("ad.pw"), &format!("{ad_password}\n"));
    sync(d, &["check"], &[])
}

#[test]
fn the_sync_accounts_pass_every_check() {
    let lab = lab();
    let d = dir("ok");
    // The first server answers TCP and hangs up at once: the check must fail over.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let dead_url = format!(
        "ldaps://127.0.0.1:{}",
        dead.local_addr().expect("addr").port()
    );
    std::thread::spawn(move || {
        for c in dead.incoming() {
            drop(c);
        }
    });
    let ad = lab.get("AD_LDAPS_URL");
    let text = config(lab, lab.get("AD_SVC_SYNC_DN")).replacen(
        &format!("servers = [\"{ad}\"]"),
        &format!("servers = [\"{dead_url}\", \"{ad}\"]"),
        1,
    );
    assert!(text.contains(&dead_url));
    std::fs::write(d.path().join("sync.toml"), text).expect("write");
    let pw = lab.get("AD_SVC_SYNC_PASSWORD");
    let (ok, out, err) = check(d.path(), pw);
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    for want in [
        "connector lab-ad: ok",
        &format!("{ad} (dc1.lab.causeway.test) accepted the bind as CN=svc-sync"),
        &format!("base_dn is the domain {}", lab.get("AD_BASE_DN")),
        "DirSync allowed (first cookie",
        "change notification advertised",
        "highestCommittedUSN ",
        "connector lab-ldap: ok",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    for secret in [pw, lab.get("SLAPD_SYNC_PASSWORD")] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "a password was printed"
        );
    }
}

#[test]
fn an_ordinary_user_is_told_which_rights_dirsync_needs() {
    let lab = lab();
    let d = dir("rights");
    std::fs::write(
        d.path().join("sync.toml"),
        config(lab, lab.get("AD_ALICE_DN")),
    )
    .expect("write");
    let (ok, out, err) = check(d.path(), lab.get("AD_ALICE_PASSWORD"));
    assert!(!ok, "an account without replication rights passed:\n{out}");
    assert!(out.contains("connector lab-ad: PROBLEM"), "{out}");
    assert!(
        out.contains("may not use DirSync (LDAP 50:")
            && out.contains("Replicating Directory Changes"),
        "{out}"
    );
    assert!(
        !out.contains(lab.get("AD_ALICE_PASSWORD")) && !err.contains(lab.get("AD_ALICE_PASSWORD"))
    );
}

#[test]
fn refused_credentials_stop_at_the_first_server_and_say_so() {
    let lab = lab();
    let d = dir("creds");
    // An account that does not exist: LDAP 49 like a wrong password, without adding to any
    // real account's bad-password count.
    let nobody = format!(
        "CN=nobody-{},CN=Users,{}",
        std::process::id(),
        lab.get("AD_BASE_DN")
    );
    // A second server that records whether anyone dialled it.
    let second = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    second.set_nonblocking(true).expect("nonblocking");
    let ad = lab.get("AD_LDAPS_URL");
    let both = format!(
        "servers = [\"{ad}\", \"ldaps://127.0.0.1:{}\"]",
        second.local_addr().expect("addr").port()
    );
    let text = config(lab, &nobody).replacen(&format!("servers = [\"{ad}\"]"), &both, 1);
    assert!(text.contains(&both));
    std::fs::write(d.path().join("sync.toml"), text).expect("write");
    let unique = format!("Never-Printed-{}", std::process::id());
    let (ok, out, err) = check(d.path(), &unique);
    assert!(!ok);
    assert!(
        out.contains("refused the bind account's credentials (LDAP 49")
            && out.contains("other servers were not tried"),
        "{out}"
    );
    assert!(
        !out.contains(&unique) && !err.contains(&unique),
        "the password was printed"
    );
    // The command has exited: a connection it made would be waiting in the backlog.
    assert_eq!(
        second.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "a refused password was tried on the next server too"
    );
}

#[test]
fn a_bad_file_is_refused_with_its_line_before_anything_is_contacted() {
    let lab = lab();
    let d = dir("bad");
    let text =
        config(lab, lab.get("AD_SVC_SYNC_DN")).replace("kind = \"openldap\"", "kind = \"ldap\"");
    std::fs::write(d.path().join("sync.toml"), &text).expect("write");
    let (ok, out, err) = check(d.path(), "unused");
    assert!(!ok);
    let line = text
        .lines()
        .position(|l| l.contains("kind = \"ldap\""))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!(
            "sync.toml:{line}:8: kind \"ldap\": use \"ad\" or \"openldap\""
        )),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
}

fn import(d: &Path) -> (bool, String, String) {
    sync(d, &["import", "--connector", "lab-ad"], &[])
}

#[test]
fn import_is_a_full_pass_then_deltas_from_the_stored_cookie() {
    let lab = lab();
    let d = dir("import");
    std::fs::write(
        d.path().join("sync.toml"),
        config(lab, lab.get("AD_SVC_SYNC_DN")),
    )
    .expect("write");
    let pw = lab.get("AD_SVC_SYNC_PASSWORD");
    private(&d.path().join("ad.pw"), &format!("{pw}\n"));

    let (ok, out, err) = import(d.path());
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("lab-ad: full import: "), "{out}");
    let added: u64 = out
        .split(" entries in ")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("entry count");
    assert!(
        added >= 15,
        "the lab domain has at least its 15 users: {out}"
    );
    assert!(out.contains(" 0 unreadable"), "{out}");
    let space = d.path().join("state/connector-space.sqlite");
    let mode = std::fs::metadata(&space)
        .expect("space file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the connector space is private");
    let state_mode = std::fs::metadata(d.path().join("state"))
        .expect("state dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state_mode, 0o700);

    let (ok, out, err) = import(d.path());
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.starts_with("lab-ad: delta: "),
        "the second run resumes from the cookie: {out}"
    );
    assert!(
        !out.contains(pw) && !err.contains(pw),
        "a password was printed"
    );

    // Both connectors of one file land in the same connector space, apart.
    let (ok, text, err) = sync(d.path(), &["import", "--connector", "lab-ldap"], &[]);
    assert!(ok, "{text}{err}");
    assert!(text.starts_with("lab-ldap: full import: "), "{text}");
    let (ok, out, _) = import(d.path());
    assert!(
        ok && out.starts_with("lab-ad: delta: "),
        "the AD watermark is untouched: {out}"
    );
}

#[test]
fn plan_shows_what_a_run_would_export_and_exports_nothing() {
    let lab = lab();
    let d = dir("plan");
    let base = lab.get("AD_BASE_DN");
    let text = config(lab, lab.get("AD_SVC_SYNC_DN")).replace(
        &format!("base_dn = \"{base}\""),
        &format!("include_ous = [\"OU=Staff,{base}\"]\nbase_dn = \"{base}\""),
    );
    assert!(text.contains("include_ous"));
    std::fs::write(d.path().join("sync.toml"), text).expect("write");
    private(
        &d.path().join("ad.pw"),
        &format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD")),
    );
    let plan = || sync(d.path(), &["plan", "--connector", "lab-ad"], &[]);
    let (ok, _, err) = plan();
    assert!(!ok && err.contains("run `causeway sync import"), "{err}");
    let (ok, out, err) = import(d.path());
    assert!(ok, "{out}{err}");
    let (ok, first, err) = plan();
    assert!(ok, "{first}{err}");
    // Only OU=Staff is in scope: olivia is, alice (CN=Users) is not.
    assert!(
        first.contains(&format!("+ user {}", lab.get("AD_OLIVIA_DN"))),
        "{first}"
    );
    assert!(!first.contains(lab.get("AD_ALICE_DN")), "{first}");
    assert!(first.starts_with("lab-ad: "), "{first}");
    let (_, again, _) = plan();
    assert_eq!(
        first, again,
        "a dry run records nothing: the same plan twice"
    );
}

fn object(d: &Path, target: &str) -> (bool, String, String) {
    sync(d, &["object", "--connector", "lab-ad"], &[target])
}

#[test]
fn one_object_on_demand_says_what_each_step_decided() {
    let lab = lab();
    let d = dir("object");
    let base = lab.get("AD_BASE_DN");
    let text = config(lab, lab.get("AD_SVC_SYNC_DN")).replace(
        &format!("base_dn = \"{base}\""),
        &format!("include_ous = [\"OU=Staff,{base}\"]\nbase_dn = \"{base}\""),
    );
    std::fs::write(d.path().join("sync.toml"), text).expect("write");
    private(
        &d.path().join("ad.pw"),
        &format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD")),
    );

    // By UPN: in scope, a new user to add, with its mapped fields.
    let (ok, out, err) = object(d.path(), lab.get("AD_OLIVIA_UPN"));
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!("object {} (objectGUID ", lab.get("AD_OLIVIA_DN"))),
        "{out}"
    );
    assert!(
        out.contains(&format!("upn [\"{}\"]", lab.get("AD_OLIVIA_UPN"))),
        "{out}"
    );
    assert!(
        out.contains("  scope: in scope\n") && out.contains("  plan: add\n"),
        "{out}"
    );
    // Not registered with an endpoint: nothing is sent, and it says what to do.
    assert!(
        out.contains("export: not sent: ") && out.contains("causeway sync register"),
        "{out}"
    );

    // By DN: out of scope, and says which rule.
    let (ok, out, _) = object(d.path(), lab.get("AD_ALICE_DN"));
    assert!(ok, "{out}");
    assert!(
        out.contains("  scope: out of scope: under none of include_ous"),
        "{out}"
    );

    // By objectGUID (the text form `object` itself printed).
    let guid = out
        .split("(objectGUID ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("guid")
        .to_owned();
    let (ok, again, _) = object(d.path(), &guid);
    assert!(ok, "{again}");
    assert!(
        again.starts_with(&format!("object {}", lab.get("AD_ALICE_DN"))),
        "{again}"
    );

    // Nothing that matches: said so, with what can be given.
    let (ok, _, err) = object(d.path(), "nobody-at-all@lab.causeway.test");
    assert!(!ok);
    assert!(err.contains("no single object matches"), "{err}");
}
