//! `causeway bench lockout`: whether a password-hash-sync sign-in's latency tells names
//! apart, through the real authenticator (directory store on SQLite, smart lockout
//! persisted to the same file). Five kinds of sign-in are measured interleaved, so drift
//! in machine load hits all alike: a real user and an unknown name, each with a new wrong
//! password (a real check) and with a repeated one (answered from memory), and a name in
//! a domain the endpoint does not serve. The medians should not differ beyond noise.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Result};
use causeway_credential::{Password, PhsVerifier};
use causeway_federation::hub::lockout::LockoutPolicy;
use causeway_federation::hub::{Hub, HubConfig};
use causeway_federation::signin::{Authenticator, Method};
use causeway_store::{DirectoryStore, LockoutStore, NewUser, SqliteStore, Users as _};

#[derive(Debug, clap::Args)]
pub(crate) struct LockoutArgs {
    /// Sign-ins measured per kind.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
}

const KINDS: [&str; 5] = [
    "known user, new wrong password",
    "unknown name, new wrong password",
    "known user, repeated wrong password",
    "unknown name, repeated wrong password",
    "foreign domain, new wrong password",
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) async fn run(args: LockoutArgs) -> Result<()> {
    if !(10..=1_000_000).contains(&args.samples) {
        bail!("--samples must be between 10 and 1000000");
    }
    let dir = std::env::temp_dir().join(format!("causeway-bench-lockout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("directory.sqlite");
    let store = SqliteStore::open(&path)?;
    store
        .add_cloud_user(
            &NewUser {
                upn: "known@corp.example".into(),
                display_name: None,
                mail: None,
            },
            &PhsVerifier::derive(&Password::new("Right-Pw-1".into())?),
            "bench",
            SystemTime::now(),
        )
        .await?;
    let mut config = HubConfig::new("bench");
    // Never lock or throttle during the measurement: the point is the cost of each path.
    config.lockout = LockoutPolicy {
        threshold: u32::MAX - 1,
        directory_threshold: u32::MAX,
        per_source_failures_per_minute: u32::MAX,
        ..LockoutPolicy::default()
    };
    let hub = Hub::new(config);
    let persisted: Arc<dyn LockoutStore> = Arc::new(SqliteStore::open(&path)?);
    hub.lockout().persist_to(persisted, SystemTime::now())?;
    let store: Arc<dyn DirectoryStore> = Arc::new(store);
    let auth = Authenticator::new(
        hub.clone(),
        store,
        vec![("corp.example".into(), Method::Phs)],
    );
    let pw = |s: &str| Password::new(s.into()).expect("valid");
    // The repeated passwords are refused once first, so that later tries come from memory.
    for name in ["known@corp.example", "nobody@corp.example"] {
        auth.authenticate(name, pw("Repeated-Guess"), None).await;
    }
    println!(
        "bench lockout: {} sign-ins per kind, interleaved; password-hash-sync domain, store and lockout on SQLite",
        args.samples
    );
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(args.samples); KINDS.len()];
    for i in 0..args.samples + 20 {
        for (k, t) in times.iter_mut().enumerate() {
            let (name, password) = match k {
                0 => ("known@corp.example", format!("Guess-{i}")),
                1 => ("nobody@corp.example", format!("Guess-{i}")),
                2 => ("known@corp.example", "Repeated-Guess".into()),
                3 => ("nobody@corp.example", "Repeated-Guess".into()),
                _ => ("someone@elsewhere.example", format!("Guess-{i}")),
            };
            let p = pw(&password);
            let started = Instant::now();
            let (o, _) = auth.authenticate(name, p, None).await;
            let us = started.elapsed().as_secs_f64() * 1e6;
            if !o.is_bad_password() {
                bail!("{}: expected a wrong-password answer, got {o}", KINDS[k]);
            }
            // The first rounds warm caches and the runtime's blocking pool.
            if i >= 20 {
                t.push(us);
            }
        }
    }
    hub.lockout().flush();
    let medians: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
    for (k, m) in KINDS.iter().zip(&medians) {
        println!("  {k:<40} median {m:>8.1} µs");
    }
    println!(
        "known - unknown, new wrong password:      {:>+7.1} µs",
        medians[0] - medians[1]
    );
    println!(
        "known - unknown, repeated wrong password: {:>+7.1} µs",
        medians[2] - medians[3]
    );
    println!(
        "from memory - real check (known user):    {:>+7.1} µs",
        medians[2] - medians[0]
    );
    println!(
        "foreign domain - known user:              {:>+7.1} µs",
        medians[4] - medians[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
