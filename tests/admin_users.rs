//! Cloud-only accounts against a real `causeway serve`: new passwords meet the policy
//! (length, common passwords, UPN and name parts) and a refusal never shows the password;
//! `users set-password` replaces a cloud-only user's password (the running endpoint's
//! sign-in takes the new one, not the old), refuses a synchronised user, and on a terminal
//! asks twice with echo off, so the typed password never appears on the screen.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use causeway_store::{AdUser, ImmutableId, SqliteStore, Users as _};
use common::endpoint::{bin, Endpoint};

const UPN: &str = "nora@cloud.example";
const FIRST: &str = "Velvet-Canyon-88";
const SECOND: &str = "Amber-Glacier-93";

fn cli(data: &Path, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("CAUSEWAY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run causeway");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin");
    c.wait_with_output().expect("wait")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `users test-signin` through the running endpoint: whether `password` signs `UPN` in.
fn signs_in(data: &Path, password: &str) -> bool {
    let o = cli(
        data,
        &["users", "test-signin", UPN, "--password-stdin"],
        &format!("{password}\n"),
    );
    text(&o).starts_with("outcome: success")
}

#[test]
fn new_passwords_meet_the_policy_and_set_password_replaces_them() {
    let ep = Endpoint::start("admin-users", "", &[]);
    let data = ep.data();
    let add = |pw: &str| {
        cli(
            &data,
            &[
                "users",
                "add",
                "--upn",
                UPN,
                "--display-name",
                "Nora Quill",
                "--password-stdin",
            ],
            &format!("{pw}\n"),
        )
    };
    for (pw, why) in [
        ("x", "too short"),
        ("Password2024!", "most common passwords"),
        ("Quill-Harbor-2024", "UPN or display name"),
    ] {
        let o = add(pw);
        assert!(!o.status.success(), "{pw} accepted");
        let t = text(&o);
        assert!(
            t.contains(why) && t.contains("nothing was changed"),
            "{pw}: {t}"
        );
        assert!(!t.contains(pw), "the refusal shows the password: {t}");
    }
    let o = add(FIRST);
    assert!(o.status.success(), "{}", text(&o));
    assert!(signs_in(&data, FIRST));

    let set = |pw: &str| {
        cli(
            &data,
            &["users", "set-password", UPN, "--password-stdin"],
            &format!("{pw}\n"),
        )
    };
    let o = set("nora-12345678");
    assert!(!o.status.success(), "a name part was accepted");
    assert!(
        signs_in(&data, FIRST),
        "a refused change changed the password"
    );
    let o = set(SECOND);
    assert!(o.status.success(), "{}", text(&o));
    assert!(signs_in(&data, SECOND), "{}", ep.logs());
    assert!(!signs_in(&data, FIRST), "the old password still works");
    let h = cli(&data, &["users", "history", UPN], "");
    let h = String::from_utf8_lossy(&h.stdout).into_owned();
    let row = h
        .lines()
        .find(|l| l.contains("set-password"))
        .unwrap_or_else(|| panic!("no set-password row: {h}"));
    let at = row.split_whitespace().nth(1).expect("time");
    assert!(at.len() == 20 && at.ends_with('Z'), "not RFC 3339: {row}");

    // A user synchronised from AD keeps AD's password.
    let store = SqliteStore::open(&data.join("directory.sqlite")).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(store.upsert_ad_user(
        &AdUser {
            id: ImmutableId::from_guid_bytes([0x6e; 16]),
            upn: "sync@corp.example".into(),
            display_name: None,
            mail: None,
            disabled: false,
        },
        None,
        "sync",
        SystemTime::now(),
    ))
    .expect("synced user");
    let o = cli(
        &data,
        &[
            "users",
            "set-password",
            "sync@corp.example",
            "--password-stdin",
        ],
        &format!("{SECOND}\n"),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("password writeback"), "{}", text(&o));
}

/// Everything the terminal shows, read from the pty's master side until the child's side
/// closes.
struct Screen(Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>);

impl Screen {
    fn read(master: std::fs::File) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let mut master = master;
        let h = std::thread::spawn(move || {
            let mut chunk = [0u8; 1024];
            // EIO once every slave descriptor is closed and the buffer is drained.
            while let Ok(n) = master.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().expect("lock").extend_from_slice(&chunk[..n]);
            }
        });
        Self(buf, h)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }

    fn until(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.text().contains(what) {
            assert!(Instant::now() < deadline, "no {what:?} on: {}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `causeway <args>` on a new pseudo-terminal, typing each line once its prompt
/// shows; returns whether it succeeded and everything the terminal showed.
fn on_terminal(args: &[&str], typed: &[(&str, &str)]) -> (bool, String) {
    let pty = nix::pty::openpty(None, None).expect("pty");
    let mut child = {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env_remove("CAUSEWAY_CONFIG")
            .stdin(Stdio::from(pty.slave.try_clone().expect("slave")))
            .stdout(Stdio::from(pty.slave.try_clone().expect("slave")))
            .stderr(Stdio::from(pty.slave));
        cmd.spawn().expect("run causeway on a pty")
        // `cmd` and its copies of the slave side are dropped here, so the master sees the
        // end once the child exits.
    };
    let mut master = std::fs::File::from(pty.master);
    let screen = Screen::read(master.try_clone().expect("master"));
    for (prompt, line) in typed {
        screen.until(prompt);
        master
            .write_all(format!("{line}\n").as_bytes())
            .expect("type");
    }
    let status = child.wait().expect("wait");
    drop(master);
    let Screen(buf, reader) = screen;
    reader.join().expect("reader");
    let shown = String::from_utf8_lossy(&buf.lock().expect("lock")).into_owned();
    (status.success(), shown)
}

#[test]
fn on_a_terminal_passwords_are_asked_for_without_echo() {
    let ep = Endpoint::start("admin-users-tty", "", &[]);
    let data = ep.data();
    let d = data.display().to_string();
    let o = cli(
        &data,
        &["users", "add", "--upn", UPN, "--password-stdin"],
        &format!("{FIRST}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    // set-password without --password-stdin: asked twice.
    let (ok, shown) = on_terminal(
        &["users", "set-password", UPN, "--data-dir", &d],
        &[
            ("New password for nora@cloud.example: ", SECOND),
            ("Again: ", SECOND),
        ],
    );
    assert!(ok, "{shown}");
    assert!(
        shown.contains("password of nora@cloud.example set"),
        "{shown}"
    );
    assert!(
        !shown.contains(SECOND),
        "the typed password was echoed: {shown}"
    );
    // --password-stdin on a terminal asks too, with echo off.
    let (ok, shown) = on_terminal(
        &[
            "users",
            "test-signin",
            UPN,
            "--password-stdin",
            "--data-dir",
            &d,
        ],
        &[("Password: ", SECOND)],
    );
    assert!(ok && shown.contains("outcome: success"), "{shown}");
    assert!(
        !shown.contains(SECOND),
        "the typed password was echoed: {shown}"
    );
}
