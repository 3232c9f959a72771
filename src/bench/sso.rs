//! `causeway bench sso`: full SP-initiated SAML round trips through a real endpoint on
//! loopback (HTTPS, the demo SP's AuthnRequest over HTTP-Redirect → sign-in page → signed
//! Response), first for a password-hash-sync user who types a password every time, then
//! for one who already holds an SSO session; and, in the same run, RSA-SHA256 signatures
//! per second with the endpoint's own token-signing key on all cores. Each Response
//! carries two signatures (Response and Assertion), so the bound is signatures/s ÷ 2.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Result};
use causeway_credential::{Password, PhsVerifier};
use causeway_saml::saml2::{binding, messages};
use causeway_store::{NewUser, SqliteStore, Users as _};

use crate::endpoint::{run_endpoint, EndpointSettings};
use crate::http_client::Conn;

#[derive(Debug, clap::Args)]
pub(crate) struct SsoArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

const SIGNATURES_PER_ROUND_TRIP: f64 = 2.0;

pub(super) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

pub(super) fn cookie_of(h: &hyper::HeaderMap, name: &str) -> Option<String> {
    h.get_all("set-cookie").iter().find_map(|v| {
        let s = v.to_str().ok()?;
        let (kv, _) = s.split_once(';').unwrap_or((s, ""));
        let (k, v) = kv.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

pub(super) fn hidden(page: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let i = page.find(&key)? + key.len();
    let j = page[i..].find('"')? + i;
    Some(page[i..j].replace("&amp;", "&").replace("&quot;", "\""))
}

/// A fresh SP-initiated sign-in for the demo SP: its AuthnRequest (with its own ID) over
/// HTTP-Redirect, with `relay_state`.
pub(super) fn authn_request_path(base: &str, relay_state: &str) -> String {
    let (_, xml) = messages::build_authn_request(
        &format!("{base}/demo/app1"),
        &format!("{base}/saml/sso"),
        &format!("{base}/demo/app1/acs"),
        SystemTime::now(),
    );
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", &binding::deflate_encode(&xml))
        .append_pair("RelayState", relay_state)
        .finish();
    format!("/saml/sso?{q}")
}

/// Submits the sign-in form: its hidden `flow` and `csrf`, with the login cookie it came
/// with; returns the endpoint's answer.
pub(super) async fn post_login(
    conn: &mut Conn,
    login_cookie: &str,
    flow: &str,
    csrf: &str,
    user: &str,
    pw: &str,
) -> Result<(u16, hyper::HeaderMap, hyper::body::Bytes)> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("flow", flow)
        .append_pair("csrf", csrf)
        .append_pair("username", user)
        .append_pair("password", pw)
        .finish();
    let c = format!("__Host-causeway_login={login_cookie}");
    conn.send(
        "POST",
        "/login",
        &[
            ("cookie", &c),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(form.into_bytes()),
        1 << 20,
    )
    .await
}

/// Adds the benchmark's password-hash-sync user to a new endpoint's directory.
pub(super) async fn add_bench_user(data_dir: &std::path::Path, user: &str, pw: &str) -> Result<()> {
    let store = SqliteStore::open(&data_dir.join("directory.sqlite"))?;
    store
        .add_cloud_user(
            &NewUser {
                upn: user.into(),
                display_name: Some("Bench".into()),
                mail: None,
            },
            &PhsVerifier::derive(&Password::new(pw.into())?),
            "bench",
            SystemTime::now(),
        )
        .await?;
    Ok(())
}

/// The SP's side of the round trips: AuthnRequests (each with its own ID) built and
/// deflated before the clock starts, so that the load generator, which shares the cores
/// with the endpoint, spends its share on HTTP and TLS rather than on being an SP.
struct Requests {
    paths: Vec<String>,
    next: AtomicU64,
    base: String,
}

impl Requests {
    fn new(base: &str, n: usize) -> Self {
        Self {
            paths: (0..n).map(|_| Self::build(base)).collect(),
            next: AtomicU64::new(0),
            base: base.to_owned(),
        }
    }

    fn build(base: &str) -> String {
        authn_request_path(base, "bench")
    }

    /// A fresh request (borrowed, not copied, in the measured loop); built now when the
    /// prepared ones are used up.
    fn take(&self) -> std::borrow::Cow<'_, str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        match self.paths.get(i) {
            Some(p) => p.as_str().into(),
            None => Self::build(&self.base).into(),
        }
    }
}

struct Client {
    conn: Conn,
    sso: Option<String>,
    requests: Arc<Requests>,
}

impl Client {
    /// One round trip; with `password`, through the sign-in page.
    async fn round_trip(&mut self, user: &str, password: Option<&str>) -> Result<()> {
        let cookie = self
            .sso
            .as_ref()
            .map(|c| format!("__Host-causeway_sso={c}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let (Some(c), None) = (&cookie, password) {
            headers.push(("cookie", c));
        }
        let path = self.requests.take();
        let (s, h, body) = self
            .conn
            .send("GET", &path, &headers, None, 1 << 20)
            .await?;
        let page = match password {
            None => {
                if s != 200 {
                    bail!("SSO answered {s}, expected the auto-post page");
                }
                body
            }
            Some(pw) => {
                let loc = h
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| anyhow!("no redirect to the sign-in page ({s})"))?
                    .to_owned();
                let (_, h, body) = self.conn.send("GET", &loc, &[], None, 1 << 20).await?;
                let login = cookie_of(&h, "__Host-causeway_login")
                    .ok_or_else(|| anyhow!("no login cookie"))?;
                let page = String::from_utf8_lossy(&body);
                let flow = hidden(&page, "flow").ok_or_else(|| anyhow!("no flow"))?;
                let csrf = hidden(&page, "csrf").ok_or_else(|| anyhow!("no csrf"))?;
                let (s, h, body) =
                    post_login(&mut self.conn, &login, &flow, &csrf, user, pw).await?;
                if s != 200 {
                    bail!("sign-in answered {s}");
                }
                if let Some(c) = cookie_of(&h, "__Host-causeway_sso") {
                    self.sso = Some(c);
                }
                body
            }
        };
        let page = std::str::from_utf8(&page).map_err(|_| anyhow!("the answer is not UTF-8"))?;
        if !page.contains("name=\"SAMLResponse\"") {
            let why = page
                .split("role=\"alert\"")
                .nth(1)
                .and_then(|r| r.split_once('>'))
                .and_then(|(_, r)| r.split_once('<'))
                .map_or("no message", |(m, _)| m);
            bail!("no SAMLResponse in the answer: {why}");
        }
        Ok(())
    }
}

/// Round trips per second and their latencies (ms). With `every_time`, each round trip
/// goes through the sign-in page; otherwise each client signs in once with `password`
/// (not measured) and then rides its SSO session.
pub(super) async fn measure(
    addr: SocketAddr,
    base: &str,
    ca: &std::path::Path,
    (n, secs, most): (usize, u64, f64),
    (user, password, every_time): (&str, &str, bool),
) -> Result<(f64, Vec<f64>)> {
    let tls = crate::http_client::tls_config(Some(ca))?;
    // Enough for the whole run at `most` round trips a second, and for the warm-up.
    let prepared = ((most * secs as f64 * 1.25) as usize + 4 * n).min(200_000);
    let requests = Arc::new(Requests::new(base, prepared));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let conn = Conn::connect(&addr.ip().to_string(), addr.port(), tls.clone()).await?;
        let mut c = Client {
            conn,
            sso: None,
            requests: requests.clone(),
        };
        if !every_time {
            c.round_trip(user, Some(password)).await?;
        }
        let (stop, done, user) = (stop.clone(), done.clone(), user.to_owned());
        let password = every_time.then(|| password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.round_trip(&user, password.as_deref()).await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    super::timed_round_trips(tasks, &stop, &done, secs).await
}

fn signatures_per_second(key: &openssl::pkey::PKey<openssl::pkey::Private>, secs: u64) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let data = [7u8; 1400];
                let mut n = 0;
                while Instant::now() < deadline {
                    let mut signer =
                        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key)
                            .expect("signer");
                    signer.update(&data).expect("update");
                    let _ = signer.sign_to_vec().expect("sign");
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    total.load(Ordering::Relaxed) as f64 / secs as f64
}

pub(crate) async fn run(args: SsoArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("causeway-bench-sso-{}", std::process::id()));
    let data_dir = dir.join("endpoint");
    std::fs::create_dir_all(&data_dir)?;
    // Port 0: the endpoint binds a free port itself and reports it on `ready`.
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let user = "bench@bench.causeway.test";
    let pw = "Bench-Password-Only-For-This-Run-1";
    add_bench_user(&data_dir, user, pw).await?;
    let settings = EndpointSettings {
        data_dir: data_dir.clone(),
        listen,
        public_url: format!("https://{listen}"),
        server_names: vec!["127.0.0.1".into()],
        endpoint_id: "bench".into(),
        require_approval: false,
        demo_apps: true,
        per_source_per_minute: Some(u32::MAX),
        file: crate::serve_config::ServeConfig::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let endpoint = tokio::spawn(run_endpoint(settings, Some(tx)));
    let addr = rx
        .await
        .map_err(|_| anyhow!("the endpoint did not start"))?;
    let base = format!("https://{addr}");
    let ca = data_dir.join("ca/ca.pem");
    let keys = causeway_certs::signing::KeySet::load(&data_dir.join("token-signing"))?;
    let key = keys
        .active(SystemTime::now())
        .ok_or_else(|| anyhow!("no signing key"))?
        .private_key()
        .clone();
    println!(
        "bench sso: per-source rate limit lifted for this endpoint (every client is 127.0.0.1)"
    );
    println!("bench sso: AuthnRequests are built before the clock starts; the endpoint logs at the --log filter (warn unless given)");
    println!(
        "bench sso: {} clients, {} s per measurement, {} cores",
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let sigs = tokio::task::spawn_blocking({
        let (k, s) = (key.clone(), args.seconds);
        move || signatures_per_second(&k, s)
    })
    .await?;
    // No round trip can beat the signature bound, so that many requests are prepared.
    let shape = (
        args.concurrency,
        args.seconds,
        sigs / SIGNATURES_PER_ROUND_TRIP,
    );
    let (phs_rate, mut phs_lat) = measure(addr, &base, &ca, shape, (user, pw, true)).await?;
    let (sess_rate, mut sess_lat) = measure(addr, &base, &ca, shape, (user, pw, false)).await?;
    let bound = sigs / SIGNATURES_PER_ROUND_TRIP;
    println!("signature bound    RSA-2048 SHA-256 signatures, same key, all cores: {sigs:.0}/s -> {bound:.0} responses/s (2 signatures each)");
    println!("PHS sign-in        AuthnRequest -> sign-in page -> password -> signed Response: {phs_rate:.1}/s  p50 {:.2} ms  p99 {:.2} ms", pct(&mut phs_lat, 0.5), pct(&mut phs_lat, 0.99));
    println!("SSO session        AuthnRequest -> signed Response (no prompt): {sess_rate:.1}/s  p50 {:.2} ms  p99 {:.2} ms", pct(&mut sess_lat, 0.5), pct(&mut sess_lat, 0.99));
    println!(
        "ratio session/bound: {:.3} (target >= 0.8)",
        sess_rate / bound
    );
    endpoint.abort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
