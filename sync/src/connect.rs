//! Reaching a connector's directory: its servers in order (failover), TLS that trusts only
//! the connector's CA file, StartTLS where asked, one simple bind as the sync account, and
//! what the server says it supports (from the root DSE).
//!
//! A wrong password stops at the first server that says so: trying every DC with it would
//! only add to the account's bad-password count on each.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use causeway_config::Transport;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tracing::debug;

use crate::config::{Connector, Server};

/// AD's and Samba's answer to a bind with a wrong password or an unknown account.
const INVALID_CREDENTIALS: u32 = 49;

/// A bound session on one of a connector's servers.
pub struct Session {
    /// The connection, bound as the sync account.
    pub ldap: Ldap,
    /// The server that answered.
    pub server: Server,
    /// What its root DSE says.
    pub root: RootDse,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server.url)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// The parts of a server's root DSE that sync relies on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootDse {
    /// `supportedControl`.
    pub controls: Vec<String>,
    /// `defaultNamingContext` (AD).
    pub default_naming_context: Option<String>,
    /// `highestCommittedUSN` (AD): the high-water mark a `uSNChanged` delta starts from.
    pub highest_committed_usn: Option<u64>,
    /// `dnsHostName` (AD): which DC answered.
    pub dns_host_name: Option<String>,
}

impl RootDse {
    /// Whether the server advertises a control.
    pub fn supports(&self, oid: &str) -> bool {
        self.controls.iter().any(|c| c == oid)
    }
}

/// Why no server of a connector could be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The TLS settings could not be built (the CA file).
    Tls(String),
    /// The bind password could not be read.
    Password(String),
    /// A server refused the account's credentials; the other servers were not tried.
    InvalidCredentials {
        /// The server that refused.
        server: String,
        /// Its diagnostic text.
        text: String,
    },
    /// No server answered; one line per server, in order.
    Unreachable(Vec<(String, String)>),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(m) | Self::Password(m) => f.write_str(m),
            Self::InvalidCredentials { server, text } => write!(
                f,
                "{server} refused the bind account's credentials (LDAP 49: {text}); check bind_dn and the password (other servers were not tried, so as not to add to the account's bad-password count)"
            ),
            Self::Unreachable(tries) => {
                f.write_str("no server could be used:")?;
                for (s, why) in tries {
                    write!(f, " {s}: {why};")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConnectError {}

/// Connects and binds to the first of the connector's servers that answers.
pub async fn connect(c: &Connector) -> Result<Session, ConnectError> {
    let tls = match &c.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| ConnectError::Tls(format!("ca_file {}: {e}", path.display())))?;
            Arc::new(
                causeway_certs::trusting_only(&pem)
                    .map_err(|e| ConnectError::Tls(format!("ca_file {}: {e}", path.display())))?,
            )
        }
        // Only plain servers (config refuses TLS servers without a CA file, and plain ones
        // only behind [danger]): the TLS settings are never used.
        None => Arc::new(no_tls()),
    };
    let password = c.bind_password().map_err(ConnectError::Password)?;
    let mut tries = Vec::new();
    for server in &c.servers {
        match try_server(
            server,
            &tls,
            c.timeout,
            &c.bind_dn,
            password.expose_secret(),
        )
        .await
        {
            Ok(mut ldap) => {
                let root = read_root_dse(&mut ldap, c.timeout)
                    .await
                    .map_err(|e| ConnectError::Unreachable(vec![(server.url.clone(), e)]))?;
                return Ok(Session {
                    ldap,
                    server: server.clone(),
                    root,
                });
            }
            Err(Try::Refused(text)) => {
                return Err(ConnectError::InvalidCredentials {
                    server: server.url.clone(),
                    text,
                })
            }
            Err(Try::Failed(why)) => {
                debug!(server = %server.url, error = %why, "directory server not used");
                tries.push((server.url.clone(), why));
            }
        }
    }
    Err(ConnectError::Unreachable(tries))
}

fn no_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

enum Try {
    Refused(String),
    Failed(String),
}

async fn try_server(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
    bind_dn: &str,
    password: &str,
) -> Result<Ldap, Try> {
    let settings = LdapConnSettings::new()
        .set_config(tls.clone())
        .set_conn_timeout(timeout)
        .set_starttls(server.transport == Transport::StartTls);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &server.url)
        .await
        .map_err(|e| Try::Failed(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            debug!(error = %e, "LDAP connection ended");
        }
    });
    let res = tokio::time::timeout(timeout, ldap.simple_bind(bind_dn, password))
        .await
        .map_err(|_| Try::Failed(format!("no answer to the bind within {timeout:?}")))?
        .map_err(|e| Try::Failed(e.to_string()))?;
    match res.rc {
        0 => Ok(ldap),
        INVALID_CREDENTIALS => Err(Try::Refused(res.text)),
        rc => Err(Try::Failed(format!(
            "bind refused (LDAP {rc}: {})",
            res.text
        ))),
    }
}

async fn read_root_dse(ldap: &mut Ldap, timeout: Duration) -> Result<RootDse, String> {
    let (entries, _) = tokio::time::timeout(
        timeout,
        ldap.search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec![
                "supportedControl",
                "defaultNamingContext",
                "highestCommittedUSN",
                "dnsHostName",
            ],
        ),
    )
    .await
    .map_err(|_| format!("no answer to the root DSE search within {timeout:?}"))?
    .map_err(|e| e.to_string())?
    .success()
    .map_err(|e| format!("root DSE: {e}"))?;
    let Some(e) = entries.into_iter().next() else {
        return Ok(RootDse::default());
    };
    let e = SearchEntry::construct(e);
    let first = |k: &str| e.attrs.get(k).and_then(|v| v.first()).cloned();
    Ok(RootDse {
        controls: e
            .attrs
            .get("supportedControl")
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .take(1000)
            .collect(),
        default_naming_context: first("defaultNamingContext"),
        highest_committed_usn: first("highestCommittedUSN").and_then(|v| v.parse().ok()),
        dns_host_name: first("dnsHostName"),
    })
}
