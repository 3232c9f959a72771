//! Compact JWS with RS256 (RFC 7515, RFC 7518 §3.3) over the endpoint's RSA token-signing
//! keys, and their JWKS (RFC 7517). Signed with openssl, which already holds those keys
//! for SAML: one crypto stack, no jsonwebtoken backend to choose. Verification accepts
//! RS256 only and only our own keys (it reads back access tokens we issued); `alg=none`,
//! HMAC or a key the token names itself are never looked at.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer as OsslSigner, Verifier};
use openssl::x509::X509;
use serde_json::{json, Value};

use crate::{b64url, b64url_decode};

/// Most bytes of a JWT this provider reads back.
pub const MAX_JWT: usize = 16 * 1024;

/// The key that signs tokens now.
pub struct Signer {
    kid: String,
    key: PKey<Private>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl Signer {
    /// A signer for an RSA key with key id `kid`.
    pub fn new(kid: String, key: PKey<Private>) -> Self {
        Self { kid, key }
    }

    /// Its key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` with header `{"alg":"RS256","typ":typ,"kid":…}`.
    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, openssl::error::ErrorStack> {
        let header = json!({"alg": "RS256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = self.signature(input.as_bytes())?;
        Ok(format!("{input}.{}", b64url(&sig)))
    }

    /// One RS256 signature (also what the benchmark counts).
    pub fn signature(&self, data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut s = OsslSigner::new(MessageDigest::sha256(), &self.key)?;
        s.update(data)?;
        s.sign_to_vec()
    }
}

/// A published key: its id and public key.
#[derive(Clone)]
pub struct PublishedKey {
    /// Key id.
    pub kid: String,
    /// The public key.
    pub key: PKey<Public>,
    /// Its JWK.
    pub jwk: Value,
}

impl std::fmt::Debug for PublishedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl PublishedKey {
    /// From a token-signing certificate (DER) and its key id.
    pub fn from_cert(kid: &str, cert_der: &[u8]) -> Result<Self, openssl::error::ErrorStack> {
        let cert = X509::from_der(cert_der)?;
        let key = cert.public_key()?;
        let rsa = key.rsa()?;
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": b64url(&rsa.n().to_vec()),
            "e": b64url(&rsa.e().to_vec()),
            "x5c": [base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert_der)],
        });
        Ok(Self {
            kid: kid.to_owned(),
            key,
            jwk,
        })
    }
}

/// The JWKS document of `keys`.
pub fn jwks(keys: &[PublishedKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// Reads a JWT of type `typ` signed RS256 by one of `keys`; its claims, or `None`.
/// Expiry is the caller's to check (with its clock).
pub fn verify(token: &str, typ: &str, keys: &[PublishedKey]) -> Option<Value> {
    if token.len() > MAX_JWT {
        return None;
    }
    let mut parts = token.split('.');
    let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&b64url_decode(h)?).ok()?;
    if header.get("alg")?.as_str()? != "RS256" || header.get("typ")?.as_str()? != typ {
        return None;
    }
    let kid = header.get("kid")?.as_str()?;
    let key = keys.iter().find(|k| k.kid == kid)?;
    let sig = b64url_decode(s)?;
    let mut v = Verifier::new(MessageDigest::sha256(), &key.key).ok()?;
    v.update(format!("{h}.{c}").as_bytes()).ok()?;
    if !v.verify(&sig).ok()? {
        return None;
    }
    serde_json::from_slice(&b64url_decode(c)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Signer, PublishedKey) {
        let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
        let pkey = PKey::from_rsa(rsa).expect("pkey");
        let mut b = openssl::x509::X509Builder::new().expect("b");
        b.set_pubkey(&pkey).expect("pub");
        let mut n = openssl::x509::X509NameBuilder::new().expect("name");
        n.append_entry_by_text("CN", "test").expect("cn");
        let n = n.build();
        b.set_subject_name(&n).expect("subject");
        b.set_issuer_name(&n).expect("issuer");
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("t"))
            .expect("nb");
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).expect("t"))
            .expect("na");
        b.sign(&pkey, MessageDigest::sha256()).expect("sign");
        let der = b.build().to_der().expect("der");
        (
            Signer::new("k1".into(), pkey),
            PublishedKey::from_cert("k1", &der).expect("pk"),
        )
    }

    #[test]
    fn our_tokens_verify_and_altered_or_unsigned_ones_do_not() {
        let (s, p) = key();
        let t = s.sign("at+jwt", &json!({"sub": "x"})).expect("sign");
        assert_eq!(
            verify(&t, "at+jwt", std::slice::from_ref(&p)),
            Some(json!({"sub": "x"}))
        );
        assert_eq!(
            verify(&t, "JWT", std::slice::from_ref(&p)),
            None,
            "another type"
        );
        let parts: Vec<&str> = t.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64url(br#"{"sub":"y"}"#), parts[2]);
        assert_eq!(verify(&forged, "at+jwt", std::slice::from_ref(&p)), None);
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#),
            parts[1]
        );
        assert_eq!(verify(&none, "at+jwt", std::slice::from_ref(&p)), None);
        let (_, other) = key();
        assert_eq!(verify(&t, "at+jwt", &[other]), None);
        assert!(jwks(&[p]).contains("\"kid\":\"k1\""));
    }
}
