//! `causeway`: the one binary for the endpoint (`serve`), the on-premises agent (`agent`),
//! the hash-sync job (`sync`), the CA (`certs`), benchmarks (`bench`) and a local demo
//! (`demo`). Thin on purpose: it parses arguments and hands over to the crates.
#![forbid(unsafe_code)]
// A command-line program talks on stdout.
#![allow(clippy::print_stdout)]

mod admin_socket;
mod agent_cmd;
mod apps_cmd;
mod apps_m365;
mod apps_oidc;
mod audit_cmd;
mod bench;
mod certs_cmd;
mod data_dir;
mod demo;
mod demo_apps;
mod demo_oidc;
mod endpoint;
mod http_client;
mod logging;
mod password_policy;
mod serve_config;
mod sync_cmd;
mod users_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Causeway: sign in to cloud and SaaS applications with your on-premises Active Directory
/// password. Pass-through authentication through outbound-only agents, password hash sync,
/// and a SAML 2.0 / WS-Federation identity provider, in one open-source binary.
#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Start with `causeway demo`. Every subcommand has its own --help.")]
struct Cli {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text, env = "CAUSEWAY_LOG_FORMAT")]
    log_format: logging::Format,

    /// Log filter, e.g. `info` or `causeway_agent=debug,info` (tracing's EnvFilter syntax)
    /// [default: info; warn for `bench`, whose endpoint would log every sign-in].
    #[arg(long, global = true, env = "CAUSEWAY_LOG")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the endpoint: sign-in page, SAML 2.0 IdP, WS-Federation, and the agent hub.
    Serve(endpoint::ServeArgs),
    /// Register or run the on-premises agent that checks passwords against AD.
    #[command(subcommand)]
    Agent(agent_cmd::AgentCommand),
    /// Synchronise users, groups, contacts, devices and OUs from AD and OpenLDAP to the
    /// endpoint: `check` a configuration, `register` this host, `run` the job (change
    /// notification, polling, leases), `status`/`runs`, `approve` a stopped run, `plan`
    /// (the dry run) and `object` (one object on demand).
    #[command(subcommand)]
    Sync(sync_cmd::SyncCommand),
    /// Manage Causeway's CA: enrollment tokens, agents (list, approve, revoke), and the
    /// token-signing keys (keys, rollover). Finds the data directory through --config.
    #[command(subcommand)]
    Certs(certs_cmd::CertsCommand),
    /// Register the applications users sign in to (SAML service providers, WS-Fed realms).
    #[command(subcommand)]
    Apps(apps_cmd::AppsCommand),
    /// Manage cloud-only users in the endpoint's directory store.
    #[command(subcommand)]
    Users(users_cmd::UsersCommand),
    /// Measure throughput against a baseline taken in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Start a complete local demonstration on embedded defaults.
    Demo(demo::DemoArgs),
    /// Show the audit log: sign-ins, admin changes, agent and sync events.
    Audit(audit_cmd::AuditArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.log.as_deref().unwrap_or(match cli.command {
        Command::Bench(_) => "warn",
        _ => "info",
    });
    if let Err(e) = logging::init(cli.log_format, filter) {
        eprintln!("causeway: {e}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Serve(a) => block_on(endpoint::serve(a)),
        Command::Agent(a) => block_on(agent_cmd::run(a)),
        Command::Sync(c) => sync_cmd::run(c),
        Command::Certs(c) => report(certs_cmd::certs(c)),
        Command::Users(u) => block_on(users_cmd::run(u)),
        Command::Bench(b) => match bench::run(b) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("causeway bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Apps(c) => block_on(apps_cmd::apps(c)),
        Command::Demo(a) => block_on(demo::demo(a)),
        Command::Audit(a) => report(audit_cmd::run(a)),
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => report(rt.block_on(f)),
        Err(e) => report(Err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sync_check_takes_a_config() {
        let cli =
            Cli::try_parse_from(["causeway", "sync", "check", "-c", "x.toml"]).expect("parses");
        assert!(matches!(
            cli.command,
            Command::Sync(sync_cmd::SyncCommand::Check { offline: false, .. })
        ));
    }
}
