//! A sync host renews its client certificate over the ingestion channel: a real
//! `causeway serve` issuing short sync certificates (`[sync] certificate_validity`), a
//! host registered with `causeway sync register`, and `causeway sync run --once` against
//! the lab's Samba AD DC before and after 70 % of the certificate's life. The second run
//! renews and saves the new pair; the previous certificate still opens a channel; a
//! revoked host is refused a renewal.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use causeway_sync::config::SyncConfig;
use causeway_sync::export::channel::Channel;
use causeway_sync::export::identity::Identity;
use common::endpoint::{bin, Endpoint};
use common::lab;

/// The sync certificates' validity: with the CA's 5-minute backdating a certificate lives
/// 460 s, so renewal is due 22 s after it is issued (long enough for a first run before
/// it, short enough to wait for).
const VALIDITY: &str = "160s";
/// What the host logs when it renewed.
const RENEWED: &str = "sync host certificate renewed";

/// Writes a sync host's configuration in `dir` (a connector on the lab's DC, scoped to its
/// small Domain Controllers OU) and returns its path.
fn configure(dir: &Path, ep: &Endpoint) -> PathBuf {
    let lab = lab();
    let pw = dir.join("ad.pw");
    std::fs::write(&pw, format!("{}\n", lab.get("AD_SVC_SYNC_PASSWORD"))).expect("pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = format!(
        r#"[sync]
state_dir = "state"
endpoints = ["{ep}"]
poll_interval = "1h"

[[connector]]
name = "lab-ad"
kind = "ad"
servers = ["{ad}"]
ca_file = "{ca}"
bind_dn = "{bind}"
bind_password_file = "ad.pw"
base_dn = "{base}"
include_ous = ["OU=Domain Controllers,{base}"]
"#,
        ep = ep.url,
        ad = lab.get("AD_LDAPS_URL"),
        ca = lab.get("AD_CA_CERT"),
        bind = lab.get("AD_SVC_SYNC_DN"),
        base = lab.get("AD_BASE_DN"),
    );
    let cfg = dir.join("sync.toml");
    std::fs::write(&cfg, text).expect("config");
    cfg
}

/// `causeway --log info sync ARGS -c CONFIG`: success, stdout, stderr.
fn sync(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["--log", "info", "sync"])
        .args(args)
        .arg("-c")
        .arg(cfg);
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

fn once(cfg: &Path, ep: &Endpoint) -> String {
    let (ok, out, err) = sync(cfg, &["run", "--once"], &[]);
    assert!(
        ok,
        "sync run --once:\n{out}\n{err}\nendpoint:\n{}",
        ep.logs()
    );
    err
}

#[tokio::test]
async fn a_sync_host_renews_past_70_percent_and_its_previous_certificate_still_opens_a_channel() {
    let ep = Endpoint::start(
        "sync-renew",
        &format!("[sync]\ncertificate_validity = {VALIDITY:?}\n"),
        &[],
    );
    let dir = ep.dir.join("sync-a");
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = configure(&dir, &ep);
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    let (ok, out, err) = sync(
        &cfg,
        &["register", "--host-name", "renewing"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    assert!(ok, "register: {out}\n{err}\nendpoint:\n{}", ep.logs());
    let state = dir.join("state");
    let first = Identity::load(&state).expect("registered");
    let (nb, na) = first.validity().expect("a certificate");
    assert_eq!(
        na.duration_since(nb).expect("ordered"),
        Duration::from_secs(160 + 300),
        "the endpoint signs for [sync] certificate_validity"
    );
    let mark = nb + na.duration_since(nb).expect("ordered") * 7 / 10;

    // Before the mark: exported, nothing renewed.
    let log = once(&cfg, &ep);
    assert!(
        SystemTime::now() < mark,
        "the first run ended after the renewal mark: this machine is too slow for the test"
    );
    assert!(!log.contains(RENEWED), "{log}");
    let same = Identity::load(&state).expect("loads");
    assert_eq!(same.cert_pem, first.cert_pem);

    // Past the mark: the run renews and saves a new key and certificate.
    if let Ok(left) = mark.duration_since(SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let log = once(&cfg, &ep);
    assert!(log.contains(RENEWED), "{log}");
    assert!(ep.logs().contains(RENEWED), "{}", ep.logs());
    let second = Identity::load(&state).expect("loads");
    assert_eq!(second.host_id, first.host_id);
    assert_ne!(second.cert_pem, first.cert_pem);
    assert_ne!(
        second.tls_key_pem.expose_secret(),
        first.tls_key_pem.expose_secret()
    );
    assert!(
        second.validity().expect("a certificate").0 > nb,
        "a newer certificate"
    );
    assert!(!log.contains("PRIVATE KEY") && !ep.logs().contains("PRIVATE KEY"));

    // Past the new certificate's own mark, the previous certificate still opens a
    // channel (it is valid until it expires), and so does the new one.
    let (nb2, na2) = second.validity().expect("a certificate");
    let mark2 = nb2 + na2.duration_since(nb2).expect("ordered") * 7 / 10;
    if let Ok(left) = mark2.duration_since(SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
    let endpoints = SyncConfig::load(&cfg).expect("config").endpoints;
    Channel::open(&endpoints, &first)
        .await
        .expect("the previous certificate is still accepted");
    Channel::open(&endpoints, &second)
        .await
        .expect("the renewed certificate is accepted");

    // Revoked: although renewal is due again, the host is refused and nothing is saved.
    ep.cli(&["certs", "revoke", &first.host_id], None);
    let (_, out, err) = sync(&cfg, &["run", "--once"], &[]);
    assert!(!err.contains(RENEWED), "{out}\n{err}");
    assert!(err.contains("revoked"), "{out}\n{err}");
    assert_eq!(
        Identity::load(&state).expect("loads").cert_pem,
        second.cert_pem
    );
}
