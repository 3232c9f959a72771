//! PKCE (RFC 7636) with `S256` only: `plain` would let whoever sees the authorization
//! request redeem the code, which is what PKCE is there to prevent.

use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::error::{invalid_request, OAuthError};

/// Whether `s` is 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1 and §4.2).
fn well_formed(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks the authorization request's `code_challenge` and its method.
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), OAuthError> {
    match method {
        Some("S256") => {}
        None | Some("plain") => {
            return Err(invalid_request(
                "code_challenge_method must be S256 (plain is not accepted)",
            ))
        }
        Some(_) => return Err(invalid_request("code_challenge_method must be S256")),
    }
    if !well_formed(challenge) {
        return Err(invalid_request(
            "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ));
    }
    Ok(())
}

/// Whether `verifier` is the one `challenge` (S256) was made from.
pub fn verifies(challenge: &str, verifier: &str) -> bool {
    if !well_formed(verifier) {
        return false;
    }
    let made = crate::b64url(&sha2::Sha256::digest(verifier.as_bytes()));
    bool::from(made.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn the_rfc_7636_example_verifies_and_nothing_else_does() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(challenge, Some("S256")).is_ok());
        assert!(verifies(challenge, verifier));
        assert!(!verifies(
            challenge,
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"
        ));
        assert!(
            !verifies(challenge, challenge),
            "the challenge is not its verifier"
        );
        assert!(check_challenge(challenge, Some("plain")).is_err());
        assert!(check_challenge(challenge, None).is_err());
        assert!(check_challenge("short", Some("S256")).is_err());
    }
}
