//! Stopping as systemd and container runtimes do it (SIGTERM), on real processes over
//! loopback: `causeway serve` stops accepting, answers the request in flight and exits 0;
//! a `causeway agent run` under sign-in load says GoAway, answers the checks it holds and
//! exits 0 while its twin takes the rest, so no sign-in fails.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::endpoint::{bin, until_agents, Agent, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 answer head (through the blank line).
async fn read_head(s: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut byte))
            .await
            .expect("an answer within 20 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before an answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn until_logged(logs: &dyn Fn() -> String, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs().contains(line) {
        assert!(
            Instant::now() < deadline,
            "never logged {line:?}: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sigterm_refuses_new_connections_answers_the_request_in_flight_and_exits_0() {
    let mut ep = Endpoint::start("drain-serve", "", &[]);
    let at: SocketAddr = ep.url.trim_start_matches("https://").parse().expect("addr");
    let ca = std::fs::read(ep.data().join("ca").join("ca.pem")).expect("CA");
    let tcp = TcpStream::connect(at).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut s = tokio_rustls::TlsConnector::from(common::client_tls(&ca, b"http/1.1"))
        .connect(name, tcp)
        .await
        .expect("handshake");
    // A sign-in form on its way: the endpoint has the request (it asks for the body with
    // 100 Continue) when the signal comes, and the body only after.
    let body = b"flow=f&csrf=c&username=someone%40example.com&password=x";
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    let cont = read_head(&mut s).await;
    assert!(cont.starts_with("HTTP/1.1 100"), "{cont}");

    ep.signal("TERM");
    until_logged(&|| ep.logs(), "stopped accepting connections");
    let refused = TcpStream::connect(at).await;
    assert!(
        refused.is_err(),
        "a new connection after SIGTERM must be refused"
    );

    s.write_all(body).await.expect("write body");
    let answer = read_head(&mut s).await;
    let status: u16 = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        (200..500).contains(&status),
        "the request in flight is answered: {answer}"
    );
    let exit = ep.wait_exit(Duration::from_secs(30));
    assert!(
        exit.success(),
        "serve exits 0 after draining: {exit:?}\n{}",
        ep.logs()
    );
}

/// `causeway users test-signin` (the endpoint's own sign-in path, through its hub and
/// agents): `Ok` on success, the output otherwise.
fn sign_in(data: &Path, upn: &str, password: &str) -> Result<(), String> {
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
        .expect("stdin");
    let out = c.wait_with_output().expect("wait");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn an_agent_stopped_with_sigterm_under_sign_in_load_says_goaway_and_no_sign_in_fails() {
    let lab = common::lab();
    let mut ep = Endpoint::start(
        "drain-agents",
        &format!(
            "[[domain]]\nname = {:?}\nmethod = \"pta\"\n",
            lab.get("AD_DNS_DOMAIN")
        ),
        &[],
    );
    let mut leaving = Agent::enrol_and_run_as(&ep, lab, "leaving", &ep.url);
    let staying = Agent::enrol_and_run_as(&ep, lab, "staying", &ep.url);
    until_agents(&ep, 2, &|| {
        format!("{}\n{}", leaving.logs(), staying.logs())
    });

    let (upn, pw) = (lab.get("AD_ALICE_UPN"), lab.get("AD_ALICE_PASSWORD"));
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let (data, upn, pw) = (ep.data(), upn.to_owned(), pw.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match sign_in(&data, &upn, &pw) {
                        Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            failed.lock().expect("lock").push(e);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    let until_ok = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while ok.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {ok:?} sign-ins: {failed:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until_ok(12);
    let before = ok.load(Ordering::SeqCst);
    leaving.signal("TERM");
    let exit = leaving.wait_exit(Duration::from_secs(30));
    until_ok(before + 12);
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().expect("load thread");
    }

    assert!(
        failed.lock().expect("lock").is_empty(),
        "sign-ins failed around the agent's stop: {:?}\nendpoint:\n{}",
        failed.lock().expect("lock"),
        ep.logs()
    );
    assert!(
        exit.success(),
        "the agent exits 0 after draining: {exit:?}\n{}",
        leaving.logs()
    );
    let logs = leaving.logs();
    assert!(logs.contains("telling the hub GoAway"), "{logs}");
    assert!(logs.contains("agent stopped"), "{logs}");
    let hub = ep.logs();
    assert!(
        hub.contains("agent sent GoAway"),
        "the hub logs the GoAway: {hub}"
    );
    // Both were idle at the start: ties spread, so each had answered checks.
    for (who, logs) in [("leaving", leaving.logs()), ("staying", staying.logs())] {
        assert!(
            logs.contains("check answered"),
            "the {who} agent never got a check: {logs}"
        );
    }

    // Then the endpoint stops: it tells the agent left GoAway, and exits 0.
    ep.signal("TERM");
    let exit = ep.wait_exit(Duration::from_secs(30));
    assert!(exit.success(), "{exit:?}\n{}", ep.logs());
    until_logged(&|| staying.logs(), "channel closed by the endpoint");
    assert!(
        staying.logs().contains("ShuttingDown"),
        "{}",
        staying.logs()
    );
}
