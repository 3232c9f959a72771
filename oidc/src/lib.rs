//! Causeway's OpenID Connect provider, as pure protocol: it parses and checks requests
//! (every parameter bounded before it is looked at), checks PKCE and client credentials,
//! and builds the discovery document, the JWKS and signed tokens. It never does I/O and
//! never puts a code, token or secret into an error or a `Debug`.

#![forbid(unsafe_code)]

pub mod assertion;
pub mod authorize;
pub mod client;
pub mod discovery;
pub mod error;
pub mod jwt;
pub mod params;
pub mod pkce;
pub mod token;

pub use authorize::{AuthorizeRequest, Refused, ResponseMode};
pub use client::{Client, ClientAuth, SubjectType};
pub use error::{ErrorCode, OAuthError};
pub use jwt::Signer;

use base64::Engine;

/// base64url without padding (JOSE's encoding).
pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Decodes base64url without padding; `None` if it is not.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .ok()
}

/// A new random token: 32 bytes, base64url (codes, access token ids, client secrets).
pub fn random_token() -> String {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *b).expect("OS random generator");
    b64url(b.as_slice())
}
