//! Throwaway token-signing keys for tests: a fresh RSA key and a self-signed certificate
//! valid from today for one day, never written anywhere.

use causeway_saml::xml::{SigningKey, VerifiedKey};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};

/// A new RSA-2048 signing key and the verifying key of its self-signed certificate.
///
/// # Panics
/// If openssl cannot generate a key or build the certificate (a broken test machine).
pub fn test_key() -> (SigningKey, VerifiedKey) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "test").expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
        .expect("na");
    b.set_pubkey(&key).expect("pubkey");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let der = b.build().to_der().expect("der");
    (
        SigningKey::new(key, &der),
        VerifiedKey::from_cert_der(&der).expect("key"),
    )
}
