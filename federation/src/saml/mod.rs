//! SAML 2.0 identity provider: our metadata, service providers registered from theirs,
//! AuthnRequests and logout messages in over the HTTP-Redirect and HTTP-POST bindings, and
//! signed Responses (Response and Assertion both signed, RSA-SHA256, exclusive c14n) out.
//! Nothing here trusts a URL from a request: the ACS and logout URLs used are the ones in
//! the registered metadata.

pub mod binding;
pub mod messages;
pub mod sp;

use std::time::{Duration, SystemTime};

use crate::xml::{ns, El};

pub use binding::{BindingError, Inbound};
pub use messages::{AuthnRequest, LogoutRequest, ResponseParams, SamlAttribute};
pub use sp::{ServiceProvider, SpError};

/// The HTTP-Redirect binding.
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The HTTP-POST binding.
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// Persistent NameID (the immutable id).
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
/// Email address NameID.
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
/// Unspecified NameID (we send the UPN).
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
/// Success status.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// Top-level status: the IdP could not do what was asked.
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Second-level status: some of the session's applications did not confirm the logout.
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
/// Second-level status: IsPassive was asked and the user would have had to sign in.
pub const STATUS_NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
/// Password-protected transport authentication context.
pub const AUTHN_PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

/// Our own URLs as an identity provider.
#[derive(Debug, Clone)]
pub struct IdpUrls {
    /// Entity id (the metadata URL).
    pub entity_id: String,
    /// Single sign-on service.
    pub sso: String,
    /// Single logout service.
    pub slo: String,
}

impl IdpUrls {
    /// The URLs under `public_url` (no trailing slash).
    pub fn under(public_url: &str) -> Self {
        let b = public_url.trim_end_matches('/');
        Self {
            entity_id: format!("{b}/saml/metadata"),
            sso: format!("{b}/saml/sso"),
            slo: format!("{b}/saml/slo"),
        }
    }
}

/// A fresh message id: `_` and 128 random bits in hex (an xs:ID must not start with a digit).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random generator");
    let mut s = String::with_capacity(33);
    s.push('_');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// xs:dateTime in UTC, whole seconds: `2026-11-25T10:00:00Z`.
pub fn fmt_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dt = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses an xs:dateTime with a time zone.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let dt = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let secs = dt.unix_timestamp();
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// `KeyDescriptor use="signing"` elements for certificates (base64 DER).
pub fn signing_key_descriptors(certs_b64: &[String]) -> impl Iterator<Item = El> + '_ {
    certs_b64.iter().map(|c| {
        El::new("md", ns::MD, "KeyDescriptor")
            .attr("use", "signing")
            .child(
                El::new("ds", ns::DS, "KeyInfo").child(
                    El::new("ds", ns::DS, "X509Data")
                        .child(El::new("ds", ns::DS, "X509Certificate").text(c.clone())),
                ),
            )
    })
}

/// Our `IDPSSODescriptor`: every published token-signing certificate, both bindings for
/// sign-on and logout, and the NameID formats we issue. Both metadata documents carry it.
pub fn idp_descriptor(urls: &IdpUrls, certs_b64: &[String]) -> El {
    let endpoints = |local: &'static str, location: &str| {
        [BINDING_REDIRECT, BINDING_POST].map(|b| {
            El::new("md", ns::MD, local)
                .attr("Binding", b)
                .attr("Location", location.to_owned())
        })
    };
    El::new("md", ns::MD, "IDPSSODescriptor")
        .attr("WantAuthnRequestsSigned", "false")
        .attr(
            "protocolSupportEnumeration",
            "urn:oasis:names:tc:SAML:2.0:protocol",
        )
        .children(signing_key_descriptors(certs_b64))
        .children(endpoints("SingleLogoutService", &urls.slo))
        .children(
            [NAMEID_PERSISTENT, NAMEID_EMAIL, NAMEID_UNSPECIFIED]
                .map(|f| El::new("md", ns::MD, "NameIDFormat").text(f)),
        )
        .children(endpoints("SingleSignOnService", &urls.sso))
}

/// Our IdP metadata (an `EntityDescriptor` with [`idp_descriptor`]).
pub fn idp_metadata(urls: &IdpUrls, certs_b64: &[String], valid_until: SystemTime) -> String {
    El::new("md", ns::MD, "EntityDescriptor")
        .attr("entityID", urls.entity_id.clone())
        .attr("validUntil", fmt_time(valid_until))
        .attr("cacheDuration", "PT1H")
        .child(idp_descriptor(urls, certs_b64))
        .to_document()
}

#[cfg(test)]
pub(crate) fn build_authn_request_for_tests() -> (String, String) {
    messages::build_authn_request(
        "https://sp.example/meta",
        "https://idp/saml/sso",
        "https://sp.example/acs",
        SystemTime::now(),
    )
}
