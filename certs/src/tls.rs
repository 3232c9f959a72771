//! rustls configurations for the agent channel: the hub trusts only Causeway's CA for
//! client certificates, and the agent trusts only the CA it pinned at enrollment. And the
//! operator's own certificate files for the browser-facing side.
//!
//! Every config is built with `ring` explicitly, so no process-wide provider is needed.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use causeway_credential::Secret;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
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

/// Like [`server_config`], but the certificate for each handshake is chosen by `resolver`
/// (the endpoint serves browsers the operator's certificate and agents Causeway's). With
/// no `verifier`, no client certificate is asked for.
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: Vec<Vec<u8>>,
) -> Result<ServerConfig, CertsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertsError::tls("server", e))?;
    let mut cfg = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(resolver);
    cfg.alpn_protocols = alpn;
    Ok(cfg)
}

/// `chain` (leaf first) with its `key`, as a resolver serves them.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, CertsError> {
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| CertsError::tls("server certificate and key", e))
}

/// An operator's certificate and key, loaded and checked.
#[derive(Debug)]
pub struct LoadedCert {
    /// The chain and signing key, ready for a resolver.
    pub key: Arc<CertifiedKey>,
    /// The leaf certificate's expiry.
    pub not_after: SystemTime,
    /// The leaf certificate's subject, for the log.
    pub subject: String,
}

/// Reads a PEM certificate chain (leaf first, then intermediates) from `cert` and its PEM
/// private key (PKCS#8, PKCS#1 or SEC1) from `key`, and checks that they belong together
/// and that the leaf is valid at `now`. Errors name the file and never include key bytes.
pub fn load_cert_files(cert: &Path, key: &Path, now: SystemTime) -> Result<LoadedCert, CertsError> {
    let bad = |path: &Path, problem: String| CertsError::TlsFile {
        path: path.to_owned(),
        problem,
    };
    let cert_pem = std::fs::read(cert).map_err(|e| bad(cert, format!("cannot read: {e}")))?;
    let key_pem = zeroize::Zeroizing::new(
        std::fs::read(key).map_err(|e| bad(key, format!("cannot read: {e}")))?,
    );
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            bad(
                cert,
                "not valid PEM (expected CERTIFICATE blocks, leaf first)".into(),
            )
        })?;
    let Some(leaf) = chain.first() else {
        return Err(bad(cert, "no CERTIFICATE block in the file".into()));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| bad(cert, "the first certificate does not parse as X.509".into()))?;
    let to_time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    let (not_before, not_after) = (
        to_time(parsed.validity().not_before),
        to_time(parsed.validity().not_after),
    );
    let subject = parsed.subject().to_string();
    if now >= not_after {
        return Err(bad(
            cert,
            format!("the certificate for {subject} has expired"),
        ));
    }
    if now < not_before {
        return Err(bad(
            cert,
            format!("the certificate for {subject} is not valid yet"),
        ));
    }
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        bad(
            key,
            "no private key found (expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
                .into(),
        )
    })?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => bad(
            key,
            format!(
                "this key does not belong to the certificate in {}",
                cert.display()
            ),
        ),
        _ => bad(
            key,
            "the private key is not usable (RSA, ECDSA P-256/P-384 or Ed25519 expected)".into(),
        ),
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
        subject,
    })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A certificate and key from a CA of their own (as a company CA would issue them),
    /// written to `dir` as cert.pem and key.pem.
    fn company_files(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let ca =
            Ca::load_or_create(&dir.join(format!("ca-{name}")), SystemTime::now()).expect("ca");
        let issued = ca
            .issue_server_cert(&["127.0.0.1".into()], SystemTime::now())
            .expect("issue");
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, issued.chain_pem()).expect("write cert");
        std::fs::write(&k, issued.key_pem().expose_secret()).expect("write key");
        (c, k)
    }

    #[test]
    fn a_matching_pair_loads_and_mismatches_garbage_and_expiry_say_which_file() {
        let d = causeway_testkit::TempDir::new("tls-files");
        let (c1, k1) = company_files(d.path(), "one");
        let (_, k2) = company_files(d.path(), "two");
        let now = SystemTime::now();
        let ok = load_cert_files(&c1, &k1, now).expect("a matching pair");
        assert!(ok.not_after > now);
        assert_eq!(ok.key.cert.len(), 2, "leaf and issuer are both served");

        let e = load_cert_files(&c1, &k2, now)
            .expect_err("wrong key")
            .to_string();
        assert!(
            e.contains("two.key") && e.contains("does not belong"),
            "{e}"
        );

        let junk = d.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
        let e = load_cert_files(&junk, &k1, now)
            .expect_err("junk")
            .to_string();
        assert!(e.contains("junk.pem"), "{e}");
        let e = load_cert_files(&c1, &junk, now)
            .expect_err("no key")
            .to_string();
        assert!(e.contains("no private key"), "{e}");

        let later = now + Duration::from_secs(3 * 365 * 86_400);
        let e = load_cert_files(&c1, &k1, later)
            .expect_err("expired")
            .to_string();
        assert!(e.contains("expired"), "{e}");
        // No key material in any message.
        let key_text = std::fs::read_to_string(&k1).expect("key");
        let body = key_text.lines().nth(1).expect("a base64 line");
        assert!(!e.contains(body));
    }
}
