//! Throwaway token-signing keys for tests: built for this crate's own tests, and for
//! others only with the `test-keys` feature (which `causeway-testkit` turns on). The IdP's
//! keys come from `causeway-certs`, never from here.

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder};

use super::{SigningKey, VerifiedKey};

/// A new RSA-2048 signing key and the verifying key of its self-signed certificate
/// (CN=test, valid from today for one day), held only in memory.
///
/// # Panics
/// If openssl cannot generate the key or build the certificate (a broken test machine).
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
