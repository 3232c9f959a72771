//! Any document as a signed SAML message checked against a trusted key: never a panic,
//! never accepted (the fuzzer does not hold the key), bounded work.
#![no_main]

use std::sync::OnceLock;

use causeway_saml::xml::{parse, verify_enveloped, VerifiedKey};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static VerifiedKey {
    static KEY: OnceLock<VerifiedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let mut b = x509::X509Builder::new().expect("builder");
        b.set_version(2).expect("v3");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("t")).expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(1).expect("t")).expect("na");
        b.set_pubkey(&key).expect("pubkey");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        VerifiedKey::from_cert_der(&b.build().to_der().expect("der")).expect("key")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(node) = parse(text) {
        assert!(verify_enveloped(&node, "ID", std::slice::from_ref(key())).is_err());
    }
});
