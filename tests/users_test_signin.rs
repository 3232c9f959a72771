//! `causeway users test-signin` against a real `causeway serve`: the diagnostic runs the
//! endpoint's own sign-in (its domain methods, its hub, its smart lockout) over the admin
//! socket, prints outcome, path and why, exits 0 only on success, and the password shows
//! in none of the output or the endpoint's trace-level log. With a real agent connected
//! (`causeway agent run` against the lab's Samba DC) the same command checks through it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use causeway_credential::{Password, PhsVerifier};
use causeway_store::{AdUser, ImmutableId, SqliteStore, Users as _};
use common::endpoint::{bin, temp_dir, until_agents, Agent, Endpoint};
use common::lab;

const CONFIG: &str = "[[domain]]\nname = \"pta.example\"\nmethod = \"pta\"\n\n[[domain]]\nname = \"both.example\"\nmethod = \"pta+phs\"\n\n[[domain]]\nname = \"phs.example\"\nmethod = \"phs\"\n";

/// Every password any run below types.
const PASSWORDS: &[&str] = &[
    "Violet-Harbor-Pw-1",
    "Not-Carols-1",
    "Dave-Pw-2",
    "Whatever-3",
    "Amber-Meadow-Pw-4",
    "Erin-Guess-0",
    "Erin-Guess-1",
    "Erin-Guess-2",
    "Erin-Guess-3",
];

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `causeway users test-signin UPN --password-stdin --data-dir DATA`, `password` + "\n"
/// on stdin.
fn test_signin(data: &Path, upn: &str, password: &str, seen: &mut String) -> Run {
    use std::io::Write;
    let mut c = Command::new(bin())
        .args([
            "users",
            "test-signin",
            upn,
            "--password-stdin",
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run causeway");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write stdin");
    let out = c.wait_with_output().expect("wait");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    seen.push_str(&run.stdout);
    seen.push_str(&run.stderr);
    run
}

fn assert_lines(run: &Run, ok: bool, outcome: &str, path: &str, why: &str) {
    let all = format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert_eq!(run.ok, ok, "exit status: {all}");
    assert!(
        run.stdout
            .starts_with(&format!("outcome: {outcome}\npath: {path}\n")),
        "{all}"
    );
    assert!(run.stdout.contains(why), "why should say {why:?}: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_signin_runs_the_endpoints_own_check_and_says_which_path() {
    let ep = Endpoint::start("test-signin", CONFIG, &[]);
    let data = ep.data();
    let mut seen = String::new();
    ep.cli(
        &[
            "users",
            "add",
            "--upn",
            "carol@cloud.example",
            "--password-stdin",
        ],
        Some("Violet-Harbor-Pw-1\n"),
    );
    ep.cli(
        &[
            "users",
            "add",
            "--upn",
            "erin@cloud.example",
            "--password-stdin",
        ],
        Some("Amber-Meadow-Pw-4\n"),
    );
    // A user synchronised into the pta+phs domain, with the verifier hash sync stores.
    let store = SqliteStore::open(&data.join("directory.sqlite")).expect("store");
    let v = PhsVerifier::derive(&Password::new("Dave-Pw-2".into()).expect("valid"));
    store
        .upsert_ad_user(
            &AdUser {
                id: ImmutableId::from_guid_bytes([0x5d; 16]),
                upn: "dave@both.example".into(),
                display_name: None,
                mail: None,
                disabled: false,
            },
            Some(&v),
            "test-hash-sync",
            SystemTime::now(),
        )
        .await
        .expect("synced user");

    // A cloud-only user: the right password, then a wrong one.
    let r = test_signin(
        &data,
        "carol@cloud.example",
        "Violet-Harbor-Pw-1",
        &mut seen,
    );
    assert_lines(&r, true, "success", "hash sync", "cloud-only user");
    let r = test_signin(&data, "carol@cloud.example", "Not-Carols-1", &mut seen);
    assert_lines(
        &r,
        false,
        "invalid_credentials",
        "hash sync",
        "cloud-only user",
    );
    assert!(r.stderr.contains("did not succeed"), "{}", r.stderr);

    // An unknown user in a hash-sync domain.
    let r = test_signin(&data, "nobody@phs.example", "Whatever-3", &mut seen);
    assert_lines(
        &r,
        false,
        "unknown_user",
        "hash sync",
        "the domain's method is phs",
    );

    // Pass-through only, and no agent: the directory is unavailable, and it says why.
    let r = test_signin(&data, "dave@pta.example", "Dave-Pw-2", &mut seen);
    assert_lines(
        &r,
        false,
        "directory_unavailable",
        "pass-through",
        "no agent connected, and the domain's method is pta",
    );

    // Pass-through with fallback, and no agent: the synchronised verifier answers.
    let r = test_signin(&data, "dave@both.example", "Dave-Pw-2", &mut seen);
    assert_lines(
        &r,
        true,
        "success",
        "hash sync",
        "no agent connected, fell back to hash sync",
    );
    let r = test_signin(&data, "dave@both.example", "Whatever-3", &mut seen);
    assert_lines(
        &r,
        false,
        "invalid_credentials",
        "hash sync",
        "fell back to hash sync",
    );

    // The endpoint's smart lockout counts these checks like any sign-in: after four
    // distinct wrong passwords even the right one is answered by lockout, unchecked.
    for i in 0..4 {
        let r = test_signin(
            &data,
            "erin@cloud.example",
            &format!("Erin-Guess-{i}"),
            &mut seen,
        );
        assert!(!r.ok, "{}", r.stdout);
    }
    let r = test_signin(&data, "erin@cloud.example", "Amber-Meadow-Pw-4", &mut seen);
    assert_lines(&r, false, "account_locked", "none", "cloud-only user");
    assert!(r.stdout.contains("smart lockout"), "{}", r.stdout);

    let logs = ep.logs();
    assert!(
        logs.contains("diagnostic sign-in (causeway users test-signin)"),
        "{logs}"
    );
    for pw in PASSWORDS {
        assert!(!seen.contains(pw), "{pw} in the command's output:\n{seen}");
        assert!(!logs.contains(pw), "{pw} in the endpoint's log");
    }
}

/// Without a running endpoint there is nothing to ask: a clear error, non-zero exit.
#[test]
fn test_signin_without_a_running_endpoint_says_so() {
    let dir = temp_dir("test-signin-none");
    let mut seen = String::new();
    let r = test_signin(&dir, "carol@cloud.example", "Violet-Harbor-Pw-1", &mut seen);
    assert!(!r.ok);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains("no running endpoint answers on") && r.stderr.contains("admin.sock"),
        "{}",
        r.stderr
    );
    assert!(!seen.contains("Violet-Harbor-Pw-1"));
    let _ = std::fs::remove_dir_all(dir);
}

/// The point of asking the running endpoint: its agent answers. With `pta+phs`, a
/// connected agent takes the check to the lab's AD (alice signs in, carol must change her
/// password, as AD says); once it is gone the same command falls back to hash sync.
#[test]
fn test_signin_checks_through_the_endpoints_connected_agent() {
    let lab = lab();
    let config = format!(
        "[[domain]]\nname = {:?}\nmethod = \"pta+phs\"\n",
        lab.get("AD_DNS_DOMAIN")
    );
    let ep = Endpoint::start("test-signin-pta", &config, &[]);
    let data = ep.data();
    let mut agent = Agent::enrol_and_run(&ep, lab);
    until_agents(&ep, 1, &|| agent.logs());
    let mut seen = String::new();
    let alice = lab.user("alice", "UPN");
    let alice_pw = lab.user("alice", "PASSWORD");
    let carol_pw = lab.user("carol-mustchange", "PASSWORD");
    let r = test_signin(&data, alice, alice_pw, &mut seen);
    assert_lines(
        &r,
        true,
        "success",
        "pass-through",
        "an agent is connected, so pass-through was used",
    );
    let r = test_signin(
        &data,
        lab.user("carol-mustchange", "UPN"),
        carol_pw,
        &mut seen,
    );
    assert_lines(
        &r,
        false,
        "password_must_change",
        "pass-through",
        "an agent is connected",
    );
    // No agent left: the running endpoint knows at once, and falls back (alice was never
    // synchronised here, so the store does not know her).
    agent.kill();
    until_agents(&ep, 0, &|| agent.logs());
    let r = test_signin(&data, alice, alice_pw, &mut seen);
    assert_lines(
        &r,
        false,
        "unknown_user",
        "hash sync",
        "no agent connected, fell back to hash sync",
    );
    for pw in [alice_pw, carol_pw] {
        assert!(
            !seen.contains(pw),
            "a password in the command's output:\n{seen}"
        );
        assert!(!ep.logs().contains(pw), "a password in the endpoint's log");
        assert!(!agent.logs().contains(pw), "a password in the agent's log");
    }
}
