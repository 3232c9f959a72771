//! Causeway's own certificate authority: one ECDSA P-256 key and self-signed certificate
//! in a private directory, which issues the endpoint's TLS server certificate and the
//! agents' client certificates.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use causeway_credential::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509CertificationRequest, X509Error};
use zeroize::{Zeroize, Zeroizing};

use crate::error::CertsError;
use crate::error::CsrError;
use crate::id::AgentId;
use crate::text::excerpt;
use crate::util::{
    ensure_private_dir, fingerprint_of_der, from_unix_secs, random_bytes, read_bounded, sync_dir,
    unix_secs, write_temp,
};

/// The CA certificate's file name inside the CA directory (PEM, public).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name inside the CA directory (PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The agent registry's usual file name inside the CA directory (see [`Ca::registry_path`]).
pub const REGISTRY_FILE: &str = "registry.sqlite";
/// The largest certificate signing request accepted, in bytes of PEM.
pub const MAX_CSR_PEM_LEN: usize = 16 * 1024;
/// How long an agent certificate lasts unless told otherwise.
pub const DEFAULT_AGENT_CERT_VALIDITY: Duration = Duration::from_secs(30 * DAY);
/// The longest agent certificate lifetime [`Ca::sign_agent_csr`] accepts.
pub const MAX_AGENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// The shortest agent certificate lifetime [`Ca::sign_agent_csr`] accepts.
pub const MIN_AGENT_CERT_VALIDITY: Duration = Duration::from_secs(60);
/// The CA certificate's subject common name.
pub const CA_COMMON_NAME: &str = "Causeway CA";

const DAY: u64 = 24 * 60 * 60;
const CA_VALIDITY_SECS: i64 = 3650 * DAY as i64;
const SERVER_CERT_VALIDITY_SECS: i64 = 365 * DAY as i64;
/// Certificates start a little in the past, so that a peer whose clock is slightly behind
/// accepts them at once.
const BACKDATE_SECS: i64 = 5 * 60;
/// CA files are small; anything larger is not ours.
const MAX_CA_FILE_LEN: usize = 64 * 1024;
/// How long a second process waits for a concurrent first creation to finish.
const CREATION_WAIT: Duration = Duration::from_secs(5);
const MAX_SERVER_NAMES: usize = 100;

/// Causeway's certificate authority, loaded from (or created in) its directory.
///
/// The private key stays in memory, is zeroized on drop (rcgen's copy of it; the signing
/// library may keep its own expanded form) and is never printed: `Debug` shows the
/// fingerprint only.
pub struct Ca {
    dir: PathBuf,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    fingerprint: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Ca {
    /// Loads the CA from `dir`, creating the directory (mode 0700), the key `ca.key`
    /// (mode 0600) and the self-signed certificate `ca.pem` (10 years) on first use.
    ///
    /// Several processes may call this at once on a new directory: exactly one creates
    /// the CA and the others load it. A key file accessible to group or others is refused.
    pub fn load_or_create(dir: &Path, now: SystemTime) -> Result<Ca, CertsError> {
        ensure_private_dir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let deadline = Instant::now() + CREATION_WAIT;
        loop {
            match (exists(&key_path)?, exists(&cert_path)?) {
                (true, true) => return Self::load(dir, now),
                (false, false) => {
                    // Whether this process won the race or another did, both files exist
                    // (or are about to) afterwards: loop and load them.
                    Self::create(dir, now)?;
                }
                (false, true) => {
                    return Err(CertsError::IncompleteCa {
                        present: cert_path,
                        missing: key_path,
                    })
                }
                (true, false) => {
                    // Another process linked the key and is about to rename the
                    // certificate into place.
                    if Instant::now() >= deadline {
                        return Err(CertsError::IncompleteCa {
                            present: key_path,
                            missing: cert_path,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Loads an existing CA from `dir`; never creates one.
    pub fn load(dir: &Path, now: SystemTime) -> Result<Ca, CertsError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);

        let key_bytes = Zeroizing::new(read_bounded(&key_path, MAX_CA_FILE_LEN, true)?);
        // rcgen's and the PEM parser's messages could quote bytes of the file: say only
        // what was expected.
        let key = std::str::from_utf8(&key_bytes)
            .ok()
            .and_then(|pem| KeyPair::from_pem(pem).ok())
            .ok_or_else(|| CertsError::CorruptCaFile {
                path: key_path.clone(),
                what: "CA private key",
                problem: "it is not a PEM (PKCS #8) private key".into(),
            })?;

        let cert_bytes = read_bounded(&cert_path, MAX_CA_FILE_LEN, false)?;
        let corrupt_cert = |problem: &str| CertsError::CorruptCaFile {
            path: cert_path.clone(),
            what: "CA certificate",
            problem: problem.to_owned(),
        };
        let cert_der = CertificateDer::from_pem_slice(&cert_bytes)
            .map_err(|_| corrupt_cert("it holds no PEM CERTIFICATE block"))?;
        let (rest, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| corrupt_cert("it is not an X.509 certificate"))?;
        if !rest.is_empty() {
            return Err(corrupt_cert("trailing bytes after the certificate"));
        }
        if !x509.is_ca() {
            return Err(corrupt_cert(
                "it is not a CA certificate (basicConstraints CA:FALSE)",
            ));
        }
        use rcgen::PublicKeyData as _;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CertsError::CaKeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }
        let not_before = x509.validity().not_before.timestamp();
        let not_after = x509.validity().not_after.timestamp();
        let now_s = unix_secs(now);
        if now_s < not_before || now_s >= not_after {
            return Err(CertsError::CaNotValidNow {
                path: cert_path,
                not_before,
                not_after,
                now: now_s,
            });
        }
        // Fail now, not at the first signature, if rcgen cannot use it as an issuer.
        Issuer::from_ca_cert_der(&cert_der, &key)
            .map_err(|e| corrupt_cert(&format!("it cannot issue certificates: {e}")))?;
        drop(x509);

        let fingerprint = fingerprint_of_der(&cert_der);
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(Ca {
            dir: dir.to_owned(),
            key,
            cert_der,
            cert_pem,
            fingerprint,
            not_before: from_unix_secs(not_before),
            not_after: from_unix_secs(not_after),
        })
    }

    /// Makes a new CA in `dir` unless one appears meanwhile. The key is linked into place
    /// with `link(2)`, which fails if the name exists: of two racing processes, one wins and
    /// the other discards its key.
    fn create(dir: &Path, now: SystemTime) -> Result<(), CertsError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertsError::signing("generate the CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        // A random unit name makes every installation's CA name distinct, so a peer that
        // pinned another Causeway CA fails with "unknown issuer" rather than with a
        // confusing signature error on a same-named CA.
        let install: [u8; 8] = random_bytes()?;
        dn.push(
            DnType::OrganizationalUnitName,
            format!("installation {}", hex::encode(install)),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let start = unix_secs(now);
        params.not_before = asn1_time(start - BACKDATE_SECS)?;
        params.not_after = asn1_time(start + CA_VALIDITY_SECS)?;
        params.serial_number = Some(random_serial()?);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CertsError::signing("self-sign the CA certificate", e))?;
        let mut key = key;
        let key_pem = Zeroizing::new(key.serialize_pem());
        key.zeroize();

        let key_tmp = write_temp(dir, CA_KEY_FILE, key_pem.as_bytes(), 0o600)?;
        let cert_tmp = match write_temp(dir, CA_CERT_FILE, cert.pem().as_bytes(), 0o644) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&key_tmp);
                return Err(e);
            }
        };
        let key_path = dir.join(CA_KEY_FILE);
        let linked = fs::hard_link(&key_tmp, &key_path);
        let _ = fs::remove_file(&key_tmp);
        match linked {
            Ok(()) => {
                let cert_path = dir.join(CA_CERT_FILE);
                fs::rename(&cert_tmp, &cert_path).map_err(|e| {
                    let _ = fs::remove_file(&cert_tmp);
                    CertsError::io("move into place", cert_path, e)
                })?;
                sync_dir(dir)
            }
            Err(e) => {
                let _ = fs::remove_file(&cert_tmp);
                if e.kind() == ErrorKind::AlreadyExists {
                    Ok(()) // another process created the CA first
                } else {
                    Err(CertsError::io("create", key_path, e))
                }
            }
        }
    }

    /// The directory the CA lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the agent registry lives by default: `registry.sqlite` beside the CA.
    pub fn registry_path(&self) -> PathBuf {
        self.dir.join(REGISTRY_FILE)
    }

    /// The CA certificate, PEM: what agents pin.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 over the CA certificate's DER, lowercase hex.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint.clone()
    }

    /// When the CA certificate became valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the CA certificate expires; no certificate it issues outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues the endpoint's TLS server certificate for `names` (DNS names and IP
    /// addresses, each becoming a subjectAltName), with a fresh ECDSA P-256 key, EKU
    /// serverAuth, valid one year (never past the CA's own expiry).
    pub fn issue_server_cert(
        &self,
        names: &[String],
        now: SystemTime,
    ) -> Result<IssuedKeyAndCert, CertsError> {
        if names.is_empty() {
            return Err(CertsError::NoServerNames);
        }
        if names.len() > MAX_SERVER_NAMES {
            return Err(CertsError::InvalidServerName {
                name: format!("({} names; at most {MAX_SERVER_NAMES})", names.len()),
            });
        }
        for name in names {
            let is_ip = name.parse::<IpAddr>().is_ok();
            let is_dns = rustls::pki_types::DnsName::try_from(name.as_str()).is_ok();
            if !(is_ip || is_dns) || name.len() > 253 {
                return Err(CertsError::InvalidServerName {
                    name: excerpt(name, 80),
                });
            }
        }
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|_| CertsError::InvalidServerName {
                name: excerpt(&names.join(","), 80),
            })?;
        let mut dn = DistinguishedName::new();
        // A CN is optional for TLS (names come from the SANs); it helps humans reading it.
        dn.push(DnType::CommonName, excerpt(&names[0], 60));
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;

        let mut key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertsError::signing("generate the server key", e))?;
        let cert = self.sign(params, &key, now, SERVER_CERT_VALIDITY_SECS)?;
        let key_pem = Secret::new(key.serialize_pem());
        key.zeroize();
        Ok(IssuedKeyAndCert {
            cert,
            ca_der: self.cert_der.clone(),
            ca_pem: self.cert_pem.clone(),
            key_pem,
        })
    }

    /// Checks a CSR exactly as [`Ca::sign_agent_csr`] would, without signing: lets the hub
    /// refuse a bad request before it spends the enrollment token.
    pub fn check_agent_csr(&self, csr_pem: &str) -> Result<(), CertsError> {
        parse_csr(csr_pem).map(drop).map_err(CertsError::from)
    }

    /// Signs an agent's certificate signing request.
    ///
    /// The CSR's signature must verify with its own key (proof that the agent holds it);
    /// everything else it asks for — subject, subjectAltNames, key usages, CA flags — is
    /// ignored. The certificate names `agent_id` as subject CN, has EKU clientAuth only,
    /// keyUsage digitalSignature, basicConstraints CA:FALSE, a random 16-byte serial, and
    /// lasts from 5 minutes before `now` to `now + validity` (capped at the CA's expiry).
    ///
    /// When enrolling, sign before consuming the token: a refused CSR then leaves the token
    /// usable, and a certificate issued for a token that turns out to be spent is harmless
    /// because it was never registered.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        agent_id: &AgentId,
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedCert, CertsError> {
        let public_key = parse_csr(csr_pem)?;
        if validity < MIN_AGENT_CERT_VALIDITY || validity > MAX_AGENT_CERT_VALIDITY {
            return Err(CertsError::InvalidLifetime {
                what: "an agent certificate",
                min_secs: MIN_AGENT_CERT_VALIDITY.as_secs(),
                max_secs: MAX_AGENT_CERT_VALIDITY.as_secs(),
                got_secs: validity.as_secs(),
            });
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent_id.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let secs = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX);
        self.sign(params, &public_key, now, secs)
    }

    /// Fills in serial and validity, then signs with the CA key.
    fn sign(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        now: SystemTime,
        lifetime_secs: i64,
    ) -> Result<IssuedCert, CertsError> {
        let start = unix_secs(now);
        let not_before = start - BACKDATE_SECS;
        let not_after = start
            .saturating_add(lifetime_secs)
            .min(unix_secs(self.not_after));
        params.not_before = asn1_time(not_before)?;
        params.not_after = asn1_time(not_after)?;
        params.serial_number = Some(random_serial()?);
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, &self.key)
            .map_err(|e| CertsError::signing("use the CA certificate as issuer", e))?;
        let cert = params
            .signed_by(public_key, &issuer)
            .map_err(|e| CertsError::signing("sign the certificate", e))?;
        let der = cert.der().to_vec();
        Ok(IssuedCert {
            pem: cert.pem(),
            fingerprint: fingerprint_of_der(&der),
            der,
            not_before: from_unix_secs(not_before),
            not_after: from_unix_secs(not_after),
        })
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint)
            .field("key", &causeway_credential::REDACTED)
            .finish_non_exhaustive()
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// A certificate the CA issued. Certificates are public; its `Debug` is short anyway.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pem: String,
    der: Vec<u8>,
    fingerprint: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl IssuedCert {
    /// The certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate for rustls.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.der.clone())
    }

    /// SHA-256 over the DER, lowercase hex: the name the registry and the hub use.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Start of validity (already backdated by 5 minutes).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("fingerprint", &self.fingerprint)
            .field("not_after", &unix_secs(self.not_after))
            .finish_non_exhaustive()
    }
}

/// A certificate together with the private key it was issued for (the endpoint's server
/// certificate). The key never shows in `Debug` or `Display`, and is zeroized on drop.
pub struct IssuedKeyAndCert {
    cert: IssuedCert,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    key_pem: Secret<String>,
}

impl IssuedKeyAndCert {
    /// The certificate.
    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }

    /// The private key, PKCS #8 PEM. Write it only to a 0600 file.
    pub fn key_pem(&self) -> &Secret<String> {
        &self.key_pem
    }

    /// The private key for rustls.
    pub fn private_key_der(&self) -> Result<PrivateKeyDer<'static>, CertsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.expose_secret().as_bytes()).map_err(|_| {
            CertsError::BadPem {
                what: "the issued private key",
                expected: "PRIVATE KEY",
            }
        })
    }

    /// The chain to present: the certificate, then the CA. Agents enrolling for the first
    /// time find the CA in the chain and check it against their token's fingerprint.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.cert_der(), self.ca_der.clone()]
    }

    /// [`Self::chain_der`] as PEM (certificate first).
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.cert.pem, self.ca_pem)
    }
}

impl fmt::Debug for IssuedKeyAndCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKeyAndCert")
            .field("cert", &self.cert)
            .field("key", &self.key_pem)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for IssuedKeyAndCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate {} with its private key {}",
            self.cert.fingerprint, self.key_pem
        )
    }
}

/// Whether a certificate valid from `not_before` to `not_after` should be renewed at
/// `now`: once 70 % of its lifetime has passed (as linkerd does), leaving 30 % to retry.
pub fn renewal_due(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return true; // an empty or inverted window is unusable: renew
    };
    if lifetime.is_zero() {
        return true;
    }
    match now.duration_since(not_before) {
        Ok(elapsed) => elapsed.as_secs_f64() >= lifetime.as_secs_f64() * 0.7,
        Err(_) => false, // not valid yet
    }
}

/// Parses and checks a CSR; returns only its public key (nothing else is used).
pub(crate) fn parse_csr(csr_pem: &str) -> Result<SubjectPublicKeyInfo, CsrError> {
    if csr_pem.len() > MAX_CSR_PEM_LEN {
        return Err(CsrError::TooLarge {
            len: csr_pem.len(),
            max: MAX_CSR_PEM_LEN,
        });
    }
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| CsrError::NotPem)?;
    let (rest, csr) =
        X509CertificationRequest::from_der(der.as_ref()).map_err(|_| CsrError::Unparsable)?;
    if !rest.is_empty() {
        return Err(CsrError::Unparsable);
    }
    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => CsrError::UnsupportedKey,
        _ => CsrError::BadSignature,
    })?;
    let spki = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|_| CsrError::UnsupportedKey)?;
    let alg = rcgen::PublicKeyData::algorithm(&spki);
    let accepted = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_ED25519,
    ];
    if !accepted.contains(&alg) {
        return Err(CsrError::UnsupportedKey);
    }
    Ok(spki)
}

fn exists(path: &Path) -> Result<bool, CertsError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CertsError::io("inspect", path, e)),
    }
}

fn asn1_time(secs: i64) -> Result<time::OffsetDateTime, CertsError> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|e| CertsError::signing("represent the validity period", e))
}

/// 16 random bytes, positive and without a leading zero byte (RFC 5280 4.1.2.2).
fn random_serial() -> Result<SerialNumber, CertsError> {
    let mut b: [u8; 16] = random_bytes()?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

/// PEM with 64-column base64 lines, as every tool writes it.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
