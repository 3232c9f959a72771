//! `causeway serve` and `causeway certs …`: the endpoint's data directory, its CA and
//! registry, and the agent hub listener. (The sign-in page, SAML and WS-Federation come
//! with the federation endpoint; today `serve` runs the hub that agents dial into.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use causeway_certs::{AgentId, AgentStatus, Ca, Registry, TokenPurpose};
use causeway_credential::wire::{ALPN, ENROLL_ALPN};
use causeway_federation::hub::authority::CertsAuthority;
use causeway_federation::hub::{listener, Hub, HubConfig};
use causeway_federation::web::{Metrics, WebState};
use tracing::info;

/// Where the endpoint keeps its state unless told otherwise.
pub(crate) const DEFAULT_DATA_DIR: &str = "causeway-data";

#[derive(Debug, clap::Args)]
pub(crate) struct DataDir {
    /// The endpoint's data directory (CA, registry); created on first use, mode 0700.
    #[arg(long, env = "CAUSEWAY_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

impl DataDir {
    fn ca_dir(&self) -> PathBuf {
        self.data_dir.join("ca")
    }

    /// Creates the data directory (0700) if it is missing.
    pub(crate) fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))
    }

    /// The directory store's file.
    pub(crate) fn directory_path(&self) -> PathBuf {
        self.data_dir.join("directory.sqlite")
    }

    fn open(&self) -> Result<(Ca, Registry)> {
        self.ensure()?;
        let ca = Ca::load_or_create(&self.ca_dir(), SystemTime::now())?;
        let reg = Registry::open(&ca.registry_path())?;
        Ok((ca, reg))
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// Address the endpoint listens on: agents (mutual TLS) and HTTPS share it.
    #[arg(long, default_value = "127.0.0.1:8443", env = "CAUSEWAY_AGENT_LISTEN")]
    agent_listen: SocketAddr,
    /// Names (DNS or IP) the endpoint's TLS certificate carries: what agents dial.
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// Make new agents wait for `causeway certs approve` before they receive sign-ins.
    #[arg(long)]
    require_approval: bool,
    /// This endpoint replica's id (envelopes are sealed for it) [default: the host name].
    #[arg(long)]
    endpoint_id: Option<String>,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<()> {
    let (ca, registry) = args.data.open()?;
    let server = ca.issue_server_cert(&args.server_names, SystemTime::now())?;
    let tls = causeway_certs::server_config(
        server.chain_der(),
        server.private_key_der()?,
        ca.enrollment_client_verifier()?,
        vec![
            ALPN.to_vec(),
            ENROLL_ALPN.to_vec(),
            b"h2".to_vec(),
            b"http/1.1".to_vec(),
        ],
    )?;
    let endpoint_id = args
        .endpoint_id
        .unwrap_or_else(causeway_agent::runtime::host_name);
    let listener = tokio::net::TcpListener::bind(args.agent_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.agent_listen))?;
    info!(
        data_dir = %args.data.data_dir.display(),
        ca_fingerprint = %ca.fingerprint_sha256(),
        agent_listen = %args.agent_listen,
        %endpoint_id,
        require_approval = args.require_approval,
        "endpoint ready: agents and HTTPS (/healthz, /metrics) on the same port; create an agent token with `causeway certs token --for agent`"
    );
    if !args.require_approval {
        tracing::warn!(
            "new agents receive sign-ins as soon as they enroll; a stolen enrollment token gives a rogue agent live passwords. Use --require-approval and `causeway certs approve` in production"
        );
    }
    let hub = Hub::new(HubConfig::new(endpoint_id));
    let web = Arc::new(WebState {
        hub: hub.clone(),
        metrics: Metrics::new(),
    });
    let authority = Arc::new(CertsAuthority::new(
        ca,
        registry,
        args.require_approval,
        causeway_certs::DEFAULT_AGENT_CERT_VALIDITY,
    ));
    tokio::select! {
        () = listener::serve_with_web(listener, Arc::new(tls), hub, authority, Some(web)) => Ok(()),
        r = tokio::signal::ctrl_c() => {
            r.context("waiting for Ctrl-C")?;
            info!("stopping");
            Ok(())
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a one-time enrollment token (printed once; only its hash is stored).
    Token {
        #[command(flatten)]
        data: DataDir,
        /// What the token enrolls.
        #[arg(long = "for", value_parser = ["agent"], default_value = "agent")]
        purpose: String,
        /// How long the token stays valid, e.g. 15m, 1h, 2d (60 s to 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// List registered agents: id, host, status, certificate, first and last seen.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Allow a pending agent to receive sign-ins.
    Approve {
        #[command(flatten)]
        data: DataDir,
        /// The agent id (agt-…), as `causeway certs list` shows it.
        id: String,
    },
    /// Cut an agent off for good; a connected agent is disconnected within seconds.
    Revoke {
        #[command(flatten)]
        data: DataDir,
        /// The agent id (agt-…).
        id: String,
    },
}

/// Parses `90s`, `15m`, `1h`, `2d` (or plain seconds).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 15m, 1h or 2d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn when(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ago = SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs());
    if secs == 0 {
        "never".into()
    } else if ago < 120 {
        format!("{ago}s ago")
    } else if ago < 7200 {
        format!("{}m ago", ago / 60)
    } else {
        format!("{}h ago", ago / 3600)
    }
}

pub(crate) fn certs(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Token { data, purpose, ttl } => {
            if purpose != "agent" {
                bail!("only agent tokens exist so far");
            }
            let (ca, reg) = data.open()?;
            let token = reg.create_token(
                TokenPurpose::Agent,
                &ca.fingerprint_sha256(),
                ttl,
                SystemTime::now(),
            )?;
            eprintln!(
                "One-time agent enrollment token, valid for {} s. It is shown only now:",
                ttl.as_secs()
            );
            println!("{}", token.expose_secret());
            eprintln!("On the agent host:  causeway agent register --endpoint https://HOST:PORT --token <token>");
            Ok(())
        }
        CertsCommand::List { data } => {
            let (_, reg) = data.open()?;
            let agents = reg.list_agents()?;
            if agents.is_empty() {
                println!("no agents registered");
                return Ok(());
            }
            println!(
                "{:<22} {:<24} {:<9} {:<18} {:<12} {:<12}",
                "ID", "HOST", "STATUS", "CERT SHA-256", "FIRST SEEN", "LAST SEEN"
            );
            for a in agents {
                println!(
                    "{:<22} {:<24} {:<9} {:<18} {:<12} {:<12}",
                    a.id.as_str(),
                    a.host_name.chars().take(24).collect::<String>(),
                    a.status.as_str(),
                    &a.cert_fingerprint[..16.min(a.cert_fingerprint.len())],
                    when(a.first_seen),
                    when(a.last_seen),
                );
            }
            Ok(())
        }
        CertsCommand::Approve { data, id } => {
            let (_, reg) = data.open()?;
            let id = AgentId::parse(&id)?;
            reg.approve(&id)?;
            println!("{} approved", id.as_str());
            Ok(())
        }
        CertsCommand::Revoke { data, id } => {
            let (_, reg) = data.open()?;
            let id = AgentId::parse(&id)?;
            reg.revoke(&id)?;
            let still = reg
                .agent(&id)?
                .is_some_and(|a| a.status == AgentStatus::Revoked);
            println!(
                "{} revoked{}",
                id.as_str(),
                if still {
                    "; a running endpoint cuts it off within seconds"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
