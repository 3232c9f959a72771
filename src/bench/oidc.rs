//! `causeway bench oidc`: full OpenID Connect code-flow round trips through a real
//! endpoint on loopback (HTTPS): authorize with an SSO session → code → token request
//! with client_secret_basic and PKCE → access token and ID token, with N concurrent
//! clients; and, in the same run, RS256 signatures per second with the endpoint's own
//! token-signing key on all cores. Each round trip signs two JWTs (access token and ID
//! token), so the bound is signatures/s ÷ 2.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Result};
use base64::Engine;

use super::sso::{add_bench_user, cookie_of, hidden, pct, post_login};
use crate::endpoint::{run_endpoint, EndpointSettings};
use crate::http_client::Conn;

#[derive(Debug, clap::Args)]
pub(crate) struct OidcArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

const SIGNATURES_PER_ROUND_TRIP: f64 = 2.0;
const CLIENT_ID: &str = "bench-rp";
const REDIRECT: &str = "https://rp.bench.causeway.test/cb";
/// RFC 7636 Appendix B: the same PKCE pair every time, so the load generator computes
/// nothing per round trip.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize_path() -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid profile email")
        .append_pair("state", "bench-state")
        .append_pair("nonce", "bench-nonce")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!("/oidc/authorize?{q}")
}

fn code_of(location: &str) -> Result<String> {
    let q = location
        .strip_prefix(REDIRECT)
        .and_then(|r| r.strip_prefix('?'))
        .ok_or_else(|| anyhow!("redirected elsewhere than the client"))?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| anyhow!("no code in the answer"))
}

struct Client {
    conn: Conn,
    sso: String,
    basic: String,
    path: String,
}

impl Client {
    /// Signs in once through the page (not measured); returns the client with its session.
    async fn sign_in(mut conn: Conn, basic: String, user: &str, pw: &str) -> Result<Self> {
        let path = authorize_path();
        let (_, h, _) = conn.send("GET", &path, &[], None, 1 << 20).await?;
        let loc = h
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("no redirect to the sign-in page"))?
            .to_owned();
        let (_, h, body) = conn.send("GET", &loc, &[], None, 1 << 20).await?;
        let login =
            cookie_of(&h, "__Host-causeway_login").ok_or_else(|| anyhow!("no login cookie"))?;
        let page = String::from_utf8_lossy(&body);
        let flow = hidden(&page, "flow").ok_or_else(|| anyhow!("no flow"))?;
        let csrf = hidden(&page, "csrf").ok_or_else(|| anyhow!("no csrf"))?;
        let (s, h, _) = post_login(&mut conn, &login, &flow, &csrf, user, pw).await?;
        if s != 303 {
            bail!("sign-in answered {s}");
        }
        let sso = cookie_of(&h, "__Host-causeway_sso").ok_or_else(|| anyhow!("no SSO cookie"))?;
        let mut c = Self {
            conn,
            sso,
            basic,
            path,
        };
        let loc = h
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        c.redeem(&code_of(&loc)?).await?;
        Ok(c)
    }

    async fn redeem(&mut self, code: &str) -> Result<()> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", VERIFIER)
            .finish();
        let (s, _, body) = self
            .conn
            .send(
                "POST",
                "/oidc/token",
                &[
                    ("authorization", &self.basic),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                Some(form.into_bytes()),
                1 << 20,
            )
            .await?;
        if s != 200 || !body.windows(10).any(|w| w == b"\"id_token\"") {
            bail!(
                "the token endpoint answered {s}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// One round trip: authorize with the session → code → tokens.
    async fn round_trip(&mut self) -> Result<()> {
        let cookie = format!("__Host-causeway_sso={}", self.sso);
        let (s, h, _) = self
            .conn
            .send("GET", &self.path, &[("cookie", &cookie)], None, 1 << 20)
            .await?;
        if s != 303 {
            bail!("authorize answered {s}, expected a redirect with a code");
        }
        let loc = h
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.redeem(&code_of(&loc)?).await
    }
}

async fn measure(
    addr: SocketAddr,
    ca: &std::path::Path,
    (n, secs): (usize, u64),
    (user, pw, basic): (&str, &str, &str),
) -> Result<(f64, Vec<f64>)> {
    let tls = crate::http_client::tls_config(Some(ca))?;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let conn = Conn::connect(&addr.ip().to_string(), addr.port(), tls.clone()).await?;
        let mut c = Client::sign_in(conn, basic.to_owned(), user, pw).await?;
        let (stop, done) = (stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.round_trip().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    super::timed_round_trips(tasks, &stop, &done, secs).await
}

/// RS256 signatures per second on all cores with `signer`, over an ID token's worth of
/// JOSE input (what each of the round trip's two signatures covers).
fn signatures_per_second(signer: &causeway_oidc::Signer, secs: u64) -> Result<f64> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let total = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let data = [b'e'; 900];
                let mut n = 0;
                while Instant::now() < deadline {
                    if signer.signature(&data).is_err() {
                        failed.store(true, Ordering::Relaxed);
                        break;
                    }
                    n += 1;
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    if failed.load(Ordering::Relaxed) {
        bail!("the signing key failed to sign");
    }
    Ok(total.load(Ordering::Relaxed) as f64 / secs as f64)
}

pub(crate) async fn run(args: OidcArgs) -> Result<()> {
    if args.concurrency == 0 || args.seconds == 0 {
        bail!("--concurrency and --seconds must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("causeway-bench-oidc-{}", std::process::id()));
    let data_dir = dir.join("endpoint");
    std::fs::create_dir_all(&data_dir)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let user = "bench@bench.causeway.test";
    let pw = "Bench-Password-Only-For-This-Run-1";
    add_bench_user(&data_dir, user, pw).await?;
    let (secret, hash) = causeway_oidc::client::new_secret();
    causeway_federation::oidc_clients::add(
        &data_dir.join("apps"),
        &causeway_oidc::Client {
            client_id: CLIENT_ID.into(),
            name: None,
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec![],
            public: false,
            secret_sha256: Some(hash),
            subject_type: causeway_oidc::SubjectType::Pairwise,
            jwks: None,
            frontchannel_logout_uri: None,
        },
        false,
    )?;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{}", secret.as_str()))
    );
    let settings = EndpointSettings {
        data_dir: data_dir.clone(),
        listen,
        public_url: format!("https://{listen}"),
        server_names: vec!["127.0.0.1".into()],
        endpoint_id: "bench".into(),
        require_approval: false,
        demo_apps: false,
        per_source_per_minute: Some(u32::MAX),
        file: crate::serve_config::ServeConfig::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let endpoint = tokio::spawn(run_endpoint(settings, Some(tx)));
    let addr = rx
        .await
        .map_err(|_| anyhow!("the endpoint did not start"))?;
    let ca = data_dir.join("ca/ca.pem");
    let keys = causeway_certs::signing::KeySet::load(&data_dir.join("token-signing"))?;
    let active = keys
        .active(SystemTime::now())
        .ok_or_else(|| anyhow!("no signing key"))?;
    let signer = causeway_oidc::Signer::new(active.id.clone(), active.private_key().clone());
    println!(
        "bench oidc: per-source rate limit lifted for this endpoint (every client is 127.0.0.1)"
    );
    println!(
        "bench oidc: {} clients, {} s per measurement, {} cores; each client signs in once (not measured), then rides its SSO session",
        args.concurrency,
        args.seconds,
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let secs = args.seconds;
    let sigs = tokio::task::spawn_blocking(move || signatures_per_second(&signer, secs)).await??;
    let (rate, mut lat) = measure(
        addr,
        &ca,
        (args.concurrency, args.seconds),
        (user, pw, &basic),
    )
    .await?;
    let bound = sigs / SIGNATURES_PER_ROUND_TRIP;
    println!("signature bound    RS256 (RSA-2048) signatures, same key, all cores: {sigs:.0}/s -> {bound:.0} round trips/s (2 signatures each)");
    println!(
        "code flow          authorize (session) -> code -> token (basic + PKCE) -> access + ID token: {rate:.1}/s  p50 {:.2} ms  p99 {:.2} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "ratio round trips/bound: {:.3} (target >= 0.8)",
        rate / bound
    );
    endpoint.abort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
