//! Encrypted assertions (XML Encryption 1.1): the signed Assertion is encrypted with a
//! fresh AES-256-GCM key, and that key with the SP's RSA key (RSA-OAEP, MGF1-SHA1), as
//! `saml:EncryptedAssertion`. It must never reuse a key or an IV, and never encrypt to a
//! key other than the one in the SP's registered metadata.

use base64::Engine;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Padding;
use openssl::symm::Cipher;

use crate::xml::{ns, El};

/// XML Encryption's namespace.
pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
/// AES-256-GCM content encryption (XML Encryption 1.1).
pub const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
/// RSA-OAEP key transport with MGF1 over SHA-1 (the XML Encryption 1.0 identifier every
/// SAML stack implements; its digest is named inside).
pub const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
/// SHA-1, as the OAEP digest (not a signature digest).
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
/// `EncryptedData Type`: an element.
const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// An SP's public key for encryption, from a certificate in its metadata.
#[derive(Clone)]
pub struct EncryptionKey {
    key: PKey<Public>,
    cert_b64: String,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey")
    }
}

/// Why an assertion could not be encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The SP's certificate holds no usable RSA key: its metadata must be fixed.
    #[error("the application's encryption certificate is unusable: {0}")]
    BadKey(String),
    /// The cryptographic library failed (not the SP's fault).
    #[error("encryption failed: {0}")]
    Crypto(String),
}

impl EncryptionKey {
    /// The key of a base64 DER certificate (as `X509Certificate` carries it).
    pub fn from_cert_base64(b64: &str) -> Result<Self, EncryptError> {
        let clean: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&clean)
            .map_err(|_| EncryptError::BadKey("not base64".into()))?;
        let cert =
            openssl::x509::X509::from_der(&der).map_err(|e| EncryptError::BadKey(e.to_string()))?;
        let key = cert
            .public_key()
            .map_err(|e| EncryptError::BadKey(e.to_string()))?;
        if key.rsa().is_err() {
            return Err(EncryptError::BadKey("not an RSA key".into()));
        }
        Ok(Self {
            key,
            cert_b64: clean,
        })
    }

    /// `saml:EncryptedAssertion` holding `assertion` (already signed, canonical text).
    pub fn encrypt_assertion(&self, assertion: &str) -> Result<El, EncryptError> {
        let crypto = |e: openssl::error::ErrorStack| EncryptError::Crypto(e.to_string());
        let mut cek = zeroize::Zeroizing::new([0u8; 32]);
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut *cek).map_err(|e| EncryptError::Crypto(e.to_string()))?;
        getrandom::fill(&mut iv).map_err(|e| EncryptError::Crypto(e.to_string()))?;
        let mut tag = [0u8; TAG_LEN];
        let body = openssl::symm::encrypt_aead(
            Cipher::aes_256_gcm(),
            &*cek,
            Some(&iv),
            &[],
            assertion.as_bytes(),
            &mut tag,
        )
        .map_err(crypto)?;
        // XML Encryption 1.1 §5.2.4: the IV, then the ciphertext, then the tag.
        let mut content = Vec::with_capacity(IV_LEN + body.len() + TAG_LEN);
        content.extend_from_slice(&iv);
        content.extend_from_slice(&body);
        content.extend_from_slice(&tag);
        let mut enc = openssl::encrypt::Encrypter::new(&self.key).map_err(crypto)?;
        enc.set_rsa_padding(Padding::PKCS1_OAEP).map_err(crypto)?;
        let mut wrapped = vec![0u8; enc.encrypt_len(&*cek).map_err(crypto)?];
        let n = enc.encrypt(&*cek, &mut wrapped).map_err(crypto)?;
        wrapped.truncate(n);
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let cipher = |v: String| {
            El::new("xenc", XENC, "CipherData").child(El::new("xenc", XENC, "CipherValue").text(v))
        };
        let encrypted_key =
            El::new("xenc", XENC, "EncryptedKey")
                .child(
                    El::new("xenc", XENC, "EncryptionMethod")
                        .attr("Algorithm", RSA_OAEP_MGF1P)
                        .child(El::new("ds", ns::DS, "DigestMethod").attr("Algorithm", SHA1)),
                )
                .child(El::new("ds", ns::DS, "KeyInfo").child(
                    El::new("ds", ns::DS, "X509Data").child(
                        El::new("ds", ns::DS, "X509Certificate").text(self.cert_b64.clone()),
                    ),
                ))
                .child(cipher(b64(&wrapped)));
        Ok(El::new("saml", ns::SAML, "EncryptedAssertion").child(
            El::new("xenc", XENC, "EncryptedData")
                .attr("Type", TYPE_ELEMENT)
                .child(El::new("xenc", XENC, "EncryptionMethod").attr("Algorithm", AES256_GCM))
                .child(El::new("ds", ns::DS, "KeyInfo").child(encrypted_key))
                .child(cipher(b64(&content))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    /// A throwaway RSA key and its self-signed certificate (base64 DER).
    fn sp_key() -> (PKey<openssl::pkey::Private>, String) {
        let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
        let key = PKey::from_rsa(rsa).expect("pkey");
        let mut name = openssl::x509::X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "sp").expect("cn");
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().expect("builder");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("t"))
            .expect("nb");
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).expect("t"))
            .expect("na");
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .expect("sign");
        let der = b.build().to_der().expect("der");
        (key, base64::engine::general_purpose::STANDARD.encode(der))
    }

    /// Opens an EncryptedAssertion as an SP does; None when `key` cannot.
    fn decrypt(key: &PKey<openssl::pkey::Private>, doc: &str) -> Option<Vec<u8>> {
        let root = parse(doc).expect("parses");
        let data = root.child(XENC, "EncryptedData").expect("EncryptedData");
        let ek = data
            .child(ns::DS, "KeyInfo")
            .and_then(|k| k.child(XENC, "EncryptedKey"))
            .expect("EncryptedKey");
        let value = |n: &crate::xml::Node| {
            let t = n
                .child(XENC, "CipherData")
                .and_then(|c| c.child(XENC, "CipherValue"))
                .expect("CipherValue")
                .text();
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .expect("b64")
        };
        let mut dec = openssl::encrypt::Decrypter::new(key).expect("decrypter");
        dec.set_rsa_padding(Padding::PKCS1_OAEP).expect("oaep");
        let wrapped = value(ek);
        let mut cek = vec![0u8; dec.decrypt_len(&wrapped).expect("len")];
        let n = dec.decrypt(&wrapped, &mut cek).ok()?;
        cek.truncate(n);
        let c = value(data);
        let (iv, rest) = c.split_at(IV_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        openssl::symm::decrypt_aead(Cipher::aes_256_gcm(), &cek, Some(iv), &[], body, tag).ok()
    }

    #[test]
    fn an_encrypted_assertion_decrypts_with_the_sp_key_only_and_never_repeats() {
        let (key, cert) = sp_key();
        let ek = EncryptionKey::from_cert_base64(&cert).expect("usable");
        let assertion = "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_a\">secret &amp; more</saml:Assertion>";
        let a = ek.encrypt_assertion(assertion).expect("encrypts");
        let doc = a.to_document();
        assert!(
            !doc.contains("secret"),
            "the plaintext is not in the output"
        );
        assert!(
            doc.contains(AES256_GCM) && doc.contains(RSA_OAEP_MGF1P),
            "{doc}"
        );
        assert_eq!(decrypt(&key, &doc).as_deref(), Some(assertion.as_bytes()));
        // A fresh key and IV every time: two encryptions of the same text differ.
        let again = ek
            .encrypt_assertion(assertion)
            .expect("encrypts")
            .to_document();
        assert_ne!(doc, again);
        // Another SP's key cannot open it.
        let (other, _) = sp_key();
        assert_eq!(decrypt(&other, &doc), None, "another key must not decrypt");
        // A changed ciphertext (the content's, the last CipherValue) fails the GCM tag.
        let at = doc.rfind("<xenc:CipherValue>").expect("content") + "<xenc:CipherValue>".len();
        let flipped = format!("{}AAAA{}", &doc[..at], &doc[at..]);
        assert_eq!(decrypt(&key, &flipped), None, "tampering is detected");
        assert!(matches!(
            EncryptionKey::from_cert_base64("bm90IGEgY2VydA=="),
            Err(EncryptError::BadKey(_))
        ));
    }
}
