//! `causeway bench sync`: a full import of N users through the whole pipeline — the lab's
//! Samba DC → a `causeway sync run --once` child (DirSync, connector space, plan) → the
//! ingestion API of a `causeway serve` child → its directory store — against a raw paged
//! LDAP search of the same entries and attributes, in the same run. Also the sync child's
//! peak memory for N/4 and for N users (it must stay flat), and how long one changed user
//! among N takes to reach the endpoint with the job running (change notification).
//!
//! The N users live in the lab's second forest (OU=Bench), the N/4 in the first: each
//! forest's DirSync pass reads its whole domain, and keeping the big one in the forest the
//! other tests barely use keeps their full imports small.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use causeway_store::{SqliteStore, Users as _};

use super::{raw_paged_search, sync_attributes, RssSampler, PAGE_SIZE};
use crate::bench::siege::start_endpoint_with;

#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// The lab's facts file, as written by `scripts/lab.sh start`.
    #[arg(
        long,
        default_value = "/tmp/causeway-lab/lab.env",
        env = "CAUSEWAY_LAB_ENV"
    )]
    lab_env: PathBuf,
    /// Users to import (N); the memory comparison also imports N/4.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(40..=99_999))]
    users: u32,
    /// Changed users timed from the directory to the endpoint.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    changes: u32,
    /// The provisioning script (root: it writes the DC's database directly).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab/provision-users.sh"))]
    provision: PathBuf,
}

pub(in crate::bench) fn facts(path: &Path) -> Result<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: the lab's facts (start it with `sudo scripts/lab.sh start`)",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Makes sure `forest` (`ad` or `ad2`) holds `n` bench users named `prefix` + number in
/// OU=`ou`, each with `password` when one is given (a user that has one keeps it);
/// returns the OU's DN.
pub(in crate::bench) fn provision(
    script: &Path,
    forest: &str,
    (ou, prefix): (&str, &str),
    n: u32,
    password: Option<&str>,
) -> Result<String> {
    let mut cmd = Command::new(script);
    if let Some(p) = password {
        cmd.env("BENCH_PASSWORD", p);
    }
    let out = cmd
        .arg(n.to_string())
        .env("BENCH_FOREST", forest)
        .env("BENCH_PREFIX", prefix)
        .env("BENCH_OU", ou)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} {n} failed for {forest}", script.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    let secs = get("BENCH_PROVISION_SECONDS").unwrap_or_default();
    println!(
        "  provisioned {forest}: {} users present, {} added in {secs} s",
        get("BENCH_USERS").unwrap_or_default(),
        get("BENCH_ADDED").unwrap_or_default()
    );
    if password.is_some() {
        println!(
            "  passwords set on {}",
            get("BENCH_PASSWORDS_SET").unwrap_or_default()
        );
    }
    get("BENCH_OU_DN").context("the script printed no BENCH_OU_DN")
}

/// The OU and name prefix of the N bench users in the second forest: each size has its
/// own, so that an OU made for another size never holds more than N users (provisioning
/// adds, it never deletes).
pub(in crate::bench) fn big_ou(n: u32) -> (String, String) {
    if n == 20_000 {
        ("Bench".to_owned(), "bench".to_owned())
    } else {
        (format!("Bench{n}"), format!("b{n}x"))
    }
}

/// One forest's connection facts (`AD` or `AD2` prefix).
pub(in crate::bench) struct Forest {
    url: String,
    ca: String,
    base: String,
    bind_dn: String,
    password: String,
    pub(in crate::bench) admin_dn: String,
    pub(in crate::bench) admin_password: String,
    pub(in crate::bench) dns: String,
}

impl Forest {
    pub(in crate::bench) fn of(
        f: &std::collections::HashMap<String, String>,
        prefix: &str,
    ) -> Result<Self> {
        let get = |k: &str| {
            f.get(&format!("{prefix}_{k}"))
                .cloned()
                .with_context(|| format!("{prefix}_{k} missing from the lab's facts"))
        };
        Ok(Self {
            url: get("LDAPS_URL")?,
            ca: get("CA_CERT")?,
            base: get("BASE_DN")?,
            bind_dn: get("SVC_SYNC_DN")?,
            password: get("SVC_SYNC_PASSWORD")?,
            admin_dn: get("ADMIN_DN")?,
            admin_password: get("ADMIN_PASSWORD")?,
            dns: get("DNS_DOMAIN")?,
        })
    }

    pub(in crate::bench) async fn bind(&self, dn: &str, password: &str) -> Result<ldap3::Ldap> {
        let tls = causeway_certs::trusting_only(&std::fs::read(&self.ca)?)?;
        let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
            ldap3::LdapConnSettings::new().set_config(std::sync::Arc::new(tls)),
            &self.url,
        )
        .await?;
        ldap3::drive!(conn);
        ldap.simple_bind(dn, password).await?.success()?;
        Ok(ldap)
    }
}

/// A scratch endpoint with a registered sync host scoped to `ou` of `forest`.
pub(in crate::bench) struct Pipeline {
    _endpoint: super::super::siege::Endpoint,
    pub(in crate::bench) dir: PathBuf,
    pub(in crate::bench) config: PathBuf,
    pub(in crate::bench) store: SqliteStore,
}

pub(in crate::bench) fn causeway(args: &[&str]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own executable"));
    c.args(args);
    c
}

pub(in crate::bench) async fn pipeline(
    root: &Path,
    name: &str,
    forest: &Forest,
    ou: &str,
) -> Result<Pipeline> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("endpoint");
    std::fs::create_dir_all(&data)?;
    let (endpoint, addr) = start_endpoint_with(&data, "", &[]).await?;
    let token = causeway(&[
        "certs",
        "token",
        "--for",
        "sync",
        "--ttl",
        "10m",
        "--data-dir",
    ])
    .arg(&data)
    .output()?;
    if !token.status.success() {
        bail!("certs token: {}", String::from_utf8_lossy(&token.stderr));
    }
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    causeway_config::files::write_atomic(
        &dir.join("svc-sync.pw"),
        format!("{}\n", forest.password).as_bytes(),
        0o600,
    )?;
    let config = dir.join("sync.toml");
    std::fs::write(
        &config,
        format!(
            "[sync]\nstate_dir = \"state\"\nendpoints = [\"https://{addr}\"]\npoll_interval = \"1h\"\n\n[safety]\ndelete_threshold = 0\n\n[[connector]]\nname = \"bench\"\nkind = \"ad\"\nservers = [{:?}]\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = \"svc-sync.pw\"\nbase_dn = {:?}\ninclude_ous = [{ou:?}]\ntimeout = \"5m\"\n",
            forest.url, forest.ca, forest.bind_dn, forest.base
        ),
    )?;
    let out = causeway(&["sync", "register", "--host-name", name, "-c"])
        .arg(&config)
        .env("CAUSEWAY_SYNC_TOKEN", &token)
        .output()?;
    if !out.status.success() {
        bail!("sync register: {}", String::from_utf8_lossy(&out.stderr));
    }
    let store = SqliteStore::open(&data.join("directory.sqlite"))?;
    Ok(Pipeline {
        _endpoint: endpoint,
        dir,
        config,
        store,
    })
}

/// `sync run --once` as a child, logging at `level` into `sync-once.log`: wall time, the
/// child's peak resident memory (MiB), sampled every 20 ms, and where its time went
/// (sync's `timing:` debug lines, when `level` lets them through).
pub(in crate::bench) fn full_import(
    p: &Pipeline,
    level: &str,
) -> Result<(Duration, f64, Vec<String>)> {
    let log = p.dir.join("sync-once.log");
    let started = Instant::now();
    let mut child = causeway(&["--log", level, "sync", "run", "--once", "-c"])
        .arg(&p.config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut rss = RssSampler::new(child.id());
    let status = loop {
        let _ = rss.sample("during");
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    if !status.success() {
        bail!(
            "sync run --once failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let timings = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("timing: ").map(|(_, t)| t.to_owned()))
        .collect();
    Ok((elapsed, rss.max_kib().unwrap_or(0) as f64 / 1024.0, timings))
}

pub(in crate::bench) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) async fn run(args: SyncArgs) -> Result<()> {
    let f = facts(&args.lab_env)?;
    let big = Forest::of(&f, "AD2")?;
    let small = Forest::of(&f, "AD")?;
    let n = args.users;
    let quarter = (n / 4).max(10);
    println!(
        "causeway bench sync: N = {n} users (N/4 = {quarter}), {} changes",
        args.changes
    );
    let (big_ou, big_prefix) = big_ou(n);
    let ou_big = provision(&args.provision, "ad2", (&big_ou, &big_prefix), n, None)?;
    // The first forest's own names (its tests make a few `bench…` users of their own).
    let (small_ou, small_prefix) = if quarter == 5_000 {
        ("BenchQuarter".to_owned(), "benchq".to_owned())
    } else {
        (format!("BenchQ{quarter}"), format!("q{quarter}x"))
    };
    let ou_small = provision(
        &args.provision,
        "ad",
        (&small_ou, &small_prefix),
        quarter,
        None,
    )?;
    let root = std::env::temp_dir().join(format!("causeway-bench-sync-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = measure(
        &args,
        &big,
        &small,
        (&ou_big, &big_prefix),
        &ou_small,
        &root,
        n,
        quarter,
    )
    .await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &SyncArgs,
    big: &Forest,
    small: &Forest,
    (ou_big, prefix): (&str, &str),
    ou_small: &str,
    root: &Path,
    n: u32,
    quarter: u32,
) -> Result<()> {
    // The baseline: the same entries and attributes, paged, decoded and dropped.
    let mut ldap = big.bind(&big.bind_dn, &big.password).await?;
    let raw = raw_paged_search(
        &mut ldap,
        ou_big,
        &sync_attributes(),
        PAGE_SIZE,
        Duration::from_secs(300),
        Instant::now,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let _ = ldap.unbind().await;
    let raw_rate = raw.objects_per_second().unwrap_or(0.0);
    println!(
        "baseline  raw paged LDAPS search of {}: {} entries in {:.2} s = {raw_rate:.0} objects/s",
        ou_big.split(',').next().unwrap_or(ou_big),
        raw.objects,
        raw.elapsed.as_secs_f64()
    );

    let q = pipeline(root, "quarter", small, ou_small).await?;
    let (_, rss_quarter, _) = full_import(&q, "warn")?;
    drop(q);
    let p = pipeline(root, "full", big, ou_big).await?;
    let (elapsed, rss_full, timings) = full_import(&p, "warn,causeway_sync=debug")?;
    let users = p
        .store
        .list_users(false)
        .await?
        .iter()
        .filter(|u| u.upn.starts_with(prefix))
        .count();
    if users < n as usize {
        bail!("only {users} of {n} users reached the endpoint");
    }
    let rate = f64::from(n) / elapsed.as_secs_f64();
    println!(
        "measured  full import, sync → ingestion API → store: {n} users in {:.2} s = {rate:.0} objects/s",
        elapsed.as_secs_f64()
    );
    for t in timings {
        println!("  where     {t}");
    }
    println!(
        "memory    sync process peak RSS: {rss_quarter:.1} MiB for {quarter} users, {rss_full:.1} MiB for {n} users, ratio {:.2} (target <= 1.25)",
        rss_full / rss_quarter.max(0.001)
    );

    // One changed user among N, with the job running (change notification wakes it).
    let log = p.dir.join("sync-run.log");
    let mut daemon = causeway(&["--log", "info", "sync", "run", "-c"])
        .arg(&p.config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let watching = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("watching for change notifications")
    {
        if watching.elapsed() > Duration::from_secs(120) {
            let _ = daemon.kill();
            bail!(
                "the sync job never started watching: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the first round (a delta with nothing in it) finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut admin = big.bind(&big.admin_dn, &big.admin_password).await?;
    let mut latencies = Vec::new();
    for i in 0..args.changes {
        let sam = format!("{prefix}{:05}", (i * 7919) % n);
        let dn = format!("CN={sam},{ou_big}");
        let value = format!("Changed {} {i}", std::process::id());
        let upn = format!("{sam}@{}", big.dns);
        let started = Instant::now();
        admin
            .modify(
                &dn,
                vec![ldap3::Mod::Replace(
                    "displayName",
                    std::collections::HashSet::from([value.as_str()]),
                )],
            )
            .await?
            .success()
            .with_context(|| format!("modify {dn}"))?;
        loop {
            let hit = p
                .store
                .user_by_upn(&upn)
                .await?
                .is_some_and(|u| u.display_name.as_deref() == Some(&value));
            if hit {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = daemon.kill();
                bail!("change {i} never reached the endpoint");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(started.elapsed());
    }
    let _ = admin.unbind().await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    latencies.sort();
    println!(
        "latency   one changed user among {n} to the endpoint, over {} changes: p50 {:.2} s, p99 {:.2} s",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64(),
        percentile(&latencies, 0.99).as_secs_f64()
    );
    println!(
        "ratio import/raw: {:.3} (target >= 0.8)",
        rate / raw_rate.max(0.001)
    );
    Ok(())
}
