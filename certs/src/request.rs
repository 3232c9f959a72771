//! What an enrolling client (an agent, later a sync host) sends the CA: a fresh ECDSA P-256
//! key, kept by the client, and a PKCS #10 request for it naming the client's host. One
//! builder for the agent and for every test that enrolls, so they send what the CA checks.

use causeway_credential::Secret;

/// A new private key (PEM, as a secret) and a certificate signing request for it (PEM) with
/// `common_name` as its subject.
pub fn new_key_and_csr(common_name: &str) -> Result<(Secret<String>, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((Secret::new(key.serialize_pem()), csr))
}
