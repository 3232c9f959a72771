//! `causeway bench hashsync`: a full password hash sync of the N users `bench sync`
//! provisions in the second forest — DRSR replication from its DC as `svc-sync`,
//! decryption, verifier derivation, ingestion into a `causeway serve` child's store —
//! against, in the same run, the PBKDF2 bound: the same N verifiers derived on all cores
//! through the same code path ([`causeway_sync::hashsync::derive_all`]). Then how long a
//! password changed in AD takes to verify at the endpoint, with the job running.
//!
//! The users are given one known password first (scripts/lab/provision-users.sh,
//! `BENCH_PASSWORD`: only the users whose NT hash differs, e.g. the last run's changes).

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use causeway_credential::{NtHash, Password};
use causeway_store::Verifiers as _;

use super::sync::pipeline::{
    big_ou, causeway, facts, full_import, percentile, pipeline, provision, Forest, Pipeline,
};

/// The password every bench user is given before the full sync.
const KNOWN_PASSWORD: &str = "Bench-Hash-2026!";
/// Users whose known password is checked at the endpoint after the full sync.
const SAMPLE: u32 = 20;

#[derive(Debug, clap::Args)]
pub(crate) struct HashSyncArgs {
    /// The lab's facts file, as written by `scripts/lab.sh start`.
    #[arg(
        long,
        default_value = "/tmp/causeway-lab/lab.env",
        env = "CAUSEWAY_LAB_ENV"
    )]
    lab_env: PathBuf,
    /// Users whose hashes are synchronised (N): the same users as `bench sync --users N`.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(40..=99_999))]
    users: u32,
    /// Password changes timed from AD to a verifier that accepts the new password.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    changes: u32,
    /// The provisioning script (root: it writes the DC's database directly).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab/provision-users.sh"))]
    provision: PathBuf,
}

/// The index of the user the `i`th change picks among `n` (spread over the OU).
fn changed_index(i: u32, n: u32) -> u32 {
    ((u64::from(i) * 7919) % u64::from(n)) as u32
}

/// `k` distinct user indices spread over `0..n` (all of them when `n <= k`).
fn sample(n: u32, k: u32) -> BTreeSet<u32> {
    (0..k.min(n))
        .map(|j| (u64::from(j) * u64::from(n) / u64::from(k.min(n))) as u32)
        .collect()
}

/// `name=123` out of a log line's fields.
fn field_ms(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

/// An AD `unicodePwd` value: the password in double quotes, UTF-16LE.
fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

pub(crate) async fn run(args: HashSyncArgs) -> Result<()> {
    let f = facts(&args.lab_env)?;
    let forest = Forest::of(&f, "AD2")?;
    let n = args.users;
    println!(
        "causeway bench hashsync: N = {n} users, {} password changes",
        args.changes
    );
    let (ou, prefix) = big_ou(n);
    let ou_dn = provision(
        &args.provision,
        "ad2",
        (&ou, &prefix),
        n,
        Some(KNOWN_PASSWORD),
    )?;
    let root = std::env::temp_dir().join(format!("causeway-bench-hashsync-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = measure(&args, &forest, (&ou_dn, &prefix), &root).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn measure(
    args: &HashSyncArgs,
    forest: &Forest,
    (ou_dn, prefix): (&str, &str),
    root: &std::path::Path,
) -> Result<()> {
    let n = args.users;
    let known = Password::new(KNOWN_PASSWORD.into()).context("bench password")?;

    // The bound: N verifiers from N hashes, on all cores, as a hash pass derives them.
    let hashes: Vec<NtHash> = (0..n).map(|_| NtHash::from_password(&known)).collect();
    let started = Instant::now();
    let verifiers = causeway_sync::hashsync::derive_all(hashes).await;
    let bound_time = started.elapsed();
    if verifiers.len() != n as usize || !verifiers.last().is_some_and(|v| v.verify(&known)) {
        bail!(
            "derive_all gave {} verifiers for {n} hashes",
            verifiers.len()
        );
    }
    drop(verifiers);
    let bound = f64::from(n) / bound_time.as_secs_f64();
    println!(
        "baseline  PBKDF2 bound, {n} verifiers derived on {} cores: {:.2} s = {bound:.0} users/s",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
        bound_time.as_secs_f64()
    );

    // The users reach the endpoint first (object sync, not measured); then the same
    // connector with hash sync on: its first pass replicates and pushes every hash.
    let p = pipeline(root, "hashsync", forest, ou_dn).await?;
    let (objects, _, _) = full_import(&p, "warn")?;
    println!(
        "  {n} users exported in {:.2} s (object sync, not measured)",
        objects.as_secs_f64()
    );
    // The connector's table is the config's last: a line appended lands in it.
    let mut config = std::fs::read_to_string(&p.config)?;
    config.push_str("password_hash_sync = true\n");
    std::fs::write(&p.config, config)?;
    let (elapsed, _, _) = full_import(&p, "info")?;
    let log = std::fs::read_to_string(p.dir.join("sync-once.log")).unwrap_or_default();
    let pass = log.lines().find(|l| l.contains("hash sync:"));
    let (reached, sample_ok) = verifiers_in_store(&p, prefix, forest, n).await?;
    if reached < n as usize || !sample_ok {
        bail!(
            "{reached} of {n} verifiers reached the endpoint (sample verifies: {sample_ok}); the pass: {}",
            pass.unwrap_or("none logged")
        );
    }
    let rate = f64::from(n) / elapsed.as_secs_f64();
    println!(
        "measured  full hash sync, DRSR read → decrypt → derive → ingestion API → store: {reached} verifiers in {:.2} s = {rate:.0} users/s",
        elapsed.as_secs_f64()
    );
    if let Some(line) = pass {
        let derive = field_ms(line, "derive_ms").unwrap_or(0);
        let derive_push = field_ms(line, "derive_push_ms").unwrap_or(0);
        println!(
            "  where:  derivation {:.2} s, ingestion {:.2} s, the rest (process, object delta, DRSR read and decryption) {:.2} s",
            derive as f64 / 1000.0,
            derive_push.saturating_sub(derive) as f64 / 1000.0,
            (elapsed.as_millis() as u64).saturating_sub(derive_push) as f64 / 1000.0
        );
    }

    let latencies = changes(args, &p, forest, (ou_dn, prefix)).await?;
    println!(
        "latency   password changed in AD to verifying at the endpoint, over {} changes: p50 {:.2} s, p99 {:.2} s",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64()
    );
    println!("ratio hashsync/bound: {:.3} (target >= 0.8)", rate / bound);
    Ok(())
}

/// How many of the N users have a verifier in the endpoint's store, and whether the
/// known password, and no other, verifies for a sample of them.
async fn verifiers_in_store(
    p: &Pipeline,
    prefix: &str,
    forest: &Forest,
    n: u32,
) -> Result<(usize, bool)> {
    let known = Password::new(KNOWN_PASSWORD.into()).context("bench password")?;
    let sample = sample(n, SAMPLE);
    let (mut reached, mut sample_ok) = (0, true);
    for i in 0..n {
        let upn = format!("{prefix}{i:05}@{}", forest.dns);
        if let Some((_, Some(v))) = p.store.verifier_of(&upn).await? {
            reached += 1;
            if sample.contains(&i) {
                sample_ok &= v.verify(&known) && !v.verify(&Password::new("wrong".into())?);
            }
        } else if sample.contains(&i) {
            sample_ok = false;
        }
    }
    Ok((reached, sample_ok))
}

/// `changes` passwords set in AD (an LDAP `unicodePwd` replace as the administrator)
/// with `causeway sync run` running; each timed until the endpoint's verifier takes it.
async fn changes(
    args: &HashSyncArgs,
    p: &Pipeline,
    forest: &Forest,
    (ou_dn, prefix): (&str, &str),
) -> Result<Vec<Duration>> {
    let log = p.dir.join("sync-run.log");
    let mut daemon = causeway(&["--log", "info", "sync", "run", "-c"])
        .arg(&p.config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let result = async {
        let watching = Instant::now();
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("watching for change notifications")
        {
            if watching.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the sync job never started watching: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let the first round (a delta and a hash pass with nothing in them) finish.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut admin = forest
            .bind(&forest.admin_dn, &forest.admin_password)
            .await?;
        let mut latencies = Vec::new();
        for i in 0..args.changes {
            let sam = format!("{prefix}{:05}", changed_index(i, args.users));
            let dn = format!("CN={sam},{ou_dn}");
            let upn = format!("{sam}@{}", forest.dns);
            let new = format!("Bench-Changed-{}-{i}!", std::process::id());
            let password = Password::new(new.clone()).context("changed password")?;
            let started = Instant::now();
            admin
                .modify(
                    &dn,
                    vec![ldap3::Mod::Replace(
                        b"unicodePwd".to_vec(),
                        HashSet::from([unicode_pwd(&new)]),
                    )],
                )
                .await?
                .success()
                .with_context(|| format!("set the password of {dn}"))?;
            loop {
                let usable = p
                    .store
                    .verifier_of(&upn)
                    .await?
                    .and_then(|(_, v)| v)
                    .is_some_and(|v| v.verify(&password));
                if usable {
                    break;
                }
                if started.elapsed() > Duration::from_secs(120) {
                    bail!(
                        "change {i} ({sam}) never verified at the endpoint: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies.push(started.elapsed());
        }
        let _ = admin.unbind().await;
        Ok(latencies)
    }
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let mut latencies = result?;
    latencies.sort();
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_distinct_users_in_range() {
        for n in [1, 20, 40, 400, 20_000] {
            let s = sample(n, SAMPLE);
            assert_eq!(s.len() as u32, SAMPLE.min(n), "n = {n}");
            assert!(s.iter().all(|&i| i < n), "n = {n}");
        }
        assert!(sample(20_000, SAMPLE).contains(&19_000));
    }

    #[test]
    fn changes_pick_distinct_users() {
        let picked: BTreeSet<u32> = (0..20).map(|i| changed_index(i, 400)).collect();
        assert_eq!(picked.len(), 20);
        assert!(picked.iter().all(|&i| i < 400));
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("ab"), b"\"\0a\0b\0\"\0".to_vec());
    }

    #[test]
    fn fields_are_read_out_of_a_log_line() {
        let line = "INFO causeway_sync::cycle: connector=\"bench\" read=400 derive_ms=812 derive_push_ms=1020 hash sync: 400 users read";
        assert_eq!(field_ms(line, "derive_ms"), Some(812));
        assert_eq!(field_ms(line, "derive_push_ms"), Some(1020));
        assert_eq!(field_ms(line, "push_ms"), None);
    }
}
