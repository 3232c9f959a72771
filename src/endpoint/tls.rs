//! The endpoint's TLS: browsers get the operator's certificate when one is configured
//! (reloaded on SIGHUP and when its files change), agents and sync hosts the one of
//! Causeway's CA; on one port, told apart by ALPN, or on `server.agent_listen`'s.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use causeway_certs::Ca;
use causeway_federation::acceptor::certs::{BrowserCert, CertChoice};
use causeway_proto::agent::{ALPN, ENROLL_ALPN};
use tracing::info;

use crate::serve_config::ServeConfig;

/// The protocols of agents, enrollment and sync hosts: clients offering one get the
/// certificate of Causeway's CA, which they pin.
const INTERNAL_ALPN: [&[u8]; 4] = [
    ALPN,
    ENROLL_ALPN,
    causeway_proto::sync::ALPN,
    causeway_proto::sync::ENROLL_ALPN,
];
const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How often the browser certificate's files are checked for a change (two `stat`s).
const CERT_POLL: Duration = Duration::from_secs(2);

/// The TLS configurations of the endpoint's listeners.
pub(super) struct Configs {
    /// The public port's.
    pub(super) public: rustls::ServerConfig,
    /// `server.agent_listen`'s, when agents have a port of their own.
    pub(super) agents: Option<rustls::ServerConfig>,
}

/// Issues the endpoint's CA certificate for `server_names`, loads the browser certificate
/// `file` names (and starts watching it), and builds each listener's configuration.
pub(super) fn configs(ca: &Ca, server_names: &[String], file: &ServeConfig) -> Result<Configs> {
    let server = ca.issue_server_cert(server_names, SystemTime::now())?;
    let internal = causeway_certs::certified_key(server.chain_der(), server.private_key_der()?)?;
    let browser = match &file.browser_cert {
        Some(files) => Some(
            BrowserCert::load(files.clone(), SystemTime::now())
                .map_err(|e| anyhow::anyhow!("server.tls_cert_file: {e}"))?,
        ),
        None => None,
    };
    let reload_now = Arc::new(tokio::sync::Notify::new());
    spawn_sighup(browser.is_some(), reload_now.clone())?;
    if let Some(b) = &browser {
        tokio::spawn(b.clone().watch(CERT_POLL, reload_now));
    }
    let internal_alpn: Vec<Vec<u8>> = INTERNAL_ALPN.iter().map(|a| a.to_vec()).collect();
    let http_alpn: Vec<Vec<u8>> = HTTP_ALPN.iter().map(|a| a.to_vec()).collect();
    let choice = Arc::new(CertChoice::new(
        internal.clone(),
        internal_alpn.clone(),
        browser,
    ));
    // With a listener of their own, agents and sync hosts are not offered the public
    // port at all (which may sit behind a TLS-terminating proxy), nor browsers theirs.
    let (public, agents) = match file.agent_listen {
        None => (
            causeway_certs::server_config_with_resolver(
                choice,
                Some(ca.enrollment_client_verifier()?),
                [internal_alpn, http_alpn].concat(),
            )?,
            None,
        ),
        Some(_) => (
            causeway_certs::server_config_with_resolver(choice, None, http_alpn)?,
            Some(causeway_certs::server_config_with_resolver(
                Arc::new(CertChoice::new(internal, internal_alpn.clone(), None)),
                Some(ca.enrollment_client_verifier()?),
                internal_alpn,
            )?),
        ),
    };
    Ok(Configs { public, agents })
}

/// Handles SIGHUP: reloads the browser certificate when one is configured (a HUP must
/// never stop the endpoint, which is the signal's default).
pub(super) fn spawn_sighup(reloads: bool, reload_now: Arc<tokio::sync::Notify>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if reloads {
                info!("SIGHUP: reloading the browser certificate");
                reload_now.notify_one();
            } else {
                info!("SIGHUP: nothing to reload (no server.tls_cert_file)");
            }
        }
    });
    Ok(())
}
