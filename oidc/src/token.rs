//! The token endpoint's request (RFC 6749 §4.1.3) and what it answers with: the ID token
//! (OIDC Core §2, §3.1.3.6), the access token as a JWT (RFC 9068), the pairwise `sub`
//! (OIDC Core §8.1) and the UserInfo claims of each scope (§5.4).

use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Digest;

use crate::client::{Client, SubjectType, MAX_REDIRECT_URI};
use crate::error::{invalid_request, ErrorCode, OAuthError};
use crate::params::Params;

/// The `typ` of an access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What a token request asks for. Its `Debug` leaves the code out.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// Redeem an authorization code.
    AuthorizationCode {
        /// The code.
        code: zeroize::Zeroizing<String>,
        /// The redirect URI of the authorization request.
        redirect_uri: String,
        /// The PKCE verifier.
        code_verifier: Option<String>,
    },
    /// Redeem a refresh token (OIDC Core §12).
    RefreshToken {
        /// The refresh token.
        refresh_token: zeroize::Zeroizing<String>,
        /// A narrower set of the granted scopes, if asked (RFC 6749 §6).
        scope: Option<Vec<String>>,
    },
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AuthorizationCode { redirect_uri, .. } => f
                .debug_struct("AuthorizationCode")
                .field("redirect_uri", redirect_uri)
                .finish_non_exhaustive(),
            Self::RefreshToken { .. } => f.write_str("RefreshToken([redacted])"),
        }
    }
}

impl Grant {
    /// Reads the grant from the token request's form.
    pub fn parse(p: &Params) -> Result<Self, OAuthError> {
        match p.get("grant_type") {
            Some("authorization_code") => Ok(Self::AuthorizationCode {
                code: zeroize::Zeroizing::new(p.required("code", 128)?.to_owned()),
                redirect_uri: p.required("redirect_uri", MAX_REDIRECT_URI)?.to_owned(),
                code_verifier: p.bounded("code_verifier", 128)?.map(str::to_owned),
            }),
            Some("refresh_token") => Ok(Self::RefreshToken {
                refresh_token: zeroize::Zeroizing::new(
                    p.required("refresh_token", 128)?.to_owned(),
                ),
                scope: p.bounded("scope", crate::authorize::MAX_SCOPE)?.map(|s| {
                    s.split(' ')
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect()
                }),
            }),
            None => Err(invalid_request("grant_type is missing")),
            Some(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "only grant_type=authorization_code and refresh_token are supported",
            )),
        }
    }
}

/// The `sub` `client` receives for the user with `immutable_id`: the immutable id itself
/// for a public-subject client, else HMAC-SHA256 under the provider's pairwise key of the
/// client id and the immutable id (stable across renames, different at every client, and
/// not computable by a client without the key).
pub fn subject_for(client: &Client, immutable_id: &str, pairwise_key: &[u8]) -> String {
    match client.subject_type {
        SubjectType::Public => immutable_id.to_owned(),
        SubjectType::Pairwise => {
            let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(pairwise_key)
                .expect("HMAC takes any key length");
            mac.update(b"causeway oidc pairwise v1\0");
            mac.update(client.client_id.as_bytes());
            mac.update(b"\0");
            mac.update(immutable_id.as_bytes());
            crate::b64url(&mac.finalize().into_bytes())
        }
    }
}

/// `at_hash` of an access token (OIDC Core §3.1.3.6): the left half of its SHA-256.
pub fn at_hash(access_token: &str) -> String {
    let h = sha2::Sha256::digest(access_token.as_bytes());
    crate::b64url(&h[..16])
}

/// What an ID token says.
#[derive(Debug, Clone)]
pub struct IdTokenParams<'a> {
    /// Our issuer.
    pub issuer: &'a str,
    /// The audience.
    pub client_id: &'a str,
    /// The user's `sub` at this client.
    pub sub: &'a str,
    /// The request's nonce.
    pub nonce: Option<&'a str>,
    /// When the user typed their password (Unix seconds).
    pub auth_time: u64,
    /// Now (Unix seconds).
    pub now: u64,
    /// How long it is valid (seconds).
    pub lifetime: u64,
    /// The access token issued with it.
    pub access_token: &'a str,
    /// The session id at this client (for logout).
    pub sid: &'a str,
}

/// The ID token's claims.
pub fn id_token_claims(p: &IdTokenParams<'_>) -> Value {
    let mut c = json!({
        "iss": p.issuer,
        "sub": p.sub,
        "aud": p.client_id,
        "azp": p.client_id,
        "exp": p.now + p.lifetime,
        "iat": p.now,
        "auth_time": p.auth_time,
        "at_hash": at_hash(p.access_token),
        "amr": ["pwd"],
        "sid": p.sid,
    });
    if let Some(n) = p.nonce {
        c["nonce"] = json!(n);
    }
    c
}

/// What an access token says.
#[derive(Debug, Clone)]
pub struct AccessTokenParams<'a> {
    /// Our issuer.
    pub issuer: &'a str,
    /// The resource it is for (our UserInfo endpoint).
    pub audience: &'a str,
    /// The client it was issued to.
    pub client_id: &'a str,
    /// The user's `sub` at this client.
    pub sub: &'a str,
    /// Granted scopes.
    pub scopes: &'a [String],
    /// Its unique id.
    pub jti: &'a str,
    /// When the user typed their password (Unix seconds).
    pub auth_time: u64,
    /// Now (Unix seconds).
    pub now: u64,
    /// How long it is valid (seconds).
    pub lifetime: u64,
}

/// The access token's claims (RFC 9068 §2.2).
pub fn access_token_claims(p: &AccessTokenParams<'_>) -> Value {
    json!({
        "iss": p.issuer,
        "exp": p.now + p.lifetime,
        "aud": p.audience,
        "sub": p.sub,
        "client_id": p.client_id,
        "iat": p.now,
        "jti": p.jti,
        "scope": p.scopes.join(" "),
        "auth_time": p.auth_time,
    })
}

/// Who the user is, as the sign-in read them.
#[derive(Debug, Clone)]
pub struct UserClaims<'a> {
    /// UPN (`preferred_username`).
    pub upn: &'a str,
    /// Mail.
    pub mail: Option<&'a str>,
    /// Display name (`name`).
    pub display_name: Option<&'a str>,
    /// Group names.
    pub groups: &'a [String],
}

/// The UserInfo answer for `scopes` (OIDC Core §5.3.2, §5.4); `groups` with the groups
/// scope.
pub fn userinfo_claims(sub: &str, scopes: &[String], u: &UserClaims<'_>) -> Value {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut c = json!({ "sub": sub });
    if has("profile") {
        c["preferred_username"] = json!(u.upn);
        if let Some(n) = u.display_name {
            c["name"] = json!(n);
        }
    }
    if has("email") {
        if let Some(m) = u.mail {
            c["email"] = json!(m);
            // The directory's mail attribute is set by its administrators, not proven
            // by the user: not claimed as verified.
            c["email_verified"] = json!(false);
        }
    }
    if has("groups") {
        c["groups"] = json!(u.groups);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, subject_type: SubjectType) -> Client {
        Client {
            client_id: id.into(),
            name: None,
            redirect_uris: vec!["https://a.test/cb".into()],
            post_logout_redirect_uris: vec![],
            public: true,
            secret_sha256: None,
            subject_type,
            jwks: None,
            frontchannel_logout_uri: None,
        }
    }

    #[test]
    fn pairwise_subjects_differ_per_client_and_key_and_public_is_the_immutable_id() {
        let a = client("a", SubjectType::Pairwise);
        let b = client("b", SubjectType::Pairwise);
        let s = subject_for(&a, "id-1", b"k");
        assert_eq!(s, subject_for(&a, "id-1", b"k"), "stable");
        assert_ne!(s, subject_for(&b, "id-1", b"k"));
        assert_ne!(s, subject_for(&a, "id-2", b"k"));
        assert_ne!(s, subject_for(&a, "id-1", b"other key"));
        assert_eq!(
            subject_for(&client("c", SubjectType::Public), "id-1", b"k"),
            "id-1"
        );
    }

    /// OIDC Core's at_hash rule checked against a value computed independently
    /// (`printf %s tok | openssl dgst -sha256 -binary | head -c16 | base64url`).
    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        assert_eq!(at_hash("tok"), "GnZ0607njffhrEOak8P6jg");
    }

    #[test]
    fn only_the_code_grant_is_read_and_its_debug_hides_the_code() {
        let p = Params::parse(
            b"grant_type=authorization_code&code=SECRET&redirect_uri=https%3A%2F%2Fa.test%2Fcb",
        )
        .expect("ok");
        let g = Grant::parse(&p).expect("grant");
        assert!(!format!("{g:?}").contains("SECRET"));
        let p = Params::parse(b"grant_type=password&username=u&password=p").expect("ok");
        assert_eq!(
            Grant::parse(&p).expect_err("refused").code,
            ErrorCode::UnsupportedGrantType
        );
    }

    #[test]
    fn userinfo_gives_each_scope_its_claims_only() {
        let g = vec!["Staff".to_owned()];
        let u = UserClaims {
            upn: "u@x.test",
            mail: Some("u@x.test"),
            display_name: Some("U"),
            groups: &g,
        };
        let only = userinfo_claims("s", &["openid".into()], &u);
        assert_eq!(only, json!({"sub": "s"}));
        let all = userinfo_claims(
            "s",
            &[
                "openid".into(),
                "profile".into(),
                "email".into(),
                "groups".into(),
            ],
            &u,
        );
        assert_eq!(all["preferred_username"], "u@x.test");
        assert_eq!(all["email"], "u@x.test");
        assert_eq!(all["groups"], json!(["Staff"]));
    }
}
