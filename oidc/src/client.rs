//! A registered OpenID Connect client (relying party) and the check of its credentials
//! at the token endpoint. A confidential client's secret is 32 random bytes made by
//! Causeway and stored only as its SHA-256: a secret of that entropy needs no slow hash
//! (nobody can guess it from the hash), and a fast one keeps every token request cheap.

use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::error::{ErrorCode, OAuthError};

/// Most bytes of a client id.
pub const MAX_CLIENT_ID: usize = 128;
/// Most bytes of a redirect URI.
pub const MAX_REDIRECT_URI: usize = 2048;
/// Most redirect URIs of one client.
pub const MAX_REDIRECT_URIS: usize = 32;

/// What `sub` a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectType {
    /// A value of its own per client (OIDC Core §8.1), so two clients cannot tell they
    /// see the same user.
    #[default]
    Pairwise,
    /// The user's immutable id, the same at every client.
    Public,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// The client id.
    pub client_id: String,
    /// A name shown on the sign-in page.
    #[serde(default)]
    pub name: Option<String>,
    /// Where codes may be sent: exact matches only.
    pub redirect_uris: Vec<String>,
    /// Where a browser may be sent after RP-initiated logout: exact matches only.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (no secret; PKCE required).
    #[serde(default)]
    pub public: bool,
    /// SHA-256 of the secret, hex (confidential clients).
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// The `sub` it receives.
    #[serde(default)]
    pub subject_type: SubjectType,
    /// The public keys (a JWKS document) it signs `private_key_jwt` assertions with,
    /// instead of a secret.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Where a browser tells it that the session ended (OpenID Connect Front-Channel
    /// Logout 1.0), with `iss` and `sid`.
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
}

/// Whether `uri` may be registered as a redirect URI: absolute `https://`, or `http://`
/// on a loopback host (RFC 8252 §7.3); no fragment, no wildcard, no user info, bounded.
pub fn redirect_uri_allowed(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_REDIRECT_URI || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "a redirect URI must be at most {MAX_REDIRECT_URI} bytes without spaces or control characters"
        ));
    }
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("{uri:?} is not an absolute URI"))?;
    if uri.contains('#') || uri.contains('*') {
        return Err(format!("{uri:?}: no fragment and no wildcard"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{uri:?}: give a host, without user information"));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(()),
        "http" => Err(format!(
            "{uri:?}: http:// is allowed only for loopback (localhost, 127.0.0.1, [::1])"
        )),
        _ => Err(format!("{uri:?}: only https:// (or http:// on loopback)")),
    }
}

impl Client {
    /// Checks the registration.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.client_id;
        if id.is_empty()
            || id.len() > MAX_CLIENT_ID
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        {
            return Err(format!(
                "the client id must be 1 to {MAX_CLIENT_ID} characters of A-Z a-z 0-9 - . _ ~"
            ));
        }
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(format!(
                "client {id}: give 1 to {MAX_REDIRECT_URIS} redirect URIs"
            ));
        }
        for u in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
            .chain(&self.frontchannel_logout_uri)
        {
            redirect_uri_allowed(u).map_err(|e| format!("client {id}: {e}"))?;
        }
        if let Some(j) = &self.jwks {
            if self.public || self.secret_sha256.is_some() {
                return Err(format!(
                    "client {id}: a client with a JWKS authenticates with it alone (not public, no secret)"
                ));
            }
            return crate::assertion::check_jwks(j)
                .map(|_| ())
                .map_err(|e| format!("client {id}: {e}"));
        }
        match (&self.secret_sha256, self.public) {
            (Some(_), true) => Err(format!("client {id}: a public client has no secret")),
            (None, false) => Err(format!(
                "client {id}: a confidential client needs secret_sha256 or jwks"
            )),
            (Some(h), false) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Err(format!("client {id}: secret_sha256 must be 64 hex digits"))
            }
            _ => Ok(()),
        }
    }

    /// Whether `uri` is one of its redirect URIs, byte for byte.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|u| u == uri)
    }

    /// Whether `secret` is its secret (constant time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let Some(stored) = self.secret_sha256.as_deref() else {
            return false;
        };
        let given = hex_lower(&sha2::Sha256::digest(secret.as_bytes()));
        bool::from(
            given
                .as_bytes()
                .ct_eq(stored.to_ascii_lowercase().as_bytes()),
        )
    }
}

/// A new client secret and its stored hash: (secret, sha256 hex).
pub fn new_secret() -> (zeroize::Zeroizing<String>, String) {
    let s = zeroize::Zeroizing::new(crate::random_token());
    let h = hex_lower(&sha2::Sha256::digest(s.as_bytes()));
    (s, h)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How a token request authenticated its client. Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic` (the `Authorization: Basic` header).
    Basic {
        /// The client id.
        id: String,
        /// The secret.
        secret: zeroize::Zeroizing<String>,
    },
    /// `client_secret_post` (`client_id` and `client_secret` in the body).
    Post {
        /// The client id.
        id: String,
        /// The secret.
        secret: zeroize::Zeroizing<String>,
    },
    /// A public client: `client_id` in the body, no secret.
    None {
        /// The client id.
        id: String,
    },
    /// `private_key_jwt`: a JWT assertion signed with a registered key.
    PrivateKeyJwt {
        /// The client id (the body's, or the assertion's `iss`).
        id: String,
        /// The assertion.
        assertion: zeroize::Zeroizing<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (m, id) = match self {
            Self::Basic { id, .. } => ("basic", id),
            Self::Post { id, .. } => ("post", id),
            Self::None { id } => ("none", id),
            Self::PrivateKeyJwt { id, .. } => ("private_key_jwt", id),
        };
        write!(f, "ClientAuth::{m}({id:?}, [redacted])")
    }
}

fn invalid_client(d: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, d)
}

impl ClientAuth {
    /// Reads the client's credentials from the `Authorization` header (if any) and the
    /// form: one method only (RFC 6749 §2.3).
    pub fn from_request(
        authorization: Option<&str>,
        form: &crate::params::Params,
    ) -> Result<Self, OAuthError> {
        let body_id = form.bounded("client_id", MAX_CLIENT_ID)?;
        let body_secret = form.bounded("client_secret", 256)?;
        if form.has("client_assertion") || form.has("client_assertion_type") {
            if authorization.is_some() || body_secret.is_some() {
                return Err(crate::error::invalid_request(
                    "use one client authentication method: a client assertion, or a secret",
                ));
            }
            if form.get("client_assertion_type") != Some(crate::assertion::JWT_BEARER) {
                return Err(invalid_client(
                    "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
            }
            let assertion = form
                .bounded("client_assertion", crate::jwt::MAX_JWT)?
                .ok_or_else(|| invalid_client("client_assertion is missing"))?;
            let claimed = crate::assertion::claimed_client(assertion)
                .ok_or_else(|| invalid_client("the client assertion names no client (iss)"))?;
            if body_id.is_some_and(|b| b != claimed) {
                return Err(invalid_client("client_id differs from the assertion's iss"));
            }
            return Ok(Self::PrivateKeyJwt {
                id: claimed,
                assertion: zeroize::Zeroizing::new(assertion.to_owned()),
            });
        }
        if let Some(h) = authorization {
            if body_secret.is_some() {
                return Err(crate::error::invalid_request(
                    "use one client authentication method: the Authorization header or client_secret, not both",
                ));
            }
            let b64 = h
                .strip_prefix("Basic ")
                .ok_or_else(|| invalid_client("the Authorization header must be Basic"))?;
            if b64.len() > 1024 {
                return Err(invalid_client("the Authorization header is too long"));
            }
            let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                .map(zeroize::Zeroizing::new)
                .map_err(|_| invalid_client("the Authorization header is not base64"))?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| invalid_client("the Authorization header is not UTF-8"))?;
            let (id, secret) = text
                .split_once(':')
                .ok_or_else(|| invalid_client("the Authorization header has no ':'"))?;
            // RFC 6749 §2.3.1: both are form-urlencoded before base64.
            let dec = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            let id = dec(id);
            if body_id.is_some_and(|b| b != id) {
                return Err(crate::error::invalid_request(
                    "client_id in the body differs from the Authorization header",
                ));
            }
            return Ok(Self::Basic {
                id,
                secret: zeroize::Zeroizing::new(dec(secret)),
            });
        }
        let id = body_id
            .ok_or_else(|| invalid_client("no client authentication (give client_id)"))?
            .to_owned();
        Ok(match body_secret {
            Some(s) => Self::Post {
                id,
                secret: zeroize::Zeroizing::new(s.to_owned()),
            },
            None => Self::None { id },
        })
    }

    /// The client id it names.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { id, .. }
            | Self::Post { id, .. }
            | Self::None { id }
            | Self::PrivateKeyJwt { id, .. } => id,
        }
    }

    /// Authenticates against the registration `client` (the one its id names, if any).
    /// Every failure reads the same, so a caller learns nothing about which clients
    /// exist.
    pub fn authenticate<'a>(&self, client: Option<&'a Client>) -> Result<&'a Client, OAuthError> {
        self.authenticate_at(client, &[], 0).map(|(c, _)| c)
    }

    /// [`ClientAuth::authenticate`], checking a `private_key_jwt` assertion against
    /// `audiences` (the token endpoint, the issuer) at `now` (Unix seconds): the client
    /// and, for an assertion, its `jti` and `exp`, which the caller must see used once.
    pub fn authenticate_at<'a>(
        &self,
        client: Option<&'a Client>,
        audiences: &[&str],
        now: u64,
    ) -> Result<(&'a Client, Option<crate::assertion::Verified>), OAuthError> {
        let failed = || invalid_client("client authentication failed");
        let c = client.ok_or_else(failed)?;
        if let Self::PrivateKeyJwt { assertion, .. } = self {
            let jwks = c.jwks.as_deref().ok_or_else(failed)?;
            let v = crate::assertion::verify(assertion, &c.client_id, jwks, audiences, now)?;
            return Ok((c, Some(v)));
        }
        if c.jwks.is_some() {
            return Err(failed());
        }
        let c = match self {
            Self::Basic { secret, .. } | Self::Post { secret, .. } if !c.public => {
                if c.secret_matches(secret) {
                    Ok(c)
                } else {
                    Err(failed())
                }
            }
            Self::None { .. } if c.public => Ok(c),
            _ => Err(failed()),
        }?;
        Ok((c, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params;

    fn client(public: bool) -> (Client, String) {
        let (s, h) = new_secret();
        let c = Client {
            client_id: "app".into(),
            name: None,
            redirect_uris: vec!["https://app.test/cb".into()],
            post_logout_redirect_uris: vec![],
            public,
            secret_sha256: (!public).then_some(h),
            subject_type: SubjectType::Pairwise,
            jwks: None,
            frontchannel_logout_uri: None,
        };
        c.validate().expect("valid");
        (c, s.to_string())
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragment_or_wildcard() {
        for ok in [
            "https://app.test/cb",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(redirect_uri_allowed(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.test/cb",
            "https://app.test/cb#x",
            "https://*.app.test/cb",
            "https://user@app.test/cb",
            "javascript:alert(1)",
            "app.test/cb",
            "http://localhost.evil.test/cb",
        ] {
            assert!(redirect_uri_allowed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_post_and_none_authenticate_only_their_kind_of_client() {
        let (conf, secret) = client(false);
        let (public, _) = client(true);
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("app:{secret}"),
        );
        let a = ClientAuth::from_request(Some(&format!("Basic {basic}")), &Params::default())
            .expect("basic");
        assert!(a.authenticate(Some(&conf)).is_ok());
        assert!(a.authenticate(Some(&public)).is_err());
        let form = Params::parse(format!("client_id=app&client_secret={secret}").as_bytes())
            .expect("form");
        let p = ClientAuth::from_request(None, &form).expect("post");
        assert!(p.authenticate(Some(&conf)).is_ok());
        let wrong = Params::parse(b"client_id=app&client_secret=nope").expect("form");
        let w = ClientAuth::from_request(None, &wrong).expect("post");
        let e = w.authenticate(Some(&conf)).expect_err("refused");
        assert_eq!(e.code, ErrorCode::InvalidClient);
        // Unknown and wrong secret read the same.
        assert_eq!(w.authenticate(None).expect_err("refused"), e);
        let none = ClientAuth::from_request(None, &Params::parse(b"client_id=app").expect("ok"))
            .expect("none");
        assert!(none.authenticate(Some(&public)).is_ok());
        assert!(
            none.authenticate(Some(&conf)).is_err(),
            "a confidential client needs its secret"
        );
        // Both methods at once is refused.
        assert!(ClientAuth::from_request(Some(&format!("Basic {basic}")), &form).is_err());
        assert!(!format!("{p:?}").contains(&secret));
    }

    #[test]
    fn a_client_assertion_of_the_wrong_type_or_beside_a_secret_is_refused_clearly() {
        let form = Params::parse(b"client_id=app&client_assertion_type=x&client_assertion=y")
            .expect("form");
        let e = ClientAuth::from_request(None, &form).expect_err("refused");
        assert_eq!(e.code, ErrorCode::InvalidClient);
        assert!(e.description.contains("client_assertion_type"), "{e}");
        let form = Params::parse(b"client_secret=s&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=y")
            .expect("form");
        let e = ClientAuth::from_request(None, &form).expect_err("refused");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        // A client registered with a JWKS cannot use a secret instead.
        let (mut c, _) = client(false);
        c.secret_sha256 = None;
        c.jwks = Some(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#.into());
        c.validate().expect("valid with a JWKS");
        let post = ClientAuth::from_request(
            None,
            &Params::parse(b"client_id=app&client_secret=x").expect("form"),
        )
        .expect("post");
        assert!(post.authenticate(Some(&c)).is_err());
    }
}
