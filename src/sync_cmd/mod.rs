//! `causeway sync …`: the directory sync job's commands. `check` validates a configuration
//! and tries each connector's directory as the sync account; `import`, `plan` and `object`
//! work on the sync host's connector space; `register`, `run`, `status`, `runs` and
//! `approve` (in `export`) talk to the endpoint.

mod export;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::IsTerminal;

use causeway_sync::check::check_connector;
use causeway_sync::config::{Connector, ConnectorKind, SyncConfig};
use causeway_sync::run;
use causeway_sync::space::ConnectorSpace;

/// The connector space's file in the state directory.
const SPACE_FILE: &str = "connector-space.sqlite";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SyncCommand {
    /// Validate a sync configuration and, unless --offline, reach each connector's
    /// directory: bind as the sync account, check that base_dn is the domain, that the
    /// account may use DirSync (AD) or content sync (OpenLDAP), and change notification.
    /// With password_hash_sync = true it also reads one password hash as a hash pass would
    /// (AD: endpoint mapper, DRSUAPI, sealed NTLM, DRSBind, EXOP_REPL_OBJ of the account's
    /// own object; OpenLDAP: a user's sambaNTPassword) and never prints it.
    ///
    /// Examples:
    ///   causeway sync check -c /etc/causeway/sync.toml
    ///   CAUSEWAY_LDAP_SYNC_PASSWORD=… causeway sync check -c sync.toml --offline
    ///
    /// Exit status: 0 when nothing stops a sync, 1 otherwise. Passwords are read from the
    /// files or variables the configuration names and never printed.
    #[command(verbatim_doc_comment)]
    Check {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// Only validate the file; do not contact the directories.
        #[arg(long)]
        offline: bool,
    },
    /// Import each connector's changes into the sync host's connector space
    /// (STATE_DIR/connector-space.sqlite): a full import the first time, deltas (AD DirSync,
    /// OpenLDAP content sync)
    /// from the stored cookie afterwards. Safe to interrupt: every page is committed with
    /// the cookie it leads to, and the next run resumes there. Nothing is exported
    /// (`causeway sync run` imports and exports).
    ///
    /// Examples:
    ///   causeway sync import -c /etc/causeway/sync.toml
    ///   causeway sync import -c sync.toml --connector corp
    #[command(verbatim_doc_comment)]
    Import {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// Only this connector (by its name in the file).
        #[arg(long)]
        connector: Option<String>,
    },
    /// Show what the next run would export for each connector, from the connector space
    /// (run `sync import` first): additions, updates with each attribute's before and
    /// after, deletions with their reason, and whether the deletion threshold stops the
    /// run. A dry run: nothing is exported or recorded.
    ///
    /// Examples:
    ///   causeway sync plan -c /etc/causeway/sync.toml
    ///   causeway sync plan -c sync.toml --connector corp
    #[command(verbatim_doc_comment)]
    Plan {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// Only this connector (by its name in the file).
        #[arg(long)]
        connector: Option<String>,
    },
    /// Sync one object now and print what each step decided: read it from the directory
    /// (by DN, objectGUID or userPrincipalName), put its whole current copy in the
    /// connector space, map it, scope it, and plan its change. With password_hash_sync =
    /// true, a user's password hash is then read alone (EXOP_REPL_OBJ) and pushed if it
    /// changed (the "password hash:" line).
    ///
    /// Examples:
    ///   causeway sync object -c sync.toml alice@corp.example.com
    ///   causeway sync object -c sync.toml "CN=alice,OU=Staff,DC=corp,DC=example,DC=com"
    ///   causeway sync object -c sync.toml 2f6a4c1e-93b0-4f7d-9d2e-5b8f1c0a7e11 --connector corp
    #[command(verbatim_doc_comment)]
    Object {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// The connector to read it from (default: the first AD connector).
        #[arg(long)]
        connector: Option<String>,
        /// A DN, an objectGUID or a userPrincipalName.
        target: String,
        /// Only show what would be sent; export nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Enroll this host as a sync host: make its TLS key here and get a certificate from
    /// the endpoint with a one-time token. Make the token on the endpoint with
    /// `causeway certs token --for sync`; it pins the endpoint's CA, so the first contact
    /// is authenticated too. The key never leaves STATE_DIR/identity (0600).
    ///
    /// Examples:
    ///   CAUSEWAY_SYNC_TOKEN=cwt1.… causeway sync register -c /etc/causeway/sync.toml
    #[command(verbatim_doc_comment)]
    Register {
        /// The configuration file (its endpoints and state_dir are used).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// The one-time enrollment token (prefer the environment variable: arguments are
        /// visible to other users in the process list).
        #[arg(long, env = "CAUSEWAY_SYNC_TOKEN", hide_env_values = true)]
        token: String,
        /// The name this host is listed under [default: its host name].
        #[arg(long)]
        host_name: Option<String>,
    },
    /// Run the sync job: for each connector take the endpoint's lease, import the
    /// directory's changes, plan, and export them in batches the endpoint applies
    /// atomically; then wait for AD's change notification (within seconds) or the poll
    /// interval. A second host with the same configuration stays a warm standby and takes
    /// over when the lease lapses. A run over the deletion threshold stops before exporting
    /// and waits for `causeway sync approve RUN`. SIGTERM or Ctrl-C give the lease up.
    ///
    /// Examples:
    ///   causeway sync run -c /etc/causeway/sync.toml
    ///   causeway sync run -c sync.toml --once        # one round, then exit (cron, tests)
    ///   causeway sync run -c sync.toml --dry-run     # import and print the full diff, export nothing
    ///
    /// Exit status (with --once or --dry-run): 0 when every connector's round succeeded.
    #[command(verbatim_doc_comment)]
    Run {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// One round for each connector, then exit.
        #[arg(long)]
        once: bool,
        /// One round that imports and prints each connector's full diff, exporting nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// What this sync host holds, what its next export would change (staging included),
    /// and the last run the endpoint recorded for each connector.
    #[command(verbatim_doc_comment)]
    Status {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
    },
    /// The latest runs the endpoint recorded, newest first, with their counts and
    /// per-object errors (quarantines, refused objects, the deletions a stopped run lists).
    #[command(verbatim_doc_comment)]
    Runs {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// Only this connector's runs.
        #[arg(long)]
        connector: Option<String>,
        /// How many (at most 100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Approve a run the deletion threshold stopped: the next run of its connector may
    /// delete the objects it listed (see `causeway sync runs`), and no others beyond the
    /// threshold.
    ///
    /// Example:
    ///   causeway sync approve -c /etc/causeway/sync.toml 42
    #[command(verbatim_doc_comment)]
    Approve {
        /// The configuration file (see sync.example.toml).
        #[arg(short, long, env = "CAUSEWAY_SYNC_CONFIG")]
        config: PathBuf,
        /// The stopped run's number.
        run: u64,
    },
}

pub(crate) fn run(cmd: SyncCommand) -> ExitCode {
    let (name, r) = match cmd {
        SyncCommand::Check { config, offline } => ("check", check(&config, offline)),
        SyncCommand::Import { config, connector } => ("import", import(&config, connector)),
        SyncCommand::Plan { config, connector } => ("plan", plan(&config, connector)),
        SyncCommand::Object {
            config,
            connector,
            target,
            dry_run,
        } => ("object", object(&config, connector, &target, dry_run)),
        SyncCommand::Register {
            config,
            token,
            host_name,
        } => ("register", export::register(&config, &token, host_name)),
        SyncCommand::Run {
            config,
            once,
            dry_run,
        } => ("run", export::run(&config, once, dry_run)),
        SyncCommand::Status { config } => ("status", export::status(&config)),
        SyncCommand::Runs {
            config,
            connector,
            limit,
        } => ("runs", export::runs(&config, connector, limit)),
        SyncCommand::Approve { config, run } => ("approve", export::approve(&config, run)),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("causeway sync {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A subcommand's result: `Ok(false)` when it ran but found a problem it has reported on
/// stdout, `Err` when it could not run (said on stderr).
pub(super) type Outcome = Result<bool, String>;

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Runtime::new().map_err(|e| e.to_string())
}

/// The connectors named by `--connector` (all when none is given); an unknown name is an
/// error naming the file.
fn chosen<'a>(
    cfg: &'a SyncConfig,
    only: Option<&str>,
    path: &Path,
) -> Result<Vec<&'a Connector>, String> {
    let v: Vec<&Connector> = cfg
        .connectors
        .iter()
        .filter(|c| only.is_none_or(|n| n == c.name))
        .collect();
    if v.is_empty() {
        return Err(format!(
            "no connector named {:?} in {}",
            only.unwrap_or_default(),
            path.display()
        ));
    }
    Ok(v)
}

/// Opens the connector space in the state directory, creating the directory (0700) when
/// `create` is set; without it, a missing space says which command makes it.
pub(super) fn open_space(
    cfg: &SyncConfig,
    path: &Path,
    create: bool,
) -> Result<ConnectorSpace, String> {
    let file = cfg.state_dir.join(SPACE_FILE);
    if create {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.state_dir)
            .map_err(|e| format!("state_dir {}: {e}", cfg.state_dir.display()))?;
    } else if !file.exists() {
        return Err(format!(
            "{} does not exist yet: run `causeway sync import -c {}` first",
            file.display(),
            path.display()
        ));
    }
    ConnectorSpace::open(&file).map_err(|e| e.to_string())
}

#[allow(clippy::print_stdout)] // the report is the command's output
fn check(path: &Path, offline: bool) -> Outcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    println!(
        "{}: valid ({} connector{}, {} endpoint{}{})",
        path.display(),
        cfg.connectors.len(),
        if cfg.connectors.len() == 1 { "" } else { "s" },
        cfg.endpoints.len(),
        if cfg.endpoints.len() == 1 { "" } else { "s" },
        if cfg.staging { ", staging mode" } else { "" }
    );
    if offline {
        return Ok(true);
    }
    let rt = runtime()?;
    let mut ok = true;
    for c in &cfg.connectors {
        let report = rt.block_on(check_connector(c));
        ok &= report.ok();
        print!("{report}");
    }
    Ok(ok)
}

#[allow(clippy::print_stdout)] // the report is the command's output
fn import(path: &Path, only: Option<String>) -> Outcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    let connectors = chosen(&cfg, only.as_deref(), path)?;
    let space = open_space(&cfg, path, true)?;
    let rt = runtime()?;
    let tty = std::io::stderr().is_terminal();
    let mut ok = true;
    for c in connectors {
        let r = rt.block_on(run::import(c, &space, |n| {
            if tty {
                eprint!("\r{}: {n} entries read", c.name);
            }
        }));
        if tty {
            eprintln!();
        }
        match r {
            Ok(report) => {
                println!("{}: {report}", c.name);
                for e in report.errors.iter().take(20) {
                    println!("  unreadable: {e}");
                }
                if report.errors.len() > 20 {
                    println!(
                        "  … and {} more unreadable entries",
                        report.errors.len() - 20
                    );
                }
            }
            Err(e) => {
                ok = false;
                println!("{}: import stopped: {e}", c.name);
            }
        }
    }
    Ok(ok)
}

#[allow(clippy::print_stdout)] // the plan is the command's output
fn plan(path: &Path, only: Option<String>) -> Outcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    let connectors = chosen(&cfg, only.as_deref(), path)?;
    let space = open_space(&cfg, path, false)?;
    for c in connectors {
        let p = causeway_sync::plan::plan(&space, c, cfg.delete_threshold)
            .map_err(|e| format!("{}: {e}", c.name))?;
        print!("{}: {p}", c.name);
    }
    Ok(true)
}

#[allow(clippy::print_stdout)] // the report is the command's output
fn object(path: &Path, only: Option<String>, target: &str, dry_run: bool) -> Outcome {
    let cfg = SyncConfig::load(path).map_err(|e| e.to_string())?;
    // Without --connector: the first AD connector (on-demand sync reads AD).
    let c = match only.as_deref() {
        Some(_) => chosen(&cfg, only.as_deref(), path)?[0],
        None => cfg
            .connectors
            .iter()
            .find(|c| c.kind == ConnectorKind::ActiveDirectory)
            .ok_or_else(|| format!("no AD connector in {}", path.display()))?,
    };
    let space = open_space(&cfg, path, true)?;
    let rt = runtime()?;
    let mut r = rt
        .block_on(run::one_object(c, &space, cfg.delete_threshold, target))
        .map_err(|e| format!("{}: {e}", c.name))?;
    r.export = Some(if dry_run {
        "not sent (--dry-run)".into()
    } else {
        export::export_object(&cfg, c, &space, r.change.as_ref(), &rt)
    });
    print!("{r}");
    if c.password_hash_sync {
        let line = if dry_run {
            "not sent (--dry-run)".into()
        } else {
            export::hash_object(&cfg, c, &space, r.entry.guid, &rt)
        };
        println!("  password hash: {line}");
    }
    Ok(true)
}
