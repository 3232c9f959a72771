//! Trust on first contact for an enrolling client (an agent, a sync host): the one-time
//! token's last part is the SHA-256 fingerprint of the endpoint's CA. The endpoint must
//! present that CA in its chain, and its server certificate must verify against it (name
//! and dates included). The CA used is remembered, so that the client can check that the
//! CA the endpoint returns is the one the connection was verified with.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::error::CertsError;

/// The longest enrollment token a client accepts, in bytes.
const MAX_TOKEN_LEN: usize = 256;

/// The CA fingerprint (all 64 lowercase hex digits of SHA-256) a token
/// `cwt1.<secret>.<fingerprint>` pins, or `None` when the token is not of that shape.
pub fn token_pin(token: &str) -> Option<String> {
    let mut parts = token.trim().split('.');
    let (Some("cwt1"), Some(secret), Some(fp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let fp_ok = fp.len() == 64
        && fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (!secret.is_empty() && token.len() <= MAX_TOKEN_LEN && fp_ok).then(|| fp.to_owned())
}

/// Verifies the endpoint against the CA its chain carries, but only if that CA's
/// fingerprint is the pinned one. Remembers the CA it used.
#[derive(Debug)]
pub struct TokenPinnedCa {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    found: Mutex<Option<Vec<u8>>>,
}

impl TokenPinnedCa {
    /// The DER of the CA the connection was verified with, once it was.
    pub fn used_ca(&self) -> Option<Vec<u8>> {
        self.found
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A client configuration for enrollment with `token`: no client certificate, the server
/// verified by [`TokenPinnedCa`], offering `alpn`. `None` when the token is malformed.
pub fn enrollment_client_config(
    token: &str,
    alpn: &[u8],
) -> Result<Option<(ClientConfig, Arc<TokenPinnedCa>)>, CertsError> {
    let Some(pin) = token_pin(token) else {
        return Ok(None);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(TokenPinnedCa {
        pin,
        provider: provider.clone(),
        found: Mutex::new(None),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::tls("enrollment client", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Some((cfg, verifier)))
}

impl ServerCertVerifier for TokenPinnedCa {
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
            .find(|c| crate::fingerprint_of_der(c) == self.pin)
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

/// The DER of a single-certificate PEM.
pub fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::token_pin;

    #[test]
    fn token_shapes() {
        let pin = "0123456789abcdef".repeat(4);
        assert_eq!(
            token_pin(&format!("cwt1.c2VjcmV0.{pin}")),
            Some(pin.clone())
        );
        assert_eq!(
            token_pin("cwt1.c2VjcmV0.0123456789abcdef"),
            None,
            "a short pin is refused"
        );
        for bad in [
            String::new(),
            format!("cwt2.c2VjcmV0.{pin}"),
            format!("cwt1..{pin}"),
            format!("cwt1.c2VjcmV0.{}", pin.to_uppercase()),
            format!("cwt1.c2VjcmV0.{pin}.extra"),
            format!("cwt1.{}.{pin}", "a".repeat(300)),
        ] {
            assert_eq!(token_pin(&bad), None, "{bad}");
        }
    }
}
