//! One user's password hash on demand, for `causeway sync object`: read that user alone
//! from AD and push it through [`push_records`], so the rule that an unchanged password
//! pushes nothing holds here too. OpenLDAP is not here because on-demand sync of an
//! object does not read OpenLDAP yet ([`crate::run::one_object`]).

use std::fmt;
use std::time::SystemTime;

use causeway_drsr::replicate::{Options, Session};
use causeway_drsr::rpc::{self, Association};
use causeway_drsr::secret::SessionKey;

use super::ad::{self, plan, AdHashError, Plan};
use super::{exported_users, push_records, HashReport, HashSyncError};
use crate::ad::entry::Guid;
use crate::config::{Connector, ConnectorKind};
use crate::export::channel::Channel;
use crate::space::ConnectorSpace;

/// What refreshing one user's password hash did.
#[derive(Debug)]
pub enum OneHash {
    /// Not a user object export has delivered: the endpoint could take no password.
    NotExported,
    /// The DC returned no user for the anchor (not a user with a SID).
    NotAUser,
    /// The user's `unicodePwd` could not be decrypted (nothing pushed).
    Unreadable(String),
    /// Read and pushed (or found unchanged).
    Pushed(HashReport),
}

impl fmt::Display for OneHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotExported => write!(f, "not read (not a user the endpoint holds)"),
            Self::NotAUser => write!(f, "not read (the DC replicated no user for it)"),
            Self::Unreadable(why) => write!(f, "not pushed: {why}"),
            Self::Pushed(r) if !r.errors.is_empty() => write!(
                f,
                "refused by the endpoint: {}",
                r.errors
                    .iter()
                    .map(|e| e.error.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Self::Pushed(r) if r.counts.verifiers > 0 => write!(
                f,
                "pushed a new verifier (derived here; the hash was not sent)"
            ),
            Self::Pushed(r) if r.counts.flags > 0 => write!(f, "pushed changed flags only"),
            Self::Pushed(_) => write!(f, "unchanged: nothing pushed"),
        }
    }
}

/// Reads user `anchor` of `c` (an AD connector with hash sync) with `EXOP_REPL_OBJ` and
/// pushes it. `EXOP_REPL_OBJ`, not `EXOP_REPL_SECRETS`: the latter is the read-only-DC
/// path — the DC decides whether the destination RODC may cache the secrets — and Samba
/// refuses it with `ERROR_DS_DRA_ACCESS_DENIED` to a non-RODC account even when it holds
/// both replication rights, while `EXOP_REPL_OBJ` with the partial attribute set returns
/// the same encrypted `unicodePwd` (see `causeway_drsr::replicate::Session::refresh_one`).
pub async fn refresh_user(
    c: &Connector,
    space: &ConnectorSpace,
    ch: &mut Channel,
    anchor: Guid,
    now: SystemTime,
) -> Result<OneHash, HashSyncError> {
    if c.kind != ConnectorKind::ActiveDirectory {
        return Err(HashSyncError::Replication(AdHashError::Config {
            connector: c.name.clone(),
            message: "on-demand hash refresh reads AD only".into(),
        }));
    }
    if !exported_users(space, &c.name)?.contains(&anchor) {
        return Ok(OneHash::NotExported);
    }
    let Plan {
        host,
        target,
        creds,
        limits,
        domain_dns,
        dc_name,
    } = plan(c).await?;
    let assoc = Association::connect(&target, &rpc::DRSUAPI, &creds, &limits)
        .await
        .map_err(|source| AdHashError::Rpc {
            server: host.clone(),
            source,
        })?;
    let key = SessionKey::new(assoc.session_key().expose_secret().to_vec());
    let repl_err = |source| AdHashError::Replicate {
        server: host.clone(),
        source,
    };
    let options = Options {
        dc_host_name: dc_name,
        ..Options::default()
    };
    let mut drs = Session::open(assoc, &domain_dns, options)
        .await
        .map_err(repl_err)?;
    let one = drs.refresh_one(*anchor.as_bytes()).await;
    let _ = drs.close().await;
    let Some(user) = one.map_err(repl_err)? else {
        return Ok(OneHash::NotAUser);
    };
    let record = match ad::record(&key, user) {
        Ok(r) => r,
        Err(e) => return Ok(OneHash::Unreadable(e.to_string())),
    };
    let report = push_records(ch, space, &c.name, vec![record], 1, now).await?;
    Ok(OneHash::Pushed(report))
}
