//! `causeway bench pta`: the pass-through path against raw binds to the same DC.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use std::sync::RwLock;

use causeway_agent::channel::Identity;
use causeway_agent::config::Endpoint;
use causeway_agent::connect::{keep_channel, Backoff};
use causeway_agent::validator::{
    DcTarget, DirectorySettings, LoginResolution, Transport, Validator,
};
use causeway_credential::{
    AgentKeyPair, ChannelSealer, EnvelopeContext, EnvelopeOpener, Password, RequestId,
    SignInOutcome,
};
use causeway_federation::hub::authority::CertsAuthority;
use causeway_federation::hub::{listener, CheckRequest, Hub, HubConfig};
use causeway_proto::agent::{ALPN, ENROLL_ALPN};
use ldap3::{LdapConnAsync, LdapConnSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[derive(Debug, clap::Args)]
pub(crate) struct PtaArgs {
    /// The lab's facts file, as written by `scripts/lab.sh start`.
    #[arg(
        long,
        default_value = "/tmp/causeway-lab/lab.env",
        env = "CAUSEWAY_LAB_ENV"
    )]
    lab_env: PathBuf,
    /// Concurrent sign-ins (and raw bind workers).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per measurement, split across the rounds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds; each measures raw binds, then PTA checks.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

struct Facts {
    url: String,
    ca: PathBuf,
    /// (UPN, password) of the lab's ordinary accounts; worker i signs in as user i mod n,
    /// in the raw baseline and through PTA alike (real traffic is many users, and smart
    /// lockout caps the checks one user may have in flight).
    users: Vec<(String, String)>,
}

fn facts(path: &PathBuf) -> Result<Facts> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (start the lab with `sudo scripts/lab.sh start`, or pass --lab-env)",
            path.display()
        )
    })?;
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
            .with_context(|| format!("{} has no {k}", path.display()))
    };
    let mut users = Vec::new();
    // Up to 8 accounts, so that at the default concurrency every worker has its own.
    for key in [
        "ALICE", "OLIVIA", "IVAN", "KIM", "LIAM", "NORA", "SVC_SYNC", "ADMIN",
    ] {
        if let (Ok(u), Ok(p)) = (
            get(&format!("AD_{key}_UPN")),
            get(&format!("AD_{key}_PASSWORD")),
        ) {
            users.push((u, p));
        }
    }
    if users.is_empty() {
        bail!("{} names none of the lab's ordinary users", path.display());
    }
    Ok(Facts {
        url: get("AD_LDAPS_URL")?,
        ca: get("AD_CA_CERT")?.into(),
        users,
    })
}

fn tls(ca: &PathBuf) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(c.context("lab CA")?).context("lab CA")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Latencies (µs), the count, and this process's CPU seconds over one timed window.
struct Sample {
    ops: u64,
    secs: f64,
    cpu: f64,
    lat_us: Vec<u64>,
}

/// This process's CPU time (user + system) in seconds, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; CLK_TCK is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

pub(crate) fn run(args: &PtaArgs) -> Result<()> {
    if args.concurrency == 0 || args.concurrency > 1024 {
        bail!("--concurrency must be between 1 and 1024");
    }
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) || args.rounds == 0 {
        bail!("--seconds must be in (0, 3600] and --rounds at least 1");
    }
    let f = facts(&args.lab_env)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(args, f))
}

async fn bench(args: &PtaArgs, f: Facts) -> Result<()> {
    let tls = tls(&f.ca)?;
    let slice = Duration::from_secs_f64(args.seconds / f64::from(args.rounds));

    // The PTA path as deployed, in one process: Causeway's CA and registry in a scratch
    // directory, the hub's TLS listener on loopback, one agent enrolled with a token and
    // dialing in over mutual TLS, binding to the lab DC.
    let scratch = std::env::temp_dir().join(format!("causeway-bench-pta-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let now = std::time::SystemTime::now();
    let ca = causeway_certs::Ca::load_or_create(&scratch.join("ca"), now)?;
    let registry = causeway_store::SqliteAgents::open(&ca.registry_path())?;
    let token = registry.create_token(
        causeway_store::TokenPurpose::Agent,
        &ca.fingerprint_sha256(),
        Duration::from_secs(600),
        now,
    )?;
    let server = ca.issue_server_cert(&["127.0.0.1".into()], now)?;
    let server_tls = causeway_certs::server_config(
        server.chain_der(),
        server.private_key_der()?,
        ca.enrollment_client_verifier()?,
        vec![ALPN.to_vec(), ENROLL_ALPN.to_vec()],
    )?;
    let hub = Hub::new(HubConfig::new("bench-endpoint"));
    let authority = Arc::new(CertsAuthority::new(
        ca,
        registry,
        false,
        causeway_certs::DEFAULT_AGENT_CERT_VALIDITY,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = Endpoint {
        host: "127.0.0.1".into(),
        port: listener.local_addr()?.port(),
    };
    tokio::spawn(listener::serve(
        listener,
        Arc::new(server_tls),
        hub.clone(),
        authority,
    ));
    let state =
        causeway_agent::enroll::register(&endpoint, None, token.expose_secret(), "bench-agent")
            .await?;
    let _ = std::fs::remove_dir_all(&scratch);
    let agent_tls = Arc::new(RwLock::new(causeway_agent::runtime::endpoint_tls(
        &state.ca_pem,
        &state.tls_cert_pem,
        &state.tls_key_pem,
    )?));
    let validator = Arc::new(Validator::new(
        EnvelopeOpener::new(state.hpke),
        DirectorySettings {
            dcs: vec![DcTarget {
                url: f.url.clone(),
                transport: Transport::Ldaps,
            }],
            tls: tls.clone(),
            op_timeout: Duration::from_secs(5),
            pool_per_dc: args.concurrency,
            cool_down: Duration::from_secs(5),
            login: LoginResolution::AsTyped,
        },
    ));
    let me = Identity {
        agent_id: state.agent_id.clone(),
        max_in_flight: 1024,
        renewer: None,
    };
    tokio::spawn(keep_channel(
        endpoint,
        None,
        agent_tls,
        me,
        validator,
        Backoff::default(),
    ));
    for _ in 0..500 {
        if hub.has_agents() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !hub.has_agents() {
        bail!("the agent did not connect to the hub");
    }

    println!(
        "causeway bench pta: concurrency {}, {} users, {} rounds of {:.1} s per measurement, DC {}",
        args.concurrency,
        f.users.len(),
        args.rounds,
        slice.as_secs_f64(),
        f.url
    );
    // Warm both paths (TLS handshakes, pools) outside the timed windows.
    let _ = raw(&f, &tls, args.concurrency, Duration::from_millis(500)).await?;
    let _ = pta(&hub, &f, args.concurrency, Duration::from_millis(500)).await?;

    let (mut raw_all, mut pta_all) = (Vec::new(), Vec::new());
    let (mut raw_ops, mut raw_secs, mut pta_ops, mut pta_secs) = (0u64, 0f64, 0u64, 0f64);
    let (mut raw_cpu, mut pta_cpu) = (0f64, 0f64);
    for round in 1..=args.rounds {
        let r = raw(&f, &tls, args.concurrency, slice).await?;
        let p = pta(&hub, &f, args.concurrency, slice).await?;
        println!(
            "  round {round}: raw {:>7.1}/s   pta {:>7.1}/s",
            r.ops as f64 / r.secs,
            p.ops as f64 / p.secs
        );
        (raw_ops, raw_secs, pta_ops, pta_secs) = (
            raw_ops + r.ops,
            raw_secs + r.secs,
            pta_ops + p.ops,
            pta_secs + p.secs,
        );
        raw_cpu += r.cpu;
        pta_cpu += p.cpu;
        raw_all.extend(r.lat_us);
        pta_all.extend(p.lat_us);
    }
    raw_all.sort_unstable();
    pta_all.sort_unstable();
    let (raw_rate, pta_rate) = (raw_ops as f64 / raw_secs, pta_ops as f64 / pta_secs);
    let (r50, r99) = (percentile(&raw_all, 0.50), percentile(&raw_all, 0.99));
    let (p50, p99) = (percentile(&pta_all, 0.50), percentile(&pta_all, 0.99));
    println!("baseline  raw LDAPS simple binds: {raw_rate:.1}/s  p50 {r50:.2} ms  p99 {r99:.2} ms");
    println!("measured  PTA checks hub -> agent -> DC: {pta_rate:.1}/s  p50 {p50:.2} ms  p99 {p99:.2} ms");
    println!(
        "causeway's own CPU per operation: raw client {:.0} µs, hub + agent + client {:.0} µs",
        raw_cpu * 1e6 / raw_ops.max(1) as f64,
        pta_cpu * 1e6 / pta_ops.max(1) as f64
    );
    println!(
        "added latency at concurrency {}: p50 {:+.2} ms (target <= 1), p99 {:+.2} ms (target <= 5)",
        args.concurrency,
        p50 - r50,
        p99 - r99
    );
    // At concurrency 8 a 2-core DC is saturated and its scheduling dominates the
    // percentiles; one client at a time shows what the PTA path itself adds.
    let probe = Duration::from_secs_f64((args.seconds / 4.0).clamp(1.0, 5.0));
    let mut r1 = raw(&f, &tls, 1, probe).await?.lat_us;
    let mut p1 = pta(&hub, &f, 1, probe).await?.lat_us;
    r1.sort_unstable();
    p1.sort_unstable();
    println!(
        "unloaded (concurrency 1, {:.0} s each): raw p50 {:.2} ms p99 {:.2} ms, pta p50 {:.2} ms p99 {:.2} ms, added p50 {:+.2} ms p99 {:+.2} ms",
        probe.as_secs_f64(),
        percentile(&r1, 0.5),
        percentile(&r1, 0.99),
        percentile(&p1, 0.5),
        percentile(&p1, 0.99),
        percentile(&p1, 0.5) - percentile(&r1, 0.5),
        percentile(&p1, 0.99) - percentile(&r1, 0.99)
    );
    let crypto = envelope_costs();
    println!(
        "envelope crypto: channel set-up {:.0} µs once (encapsulate + decapsulate); per check seal {:.1} µs + open {:.1} µs",
        crypto.setup_us, crypto.seal_us, crypto.open_us
    );
    println!("ratio pta/raw: {:.3} (target >= 0.95)", pta_rate / raw_rate);
    Ok(())
}

struct EnvelopeCosts {
    setup_us: f64,
    seal_us: f64,
    open_us: f64,
}

/// What the envelope layer costs on this machine, apart from TLS and the directory: the
/// per-channel HPKE set-up, and the per-check seal and open with exporter-derived keys.
fn envelope_costs() -> EnvelopeCosts {
    const CHANNELS: u32 = 200;
    const CHECKS: u32 = 20_000;
    let agent = EnvelopeOpener::new(AgentKeyPair::generate());
    let t = Instant::now();
    for _ in 0..CHANNELS {
        let (_, key) = ChannelSealer::new(agent.keys().public()).expect("encapsulate");
        std::hint::black_box(agent.accept_channel(&key).expect("decapsulate"));
    }
    let setup_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(CHANNELS);
    let (mut sealer, key) = ChannelSealer::new(agent.keys().public()).expect("encapsulate");
    let mut chan = agent.accept_channel(&key).expect("decapsulate");
    let password = Password::new("Bench-Password-1".into()).expect("password");
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 60;
    let now = expires_at - 60;
    let contexts: Vec<EnvelopeContext> = (0..CHECKS)
        .map(|_| EnvelopeContext {
            request_id: RequestId::random(),
            user_name: "alice@lab.causeway.test".into(),
            endpoint_id: "bench-endpoint".into(),
            expires_at,
        })
        .collect();
    let t = Instant::now();
    let sealed: Vec<_> = contexts
        .iter()
        .map(|c| sealer.seal(c, &password).expect("seal"))
        .collect();
    let seal_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS);
    let t = Instant::now();
    for e in &sealed {
        std::hint::black_box(chan.open(e, "bench-endpoint", now).expect("open"));
    }
    let open_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS);
    EnvelopeCosts {
        setup_us,
        seal_us,
        open_us,
    }
}

async fn raw(
    f: &Facts,
    tls: &Arc<rustls::ClientConfig>,
    n: usize,
    dur: Duration,
) -> Result<Sample> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut conns = Vec::new();
    for _ in 0..n {
        let settings = LdapConnSettings::new().set_config(tls.clone());
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &f.url)
            .await
            .context("raw LDAPS connect")?;
        tokio::spawn(async move { conn.drive().await });
        conns.push(ldap);
    }
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut tasks = Vec::new();
    for (i, mut ldap) in conns.into_iter().enumerate() {
        let (upn, pw) = f.users[i % f.users.len()].clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = ldap.simple_bind(&upn, &pw).await?;
                if r.rc != 0 {
                    bail!("raw bind failed: rc {} {}", r.rc, r.text);
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            let _ = ldap.unbind().await;
            Ok(lat)
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    collect(tasks, start, cpu0).await
}

async fn pta(hub: &Arc<Hub>, f: &Facts, n: usize, dur: Duration) -> Result<Sample> {
    let stop = Arc::new(AtomicBool::new(false));
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut tasks = Vec::new();
    for i in 0..n {
        let (upn, pw) = f.users[i % f.users.len()].clone();
        let (stop, hub) = (stop.clone(), hub.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let password = Password::new(pw.clone())?;
                let o = hub
                    .check(CheckRequest {
                        user_name: upn.clone(),
                        password,
                        source: None,
                    })
                    .await;
                if o != SignInOutcome::Success {
                    bail!("PTA check answered {o}");
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok(lat)
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    collect(tasks, start, cpu0).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<u64>>>>,
    start: Instant,
    cpu0: f64,
) -> Result<Sample> {
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Sample {
        ops: lat_us.len() as u64,
        secs,
        cpu: cpu_seconds() - cpu0,
        lat_us,
    })
}
