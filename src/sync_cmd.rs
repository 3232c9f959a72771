//! `causeway sync …`: the directory sync job's commands. Today `check`, which validates a
//! sync configuration and tries each connector's directory as the sync account; the run
//! itself (import, export to the endpoint, password hash sync) is built in the sync issues.

use std::path::PathBuf;
use std::process::ExitCode;

use causeway_sync::check::check_connector;
use causeway_sync::config::SyncConfig;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SyncCommand {
    /// Validate a sync configuration and, unless --offline, reach each connector's
    /// directory: bind as the sync account, check that base_dn is the domain, that the
    /// account may use DirSync (AD) or content sync (OpenLDAP), and change notification.
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
}

pub(crate) fn run(cmd: SyncCommand) -> ExitCode {
    match cmd {
        SyncCommand::Check { config, offline } => check(config, offline),
    }
}

#[allow(clippy::print_stdout)] // the report is the command's output
fn check(path: PathBuf, offline: bool) -> ExitCode {
    let cfg = match SyncConfig::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("causeway sync check: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("causeway sync check: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    for c in &cfg.connectors {
        let report = rt.block_on(check_connector(c));
        ok &= report.ok();
        print!("{report}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
