//! `causeway agent run`: harden the process, load the state, and keep channels to every
//! endpoint replica, renewing the certificate at 70 % of its life.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_credential::{EnvelopeOpener, Secret};
use causeway_proto::agent::ALPN;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tracing::{info, warn};

use tokio::signal::unix::{signal, SignalKind};

use crate::channel::{Identity, Renewer, DRAIN_TIMEOUT};
use crate::config::AgentConfig;
use crate::connect::{keep_channel_until, Backoff};
use crate::enroll::new_tls_key_and_csr;
use crate::state::AgentState;
use crate::validator::{DcTarget, DirectorySettings, LoginResolution, Validator};

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The state directory is missing or broken.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A certificate or key does not load.
    #[error("{0}")]
    Tls(String),
    /// The process could not be hardened.
    #[error("cannot disable core dumps: {0}")]
    Harden(String),
    /// A stop signal cannot be handled (so stopping would not drain).
    #[error("cannot handle {0}")]
    Signal(String),
}

/// No core dumps, and not dumpable (no ptrace or /proc/PID/mem by the same user): a
/// password in this process's memory must not end up in a file or another process.
pub fn harden_process() -> Result<(), StartError> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| StartError::Harden(e.to_string()))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| StartError::Harden(e.to_string()))
}

fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, StartError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!("{what}: no certificate found")));
    }
    Ok(certs)
}

/// TLS settings for the domain controllers: trust only the CA(s) in `ca_file`.
pub fn dc_tls(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, StartError> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| StartError::Tls(format!("{}: {e}", ca_file.display())))?;
    causeway_certs::trusting_only(&pem)
        .map(Arc::new)
        .map_err(|e| StartError::Tls(format!("{}: {e}", ca_file.display())))
}

/// TLS settings for the endpoint: pinned CA, the agent's client certificate, agent ALPN.
pub fn endpoint_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &Secret<String>,
) -> Result<Arc<rustls::ClientConfig>, StartError> {
    causeway_certs::agent_client_config(ca_pem, cert_pem, key_pem, vec![ALPN.to_vec()])
        .map(Arc::new)
        .map_err(|e| StartError::Tls(e.to_string()))
}

/// Validity of a PEM certificate, as Unix seconds.
pub fn validity(cert_pem: &str) -> Result<(u64, u64), StartError> {
    let der = certs_from_pem(cert_pem.as_bytes(), "agent certificate")?.remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| StartError::Tls(format!("agent certificate: {e}")))?;
    let v = cert.validity();
    let secs = |t: x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    Ok((secs(v.not_before), secs(v.not_after)))
}

/// Whether 70 % of a certificate's lifetime has passed.
pub fn renewal_due(not_before: u64, not_after: u64, now: u64) -> bool {
    let life = not_after.saturating_sub(not_before);
    now >= not_before + life * 7 / 10
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Keeps the agent's certificate fresh: asks for a new one at 70 % of its life, saves it,
/// and hands the new TLS settings to the next connection.
pub struct CertRenewal {
    dir: PathBuf,
    host_name: String,
    ca_pem: String,
    window: Mutex<(u64, u64)>,
    pending: Mutex<Option<(Secret<String>, u64)>>,
    tls: Arc<RwLock<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for CertRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertRenewal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertRenewal {
    /// Renewal for the certificate valid from `not_before` to `not_after` (Unix seconds),
    /// saving into `dir` and swapping the new settings into `tls`.
    pub fn new(
        dir: PathBuf,
        host_name: String,
        ca_pem: String,
        (not_before, not_after): (u64, u64),
        tls: Arc<RwLock<Arc<rustls::ClientConfig>>>,
    ) -> Self {
        Self {
            dir,
            host_name,
            ca_pem,
            window: Mutex::new((not_before, not_after)),
            pending: Mutex::new(None),
            tls,
        }
    }
}

impl Renewer for CertRenewal {
    fn csr_if_due(&self) -> Option<String> {
        let now = unix_now();
        let (nb, na) = *self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !renewal_due(nb, na, now) {
            return None;
        }
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One request at a time; ask again if no answer came within 10 minutes.
        if matches!(&*pending, Some((_, asked)) if now < asked + 600) {
            return None;
        }
        let (key, csr) = new_tls_key_and_csr(&self.host_name).ok()?;
        *pending = Some((key, now));
        Some(csr)
    }

    fn renewed(&self, cert_pem: &str) {
        // The pending key stays until the new pair is safely on disk: if saving fails, the
        // next attempt (after the pause in csr_if_due) starts over instead of losing the key
        // the hub has just certified.
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some((key, _)) = pending.as_ref() else {
            warn!("renewed certificate arrived without a pending request; ignored");
            return;
        };
        let result = endpoint_tls(&self.ca_pem, cert_pem, key).and_then(|tls| {
            let window = validity(cert_pem)?;
            AgentState::save_renewed(&self.dir, key, cert_pem)?;
            *self
                .tls
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = tls;
            *self
                .window
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = window;
            Ok(window)
        });
        if result.is_ok() {
            *pending = None;
        }
        drop(pending);
        match result {
            Ok((_, not_after)) => info!(not_after, "certificate renewed; new connections use it"),
            Err(e) => warn!(error = %e, "renewed certificate not usable; keeping the current one"),
        }
    }
}

/// Runs the agent until the process is stopped.
pub async fn run(config: AgentConfig) -> Result<(), StartError> {
    harden_process()?;
    if config.allow_plain_ldap {
        for dc in config
            .domain_controllers
            .iter()
            .filter(|d| d.transport == crate::validator::Transport::Plain)
        {
            tracing::error!(
                dc = %dc.url,
                "DANGER: plain LDAP enabled ([danger] allow_plain_ldap): passwords cross the network in clear; for a lab only"
            );
        }
    }
    let state = AgentState::load(&config.state_dir)?;
    let dc_tls = dc_tls(&config.ca_file)?;
    let tls = Arc::new(RwLock::new(endpoint_tls(
        &state.ca_pem,
        &state.tls_cert_pem,
        &state.tls_key_pem,
    )?));
    let window = validity(&state.tls_cert_pem)?;
    let login = match &config.login {
        None => LoginResolution::AsTyped,
        Some(l) => {
            // Refused when others can read it, like the agent's own keys; zeroized after use.
            let raw = Secret::new(crate::state::read_private(&l.service_password_file)?);
            let text = std::str::from_utf8(raw.expose_secret()).map_err(|_| {
                StartError::Tls(format!(
                    "{}: not UTF-8 text",
                    l.service_password_file.display()
                ))
            })?;
            LoginResolution::Attribute {
                attribute: l.attribute.clone(),
                base: l.search_base.clone(),
                service_dn: l.service_dn.clone(),
                service_password: Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()),
            }
        }
    };
    let validator = Arc::new(Validator::new(
        EnvelopeOpener::new(state.hpke),
        DirectorySettings {
            dcs: config
                .domain_controllers
                .iter()
                .map(|d| DcTarget {
                    url: d.url.clone(),
                    transport: d.transport,
                })
                .collect(),
            tls: dc_tls,
            op_timeout: config.timeout,
            pool_per_dc: config.pool_per_dc as usize,
            cool_down: Duration::from_secs(10),
            login,
        },
    ));
    let renewal = Arc::new(CertRenewal::new(
        config.state_dir.clone(),
        causeway_certs::host_name(),
        state.ca_pem.clone(),
        window,
        tls.clone(),
    ));
    let me = Identity {
        agent_id: state.agent_id.clone(),
        max_in_flight: config.max_in_flight,
        renewer: Some(renewal),
    };
    info!(agent = %state.agent_id, endpoints = config.endpoints.len(), dcs = config.domain_controllers.len(), "agent starting");
    // SIGTERM (systemd, container runtimes) and SIGINT: every channel says GoAway, answers
    // what it holds and closes; then the process exits 0.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| StartError::Signal(format!("SIGTERM: {e}")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| StartError::Signal(format!("SIGINT: {e}")))?;
    let mut tasks = tokio::task::JoinSet::new();
    for ep in &config.endpoints {
        for _ in 0..config.channels_per_endpoint {
            let (ep, proxy, me, v, tls, stop) = (
                ep.clone(),
                config.proxy.clone(),
                me.clone(),
                validator.clone(),
                tls.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                keep_channel_until(ep, proxy, tls, me, v, Backoff::default(), stop).await;
            });
        }
    }
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = async { while tasks.join_next().await.is_some() {} } => return Ok(()),
    };
    info!(signal, "stopping: draining every channel");
    let _ = stop_tx.send(true);
    // Each channel bounds its own drain; the margin covers dialling that was under way.
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(5), all)
        .await
        .is_err()
    {
        warn!("channels still open after the drain deadline; exiting anyway");
    }
    info!("agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_seventy_percent() {
        assert!(!renewal_due(1000, 2000, 1699));
        assert!(renewal_due(1000, 2000, 1700));
        assert!(renewal_due(1000, 2000, 5000));
    }

    #[test]
    fn hardening_works_here() {
        harden_process().expect("setrlimit and prctl are allowed for any process");
        let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .expect("core line");
        assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    }
}
