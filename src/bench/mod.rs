//! `causeway bench …`: throughput figures, each beside a baseline measured in the same run
//! on the same machine, so that the ratio means something on any hardware.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use causeway_credential::{Password, PhsVerifier, DEFAULT_ITERATIONS};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// Password-hash-sync verifier checks per second on all cores, against raw
    /// PBKDF2-HMAC-SHA256 with 1000 iterations per second on all cores (target ratio >= 0.9).
    ///
    /// A check is what a PHS sign-in does with a stored verifier: parse the
    /// `v1;PPH1_MD4,...` string, NT-hash the password (MD4 over UTF-16LE), hex-encode it,
    /// run PBKDF2 and compare in constant time. The two measurements alternate in rounds
    /// so that drift in machine load hits both alike.
    Phs(PhsArgs),
    /// Pass-through sign-ins per second through hub → agent → AD, against raw LDAP simple
    /// binds per second to the same DC at the same concurrency (target ratio >= 0.85,
    /// added p50 <= 1 ms, p99 <= 5 ms).
    ///
    /// Uses the running lab (`scripts/lab.sh start`), found through `--lab-env`. The PTA
    /// path is the deployed one: a CA and registry in a scratch directory, the hub's TLS
    /// listener on loopback, an agent enrolled with a token over mutual TLS. The raw
    /// baseline keeps one LDAPS connection per worker and re-binds on it; the agent keeps a
    /// pool of the same size, so both sides pay the same TLS set-up once.
    Pta(pta::PtaArgs),
    /// Full SP-initiated SAML round trips per second (HTTPS on loopback, AuthnRequest →
    /// sign-in → signed Response) for a password-hash-sync user and for a user with an SSO
    /// session, against the RSA signature bound of the same key measured in the same run
    /// (target: session round trips ≥ 0.8 × signatures/s ÷ 2).
    Sso(sso::SsoArgs),
    /// SSO round trips per second for legitimate clients on a quiet endpoint and, in the
    /// same run, while clients without an account flood it: pending sign-ins, idle TLS
    /// connections up to the caps, maximum-size hostile XML (target ratio under attack to
    /// quiet of at least 0.7); also the endpoint's peak RSS and whether a real user's
    /// pending sign-in survived the flood.
    ///
    /// The endpoint is a `causeway serve` child process on loopback; each attacker uses
    /// its own 127.0.1.x source address. Every attack loop stops with the measurement.
    Siege(siege::SiegeArgs),
    /// Whether a password-hash-sync sign-in's latency tells a real user from an unknown
    /// name, or a remembered wrong password from a new one: medians of five kinds of
    /// wrong-password sign-in through the real authenticator, measured interleaved.
    Lockout(lockout::LockoutArgs),
    /// A full import of N users (default 20,000) through the whole sync pipeline — the
    /// lab's DC → `causeway sync` → the ingestion API → the endpoint's store — against a
    /// raw paged LDAP search of the same entries and attributes in the same run (target
    /// ratio >= 0.8); the sync process's peak RSS for N/4 and N users (target <= 1.25x);
    /// and p50/p99 of one changed user reaching the endpoint with the job running.
    ///
    /// Needs the running lab and root (`sudo scripts/lab.sh start`): the N users are made
    /// once, in the second forest's OU=Bench, by scripts/lab/provision-users.sh.
    Sync(sync::pipeline::SyncArgs),
    /// A full password hash sync of the N users `bench sync` provisions (default 20,000)
    /// end to end — DRSR read from the second forest's DC, decryption, verifier
    /// derivation, the ingestion API, the endpoint's store — against the PBKDF2 bound for
    /// N verifiers on all cores in the same run (target ratio >= 0.8); and p50/p99 of a
    /// password changed in AD verifying at the endpoint with the job running.
    ///
    /// Needs the running lab and root: the users are given a known password by
    /// scripts/lab/provision-users.sh.
    Hashsync(hashsync::HashSyncArgs),
    /// OpenID Connect code-flow round trips per second (HTTPS on loopback: authorize with
    /// an SSO session -> code -> token request with client_secret_basic and PKCE) with N
    /// concurrent clients, against the RS256 signature bound of the same key measured in
    /// the same run (signatures/s / 2 per round trip; target ratio >= 0.8).
    Oidc(oidc::OidcArgs),
}

mod hashsync;
mod lockout;
mod oidc;
mod pta;
mod siege;
mod sso;
mod sync;

#[derive(Debug, clap::Args)]
pub(crate) struct PhsArgs {
    /// Seconds per measurement, split across the rounds.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Rounds; each round measures the baseline and then the verifier.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
}

pub(crate) fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Phs(a) => phs(&a),
        BenchCommand::Pta(a) => pta::run(&a),
        BenchCommand::Sso(a) => tokio::runtime::Runtime::new()?.block_on(sso::run(a)),
        BenchCommand::Siege(a) => tokio::runtime::Runtime::new()?.block_on(siege::run(a)),
        BenchCommand::Lockout(a) => tokio::runtime::Runtime::new()?.block_on(lockout::run(a)),
        BenchCommand::Sync(a) => tokio::runtime::Runtime::new()?.block_on(sync::pipeline::run(a)),
        BenchCommand::Hashsync(a) => tokio::runtime::Runtime::new()?.block_on(hashsync::run(a)),
        BenchCommand::Oidc(a) => tokio::runtime::Runtime::new()?.block_on(oidc::run(a)),
    }
}

fn phs(args: &PhsArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be between 0 and 3600, got {}", args.seconds);
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let threads = match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let slice = Duration::from_secs_f64(args.seconds / f64::from(args.rounds));

    let password = Password::new("Bench-Password-2026".into()).context("bench password")?;
    let stored = PhsVerifier::derive(&password).expose_encoded();
    let raw_input = [0x41u8; 64]; // the same 64-byte length as UTF-16LE(32 hex digits)
    let raw_salt = [0x5au8; 10];

    println!(
        "causeway bench phs: {threads} threads, {} rounds of {:.2} s per measurement, {} PBKDF2 iterations",
        args.rounds,
        slice.as_secs_f64(),
        DEFAULT_ITERATIONS
    );
    let (mut raw_ops, mut raw_time, mut ver_ops, mut ver_time) = (0u64, 0f64, 0u64, 0f64);
    for round in 1..=args.rounds {
        let (n, t) = on_all_threads(threads, slice, || {
            let mut out = [0u8; 32];
            causeway_credential::pbkdf2_sha256(
                black_box(&raw_input),
                black_box(&raw_salt),
                DEFAULT_ITERATIONS,
                &mut out,
            );
            black_box(out);
            true
        });
        raw_ops += n;
        raw_time += t;
        let (m, u) = on_all_threads(threads, slice, || {
            PhsVerifier::parse(black_box(&stored)).is_ok_and(|v| v.verify(black_box(&password)))
        });
        ver_ops += m;
        ver_time += u;
        println!(
            "  round {round}: raw {:>9.1}/s   verifier {:>9.1}/s",
            n as f64 / t,
            m as f64 / u
        );
    }
    let raw = raw_ops as f64 / raw_time;
    let ver = ver_ops as f64 / ver_time;
    println!("baseline  raw PBKDF2-HMAC-SHA256 x{DEFAULT_ITERATIONS}, all cores: {raw:.1}/s");
    println!(
        "measured  PHS verifier checks (parse + NT hash + PBKDF2 + compare), all cores: {ver:.1}/s"
    );
    println!("ratio verifier/raw: {:.3} (target >= 0.90)", ver / raw);
    Ok(())
}

/// Runs `op` on `threads` threads for `dur`; returns the total count and the elapsed
/// seconds. Panics inside `op` propagate. `op` returns false to report a failed check,
/// which aborts the benchmark (a benchmark of failures is worthless).
/// Lets the clients in `tasks` (each counting its round trips in `done` and returning
/// their latencies in ms once `stop` is set) run for `secs`, counted from now; returns
/// round trips per second over that window and every latency.
async fn timed_round_trips(
    tasks: Vec<tokio::task::JoinHandle<Result<Vec<f64>>>>,
    stop: &std::sync::atomic::AtomicBool,
    done: &std::sync::atomic::AtomicU64,
    secs: u64,
) -> Result<(f64, Vec<f64>)> {
    use std::sync::atomic::Ordering;
    let start = std::time::Instant::now();
    let warm = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let count = done.load(Ordering::Relaxed) - warm;
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    Ok((count as f64 / took, lat))
}

fn on_all_threads(threads: usize, dur: Duration, op: impl Fn() -> bool + Sync) -> (u64, f64) {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let total = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        assert!(op(), "a benchmark check failed");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        std::thread::sleep(dur);
        stop.store(true, Ordering::Relaxed);
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum::<u64>()
    });
    (total, start.elapsed().as_secs_f64())
}
