//! `causeway agent register`, `causeway agent check` and `causeway agent run`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use causeway_agent::config::{AgentConfig, FileProblem};

fn lines(problems: &[FileProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AgentCommand {
    /// Enroll this host as an agent: make its keys here, get a certificate with a token.
    ///
    /// The private keys never leave this host (files 0600 in the state directory). The
    /// token, from `causeway certs token --for agent` on the endpoint, is single-use and
    /// pins the endpoint's CA.
    Register {
        /// The endpoint's agent address, e.g. https://idp.example.com:8443
        #[arg(long)]
        endpoint: String,
        /// The one-time enrollment token.
        #[arg(long, env = "CAUSEWAY_AGENT_TOKEN", hide_env_values = true)]
        token: String,
        /// Where to keep the agent's keys and certificates.
        #[arg(long, default_value = "/var/lib/causeway-agent")]
        state_dir: PathBuf,
        /// An HTTP CONNECT proxy to go through, e.g. http://proxy:3128
        #[arg(long)]
        proxy: Option<String>,
        /// The name this host is listed under [default: its host name].
        #[arg(long)]
        host_name: Option<String>,
    },
    /// Run the agent with a configuration file (TOML; see `agent.example.toml`).
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/causeway/agent.toml")]
        config: PathBuf,
    },
    /// Check a configuration file and the files it names (CA file, state directory, keys
    /// and their permissions), and exit: 0 when `agent run` can start with it.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "/etc/causeway/agent.toml")]
        config: PathBuf,
    },
}

pub(crate) async fn run(cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::Register {
            endpoint,
            token,
            state_dir,
            proxy,
            host_name,
        } => {
            // Reuse the config file's parsers so that URLs mean the same everywhere.
            let probe = format!(
                "[agent]\nstate_dir = \".\"\nendpoints = [{endpoint:?}]\n{}\n[directory]\ndomain_controllers = [\"ldaps://unused\"]\nca_file = \"unused\"\n",
                proxy.as_ref().map(|p| format!("proxy = {p:?}")).unwrap_or_default()
            );
            let parsed = AgentConfig::parse(&probe, std::path::Path::new("--endpoint/--proxy"))
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let host = host_name.unwrap_or_else(causeway_certs::host_name);
            let state = causeway_agent::enroll::register(
                &parsed.endpoints[0],
                parsed.proxy.as_ref(),
                &token,
                &host,
            )
            .await?;
            state.save(&state_dir)?;
            println!(
                "registered as {} ; keys and certificate in {}",
                state.agent_id,
                state_dir.display()
            );
            Ok(())
        }
        AgentCommand::Run { config } => {
            let cfg = AgentConfig::load(&config)?;
            let problems = cfg.check_files(std::time::SystemTime::now());
            if !problems.is_empty() {
                bail!(
                    "{}: cannot start:\n  {}",
                    config.display(),
                    lines(&problems)
                );
            }
            causeway_agent::runtime::run(cfg)
                .await
                .context("agent stopped")
        }
        AgentCommand::Check { config } => {
            let cfg = AgentConfig::load(&config)?;
            let problems = cfg.check_files(std::time::SystemTime::now());
            if !problems.is_empty() {
                bail!(
                    "{}: the file is valid, but `agent run` would fail:\n  {}",
                    config.display(),
                    lines(&problems)
                );
            }
            println!(
                "{}: valid ({} endpoint(s), {} domain controller(s)); CA file, state directory and keys checked",
                config.display(),
                cfg.endpoints.len(),
                cfg.domain_controllers.len()
            );
            Ok(())
        }
    }
}
