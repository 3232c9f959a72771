//! The sync host's side of the ingestion channel: dial the endpoint (its replicas in
//! order), TLS with the enrolled client certificate and the pinned CA, ALPN
//! `causeway-sync/1`, then one request at a time, each answered within a deadline. And
//! enrollment (`causeway sync register`) on `causeway-sync-enroll/1` with a one-time token.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_certs::pinned::{enrollment_client_config, pem_der};
use causeway_credential::Secret;
use causeway_proto::sync::{
    self as wire, Counts, ObjectChange, ObjectError, Request, Response, RunKind, RunRecord,
    RunReport,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::identity::Identity;

/// How long a TCP connect and a TLS handshake may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the endpoint may take to answer one request (a batch of 1000 objects included).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a host waits after a failed renewal before asking again; it goes on with its
/// current certificate meanwhile (renewal starts with 30 % of its life left).
const RENEW_RETRY: Duration = Duration::from_secs(10 * 60);

/// Opens a channel with `identity` and renews its certificate if due at `now` (see
/// [`Channel::renew_if_due`]), unless a failed renewal asked to wait until `retry_at`. A
/// failed renewal is logged and does not stop the export: the channel is opened again
/// (an endpoint that does not know renewal closes it) with the current certificate.
/// Returns the channel and the renewed identity, if any, for the next connection.
pub async fn open_renewing(
    endpoints: &[(String, u16)],
    identity: &Identity,
    state_dir: &Path,
    now: SystemTime,
    retry_at: &mut Option<SystemTime>,
) -> Result<(Channel, Option<Identity>), ChannelError> {
    let mut ch = Channel::open(endpoints, identity).await?;
    if retry_at.is_some_and(|t| now < t) {
        return Ok((ch, None));
    }
    match ch.renew_if_due(identity, state_dir, now).await {
        Ok(renewed) => {
            *retry_at = None;
            Ok((ch, renewed))
        }
        Err(e) => {
            tracing::warn!(host = %identity.host_id, error = %e, retry_in_s = RENEW_RETRY.as_secs(), "cannot renew the sync host's certificate; the current one is used meanwhile");
            *retry_at = Some(now + RENEW_RETRY);
            drop(ch);
            Ok((Channel::open(endpoints, identity).await?, None))
        }
    }
}

/// Why talking to the endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// No replica could be reached.
    #[error("cannot reach the endpoint: {0}")]
    Dial(String),
    /// The identity is unusable (certificate, key, CA).
    #[error("the sync host's identity is unusable: {0}")]
    Identity(String),
    /// The token is not of the form `causeway certs token` prints.
    #[error("the enrollment token is malformed (expected cwt1.<secret>.<fingerprint>, as printed by `causeway certs token --for sync`)")]
    MalformedToken,
    /// The stream failed or the endpoint sent something unreadable.
    #[error("the ingestion channel failed: {0}")]
    Wire(#[from] wire::MessageError),
    /// The endpoint took too long.
    #[error("the endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The endpoint refused the request: nothing of it was applied.
    #[error("the endpoint refused: {0}")]
    Refused(String),
    /// The endpoint answered with something else than the request calls for.
    #[error("the endpoint answered unexpectedly ({0})")]
    Unexpected(&'static str),
}

async fn dial(
    endpoints: &[(String, u16)],
    cfg: Arc<rustls::ClientConfig>,
    alpn: &[u8],
) -> Result<TlsStream<TcpStream>, ChannelError> {
    let mut failures = Vec::new();
    for (host, port) in endpoints {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let attempt = async {
            let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&target))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let name =
                rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let tls = tokio::time::timeout(
                DIAL_TIMEOUT,
                tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
            )
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())?
            .map_err(|e| format!("TLS: {e}"))?;
            if tls.get_ref().1.alpn_protocol() != Some(alpn) {
                return Err(format!(
                    "it does not offer {} (an older endpoint?)",
                    String::from_utf8_lossy(alpn)
                ));
            }
            Ok(tls)
        };
        match attempt.await {
            Ok(tls) => return Ok(tls),
            Err(e) => failures.push(format!("{target}: {e}")),
        }
    }
    Err(ChannelError::Dial(failures.join("; ")))
}

async fn exchange(
    tls: &mut TlsStream<TcpStream>,
    request: &Request,
    max: usize,
) -> Result<Response, ChannelError> {
    wire::io::write(tls, request).await?;
    tokio::time::timeout(ANSWER_TIMEOUT, wire::io::read::<Response, _>(tls, max))
        .await
        .map_err(|_| ChannelError::Timeout(ANSWER_TIMEOUT))?
        .map_err(ChannelError::from)
}

/// Enrolls with `token`: makes the TLS key here, sends the CSR, checks that the CA the
/// endpoint returns is the one its certificate was verified with, and returns the identity
/// to save. Whether the host must wait for approval is logged.
pub async fn register(
    endpoints: &[(String, u16)],
    token: &Secret<String>,
    host_name: &str,
) -> Result<Identity, ChannelError> {
    let (cfg, verifier) = enrollment_client_config(token.expose_secret(), wire::ENROLL_ALPN)
        .map_err(|e| ChannelError::Identity(e.to_string()))?
        .ok_or(ChannelError::MalformedToken)?;
    let (tls_key_pem, csr_pem) = causeway_certs::new_key_and_csr(host_name)
        .map_err(|e| ChannelError::Identity(e.to_string()))?;
    let mut tls = dial(endpoints, Arc::new(cfg), wire::ENROLL_ALPN).await?;
    let request = Request::Enroll {
        token: Secret::new(token.expose_secret().trim().to_owned()),
        host_name: host_name.to_owned(),
        csr_pem,
    };
    match exchange(&mut tls, &request, wire::MAX_ENROLL_LEN).await? {
        Response::Enrolled {
            host_id,
            cert_pem,
            ca_pem,
            approved,
        } => {
            let returned = pem_der(&ca_pem)
                .ok_or(ChannelError::Unexpected("its CA certificate is not PEM"))?;
            if verifier.used_ca().as_deref() != Some(returned.as_slice()) {
                return Err(ChannelError::Unexpected(
                    "the CA it returned differs from the one the connection was verified with",
                ));
            }
            if !approved {
                tracing::warn!(host = %host_id, "registered, but an administrator must approve this sync host (causeway certs approve) before it may export");
            }
            Ok(Identity {
                host_id,
                tls_key_pem,
                cert_pem,
                ca_pem,
            })
        }
        Response::EnrollRefused { reason } => Err(ChannelError::Refused(reason)),
        _ => Err(ChannelError::Unexpected(
            "expected Enrolled or EnrollRefused",
        )),
    }
}

/// Who holds a connector's lease, as the endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Whether this host holds it.
    pub granted: bool,
    /// The holder.
    pub holder: Option<String>,
    /// How long the holder's lease has left.
    pub expires_in: Duration,
}

/// An open ingestion channel.
pub struct Channel {
    tls: TlsStream<TcpStream>,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
    /// The endpoint's id.
    pub endpoint_id: String,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("endpoint_id", &self.endpoint_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Dials the endpoint with `identity` and says Hello.
    pub async fn open(
        endpoints: &[(String, u16)],
        identity: &Identity,
    ) -> Result<Self, ChannelError> {
        let cfg = causeway_certs::agent_client_config(
            &identity.ca_pem,
            &identity.cert_pem,
            &identity.tls_key_pem,
            vec![wire::ALPN.to_vec()],
        )
        .map_err(|e| ChannelError::Identity(e.to_string()))?;
        let mut tls = dial(endpoints, Arc::new(cfg), wire::ALPN).await?;
        let hello = Request::Hello {
            version: wire::VERSION,
            software_version: env!("CARGO_PKG_VERSION").into(),
        };
        match exchange(&mut tls, &hello, wire::MAX_MESSAGE_LEN).await? {
            Response::Welcome {
                endpoint_id,
                lease_ms,
            } => Ok(Self {
                tls,
                lease: Duration::from_millis(lease_ms),
                endpoint_id,
            }),
            Response::Refused { reason } => Err(ChannelError::Refused(reason)),
            _ => Err(ChannelError::Unexpected("expected Welcome")),
        }
    }

    async fn ask(&mut self, request: &Request) -> Result<Response, ChannelError> {
        match exchange(&mut self.tls, request, wire::MAX_MESSAGE_LEN).await? {
            Response::Refused { reason } => Err(ChannelError::Refused(reason)),
            other => Ok(other),
        }
    }

    /// Takes or renews the lease on `connector`.
    pub async fn lease(&mut self, connector: &str) -> Result<Lease, ChannelError> {
        let r = self
            .ask(&Request::Lease {
                connector: connector.into(),
            })
            .await?;
        lease_of(r)
    }

    /// Gives the lease on `connector` up.
    pub async fn release(&mut self, connector: &str) -> Result<Lease, ChannelError> {
        let r = self
            .ask(&Request::Release {
                connector: connector.into(),
            })
            .await?;
        lease_of(r)
    }

    /// Asks for a certificate for the key of `csr_pem` (this host's: the endpoint takes
    /// the host from the certificate the channel was opened with) and returns it.
    pub async fn renew(&mut self, csr_pem: String) -> Result<String, ChannelError> {
        match self.ask(&Request::Renew { csr_pem }).await? {
            Response::Renewed { cert_pem } => Ok(cert_pem),
            _ => Err(ChannelError::Unexpected("expected Renewed")),
        }
    }

    /// Renews `identity`'s certificate over this channel if 70 % of its life has passed
    /// at `now`: a new key and CSR made here, the answer checked to be a certificate
    /// for the new key's client config, then saved into `state_dir` (key, then
    /// certificate) before it is returned for the next connection. `Ok(None)` when not
    /// due. The current connection goes on with the old certificate, which the endpoint
    /// accepts until it expires.
    pub async fn renew_if_due(
        &mut self,
        identity: &Identity,
        state_dir: &Path,
        now: SystemTime,
    ) -> Result<Option<Identity>, ChannelError> {
        if !identity.renewal_due(now) {
            return Ok(None);
        }
        let (key, csr) = causeway_certs::new_key_and_csr(&identity.host_id)
            .map_err(|e| ChannelError::Identity(e.to_string()))?;
        let cert_pem = self.renew(csr).await?;
        // Refuse an answer that does not make a usable pair before replacing anything.
        causeway_certs::agent_client_config(
            &identity.ca_pem,
            &cert_pem,
            &key,
            vec![wire::ALPN.to_vec()],
        )
        .map_err(|e| ChannelError::Identity(format!("the renewed certificate: {e}")))?;
        if causeway_certs::validity_of_pem(&cert_pem).is_none() {
            return Err(ChannelError::Unexpected(
                "a renewed certificate that does not parse",
            ));
        }
        let renewed = identity
            .renewed(state_dir, key, cert_pem)
            .map_err(|e| ChannelError::Identity(e.to_string()))?;
        let not_after = renewed
            .validity()
            .map(|(_, na)| causeway_certs::unix_secs(na))
            .unwrap_or_default();
        tracing::info!(host = %identity.host_id, not_after, "sync host certificate renewed; the next connection uses it");
        Ok(Some(renewed))
    }

    /// Records the start of a run and returns its number.
    pub async fn start_run(
        &mut self,
        connector: &str,
        kind: RunKind,
        soft_match: bool,
    ) -> Result<u64, ChannelError> {
        match self
            .ask(&Request::StartRun {
                connector: connector.into(),
                kind,
                soft_match,
            })
            .await?
        {
            Response::RunStarted { run } => Ok(run),
            _ => Err(ChannelError::Unexpected("expected RunStarted")),
        }
    }

    /// Sends one batch; the answer is the endpoint's acknowledgement.
    pub async fn batch(
        &mut self,
        run: u64,
        seq: u32,
        changes: Vec<ObjectChange>,
    ) -> Result<(Counts, Vec<ObjectError>), ChannelError> {
        match self.ask(&Request::Batch { run, seq, changes }).await? {
            Response::Applied {
                seq: s,
                counts,
                errors,
            } if s == seq => Ok((counts, errors)),
            Response::Applied { .. } => {
                Err(ChannelError::Unexpected("an answer for another batch"))
            }
            _ => Err(ChannelError::Unexpected("expected Applied")),
        }
    }

    /// Sends one batch of verifier changes for `connector`'s users; the answer is the
    /// endpoint's acknowledgement (all applied but the users it lists).
    pub async fn hash_batch(
        &mut self,
        connector: &str,
        changes: Vec<causeway_proto::sync::VerifierChange>,
    ) -> Result<(causeway_proto::sync::HashCounts, Vec<ObjectError>), ChannelError> {
        let req = Request::HashBatch {
            connector: connector.to_owned(),
            changes,
        };
        match self.ask(&req).await? {
            Response::HashApplied { counts, errors } => Ok((counts, errors)),
            _ => Err(ChannelError::Unexpected("expected HashApplied")),
        }
    }

    /// Records the end of a run.
    pub async fn finish_run(
        &mut self,
        run: u64,
        report: RunReport,
    ) -> Result<RunRecord, ChannelError> {
        match self.ask(&Request::FinishRun { run, report }).await? {
            Response::RunFinished { record } => Ok(record),
            _ => Err(ChannelError::Unexpected("expected RunFinished")),
        }
    }

    /// The latest runs, newest first.
    pub async fn runs(
        &mut self,
        connector: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunRecord>, ChannelError> {
        match self
            .ask(&Request::Runs {
                connector: connector.map(str::to_owned),
                limit,
            })
            .await?
        {
            Response::Runs { runs } => Ok(runs),
            _ => Err(ChannelError::Unexpected("expected Runs")),
        }
    }
}

fn lease_of(r: Response) -> Result<Lease, ChannelError> {
    match r {
        Response::Lease {
            granted,
            holder,
            expires_in_ms,
            ..
        } => Ok(Lease {
            granted,
            holder,
            expires_in: Duration::from_millis(expires_in_ms),
        }),
        _ => Err(ChannelError::Unexpected("expected Lease")),
    }
}

#[cfg(test)]
mod tests;
