//! A new sync host's one request on [`causeway_proto::sync::ENROLL_ALPN`]: read within
//! the handshake deadline and [`MAX_ENROLL_LEN`] (the peer is not authenticated), answered
//! with a certificate or with what is wrong with the request, then closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_proto::sync::io::{read, write};
use causeway_proto::sync::{MessageError, Request, Response, MAX_ENROLL_LEN};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

use super::SyncAuthority;

/// Serves one enrollment on `io`.
pub(crate) async fn enroll<S>(
    mut io: S,
    peer: SocketAddr,
    authority: Arc<dyn SyncAuthority>,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let reply =
        match tokio::time::timeout(timeout, read::<Request, _>(&mut io, MAX_ENROLL_LEN)).await {
            Err(_) => {
                info!(%peer, "sync enrollment request did not arrive in time; closed");
                return;
            }
            Ok(Err(MessageError::Io(e))) => {
                info!(%peer, error = %e, "sync enrollment connection ended early");
                return;
            }
            Ok(Err(e)) => {
                warn!(%peer, error = %e, "malformed sync enrollment request");
                Response::EnrollRefused {
                    reason: e.to_string(),
                }
            }
            Ok(Ok(req)) => answer(req, peer, authority).await,
        };
    let _ = write(&mut io, &reply).await;
    let _ = io.shutdown().await;
}

async fn answer(req: Request, peer: SocketAddr, authority: Arc<dyn SyncAuthority>) -> Response {
    if let Err(e) = req.check() {
        warn!(%peer, error = %e, "sync enrollment request out of bounds");
        return Response::EnrollRefused {
            reason: e.to_string(),
        };
    }
    let Request::Enroll {
        token,
        host_name,
        csr_pem,
    } = req
    else {
        warn!(%peer, "sync enrollment connection sent something else than Enroll");
        return Response::EnrollRefused {
            reason: "only an enroll request is accepted on causeway-sync-enroll/1".into(),
        };
    };
    let host = host_name.clone();
    let result = tokio::task::spawn_blocking(move || {
        authority.enroll_sync(token.expose_secret(), &host_name, &csr_pem)
    })
    .await
    .unwrap_or_else(|_| Err("enrollment failed on the endpoint; its log says why".into()));
    match result {
        Ok(e) => {
            info!(%peer, host = %host, host_id = %e.agent_id, approved = e.approved, "sync host enrolled");
            Response::Enrolled {
                host_id: e.agent_id,
                cert_pem: e.cert_pem,
                ca_pem: e.ca_pem,
                approved: e.approved,
            }
        }
        Err(reason) => {
            warn!(%peer, host = %host, %reason, "sync enrollment refused");
            Response::EnrollRefused { reason }
        }
    }
}
