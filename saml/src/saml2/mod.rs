//! SAML 2.0 identity provider: our metadata, service providers registered from theirs,
//! AuthnRequests and logout messages in over the HTTP-Redirect and HTTP-POST bindings, and
//! signed Responses (Response and Assertion both signed by default, RSA-SHA256, exclusive
//! c14n; the Assertion optionally encrypted to the SP's key) out.
//! Nothing here trusts a URL from a request: the ACS and logout URLs used are the ones in
//! the registered metadata. This root holds the protocol's names, ids and times.

pub mod binding;
pub mod encrypt;
pub mod messages;
pub mod metadata;

use std::time::{Duration, SystemTime};

pub use binding::{BindingError, Inbound};
pub use encrypt::EncryptionKey;
pub use messages::{
    AuthnRequest, LogoutRequest, RequestedAuthnContext, ResponseOptions, ResponseParams,
    SamlAttribute, SignParts,
};
pub use metadata::{
    idp_descriptor, idp_metadata, idp_metadata_with, signing_key_descriptors, xs_duration,
    Endpoint, IdpUrls, MetadataTerms, ServiceProvider, SpError,
};

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
/// Transient NameID: a fresh random value for each assertion.
pub const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
/// Every NameID format this IdP issues, in the order the metadata lists them.
pub const NAMEID_FORMATS: [&str; 4] = [
    NAMEID_PERSISTENT,
    NAMEID_TRANSIENT,
    NAMEID_EMAIL,
    NAMEID_UNSPECIFIED,
];
/// Attribute names that are URIs (also `urn:oid:` names).
pub const ATTRNAME_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";
/// Attribute names that are plain words.
pub const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";
/// Success status.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// Top-level status: the IdP could not do what was asked.
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Second-level status: some of the session's applications did not confirm the logout.
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
/// Second-level status: IsPassive was asked and the user would have had to sign in.
pub const STATUS_NO_PASSIVE: &str = "urn:oasis:names:tc:SAML:2.0:status:NoPassive";
/// Second-level status: the NameIDPolicy asked for cannot be met (format, SPNameQualifier).
pub const STATUS_INVALID_NAMEID_POLICY: &str =
    "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
/// Second-level status: the authentication context asked for cannot be given.
pub const STATUS_NO_AUTHN_CONTEXT: &str = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext";
/// Second-level status: the response binding asked for is not offered.
pub const STATUS_UNSUPPORTED_BINDING: &str =
    "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding";
/// Password-protected transport authentication context.
pub const AUTHN_PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";

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
