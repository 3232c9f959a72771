//! The hub's side of the public port: the acceptor hands it connections that negotiated
//! ALPN `causeway-agent/1` (agents' channels, client certificate required) or
//! `causeway-enroll/1` (new agents enrolling with a one-time token, no certificate yet).
//! Who a certificate belongs to, and whether it may still connect, is the
//! [`AgentAuthority`]'s answer. It must never serve a channel to a certificate the
//! authority refused, nor wait on an enrollment request without a deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_proto::agent::{Frame, GoAwayReason, ALPN, ENROLL_ALPN};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::acceptor::{
    self, Accepted, ConnectionLimits, Handler, Routes, Serving, DEFAULT_HANDSHAKE_TIMEOUT,
};
use crate::audit;
use crate::metrics::Metrics;

use causeway_proto::agent::io::{read_frame, write_frame};

use super::{AgentPeer, Hub};

/// Why an agent may not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No agent has this certificate.
    Unknown,
    /// The agent was revoked.
    Revoked,
    /// The agent waits for an administrator's approval.
    NotApproved,
    /// The certificate belongs to a host of another role (a sync host on the agent
    /// channel, or an agent on the sync channel).
    WrongRole,
}

impl Refusal {
    fn reason(self) -> GoAwayReason {
        match self {
            Refusal::Unknown | Refusal::Revoked | Refusal::WrongRole => GoAwayReason::Revoked,
            Refusal::NotApproved => GoAwayReason::NotApproved,
        }
    }
}

/// A successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The new agent's id.
    pub agent_id: String,
    /// Its client certificate (PEM).
    pub cert_pem: String,
    /// The CA to pin (PEM).
    pub ca_pem: String,
    /// Whether it may take traffic at once.
    pub approved: bool,
}

/// The registry and CA behind the hub (implemented over `causeway-certs`). Calls may block
/// (database, signing): the listener runs them on the blocking pool.
pub trait AgentAuthority: Send + Sync + 'static {
    /// The agent holding the certificate with this SHA-256 fingerprint (lowercase hex).
    fn authorize(&self, cert_fingerprint: &str) -> Result<AgentPeer, Refusal>;
    /// Whether a connected agent is still allowed (polled about every second).
    fn still_allowed(&self, agent_id: &str) -> Result<(), Refusal>;
    /// Consumes `token`, signs the CSR and registers the agent. `Err` is operator-readable
    /// and never contains the token.
    fn enroll(
        &self,
        token: &str,
        host_name: &str,
        hpke_public_key: [u8; 32],
        csr_pem: &str,
    ) -> Result<Enrollment, String>;
    /// Signs a renewal CSR for a connected agent; returns the new certificate (PEM).
    fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<String, String>;
    /// Notes that the agent was seen.
    fn touch(&self, agent_id: &str);
}

/// The agent side as the acceptor's [`Handler`]: serves agent channels on the hub and
/// enrollments through the authority.
pub struct AgentHandler {
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
    enroll_timeout: Duration,
}

impl std::fmt::Debug for AgentHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandler")
            .field("hub", &self.hub)
            .field("enroll_timeout", &self.enroll_timeout)
            .finish_non_exhaustive()
    }
}

impl AgentHandler {
    /// The agent side of `hub`: gives the hub `authority` (for renewals) and starts the
    /// task that cuts off revoked agents (so call it inside a Tokio runtime). An enrollment
    /// request must arrive within `enroll_timeout` of the handshake.
    pub fn start(
        hub: Arc<Hub>,
        authority: Arc<dyn AgentAuthority>,
        enroll_timeout: Duration,
    ) -> Arc<Self> {
        hub.set_authority(authority.clone());
        tokio::spawn(keep_watching_revocations(hub.clone(), authority.clone()));
        Arc::new(Self {
            hub,
            authority,
            enroll_timeout,
        })
    }

    /// Routes with both agent ALPNs going to this handler; add the HTTP side with
    /// [`Routes::http`].
    pub fn routes(self: &Arc<Self>) -> Routes {
        Routes::new()
            .alpn(ALPN, self.clone())
            .alpn(ENROLL_ALPN, self.clone())
    }

    async fn connection(&self, conn: Accepted) {
        let Accepted {
            tls,
            peer: addr,
            admission,
        } = conn;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
        match alpn.as_deref() {
            Some(a) if a == ALPN => {
                let Some(der) = cert else {
                    warn!(peer = %addr, "agent channel without a client certificate; closed");
                    return;
                };
                let fp = causeway_certs::fingerprint_of_der(&der);
                let a2 = self.authority.clone();
                let fp2 = fp.clone();
                let verdict = tokio::task::spawn_blocking(move || a2.authorize(&fp2))
                    .await
                    .unwrap_or(Err(Refusal::Unknown));
                match verdict {
                    Ok(peer) => {
                        let Some(_channel) = admission.into_agent_channel(addr) else {
                            return;
                        };
                        let id = peer.agent_id.clone();
                        // Off the async threads: the registry may wait on a CLI's write lock.
                        let (a, i) = (self.authority.clone(), id.clone());
                        let _ = tokio::task::spawn_blocking(move || a.touch(&i)).await;
                        let ip = Some(addr.ip());
                        audit::record(audit::Event::agent("agent.connected", &id, ip, "ok"));
                        match self.hub.serve_channel(tls, peer).await {
                            Err(e) => {
                                info!(agent = %id, peer = %addr, error = %e, "agent channel ended");
                                audit::record(
                                    audit::Event::agent("agent.disconnected", &id, ip, "failed")
                                        .with_detail(e.to_string()),
                                );
                            }
                            Ok(()) => audit::record(audit::Event::agent(
                                "agent.disconnected",
                                &id,
                                ip,
                                "ok",
                            )),
                        }
                    }
                    Err(refusal) => {
                        warn!(peer = %addr, fingerprint = %fp, ?refusal, "refused an agent connection");
                        audit::record(
                            audit::Event::agent(
                                "agent.refused",
                                &fp.to_string(),
                                Some(addr.ip()),
                                "refused",
                            )
                            .with_detail(format!("{refusal:?}")),
                        );
                        let mut tls = tls;
                        let _ = write_frame(
                            &mut tls,
                            &Frame::GoAway {
                                reason: refusal.reason(),
                                detail: format!("{refusal:?}"),
                            },
                        )
                        .await;
                    }
                }
            }
            Some(a) if a == ENROLL_ALPN => {
                enroll(tls, addr, self.authority.clone(), self.enroll_timeout).await;
            }
            other => {
                warn!(peer = %addr, alpn = ?other.map(String::from_utf8_lossy), "connection without the agent protocol; closed");
            }
        }
    }
}

impl Handler for AgentHandler {
    fn serve(self: Arc<Self>, conn: Accepted) -> Serving {
        Box::pin(async move { self.connection(conn).await })
    }
}

/// Accepts agents on `listener` until the task is dropped, with the default
/// [`ConnectionLimits`] and no HTTP side. `tls` must offer both ALPNs and verify client
/// certificates against Causeway's CA while allowing none (enrollment).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
) {
    let agents = AgentHandler::start(hub, authority, DEFAULT_HANDSHAKE_TIMEOUT);
    acceptor::serve(
        listener,
        tls,
        ConnectionLimits::default(),
        agents.routes(),
        Metrics::new(),
    )
    .await;
}

async fn enroll<S>(
    mut tls: S,
    addr: SocketAddr,
    authority: Arc<dyn AgentAuthority>,
    timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = match tokio::time::timeout(timeout, read_frame(&mut tls)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            warn!(peer = %addr, error = %e, "malformed enrollment request");
            return;
        }
        Err(_) => return,
    };
    let Frame::Enroll {
        token,
        host_name,
        hpke_public_key,
        csr_pem,
    } = frame
    else {
        warn!(peer = %addr, "enrollment connection sent something else than Enroll");
        return;
    };
    let host = host_name.clone();
    let result = tokio::task::spawn_blocking(move || {
        authority.enroll(token.expose_secret(), &host_name, hpke_public_key, &csr_pem)
    })
    .await
    .unwrap_or_else(|_| Err("enrollment failed inside the endpoint".into()));
    let reply = match result {
        Ok(e) => {
            info!(peer = %addr, host = %host, agent = %e.agent_id, approved = e.approved, "agent enrolled");
            audit::record(
                audit::Event::agent("agent.enrolled", &e.agent_id, Some(addr.ip()), "ok")
                    .with_detail(format!(
                        "host {host}, {}",
                        if e.approved {
                            "approved"
                        } else {
                            "waiting for approval"
                        }
                    )),
            );
            Frame::Enrolled {
                agent_id: e.agent_id,
                cert_pem: e.cert_pem,
                ca_pem: e.ca_pem,
                approved: e.approved,
            }
        }
        Err(reason) => {
            warn!(peer = %addr, host = %host, %reason, "enrollment refused");
            audit::record(
                audit::Event::agent("agent.enroll", "", Some(addr.ip()), "refused")
                    .with_detail(format!("host {host}: {reason}")),
            );
            Frame::EnrollRefused { reason }
        }
    };
    let _ = write_frame(&mut tls, &reply).await;
}

/// Runs [`watch_revocations`] for good: should it ever stop (a panic), it is started
/// again a second later.
async fn keep_watching_revocations(hub: Arc<Hub>, authority: Arc<dyn AgentAuthority>) {
    loop {
        let _ = tokio::spawn(watch_revocations(hub.clone(), authority.clone())).await;
        warn!("revocation watcher stopped; restarting it");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Cuts off connected agents that were revoked or lost their approval, within ~1 s.
async fn watch_revocations(hub: Arc<Hub>, authority: Arc<dyn AgentAuthority>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let connected = hub.connected_agents();
        if connected.is_empty() {
            continue;
        }
        let a = authority.clone();
        let refused: Vec<(String, Refusal)> = tokio::task::spawn_blocking(move || {
            connected
                .into_iter()
                .filter_map(|id| a.still_allowed(&id).err().map(|r| (id, r)))
                .collect()
        })
        .await
        .unwrap_or_default();
        for (id, refusal) in refused {
            let n = hub.disconnect_agent(&id, refusal.reason());
            warn!(agent = %id, ?refusal, channels = n, "agent cut off");
            audit::record(
                audit::Event::agent("agent.cut_off", &id, None, "refused")
                    .with_detail(format!("{refusal:?}")),
            );
        }
    }
}
