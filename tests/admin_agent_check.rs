//! `causeway agent check` looks past the syntax: the shipped `agent.example.toml` is
//! well-formed but names a CA file and a state directory that do not exist here, so `agent
//! run` would fail, and the check must say so, naming both. A truncated CA file is called a
//! truncated PEM, not a list of the bytes the parser missed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use common::endpoint::{bin, temp_dir};

fn check(config: &Path) -> Output {
    Command::new(bin())
        .args(["agent", "check", "-c"])
        .arg(config)
        .output()
        .expect("run causeway agent check")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_example_config_is_called_incomplete_naming_its_missing_files() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let o = check(&example);
    let e = stderr(&o);
    assert!(!o.status.success(), "called valid: {e}");
    assert!(
        e.contains("/etc/causeway/ad-ca.pem: does not exist"),
        "the CA file: {e}"
    );
    assert!(
        e.contains("/var/lib/causeway-agent: [agent] state_dir does not exist"),
        "the state directory: {e}"
    );
}

#[test]
fn a_truncated_ca_file_is_called_a_truncated_pem() {
    let dir = temp_dir("agent-check-pem");
    let ca = causeway_certs::Ca::load_or_create(&dir.join("ca"), SystemTime::now()).expect("ca");
    let pem = ca.cert_pem();
    std::fs::write(dir.join("ad-ca.pem"), &pem[..pem.len() / 2]).expect("truncated");
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        "[agent]\nstate_dir = \"state\"\nendpoints = [\"https://idp.example.com:8443\"]\n\n[directory]\ndomain_controllers = [\"ldaps://dc1.example.com\"]\nca_file = \"ad-ca.pem\"\n",
    )
    .expect("config");
    let o = check(&cfg);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("ad-ca.pem: truncated PEM"), "{e}");
    assert!(!e.contains("[45, 45"), "a byte list: {e}");
    std::fs::remove_dir_all(&dir).ok();
}
