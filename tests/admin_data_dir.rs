//! Admin commands find the endpoint's data directory the way `serve` does (`--config` /
//! `CAUSEWAY_CONFIG` → `server.data_dir`, or `--data-dir`), and refuse a missing one with
//! where they looked, creating nothing: no empty store, no new CA, no token-signing key.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::endpoint::{bin, temp_dir, Endpoint};

/// `causeway <args>` in `cwd`, with no data-dir or config from the environment.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(cwd)
        .env_remove("CAUSEWAY_CONFIG")
        .env_remove("CAUSEWAY_DATA_DIR")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run causeway")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run where no endpoint ever ran, every admin command fails, names the directory it looked
/// for and why, and leaves the place as it was (the old commands printed "no users" and
/// made an empty directory, or a brand-new CA for `certs token`).
#[test]
fn admin_commands_refuse_a_missing_data_dir_and_create_nothing() {
    let cwd = temp_dir("admin-missing");
    let expected = cwd.join("causeway-data");
    for args in [
        &["users", "list"][..],
        &["users", "show", "a@b.example"],
        &["certs", "token"],
        &["certs", "list"],
        &["certs", "keys"],
        &["certs", "rollover"],
        &["apps", "list"],
    ] {
        let out = run_in(&cwd, args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        let t = text(&out);
        assert!(
            t.contains(&expected.display().to_string()) && t.contains("no data directory"),
            "{args:?}: {t}"
        );
        assert!(t.contains("the default"), "{args:?} does not say why: {t}");
        assert!(
            !expected.exists(),
            "{args:?} created {}",
            expected.display()
        );
    }
    // Through a config that names another directory: that one is named.
    let cfg = cwd.join("causeway.toml");
    std::fs::write(
        &cfg,
        "[server]\ndata_dir = \"/nonexistent/causeway-state\"\n",
    )
    .expect("cfg");
    let out = run_in(&cwd, &["users", "list"], &[("CAUSEWAY_CONFIG", &cfg)]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("/nonexistent/causeway-state") && t.contains("server.data_dir of"),
        "{t}"
    );
    std::fs::remove_dir_all(&cwd).ok();
}

/// Next to an endpoint whose config names its data directory, `--config` (and
/// `CAUSEWAY_CONFIG`) reach that endpoint's users, agents and keys.
#[test]
fn admin_commands_reach_the_data_dir_named_by_the_config() {
    let dir = temp_dir("admin-config");
    // Endpoint::start_in runs `serve --config dir/causeway.toml --data-dir dir/data`; the
    // config names the same directory, relative to itself.
    let ep = Endpoint::start_in(dir.clone(), "[server]\ndata_dir = \"data\"\n", &[]);
    let cfg = ep.dir.join("causeway.toml");
    let elsewhere = temp_dir("admin-elsewhere");
    let cfg_s = cfg.display().to_string();
    let mut add = Command::new(bin())
        .args([
            "users",
            "add",
            "--upn",
            "mira@cloud.example",
            "--password-stdin",
        ])
        .args(["--config", &cfg_s])
        .current_dir(&elsewhere)
        .env_remove("CAUSEWAY_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("users add");
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().expect("stdin");
        stdin.write_all(b"Lantern-Orchard-52\n").expect("password");
    }
    let out = add.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out));
    let listed = run_in(&elsewhere, &["users", "list"], &[("CAUSEWAY_CONFIG", &cfg)]);
    assert!(listed.status.success(), "{}", text(&listed));
    let t = String::from_utf8_lossy(&listed.stdout).into_owned();
    let mut lines = t.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("UPN") && header.contains("UPDATED"),
        "{t}"
    );
    assert!(lines.any(|l| l.starts_with("mira@cloud.example")), "{t}");
    let json = run_in(
        &elsewhere,
        &["users", "list", "--json", "--config", &cfg_s],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    let mira = v
        .as_array()
        .and_then(|a| a.iter().find(|u| u["upn"] == "mira@cloud.example"))
        .expect("mira listed");
    let created = mira["created_at"].as_str().expect("created_at");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "not RFC 3339: {created}"
    );
    assert_eq!(mira["source"], "cloud");
    let keys = run_in(&elsewhere, &["certs", "keys", "--config", &cfg_s], &[]);
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains("signing"),
        "{}",
        text(&keys)
    );
    let agents = run_in(&elsewhere, &["certs", "list"], &[("CAUSEWAY_CONFIG", &cfg)]);
    assert!(agents.status.success(), "{}", text(&agents));
    assert!(!elsewhere.join("causeway-data").exists());
    std::fs::remove_dir_all(&elsewhere).ok();
}
