//! `causeway certs keys` and `causeway certs rollover` against a real endpoint's data
//! directory: listing writes nothing, a rollover uses the config's `[signing]` settings,
//! `--activate-after` moves a published successor, and what is printed is what the key
//! files say (read back with `certs keys`).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::endpoint::{bin, temp_dir, Endpoint};

const SHORT: &str = "[signing]\nkey_lifetime = \"2d\"\npublish_before_expiry = \"1d\"\nactivate_after_publish = \"12h\"\n";

fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("CAUSEWAY_CONFIG")
        .env_remove("CAUSEWAY_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run causeway")
}

fn ok(args: &[&str]) -> String {
    let o = cli(args);
    assert!(
        o.status.success(),
        "causeway {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// RFC 3339 (`2026-12-02T05:46:24Z`) to a time.
fn parse_time(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s}: {e}"));
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(t.unix_timestamp()).expect("after 1970"))
}

/// `certs keys` rows: (id, state, signs from, expires).
fn keys(config: &str) -> Vec<(String, String, SystemTime, SystemTime)> {
    ok(&["certs", "keys", "--config", config])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5).then(|| {
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    parse_time(f[2]),
                    parse_time(f[3]),
                )
            })
        })
        .collect()
}

fn near(a: SystemTime, b: SystemTime, what: &str) {
    let d = a.duration_since(b).unwrap_or_else(|e| e.duration());
    assert!(d < Duration::from_secs(120), "{what}: {a:?} vs {b:?}");
}

/// A data directory with no keys yet: `certs keys` says so and creates none (it used to
/// create the directory and a key, with the default policy).
#[test]
fn certs_keys_lists_without_writing() {
    let dir = temp_dir("keys-nowrite");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data");
    let d = data.display().to_string();
    let out = ok(&["certs", "keys", "--data-dir", &d]);
    assert!(out.contains("no token-signing keys yet"), "{out}");
    assert!(files(&data).is_empty(), "{:?}", files(&data));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn certs_rollover_uses_the_configs_signing_settings_and_tells_the_truth() {
    let ep = Endpoint::start("keys-rollover", SHORT, &[]);
    let cfg = ep.dir.join("causeway.toml");
    std::fs::write(&cfg, format!("[server]\ndata_dir = \"data\"\n{SHORT}")).expect("config");
    let cfg = cfg.display().to_string();
    let keys_dir = ep.data().join("token-signing");
    let before = files(&keys_dir);
    let listed = keys(&cfg);
    assert_eq!(files(&keys_dir), before, "certs keys wrote");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let now = SystemTime::now();
    // The endpoint's first key follows the config: two days.
    near(
        listed[0].3,
        now + Duration::from_secs(2 * 86_400),
        "first key's expiry",
    );

    // A rollover without flags: a new key of the config's lifetime, signing 12 h later.
    let out = ok(&["certs", "rollover", "--config", &cfg]);
    assert!(out.contains("is published in metadata now"), "{out}");
    let listed = keys(&cfg);
    let next = listed
        .iter()
        .find(|k| k.1 == "published")
        .unwrap_or_else(|| panic!("no published key: {listed:?}"))
        .clone();
    near(
        next.3,
        now + Duration::from_secs(2 * 86_400),
        "next key's expiry",
    );
    near(
        next.2,
        now + Duration::from_secs(12 * 3600),
        "next key's start",
    );
    assert!(out.contains(&next.0), "{out}");

    // With the successor published, --activate-after moves it, and says so truthfully.
    let out = ok(&[
        "certs",
        "rollover",
        "--config",
        &cfg,
        "--activate-after",
        "1h",
    ]);
    assert!(out.contains("its start was moved"), "{out}");
    assert!(out.contains("(in 3"), "{out}");
    let moved = keys(&cfg);
    assert_eq!(moved.len(), 2, "no extra key: {moved:?}");
    let next2 = moved.iter().find(|k| k.0 == next.0).expect("same key");
    near(
        next2.2,
        SystemTime::now() + Duration::from_secs(3600),
        "moved start",
    );

    // Without flags again: the published key keeps its time, and the output gives that
    // time, not the policy's 12 h.
    let out = ok(&["certs", "rollover", "--config", &cfg]);
    assert!(out.contains("keeps its start"), "{out}");
    assert!(out.contains("(in 3"), "{out}");
    let kept = keys(&cfg);
    assert_eq!(kept.iter().find(|k| k.0 == next.0).expect("key").2, next2.2);

    // Beyond the signing key's end: brought forward, with a warning.
    let out = ok(&[
        "certs",
        "rollover",
        "--config",
        &cfg,
        "--activate-after",
        "10d",
    ]);
    assert!(out.contains("warning: the lead time"), "{out}");
    let capped = keys(&cfg);
    let signing = capped.iter().find(|k| k.1 == "signing").expect("signing");
    let next3 = capped.iter().find(|k| k.0 == next.0).expect("key");
    assert!(next3.2 < signing.3, "{capped:?}");
}
