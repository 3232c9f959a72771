//! `causeway demo`, the README's first command, as a new user runs it: it starts, prints
//! where to go and the demo user's password, that user signs in to the demo application,
//! and SIGTERM (what `kill`, systemd and containers send) stops it cleanly, as Ctrl-C does.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::endpoint::{bin, temp_dir, Browser};

#[test]
fn the_demo_starts_signs_its_user_in_and_stops_on_sigterm() {
    let dir = temp_dir("demo");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(bin())
        .args([
            "demo",
            "--no-lab",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--dir",
        ])
        .arg(dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("demo.log")).expect("log"))
        .spawn()
        .expect("causeway demo");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut user, mut password, mut app) = (None, None, None);
    let mut printed = String::new();
    for line in (&mut out).lines() {
        let line = line.expect("stdout line");
        printed.push_str(&line);
        printed.push('\n');
        let t = line.trim();
        if let Some(v) = t.strip_prefix("User:") {
            user = Some(v.trim().to_owned());
        } else if let Some(v) = t.strip_prefix("Password:") {
            password = Some(v.trim().to_owned());
        } else if let Some(v) = t.strip_prefix("Demo application:") {
            app = Some(v.trim().to_owned());
        }
        if t.starts_with("State:") {
            break;
        }
    }
    let (Some(user), Some(password), Some(app)) = (user, password, app) else {
        let _ = child.kill();
        panic!("the demo printed no user, password or application:\n{printed}");
    };
    let base = format!("https://127.0.0.1:{port}");
    assert!(app.starts_with(&base), "{app}");
    let b = Browser::new(&dir.join("browser"));
    let (s, _, page, _) = b.follow(&base, &app);
    assert!(s == 200 && page.contains("id=\"password\""), "{s}: {page}");
    let (s, _, page) = b.sign_in(&base, &page, &user, &password);
    assert!(
        s == 200 && page.contains("id=\"autopost\""),
        "the printed user signs in: {page}"
    );

    // SIGTERM stops it, with its goodbye line and exit status 0.
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(status.success(), "{status:?}");
    assert!(
        rest.contains("stopped; the demo's state stays in"),
        "{rest}"
    );
}
