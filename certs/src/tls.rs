//! rustls configurations for the agent channel: the hub trusts only Causeway's CA for
//! client certificates, and the agent trusts only the CA it pinned at enrollment.
//!
//! Every config is built with `ring` explicitly, so no process-wide provider is needed.

use std::sync::Arc;

use causeway_credential::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ca::Ca;
use crate::error::CertsError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots_of(ca: CertificateDer<'static>, what: &'static str) -> Result<RootCertStore, CertsError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(|e| CertsError::tls(what, e))?;
    Ok(roots)
}

impl Ca {
    /// A client-certificate verifier that trusts only this CA and requires a certificate:
    /// for listeners that serve agent channels only.
    pub fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, CertsError> {
        let roots = roots_of(self.cert_der().clone(), "client verifier")?;
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| CertsError::tls("client verifier", e))
    }

    /// Like [`Ca::client_verifier`], but a client may also connect without a certificate,
    /// as a new agent must to enroll. A certificate that is presented must still chain to
    /// this CA. The listener must then serve certificate-less connections the enrollment
    /// protocol only (the hub does so by ALPN).
    pub fn enrollment_client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, CertsError> {
        let roots = roots_of(self.cert_der().clone(), "client verifier")?;
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| CertsError::tls("client verifier", e))
    }
}

/// The hub's TLS server configuration: `chain` (server certificate first, then the CA, as
/// [`crate::IssuedKeyAndCert::chain_der`] gives it) with its `key`, client certificates
/// checked by `verifier`, offering the protocols in `alpn` (most preferred first).
/// TLS 1.2 and 1.3 with rustls's safe defaults.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    verifier: Arc<dyn ClientCertVerifier>,
    alpn: Vec<Vec<u8>>,
) -> Result<ServerConfig, CertsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::tls("server", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| CertsError::tls("server certificate and key", e))?;
    cfg.alpn_protocols = alpn;
    Ok(cfg)
}

/// A TLS client configuration that trusts only the CA certificates in `ca_pem` (one or
/// more): for the directory servers the agent and sync dial, whose CA the operator names.
pub fn trusting_only(ca_pem: &[u8]) -> Result<ClientConfig, CertsError> {
    let cas = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(CertsError::BadPem {
            what: "the directory's CA file",
            expected: "one or more CERTIFICATE",
        })?;
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| CertsError::tls("the directory's CA file", e))?;
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::tls("directory client", e))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// An agent's TLS client configuration: it trusts only `pinned_ca_pem` (the CA it
/// received and checked at enrollment), presents `client_chain_pem` with
/// `client_key_pem`, and offers `alpn`.
pub fn agent_client_config(
    pinned_ca_pem: &str,
    client_chain_pem: &str,
    client_key_pem: &Secret<String>,
    alpn: Vec<Vec<u8>>,
) -> Result<ClientConfig, CertsError> {
    let mut cas = CertificateDer::pem_slice_iter(pinned_ca_pem.as_bytes());
    let ca = match (cas.next(), cas.next()) {
        (Some(Ok(ca)), None) => ca,
        _ => {
            return Err(CertsError::BadPem {
                what: "the pinned CA",
                expected: "exactly one CERTIFICATE",
            })
        }
    };
    let roots = roots_of(ca, "pinned CA")?;
    let chain = CertificateDer::pem_slice_iter(client_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or(CertsError::BadPem {
            what: "the agent certificate",
            expected: "one or more CERTIFICATE",
        })?;
    let key =
        PrivateKeyDer::from_pem_slice(client_key_pem.expose_secret().as_bytes()).map_err(|_| {
            CertsError::BadPem {
                what: "the agent key",
                expected: "PRIVATE KEY",
            }
        })?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::tls("agent client", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| CertsError::tls("agent certificate and key", e))?;
    cfg.alpn_protocols = alpn;
    Ok(cfg)
}
