//! `causeway agent register`: the agent makes its keys here (they never leave this host),
//! asks the endpoint for a certificate with a one-time token, and pins the endpoint's CA.
//!
//! Trust on first contact comes from the token: its last part is a prefix of the SHA-256
//! fingerprint of the endpoint's CA. The endpoint must present that CA in its chain, and its
//! server certificate must verify against it (name and dates included).

use std::sync::{Arc, Mutex};

use causeway_credential::{AgentKeyPair, Secret};
use causeway_proto::agent::{Frame, ENROLL_ALPN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

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

/// The CA fingerprint (all 64 hex digits of SHA-256) a token pins.
pub fn pinned_prefix(token: &str) -> Result<String, EnrollError> {
    let mut parts = token.trim().split('.');
    let (Some("cwt1"), Some(secret), Some(fp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(EnrollError::MalformedToken);
    };
    let fp_ok = fp.len() == 64
        && fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if secret.is_empty() || token.len() > causeway_proto::agent::MAX_TOKEN_LEN || !fp_ok {
        return Err(EnrollError::MalformedToken);
    }
    Ok(fp.to_owned())
}

/// Verifies the endpoint against the CA its chain carries, but only if that CA's
/// fingerprint starts with the pinned prefix. Remembers the CA it used.
#[derive(Debug)]
struct PinnedCa {
    prefix: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    found: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| causeway_certs::fingerprint_of_der(c).starts_with(&self.prefix))
            .ok_or_else(|| {
                rustls::Error::General(
                    "the endpoint's CA does not match the enrollment token".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let ok = v.verify_server_cert(end_entity, &[], server_name, ocsp, now)?;
        *self
            .found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ca.to_vec());
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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
    let prefix = pinned_prefix(token)?;
    let hpke = AgentKeyPair::generate();
    let (tls_key_pem, csr_pem) = new_tls_key_and_csr(host_name)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCa {
        prefix: prefix.clone(),
        provider: provider.clone(),
        found: Mutex::new(None),
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::Keys(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ENROLL_ALPN.to_vec()];
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
            let used_ca = verifier
                .found
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
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

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shapes() {
        let pin = "0123456789abcdef".repeat(4);
        assert_eq!(
            pinned_prefix(&format!("cwt1.c2VjcmV0.{pin}")).expect("ok"),
            pin
        );
        assert!(
            pinned_prefix("cwt1.c2VjcmV0.0123456789abcdef").is_err(),
            "a short pin is refused"
        );
        for bad in [
            "",
            "cwt1",
            "cwt2.a.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "cwt1..0123456789abcdef",
            "cwt1.a.0123",
            "cwt1.a.0123456789ABCDEF",
            "cwt1.a.b.c",
        ] {
            assert!(pinned_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn csr_is_pem_and_key_is_redacted() {
        let (key, csr) = new_tls_key_and_csr("agent-host").expect("keys");
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(key.expose_secret().contains("PRIVATE KEY"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
