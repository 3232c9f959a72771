//! The provider's discovery document (OpenID Connect Discovery 1.0 §3) and its endpoint
//! addresses. It must say only what the provider does: no `request` objects, no
//! `private_key_jwt`, RS256 only.

use serde_json::json;

use crate::authorize::SCOPES;

/// The provider's addresses under its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer (the public URL, no trailing slash).
    pub issuer: String,
    /// `/oidc/authorize`.
    pub authorize: String,
    /// `/oidc/token`.
    pub token: String,
    /// `/oidc/userinfo`.
    pub userinfo: String,
    /// `/oidc/jwks`.
    pub jwks: String,
    /// `/oidc/logout`.
    pub end_session: String,
    /// `/oidc/revoke` (RFC 7009).
    pub revocation: String,
    /// `/oidc/introspect` (RFC 7662).
    pub introspection: String,
}

impl Endpoints {
    /// The addresses under `issuer`.
    pub fn under(issuer: &str) -> Self {
        let i = issuer.trim_end_matches('/');
        Self {
            issuer: i.to_owned(),
            authorize: format!("{i}/oidc/authorize"),
            token: format!("{i}/oidc/token"),
            userinfo: format!("{i}/oidc/userinfo"),
            jwks: format!("{i}/oidc/jwks"),
            end_session: format!("{i}/oidc/logout"),
            revocation: format!("{i}/oidc/revoke"),
            introspection: format!("{i}/oidc/introspect"),
        }
    }

    /// `/.well-known/openid-configuration`.
    pub fn document(&self) -> String {
        json!({
            "issuer": self.issuer,
            "authorization_endpoint": self.authorize,
            "token_endpoint": self.token,
            "userinfo_endpoint": self.userinfo,
            "jwks_uri": self.jwks,
            "end_session_endpoint": self.end_session,
            "revocation_endpoint": self.revocation,
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint": self.introspection,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["pairwise", "public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr", "sid", "azp", "preferred_username", "name", "email", "email_verified", "groups"],
            "prompt_values_supported": ["none", "login"],
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "claims_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "frontchannel_logout_supported": true,
            "frontchannel_logout_session_supported": true,
        })
        .to_string()
    }
}
