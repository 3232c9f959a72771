//! `causeway agent register`: the agent makes its keys here (they never leave this host),
//! asks the endpoint for a certificate with a one-time token, and pins the endpoint's CA.
//!
//! Trust on first contact comes from the token: its last part is the SHA-256 fingerprint
//! of the endpoint's CA (see `causeway_certs::pinned`, shared with the sync host).

use std::sync::Arc;

use causeway_certs::pinned::{enrollment_client_config, pem_der};
use causeway_credential::{AgentKeyPair, Secret};
use causeway_proto::agent::{Frame, ENROLL_ALPN};

use crate::config::Endpoint;
use crate::state::AgentState;

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The token is not of the form `cwt1.<secret>.<CA fingerprint prefix>`.
    #[error("the enrollment token is malformed (expected cwt1.<secret>.<fingerprint>, as printed by `causeway certs token`)")]
    MalformedToken,
    /// Making keys or the CSR failed.
    #[error("cannot create the agent's keys: {0}")]
    Keys(String),
    /// Reaching the endpoint failed.
    #[error(transparent)]
    Dial(#[from] crate::connect::DialError),
    /// The endpoint answered badly.
    #[error("the endpoint answered unexpectedly: {0}")]
    Protocol(String),
    /// The endpoint refused.
    #[error("the endpoint refused the enrollment: {0}")]
    Refused(String),
}

/// A fresh TLS client key and a CSR for it (PEM). The CSR's subject is a hint only: the
/// endpoint's CA decides the certificate's name.
pub fn new_tls_key_and_csr(host_name: &str) -> Result<(Secret<String>, String), EnrollError> {
    causeway_certs::new_key_and_csr(host_name).map_err(|e| EnrollError::Keys(e.to_string()))
}

/// Registers with the endpoint and returns the state to save.
pub async fn register(
    endpoint: &Endpoint,
    proxy: Option<&Endpoint>,
    token: &str,
    host_name: &str,
) -> Result<AgentState, EnrollError> {
    let (cfg, verifier) = enrollment_client_config(token, ENROLL_ALPN)
        .map_err(|e| EnrollError::Keys(e.to_string()))?
        .ok_or(EnrollError::MalformedToken)?;
    let hpke = AgentKeyPair::generate();
    let (tls_key_pem, csr_pem) = new_tls_key_and_csr(host_name)?;
    let mut tls = crate::connect::dial_alpn(endpoint, proxy, Arc::new(cfg), ENROLL_ALPN).await?;
    let enroll = Frame::Enroll {
        token: Secret::new(token.trim().to_owned()),
        host_name: host_name.to_owned(),
        hpke_public_key: hpke.public().to_bytes(),
        csr_pem,
    };
    causeway_proto::agent::io::write_frame(&mut tls, &enroll)
        .await
        .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        causeway_proto::agent::io::read_frame(&mut tls),
    )
    .await
    .map_err(|_| EnrollError::Protocol("no answer within 30 s".into()))?
    .map_err(|e| EnrollError::Protocol(e.to_string()))?;
    match answer {
        Frame::Enrolled {
            agent_id,
            cert_pem,
            ca_pem,
            approved,
        } => {
            let used_ca = verifier.used_ca();
            let returned = pem_der(&ca_pem)
                .ok_or_else(|| EnrollError::Protocol("CA certificate is not PEM".into()))?;
            if used_ca.as_deref() != Some(returned.as_slice()) {
                return Err(EnrollError::Protocol(
                    "the CA returned differs from the one the connection was verified with".into(),
                ));
            }
            if !approved {
                tracing::warn!(agent = %agent_id, "registered, but an administrator must approve this agent (causeway certs approve) before it receives sign-ins");
            }
            Ok(AgentState {
                agent_id,
                hpke,
                tls_key_pem,
                tls_cert_pem: cert_pem,
                ca_pem,
            })
        }
        Frame::EnrollRefused { reason } => Err(EnrollError::Refused(reason)),
        _ => Err(EnrollError::Protocol(
            "expected Enrolled or EnrollRefused".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_is_pem_and_key_is_redacted() {
        let (key, csr) = new_tls_key_and_csr("agent-host").expect("keys");
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.expose_secret().contains("PRIVATE KEY"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
