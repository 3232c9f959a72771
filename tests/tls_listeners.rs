//! The endpoint's TLS as a real deployment meets it, on real `causeway serve` processes
//! over loopback: browsers get the company's own certificate (`server.tls_cert_file` /
//! `server.tls_key_file`), replaced on SIGHUP or when the files change without dropping an
//! open connection, a bad file keeping the old one; agents keep Causeway's CA; agents can
//! have a listener of their own (`server.agent_listen`); and the log says who signed in
//! from where (through a trusted proxy) while routine handshake hang-ups stay at debug.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use causeway_proto::agent::ALPN as AGENT_ALPN;
use common::endpoint::{temp_dir, until_agents, Agent, Browser, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A company CA of its own (not Causeway's): issues the certificate browsers should see.
struct CompanyCa {
    ca: causeway_certs::Ca,
}

impl CompanyCa {
    fn new(dir: &Path, name: &str) -> Self {
        let ca = causeway_certs::Ca::load_or_create(&dir.join(name), SystemTime::now())
            .expect("company CA");
        Self { ca }
    }

    /// Issues a certificate for 127.0.0.1 and installs it as `cert.pem` / `key.pem` in
    /// `dir` the way a renewal tool does: written aside, then renamed over the old files.
    fn install(&self, dir: &Path) {
        let issued = self
            .ca
            .issue_server_cert(&["127.0.0.1".into()], SystemTime::now())
            .expect("issue");
        replace(&dir.join("key.pem"), issued.key_pem().expose_secret());
        replace(&dir.join("cert.pem"), &issued.chain_pem());
    }

    fn pem(&self) -> &[u8] {
        self.ca.cert_pem().as_bytes()
    }
}

fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

const TLS_CONFIG: &str = "[server]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n";

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("https://").parse().expect("address")
}

async fn connect(
    to: SocketAddr,
    trust_pem: &[u8],
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(to).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(common::client_tls(trust_pem, alpn)).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake did not finish in 10 s"))?
}

/// One HTTP/1.1 request on an open connection (kept alive); returns the status code.
async fn get(s: &mut TlsStream<TcpStream>, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed before the answer");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("length"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("body");
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status")
}

/// Retries until a new connection trusting only `pem` is served; panics after 20 s.
async fn until_served(at: SocketAddr, pem: &[u8], what: &str) -> TlsStream<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = connect(at, pem, b"http/1.1").await {
            assert_eq!(get(&mut s, "/healthz").await, 200);
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the endpoint's log until `line` appears `n` times; panics after 20 s.
fn until_logged(ep: &Endpoint, line: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ep.logs().matches(line).count() < n {
        assert!(
            Instant::now() < deadline,
            "never logged {line:?} {n} times: {}",
            ep.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_the_company_certificate_replaced_without_dropping_open_connections() {
    let dir = temp_dir("tls-company");
    let (one, two, three) = (
        CompanyCa::new(&dir, "company-ca-1"),
        CompanyCa::new(&dir, "company-ca-2"),
        CompanyCa::new(&dir, "company-ca-3"),
    );
    one.install(&dir);
    let ep = Endpoint::start_in(dir.clone(), TLS_CONFIG, &[]);
    let at = addr_of(&ep.url);
    let causeway_ca = std::fs::read(ep.data().join("ca").join("ca.pem")).expect("CA");

    let mut open = connect(at, one.pem(), b"http/1.1")
        .await
        .expect("a browser trusting only the company CA connects");
    assert_eq!(get(&mut open, "/healthz").await, 200);
    assert!(
        connect(at, &causeway_ca, b"http/1.1").await.is_err(),
        "browsers are not served Causeway's own CA any more"
    );
    // Agents pin Causeway's CA and still get its certificate on the same port.
    let agent = connect(at, &causeway_ca, AGENT_ALPN)
        .await
        .expect("an agent's handshake");
    assert_eq!(agent.get_ref().1.alpn_protocol(), Some(AGENT_ALPN));
    drop(agent);

    // Renewed: new files, then SIGHUP (the files' own change may be seen first; either
    // way the next connections get the new pair).
    two.install(&dir);
    ep.signal("HUP");
    until_logged(&ep, "browser certificate reloaded", 1);
    until_served(at, two.pem(), "a new connection gets the new certificate").await;
    assert_eq!(
        get(&mut open, "/healthz").await,
        200,
        "the connection opened before the reload still works"
    );
    assert!(
        connect(at, one.pem(), b"http/1.1").await.is_err(),
        "and no longer the old one"
    );

    // A broken file: the endpoint says why and keeps serving the last good pair.
    replace(
        &dir.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\ntruncated\n",
    );
    ep.signal("HUP");
    // (A reload that caught the key renamed before its certificate may have been refused
    // too: the line that matters names the broken certificate file.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let logs = ep.logs();
        if let Some(l) = logs
            .lines()
            .find(|l| l.contains("browser certificate not reloaded") && l.contains("cert.pem: "))
        {
            break l.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the broken file is not reported: {logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused.contains("WARN"), "{refused}");
    let mut still = connect(at, two.pem(), b"http/1.1")
        .await
        .expect("the last good certificate is still served");
    assert_eq!(get(&mut still, "/healthz").await, 200);

    // Changed files are picked up without a signal too.
    three.install(&dir);
    until_served(
        at,
        three.pem(),
        "the files' change alone reloads the certificate",
    )
    .await;
    assert_eq!(get(&mut open, "/healthz").await, 200, "through it all");
}

#[test]
fn a_certificate_without_its_key_or_with_another_key_is_refused_at_start_naming_the_line() {
    let dir = temp_dir("tls-bad-config");
    let (one, two) = (
        CompanyCa::new(&dir, "company-ca-1"),
        CompanyCa::new(&dir, "company-ca-2"),
    );
    one.install(&dir);
    std::fs::rename(dir.join("key.pem"), dir.join("key-one.pem")).expect("rename");
    two.install(&dir);
    let run = |config: &str| {
        let path = dir.join("causeway.toml");
        std::fs::write(&path, config).expect("config");
        let out = std::process::Command::new(common::endpoint::bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .output()
            .expect("run serve");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run("[server]\ntls_cert_file = \"cert.pem\"\n");
    assert!(
        e.contains(":2:") && e.contains("needs server.tls_key_file"),
        "{e}"
    );
    let e = run("[server]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key-one.pem\"\n");
    assert!(
        e.contains(":3:") && e.contains("key-one.pem") && e.contains("does not belong"),
        "{e}"
    );
}

/// The address an extra listener was bound to, from the start-up line.
fn ready_field(ep: &Endpoint, name: &str) -> String {
    let logs = ep.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("endpoint ready"))
        .expect("start-up line");
    line.split(&format!(" {name}="))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_on_their_own_listener_enroll_and_connect_there_and_the_public_port_is_https_only() {
    let lab = common::lab();
    let ep = Endpoint::start(
        "agent-listen",
        "[[domain]]\nname = \"lab.causeway.test\"\nmethod = \"pta\"\n",
        &["--agent-listen", "127.0.0.1:0"],
    );
    let agents: SocketAddr = ready_field(&ep, "agent_listen").parse().expect("address");
    let public = addr_of(&ep.url);
    assert_ne!(agents, public);
    let ca = std::fs::read(ep.data().join("ca").join("ca.pem")).expect("CA");

    // The public port does not speak the agent protocol; the agents' port speaks nothing else.
    let offered = connect(public, &ca, AGENT_ALPN).await;
    assert!(
        offered.map_or(true, |s| s.get_ref().1.alpn_protocol() != Some(AGENT_ALPN)),
        "the public port negotiated the agent protocol"
    );
    let web = connect(agents, &ca, b"http/1.1").await;
    assert!(
        web.map_or(true, |s| s.get_ref().1.alpn_protocol().is_none()),
        "the agents' port negotiated HTTP"
    );

    let url = format!("https://{agents}");
    let agent = Agent::enrol_and_run_as(&ep, lab, "own-listener", &url);
    until_agents(&ep, 1, &|| agent.logs());
    assert!(agent.logs().contains("channel up"), "{}", agent.logs());
}

#[test]
fn sign_in_lines_name_the_user_and_the_client_behind_a_trusted_proxy_and_bad_handshakes_do_not_flood_the_log(
) {
    const USER: &str = "nora@cloud.causeway.test";
    const PASSWORD: &str = "Quiet-Harbour-Logs-Pw-7";
    let ep = Endpoint::start(
        "signin-log",
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        &["--demo-apps"],
    );
    ep.cli(
        &["users", "add", "--upn", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    let b = Browser::new(&ep.dir.join("b")).with_header("X-Forwarded-For: 198.51.100.23");
    let (s, _, page, _) = b.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    assert_eq!(s, 200, "{page}");
    let (s, _, _) = b.sign_in(&ep.url, &page, USER, PASSWORD);
    assert_eq!(s, 200);
    until_logged(&ep, "sign-in", 1);
    let logs = ep.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("sign-in") && l.contains("outcome="))
        .unwrap_or_else(|| panic!("no sign-in line: {logs}"));
    assert!(
        line.contains(&format!("user=\"{USER}\"")) && line.contains("client=198.51.100.23"),
        "{line}"
    );
    assert!(!line.contains(PASSWORD));

    // A browser that opens a connection and drops it during the handshake is routine.
    let at = addr_of(&ep.url);
    let tcp = std::net::TcpStream::connect(at).expect("connect");
    drop(tcp);
    until_logged(
        &ep,
        "peer closed the connection during the TLS handshake",
        1,
    );
    let hang_up = ep
        .logs()
        .lines()
        .find(|l| l.contains("peer closed the connection during the TLS handshake"))
        .expect("line")
        .to_owned();
    assert!(hang_up.contains("DEBUG"), "{hang_up}");
    assert!(
        !ep.logs().contains("refused a TLS connection"),
        "a hang-up is not logged as a refusal: {}",
        ep.logs()
    );

    // Peers that are not TLS at all: one warning, the rest at debug, so a flood of them
    // cannot flood the log.
    for _ in 0..5 {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(at).expect("connect");
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let _ = tcp.read_to_end(&mut Vec::new());
    }
    until_logged(&ep, "refused a TLS connection", 5);
    let logs = ep.logs();
    let warned: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused a TLS connection") && l.contains("WARN"))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
}
