//! `causeway bench siege`: SSO round trips per second for legitimate clients, once on a
//! quiet endpoint and once, in the same run, while other clients on loopback flood it
//! without an account: pending sign-ins started and never finished, TLS connections
//! that send nothing held up to the per-source cap, and maximum-size hostile XML. Prints
//! both rates, the endpoint's peak resident memory, whether a real user's pending
//! sign-in survived the flood, and last the ratio under-attack/quiet (target ≥ 0.7).
//!
//! The endpoint is a real `causeway serve` child process, so that its peak memory is its
//! own. Legitimate clients come from 127.0.0.1; each attacker has its own loopback
//! address (127.0.1.x), so per-source limits treat them as the distinct sources they
//! would be. Every attack loop is bounded in count and stops with the measurement.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use causeway_saml::saml2::binding;
use tokio::io::AsyncReadExt;

use super::sso::{self, cookie_of, hidden};
use crate::http_client::{tls_config, tls_stream_from, Conn};

#[derive(Debug, clap::Args)]
pub(crate) struct SiegeArgs {
    /// Legitimate clients (each rides its SSO session).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per measurement (quiet, then under attack).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Attacking connections that start pending sign-ins as fast as they can.
    #[arg(long, default_value_t = 4)]
    flooders: usize,
    /// Attacking connections that send maximum-size hostile XML.
    #[arg(long, default_value_t = 2)]
    hostile: usize,
    /// Idle TLS connections to hold (spread over sources, up to each source's cap).
    #[arg(long, default_value_t = 1000)]
    idle: usize,
    /// Sources (loopback addresses) the idle connections come from.
    #[arg(long, default_value_t = 16)]
    idle_sources: u8,
    /// Run the endpoint without its per-source budget for sign-in work without a
    /// session, to see what the bounded cost of each hostile request alone buys.
    #[arg(long)]
    no_budget: bool,
}

/// Counts of what the attackers did.
#[derive(Default)]
struct Attack {
    flow_starts: AtomicU64,
    hostile_sent: AtomicU64,
    idle_held: AtomicU64,
    idle_opened: AtomicU64,
    refused: AtomicU64,
    /// Answered 429: the source's budget for sign-in work without a session was spent.
    throttled: AtomicU64,
}

/// The endpoint under siege: a child process, killed on drop.
pub(super) struct Endpoint {
    child: Child,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint {
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

fn attacker(i: usize) -> IpAddr {
    // 127.0.1.x: never 127.0.0.2, where the lab's Samba DC listens.
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        1 + (i % 250) as u8,
    ))
}

/// The costliest hostile AuthnRequests the endpoint still reads to the end: every prefix
/// redeclared within the caps over a thousand leaves, and a signature whose reference
/// names a long PrefixList over a thousand elements, each just under the 64 KiB message
/// bound. Deflated, each is a few hundred bytes on the wire.
fn hostile_requests(base: &str) -> Vec<String> {
    let sp = format!("{base}/demo/app1");
    let req = |inner: &str, ns: &str| {
        format!("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"{ns} ID=\"_h\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\" AssertionConsumerServiceURL=\"{sp}/acs\"><saml:Issuer>{sp}</saml:Issuer>{inner}</samlp:AuthnRequest>")
    };
    let decls: String = (0..16).map(|i| format!(" xmlns:p{i}=\"urn:x\"")).collect();
    let e = format!("<e{decls}>");
    let redeclared = req(
        &format!(
            "<samlp:Extensions>{}{}{}</samlp:Extensions>",
            e.repeat(3),
            "<f/>".repeat(1_000),
            "</e>".repeat(3)
        ),
        "",
    );
    let sig = format!("<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/><ds:Reference URI=\"#_h\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{}\"/></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>", "saml ".repeat(8_000));
    let prefix_list = req(
        &format!(
            "{sig}<samlp:Extensions>{}</samlp:Extensions>",
            "<saml:Attribute/>".repeat(1_000)
        ),
        " xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"",
    );
    [redeclared, prefix_list]
        .iter()
        .map(|xml| {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("SAMLRequest", &binding::deflate_encode(xml))
                .finish();
            format!("/saml/sso?{q}")
        })
        .collect()
}

/// The paths a flooding connection cycles through: fresh SAML sign-ins (each its own
/// AuthnRequest, with an 80-byte RelayState) and the portal's own sign-in page. Each
/// starts a pending sign-in that is never finished.
fn flood_paths(base: &str) -> Vec<String> {
    let relay = "r".repeat(80);
    (0..64)
        .map(|_| sso::authn_request_path(base, &relay))
        .chain(std::iter::once("/login".to_owned()))
        .collect()
}

/// One attacking connection: GETs `paths` in turn as fast as they are answered, counting
/// each answer the endpoint did the work for in `count` and each 429 in `attack`;
/// reconnects when the endpoint closes it, until told to stop.
async fn hammer(
    source: IpAddr,
    addr: SocketAddr,
    paths: Arc<Vec<String>>,
    tls: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
    count: impl Fn() + Send + 'static,
    attack: Arc<Attack>,
) {
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = Conn::connect_from(source, addr, tls.clone()).await else {
            attack.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            match conn
                .send("GET", &paths[i % paths.len()], &[], None, 64 * 1024)
                .await
            {
                Ok((429, _, _)) => {
                    attack.throttled.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => count(),
                Err(_) => break,
            }
        }
    }
}

/// Holds one TLS connection that never sends a request; when the endpoint closes it (idle
/// deadline) or refuses it (connection cap), opens another, until told to stop.
async fn idle(
    source: IpAddr,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
    attack: Arc<Attack>,
) {
    let name = rustls::pki_types::ServerName::from(addr.ip());
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = tls_stream_from(source, addr).await else {
            attack.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(tls.clone()).connect(name.clone(), tcp),
        )
        .await
        else {
            attack.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        attack.idle_opened.fetch_add(1, Ordering::Relaxed);
        attack.idle_held.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        loop {
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
        }
        attack.idle_held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A real user's sign-in, started before the flood: the sign-in page's form and cookie.
struct PendingSignIn {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    login_cookie: String,
    flow: String,
    csrf: String,
}

async fn start_sign_in(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<PendingSignIn> {
    let mut conn = Conn::connect(&addr.ip().to_string(), addr.port(), tls.clone()).await?;
    let (_, h, _) = conn.send("GET", "/login", &[], None, 1 << 20).await?;
    let (h, body) = match h.get("location").and_then(|v| v.to_str().ok()) {
        Some(loc) => {
            let loc = loc.to_owned();
            let (_, h, body) = conn.send("GET", &loc, &[], None, 1 << 20).await?;
            (h, body)
        }
        None => {
            let (_, h, body) = conn.send("GET", "/login", &[], None, 1 << 20).await?;
            (h, body)
        }
    };
    let page = String::from_utf8_lossy(&body);
    Ok(PendingSignIn {
        login_cookie: cookie_of(&h, "__Host-causeway_login")
            .ok_or_else(|| anyhow!("no login cookie"))?,
        flow: hidden(&page, "flow").ok_or_else(|| anyhow!("no flow on the sign-in page"))?,
        csrf: hidden(&page, "csrf").ok_or_else(|| anyhow!("no csrf on the sign-in page"))?,
        addr,
        tls,
    })
}

impl PendingSignIn {
    /// Finishes the sign-in on a new connection, as a browser whose connection was closed
    /// would; true when the endpoint signed the user in.
    async fn finish(self, user: &str, pw: &str) -> Result<bool> {
        let mut conn =
            Conn::connect(&self.addr.ip().to_string(), self.addr.port(), self.tls).await?;
        let (s, h, _) = sso::post_login(
            &mut conn,
            &self.login_cookie,
            &self.flow,
            &self.csrf,
            user,
            pw,
        )
        .await?;
        Ok((s == 303 || s == 200) && cookie_of(&h, "__Host-causeway_sso").is_some())
    }
}

/// Starts `causeway serve` on port 0 and returns it with the address it bound, read from
/// its start-up line (no port picked here and bound there later, which another process
/// could take in between).
async fn start_endpoint(dir: &Path, no_budget: bool) -> Result<(Endpoint, SocketAddr)> {
    start_endpoint_with(
        dir,
        if no_budget {
            "[throttle]\nanonymous_per_source_per_second = 0\n"
        } else {
            ""
        },
        &["--demo-apps"],
    )
    .await
}

/// [`start_endpoint`] with a configuration file's text and extra `serve` arguments (the
/// sync benchmark's endpoint too).
pub(super) async fn start_endpoint_with(
    dir: &Path,
    config_text: &str,
    extra: &[&str],
) -> Result<(Endpoint, SocketAddr)> {
    let exe = std::env::current_exe().context("own executable")?;
    let config = dir.join("bench-serve.toml");
    std::fs::write(&config, config_text)?;
    let log = dir.join("serve.log");
    let child = Command::new(exe)
        .args(["--log", "error,causeway::endpoint=info", "serve"])
        .args(extra)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("CAUSEWAY_PUBLIC_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).context("serve.log")?)
        .spawn()
        .context("start causeway serve")?;
    let mut endpoint = Endpoint { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("endpoint ready")) {
            let addr = line
                .split(" listen=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("no listen address in the start-up line: {line}"))?;
            return Ok((endpoint, addr));
        }
        if let Some(status) = endpoint.child.try_wait()? {
            bail!("the endpoint exited ({status}): {text}");
        }
        if Instant::now() > deadline {
            bail!("the endpoint did not start within 60 s: {text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_healthy(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Conn::connect(&addr.ip().to_string(), addr.port(), tls.clone()).await {
            if let Ok((200, _, _)) = c.send("GET", "/healthz", &[], None, 4096).await {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the endpoint did not answer /healthz within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn run(args: SiegeArgs) -> Result<()> {
    if args.concurrency == 0 || args.seconds == 0 || args.idle_sources == 0 {
        bail!("--concurrency, --seconds and --idle-sources must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("causeway-bench-siege-{}", std::process::id()));
    let data_dir = dir.join("endpoint");
    std::fs::create_dir_all(&data_dir)?;
    let user = "siege@bench.causeway.test";
    let pw = "Siege-Password-Only-For-This-Run-1";
    sso::add_bench_user(&data_dir, user, pw).await?;
    let (endpoint, addr) = start_endpoint(&data_dir, args.no_budget).await?;
    let base = format!("https://{addr}");
    let ca = data_dir.join("ca/ca.pem");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ca.exists() {
        if Instant::now() > deadline {
            bail!("the endpoint did not create its CA");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tls = tls_config(Some(&ca))?;
    wait_healthy(addr, tls.clone()).await?;
    println!(
        "bench siege: endpoint {base} (child process, per-source budget for sign-in work without a session {}), {} legitimate clients from 127.0.0.1, {} s per measurement, {} cores",
        if args.no_budget {
            "off".to_owned()
        } else {
            let (rate, burst) = crate::serve_config::DEFAULT_ANONYMOUS_BUDGET;
            format!("on: {rate}/s, bursts of {burst}")
        },
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    // No round trip can beat 10,000/s here: prepared requests for that many.
    let shape = (args.concurrency, args.seconds, 10_000.0);
    let (quiet, mut quiet_lat) = sso::measure(addr, &base, &ca, shape, (user, pw, false)).await?;
    let quiet_rss = endpoint.peak_rss_mib();
    println!(
        "quiet          SSO round trips: {quiet:.1}/s  p50 {:.2} ms  p99 {:.2} ms  (endpoint peak RSS {})",
        sso::pct(&mut quiet_lat, 0.5),
        sso::pct(&mut quiet_lat, 0.99),
        quiet_rss.map_or("?".into(), |r| format!("{r:.1} MiB"))
    );

    let victim = start_sign_in(addr, tls.clone()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let attack = Arc::new(Attack::default());
    let mut tasks = Vec::new();
    let flood = Arc::new(flood_paths(&base));
    let hostile = Arc::new(hostile_requests(&base));
    for i in 0..args.flooders + args.hostile {
        let a = attack.clone();
        let (paths, count): (_, Box<dyn Fn() + Send>) = if i < args.flooders {
            (
                flood.clone(),
                Box::new(move || {
                    a.flow_starts.fetch_add(1, Ordering::Relaxed);
                }),
            )
        } else {
            (
                hostile.clone(),
                Box::new(move || {
                    a.hostile_sent.fetch_add(1, Ordering::Relaxed);
                }),
            )
        };
        tasks.push(tokio::spawn(hammer(
            attacker(i),
            addr,
            paths,
            tls.clone(),
            stop.clone(),
            count,
            attack.clone(),
        )));
    }
    let first_idle = args.flooders + args.hostile;
    for j in 0..args.idle {
        tasks.push(tokio::spawn(idle(
            attacker(first_idle + j % usize::from(args.idle_sources)),
            addr,
            tls.clone(),
            stop.clone(),
            attack.clone(),
        )));
    }
    // Let the idle connections build up to the caps before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before_flows, before_hostile, before_throttled) = (
        attack.flow_starts.load(Ordering::Relaxed),
        attack.hostile_sent.load(Ordering::Relaxed),
        attack.throttled.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let measured = sso::measure(addr, &base, &ca, shape, (user, pw, false)).await;
    let took = started.elapsed().as_secs_f64();
    let held = attack.idle_held.load(Ordering::Relaxed);
    let flows = attack.flow_starts.load(Ordering::Relaxed) - before_flows;
    let hostile_sent = attack.hostile_sent.load(Ordering::Relaxed) - before_hostile;
    let throttled = attack.throttled.load(Ordering::Relaxed) - before_throttled;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let victim_ok = match victim.finish(user, pw).await {
        Ok(ok) => ok,
        Err(e) => {
            println!("victim         could not submit the form: {e:#}");
            false
        }
    };
    let (under, mut under_lat) = measured?;
    let peak = endpoint.peak_rss_mib();
    println!(
        "attack         {:.0} pending sign-ins started/s and {:.1} hostile XML messages/s read by the endpoint, {:.0}/s more answered 429 (source budget spent); {held} idle connections held at the end ({} opened, {} connects refused or cut)",
        flows as f64 / took,
        hostile_sent as f64 / took,
        throttled as f64 / took,
        attack.idle_opened.load(Ordering::Relaxed),
        attack.refused.load(Ordering::Relaxed)
    );
    println!(
        "under attack   SSO round trips: {under:.1}/s  p50 {:.2} ms  p99 {:.2} ms",
        sso::pct(&mut under_lat, 0.5),
        sso::pct(&mut under_lat, 0.99)
    );
    println!(
        "victim         a sign-in page opened before the flood, submitted after it: {}",
        if victim_ok {
            "signed in"
        } else {
            "REFUSED (its pending sign-in was lost)"
        }
    );
    println!(
        "endpoint peak RSS: {}",
        peak.map_or("?".into(), |r| format!("{r:.1} MiB"))
    );
    println!(
        "ratio under-attack/quiet: {:.3} (target >= 0.7)",
        under / quiet
    );
    drop(endpoint);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
