//! `causeway certs …`: enrollment tokens, the agent and sync-host registry, and the
//! token-signing keys, in an existing data directory (see [`crate::data_dir`]). Listing
//! never writes; nothing here creates a data directory or a CA.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use causeway_certs::signing::{Activation, KeySet, RolloverChange};
use causeway_certs::AgentId;
use causeway_config::parse_duration;
use causeway_store::{AgentStatus, HostRole};

use crate::data_dir::DataArgs;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CertsCommand {
    /// Create a one-time enrollment token (printed once; only its hash is stored).
    Token {
        #[command(flatten)]
        data: DataArgs,
        /// What the token enrolls: a pass-through agent, or a sync host (`causeway sync`).
        #[arg(long = "for", value_enum, default_value_t = TokenFor::Agent)]
        purpose: TokenFor,
        /// How long the token stays valid, e.g. 15m, 1h, 2d (60 s to 30 days).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
    },
    /// List registered agents and sync hosts: id, role, host, status, certificate, first and last seen.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Allow a pending agent to receive sign-ins, or a pending sync host to export.
    Approve {
        #[command(flatten)]
        data: DataArgs,
        /// The agent's or sync host's id (agt-…), as `causeway certs list` shows it.
        id: String,
    },
    /// Start a token-signing key rollover now: publish the next key in metadata at once
    /// (with the config's [signing] key_lifetime); it signs after [signing]
    /// activate_after_publish (5 days by default), --activate-after, or at once with
    /// --activate-now. With a next key already published, --activate-after and
    /// --activate-now move its start instead of making another. A start is never later
    /// than the signing key's end.
    Rollover {
        #[command(flatten)]
        data: DataArgs,
        /// Make the next key the signing key now (e.g. when the current one may be compromised).
        #[arg(long, conflicts_with = "activate_after")]
        activate_now: bool,
        /// Time between now and the next key's first signature, e.g. 2d [default: [signing]
        /// activate_after_publish for a new key; a published one keeps its time].
        #[arg(long, value_parser = parse_duration)]
        activate_after: Option<Duration>,
    },
    /// List token-signing keys: which signs now, which is published, when each expires.
    Keys {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Cut an agent or sync host off for good; a connected one is disconnected within seconds.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// The agent's or sync host's id (agt-…).
        id: String,
    },
}

/// What an enrollment token is for (`causeway certs token --for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TokenFor {
    /// A pass-through-authentication agent (`causeway agent register`).
    Agent,
    /// A sync host (`causeway sync`), exporting to the ingestion API.
    Sync,
}

impl TokenFor {
    fn role(self) -> HostRole {
        match self {
            TokenFor::Agent => HostRole::Agent,
            TokenFor::Sync => HostRole::Sync,
        }
    }
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

impl CertsCommand {
    /// What the audit log calls this command and what it changes; `None` for listings.
    fn audited(&self) -> Option<(&'static str, String, DataArgs)> {
        match self {
            // The token itself is never recorded: only what it is for and how long it lives.
            CertsCommand::Token { data, purpose, ttl } => Some((
                "certs.token",
                format!(
                    "{} enrollment token, valid {}s",
                    purpose.role().as_str(),
                    ttl.as_secs()
                ),
                data.clone(),
            )),
            CertsCommand::Approve { data, id } => Some(("agent.approve", id.clone(), data.clone())),
            CertsCommand::Revoke { data, id } => Some(("agent.revoke", id.clone(), data.clone())),
            CertsCommand::Rollover { data, .. } => Some((
                "signing.rollover",
                "token-signing keys".into(),
                data.clone(),
            )),
            CertsCommand::List { .. } | CertsCommand::Keys { .. } => None,
        }
    }
}

/// Runs `cmd`; a change is recorded in the audit log with how it ended.
pub(crate) fn certs(cmd: CertsCommand) -> Result<()> {
    let audited = cmd.audited();
    let result = certs_command(cmd);
    if let Some((action, target, data)) = audited {
        data.audit_admin(action, &target, &result);
    }
    result
}

fn certs_command(cmd: CertsCommand) -> Result<()> {
    match cmd {
        CertsCommand::Token { data, purpose, ttl } => {
            let (ca, reg) = data.locate()?.data.open_existing()?;
            let role = purpose.role();
            let token = reg.create_token(
                role.token_purpose(),
                &ca.fingerprint_sha256(),
                ttl,
                SystemTime::now(),
            )?;
            eprintln!(
                "One-time {role} enrollment token, valid for {} s. It is shown only now:",
                ttl.as_secs()
            );
            println!("{}", token.expose_secret());
            match role {
                HostRole::Sync => eprintln!("Give it to the sync host: it enrolls once with it, then exports with its own certificate (approve it with causeway certs approve if the endpoint requires approval)"),
                _ => eprintln!("On the agent host:  causeway agent register --endpoint https://HOST:PORT --token <token>"),
            }
            Ok(())
        }
        CertsCommand::List { data } => {
            let (_, reg) = data.locate()?.data.open_existing()?;
            let agents = reg.list_agents()?;
            if agents.is_empty() {
                println!("no agents or sync hosts registered");
                return Ok(());
            }
            println!(
                "{:<22} {:<6} {:<24} {:<9} {:<18} {:<12} {:<12}",
                "ID", "ROLE", "HOST", "STATUS", "CERT SHA-256", "FIRST SEEN", "LAST SEEN"
            );
            for a in agents {
                println!(
                    "{:<22} {:<6} {:<24} {:<9} {:<18} {:<12} {:<12}",
                    a.id.as_str(),
                    a.role.as_str(),
                    a.host_name.chars().take(24).collect::<String>(),
                    a.status.as_str(),
                    &a.cert_fingerprint[..16.min(a.cert_fingerprint.len())],
                    when(a.first_seen),
                    when(a.last_seen),
                );
            }
            Ok(())
        }
        CertsCommand::Rollover {
            data,
            activate_now,
            activate_after,
        } => rollover(&data, activate_now, activate_after, SystemTime::now()),
        CertsCommand::Keys { data } => keys(&data, SystemTime::now()),
        CertsCommand::Approve { data, id } => {
            let (_, reg) = data.locate()?.data.open_existing()?;
            let id = AgentId::parse(&id)?;
            reg.approve(&id)?;
            println!("{} approved", id.as_str());
            Ok(())
        }
        CertsCommand::Revoke { data, id } => {
            let (_, reg) = data.locate()?.data.open_existing()?;
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

fn rfc3339(t: SystemTime) -> String {
    causeway_saml::saml2::fmt_time(t)
}

fn secs_until(now: SystemTime, t: SystemTime) -> u64 {
    t.duration_since(now).map_or(0, |d| d.as_secs())
}

/// `certs rollover`: the config's [signing] policy, `--activate-after` over its delay; what
/// is printed is read back from the key set.
fn rollover(
    data: &DataArgs,
    activate_now: bool,
    activate_after: Option<Duration>,
    now: SystemTime,
) -> Result<()> {
    let found = data.locate()?;
    let policy = found.config.rollover;
    let dir = found.data.keys_dir();
    if !dir.exists() {
        bail!(
            "no token-signing keys in {}: `causeway serve` creates the first on its first start",
            dir.display()
        );
    }
    let mut set = KeySet::load(&dir)?;
    let when = match (activate_now, activate_after) {
        (true, _) => Activation::Now,
        (false, Some(d)) => Activation::After(d),
        (false, None) => Activation::Scheduled,
    };
    let r = set.rollover(&policy, now, when)?;
    let what = match r.change {
        RolloverChange::Created => "is published in metadata now",
        RolloverChange::Rescheduled => "was already published; its start was moved",
        RolloverChange::Unchanged => "was already published and keeps its start (use --activate-after or --activate-now to move it)",
    };
    if r.activate_at <= now {
        println!(
            "{} {what}; it signs now (running endpoints switch within 10 s)",
            r.id
        );
    } else {
        println!(
            "{} {what}; it signs from {} (in {} s); relying parties that refresh metadata before then see it first",
            r.id,
            rfc3339(r.activate_at),
            secs_until(now, r.activate_at)
        );
    }
    if r.lead_time_cut {
        let expires = r.signing_key_expires.map_or_else(|| "-".into(), rfc3339);
        eprintln!(
            "warning: the lead time asked for ends after the signing key expires ({expires}); the next key starts before then instead, so relying parties get less notice"
        );
    }
    Ok(())
}

/// `certs keys`: reads the key directory as it is, never writes.
fn keys(data: &DataArgs, now: SystemTime) -> Result<()> {
    let found = data.locate()?;
    let dir = found.data.keys_dir();
    if !dir.exists() {
        println!(
            "no token-signing keys yet in {} (`causeway serve` creates the first)",
            dir.display()
        );
        return Ok(());
    }
    let set = KeySet::load(&dir)?;
    let active = set.active(now).map(|k| k.id.clone());
    println!(
        "{:<18} {:<10} {:<22} {:<22} SHA-256",
        "ID", "STATE", "SIGNS FROM", "EXPIRES"
    );
    for k in set.all() {
        let state = if Some(&k.id) == active.as_ref() {
            "signing"
        } else if k.not_after <= now {
            "expired"
        } else if k.activate_at > now {
            "published"
        } else {
            "retired"
        };
        println!(
            "{:<18} {:<10} {:<22} {:<22} {}",
            k.id,
            state,
            rfc3339(k.activate_at),
            rfc3339(k.not_after),
            k.fingerprint
        );
    }
    if active.is_none() {
        eprintln!(
            "warning: no key signs now; a running `causeway serve` makes one sign within 10 s"
        );
    }
    Ok(())
}
