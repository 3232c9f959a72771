//! The sync ingestion API on the public port: sync hosts enroll on
//! [`causeway_proto::sync::ENROLL_ALPN`] with a one-time token, then export over
//! [`causeway_proto::sync::ALPN`] with their client certificate, one request at a time,
//! into the directory store's [`Synced`] capability. It must never take the lease
//! holder's name from a message (it is the certificate's host), never serve a channel to
//! a certificate the registry does not know as an approved sync host, and never log an
//! attribute value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_proto::sync::{Response, ALPN, ENROLL_ALPN, MAX_ENROLL_LEN};
use causeway_store::Synced;
use tracing::{info, warn};

use crate::acceptor::{Accepted, Handler, Routes, Serving};
use crate::hub::listener::{Enrollment, Refusal};
use crate::metrics::Metrics;

mod authority;
mod channel;
mod enroll;
#[cfg(test)]
mod tests;

/// How long an authenticated sync channel may stay silent before it is closed. A sync
/// host renews its lease well within [`causeway_store::DEFAULT_LEASE`], so only a dead
/// or stuck one reaches this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The shortest lease `[sync] lease` may set: a sync host renews at about a third of it,
/// so 2 s still leaves it several hundred milliseconds per renewal (short leases are for
/// fast takeover on a local network, and for tests).
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// The longest lease `[sync] lease` may set.
pub const MAX_LEASE: Duration = Duration::from_secs(10 * 60);

/// The registry and CA behind the ingestion API (implemented over `causeway-certs` and
/// the agent registry by [`crate::hub::authority::CertsAuthority`]). Calls may block: the
/// handler runs them on the blocking pool.
pub trait SyncAuthority: Send + Sync + 'static {
    /// The id of the sync host holding the certificate with this SHA-256 fingerprint,
    /// if it is a sync host and approved.
    fn authorize_sync(&self, cert_fingerprint: &str) -> Result<String, HostRefused>;
    /// Whether a connected sync host is still allowed (checked before every request and
    /// about every second while it is silent).
    fn sync_still_allowed(&self, host_id: &str) -> Result<(), Refusal>;
    /// Consumes a `sync` token, signs the CSR and registers the host with role sync.
    /// `Err` is for the unauthenticated caller: about its own request only, never the
    /// token.
    fn enroll_sync(
        &self,
        token: &str,
        host_name: &str,
        csr_pem: &str,
    ) -> Result<Enrollment, String>;
    /// Signs a new certificate for the connected, still approved host `host_id` (the
    /// certificate's, never a message's) from `csr_pem`, and records it so that the
    /// current certificate stays valid until it expires. `Err` is told to the host.
    fn renew_sync(&self, host_id: &str, csr_pem: &str) -> Result<String, String>;
    /// Notes that the host connected.
    fn touch_sync(&self, host_id: &str);
}

/// Why a certificate may not open a sync channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRefused {
    /// Why.
    pub why: Refusal,
    /// The registered host's id, when the certificate is known (a pending host is told
    /// it, to quote in `causeway certs approve`: it holds the certificate, so it is no
    /// secret to it).
    pub host_id: Option<String>,
}

/// How the ingestion API runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// This endpoint's id, told to sync hosts in `Welcome`.
    pub endpoint_id: String,
    /// How long a lease lasts unless renewed (`[sync] lease`).
    pub lease: Duration,
    /// How long an enrolling (unauthenticated) client has for its one request.
    pub enroll_timeout: Duration,
    /// How long an authenticated channel may stay silent.
    pub idle_timeout: Duration,
}

/// The ingestion API as the acceptor's [`Handler`] for both sync ALPNs.
pub struct IngestHandler {
    authority: Arc<dyn SyncAuthority>,
    store: Arc<dyn Synced>,
    metrics: Arc<Metrics>,
    config: IngestConfig,
}

impl std::fmt::Debug for IngestHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestHandler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IngestHandler {
    /// The ingestion API over `store`, authenticating through `authority`.
    pub fn new(
        authority: Arc<dyn SyncAuthority>,
        store: Arc<dyn Synced>,
        metrics: Arc<Metrics>,
        config: IngestConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            authority,
            store,
            metrics,
            config,
        })
    }

    /// Sets the held-objects gauge from the store (at start-up; every batch refreshes it
    /// after), so that a scrape before the first batch shows what the store holds.
    pub async fn refresh_metrics(&self) {
        channel::refresh_held(self.store.as_ref(), &self.metrics).await;
    }

    /// `routes` with both sync ALPNs going to this handler (the TLS config must offer them).
    pub fn routes(self: &Arc<Self>, routes: Routes) -> Routes {
        routes
            .alpn(ALPN, self.clone())
            .alpn(ENROLL_ALPN, self.clone())
    }

    async fn connection(&self, conn: Accepted) {
        let Accepted {
            tls,
            peer,
            admission,
        } = conn;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        match alpn.as_deref() {
            Some(a) if a == ENROLL_ALPN => {
                enroll::enroll(
                    tls,
                    peer,
                    self.authority.clone(),
                    self.config.enroll_timeout,
                )
                .await;
            }
            Some(a) if a == ALPN => {
                let Some(der) = cert else {
                    warn!(%peer, "sync channel without a client certificate; refused");
                    refuse(tls, peer, self.config.enroll_timeout, "a client certificate is required on causeway-sync/1: enroll first with a `causeway certs token --for sync` token".into()).await;
                    return;
                };
                let fp = causeway_certs::fingerprint_of_der(&der);
                let (a, f) = (self.authority.clone(), fp.clone());
                let verdict = tokio::task::spawn_blocking(move || a.authorize_sync(&f))
                    .await
                    .unwrap_or(Err(HostRefused {
                        why: Refusal::Unknown,
                        host_id: None,
                    }));
                let host = match verdict {
                    Ok(host) => host,
                    Err(r) => {
                        warn!(%peer, fingerprint = %fp, refusal = ?r.why, host = ?r.host_id, "refused a sync host connection");
                        let reason = refusal_reason(r.why, r.host_id.as_deref());
                        refuse(tls, peer, self.config.enroll_timeout, reason).await;
                        return;
                    }
                };
                let Some(_channel) = admission.into_agent_channel(peer) else {
                    return;
                };
                let (a, h) = (self.authority.clone(), host.clone());
                let _ = tokio::task::spawn_blocking(move || a.touch_sync(&h)).await;
                info!(host = %host, %peer, "sync host connected");
                let ctx = channel::Context {
                    store: self.store.as_ref(),
                    authority: self.authority.clone(),
                    metrics: &self.metrics,
                    host: &host,
                    endpoint_id: &self.config.endpoint_id,
                    lease: self.config.lease,
                    idle_timeout: self.config.idle_timeout,
                };
                let why = channel::serve(tls, &ctx).await;
                info!(host = %host, %peer, reason = %why, "sync channel ended");
            }
            other => {
                warn!(%peer, alpn = ?other.map(String::from_utf8_lossy), "connection without the sync protocol; closed");
            }
        }
    }
}

impl Handler for IngestHandler {
    fn serve(self: Arc<Self>, conn: Accepted) -> Serving {
        Box::pin(async move { self.connection(conn).await })
    }
}

/// What a refused sync host is told.
pub(crate) fn refusal_reason(refusal: Refusal, host_id: Option<&str>) -> String {
    match refusal {
        Refusal::NotApproved => format!(
            "waiting for approval: causeway certs approve {}",
            host_id.unwrap_or("<id>")
        ),
        Refusal::Revoked => "this sync host was revoked: enroll again with a new `causeway certs token --for sync` token".into(),
        Refusal::WrongRole => "this certificate is not a sync host's (an agent's certificate may not export)".into(),
        Refusal::Unknown => "this certificate is not registered: enroll with a `causeway certs token --for sync` token".into(),
    }
}

/// Answers a refused connection's first message with `Refused`, so that the peer reads
/// why rather than a reset, within `deadline` and [`MAX_ENROLL_LEN`] (it is not trusted).
async fn refuse<S>(mut io: S, peer: SocketAddr, deadline: Duration, reason: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(
        deadline,
        causeway_proto::sync::io::read::<serde_json::Value, _>(&mut io, MAX_ENROLL_LEN),
    )
    .await;
    if let Err(e) = causeway_proto::sync::io::write(&mut io, &Response::Refused { reason }).await {
        info!(%peer, error = %e, "cannot tell a refused sync host why");
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
}
