//! WS-Federation passive requestor profile: the `RequestSecurityTokenResponse` carrying a
//! signed SAML 1.1 assertion (the token Microsoft 365 takes: NameIdentifier = immutable
//! id, the UPN and ImmutableID claims), and `FederationMetadata.xml`.
//!
//! Relying-party pitfalls handled by construction: the writer emits no whitespace, so
//! nothing separates `RequestedSecurityToken` from the assertion; a multi-valued claim is
//! one attribute with several values; `wctx` is echoed unchanged by the caller. [`query`]
//! reads the passive request's query string.

pub mod query;

use std::time::{Duration, SystemTime};

use crate::saml2::{
    fmt_time, idp_descriptor, new_id, signing_key_descriptors, xs_duration, IdpUrls, MetadataTerms,
};
use crate::xml::{ns, El, SigningKey};

/// The SAML 1.1 token type.
pub const SAML11_TOKEN_TYPE: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
/// Claim namespace of UPN and group claims.
pub const CLAIMS_NS: &str = "http://schemas.xmlsoap.org/claims";
/// Claim namespace of ImmutableID.
pub const LIVEID_NS: &str = "http://schemas.microsoft.com/LiveID/Federation/2008/05";

/// What goes into a token.
#[derive(Debug, Clone)]
pub struct TokenParams<'a> {
    /// Our issuer name (the entity id).
    pub issuer: &'a str,
    /// The realm (audience).
    pub realm: &'a str,
    /// Immutable id (NameIdentifier and ImmutableID claim).
    pub immutable_id: &'a str,
    /// UPN claim.
    pub upn: &'a str,
    /// Mail, if known.
    pub mail: Option<&'a str>,
    /// Display name, if known.
    pub display_name: Option<&'a str>,
    /// Groups (one multi-valued claim).
    pub groups: &'a [String],
    /// When the user authenticated.
    pub authn_instant: SystemTime,
    /// Now.
    pub now: SystemTime,
    /// Token lifetime.
    pub validity: Duration,
}

fn subject(immutable_id: &str) -> El {
    El::new("saml", ns::SAML1, "Subject")
        .child(
            El::new("saml", ns::SAML1, "NameIdentifier")
                .attr(
                    "Format",
                    "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
                )
                .text(immutable_id),
        )
        .child(
            El::new("saml", ns::SAML1, "SubjectConfirmation").child(
                El::new("saml", ns::SAML1, "ConfirmationMethod")
                    .text("urn:oasis:names:tc:SAML:1.0:cm:bearer"),
            ),
        )
}

fn claim(name: &'static str, namespace: &'static str, values: &[&str]) -> El {
    let mut a = El::new("saml", ns::SAML1, "Attribute")
        .attr("AttributeName", name)
        .attr("AttributeNamespace", namespace);
    for v in values {
        a = a.child(El::new("saml", ns::SAML1, "AttributeValue").text(*v));
    }
    a
}

/// The signed SAML 1.1 assertion, alone (what `xmlsec1` checks).
pub fn build_assertion(p: &TokenParams<'_>, key: &SigningKey) -> El {
    let id = new_id();
    let nb = fmt_time(p.now.checked_sub(Duration::from_secs(60)).unwrap_or(p.now));
    let noa = fmt_time(p.now + p.validity);
    let mut stmt = El::new("saml", ns::SAML1, "AttributeStatement")
        .child(subject(p.immutable_id))
        .child(claim("UPN", CLAIMS_NS, &[p.upn]))
        .child(claim("ImmutableID", LIVEID_NS, &[p.immutable_id]));
    if let Some(m) = p.mail {
        stmt = stmt.child(claim(
            "emailaddress",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims",
            &[m],
        ));
    }
    if let Some(d) = p.display_name {
        stmt = stmt.child(claim(
            "displayname",
            "http://schemas.microsoft.com/identity/claims",
            &[d],
        ));
    }
    if !p.groups.is_empty() {
        let g: Vec<&str> = p.groups.iter().map(String::as_str).collect();
        stmt = stmt.child(claim("Group", CLAIMS_NS, &g));
    }
    let mut a = El::new("saml", ns::SAML1, "Assertion")
        .attr("MajorVersion", "1")
        .attr("MinorVersion", "1")
        .attr("AssertionID", id.clone())
        .attr("Issuer", p.issuer)
        .attr("IssueInstant", fmt_time(p.now))
        .child(
            El::new("saml", ns::SAML1, "Conditions")
                .attr("NotBefore", nb)
                .attr("NotOnOrAfter", noa)
                .child(
                    El::new("saml", ns::SAML1, "AudienceRestrictionCondition")
                        .child(El::new("saml", ns::SAML1, "Audience").text(p.realm)),
                ),
        )
        .child(stmt)
        .child(
            El::new("saml", ns::SAML1, "AuthenticationStatement")
                .attr(
                    "AuthenticationMethod",
                    "urn:oasis:names:tc:SAML:1.0:am:password",
                )
                .attr("AuthenticationInstant", fmt_time(p.authn_instant))
                .child(subject(p.immutable_id)),
        );
    // SAML 1.1 puts the signature last.
    key.sign(&mut a, &id, usize::MAX);
    a
}

/// The `RequestSecurityTokenResponse` posted as `wresult`.
pub fn build_rstr(p: &TokenParams<'_>, key: &SigningKey) -> String {
    let assertion = build_assertion(p, key);
    El::new("t", ns::WST, "RequestSecurityTokenResponse")
        .child(
            El::new("t", ns::WST, "Lifetime")
                .child(El::new("wsu", ns::WSU, "Created").text(fmt_time(p.now)))
                .child(El::new("wsu", ns::WSU, "Expires").text(fmt_time(p.now + p.validity))),
        )
        .child(
            El::new("wsp", ns::WSP, "AppliesTo").child(
                El::new("wsa", ns::WSA, "EndpointReference")
                    .child(El::new("wsa", ns::WSA, "Address").text(p.realm)),
            ),
        )
        .child(El::new("t", ns::WST, "RequestedSecurityToken").child(assertion))
        .child(El::new("t", ns::WST, "TokenType").text(SAML11_TOKEN_TYPE))
        .child(
            El::new("t", ns::WST, "RequestType")
                .text("http://schemas.xmlsoap.org/ws/2005/02/trust/Issue"),
        )
        .child(
            El::new("t", ns::WST, "KeyType")
                .text("http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey"),
        )
        .to_canonical()
}

/// `FederationMetadata.xml`: a WS-Federation security token service role and a SAML 2.0
/// IdP role, both with every published signing certificate.
pub fn federation_metadata(
    urls: &IdpUrls,
    wsfed_url: &str,
    certs_b64: &[String],
    valid_until: SystemTime,
) -> String {
    federation_metadata_with(
        urls,
        wsfed_url,
        certs_b64,
        &MetadataTerms {
            valid_until,
            cache_duration: Duration::from_secs(3600),
            sign_with: None,
        },
    )
}

/// [`federation_metadata`] on `terms`: `validUntil`, `cacheDuration`, and an enveloped
/// signature as the EntityDescriptor's first child when a key is given (AD FS signs its
/// FederationMetadata the same way).
pub fn federation_metadata_with(
    urls: &IdpUrls,
    wsfed_url: &str,
    certs_b64: &[String],
    terms: &MetadataTerms<'_>,
) -> String {
    let endpoint = |local: &'static str| {
        El::new("fed", ns::FED, local).child(
            El::new("wsa", ns::WSA, "EndpointReference")
                .child(El::new("wsa", ns::WSA, "Address").text(wsfed_url)),
        )
    };
    let sts = El::new("md", ns::MD, "RoleDescriptor")
        .declare("fed", ns::FED)
        .attr_ns("xsi", ns::XSI, "type", "fed:SecurityTokenServiceType")
        .attr(
            "protocolSupportEnumeration",
            "http://docs.oasis-open.org/wsfed/federation/200706",
        )
        .children(signing_key_descriptors(certs_b64))
        .child(
            El::new("fed", ns::FED, "TokenTypesOffered")
                .child(El::new("fed", ns::FED, "TokenType").attr("Uri", SAML11_TOKEN_TYPE)),
        )
        .child(endpoint("SecurityTokenServiceEndpoint"))
        .child(endpoint("PassiveRequestorEndpoint"));
    let id = new_id();
    let mut ed = El::new("md", ns::MD, "EntityDescriptor")
        .attr("entityID", urls.entity_id.clone())
        .attr("ID", id.clone())
        .attr("validUntil", fmt_time(terms.valid_until))
        .attr("cacheDuration", xs_duration(terms.cache_duration))
        .child(sts)
        .child(idp_descriptor(urls, certs_b64));
    if let Some(k) = terms.sign_with {
        k.sign(&mut ed, &id, 0);
    }
    ed.to_document()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse, test_key, verify_enveloped};

    #[test]
    fn the_token_verifies_and_has_no_whitespace_before_the_assertion() {
        let (key, vk) = test_key();
        let groups = vec!["Staff".to_string(), "VPN users".to_string()];
        let now = SystemTime::now();
        let p = TokenParams {
            issuer: "https://idp/saml/metadata",
            realm: "urn:federation:MicrosoftOnline",
            immutable_id: "AAECAwQFBgcICQoLDA0ODw==",
            upn: "alice@example.com",
            mail: None,
            display_name: Some("Alice"),
            groups: &groups,
            authn_instant: now,
            now,
            validity: Duration::from_secs(3600),
        };
        let rstr = build_rstr(&p, &key);
        assert!(rstr.contains("<t:RequestedSecurityToken><saml:Assertion "));
        let root = parse(&rstr).expect("parses");
        let a = root
            .child(ns::WST, "RequestedSecurityToken")
            .and_then(|t| t.child(ns::SAML1, "Assertion"))
            .expect("assertion");
        assert_eq!(verify_enveloped(a, "AssertionID", &[vk]), Ok(()));
        let group_attrs: Vec<_> = a
            .child(ns::SAML1, "AttributeStatement")
            .expect("statement")
            .children_named(ns::SAML1, "Attribute")
            .filter(|x| x.attr("AttributeName") == Some("Group"))
            .collect();
        assert_eq!(group_attrs.len(), 1);
        assert_eq!(group_attrs[0].elements().count(), 2);
    }

    #[test]
    fn signed_federation_metadata_verifies_although_its_role_declares_a_prefix_for_xsi_type() {
        let (key, vk) = test_key();
        let urls = IdpUrls::under("https://idp.example");
        let certs = vec![key.cert_base64().to_owned()];
        let terms = MetadataTerms {
            valid_until: SystemTime::now() + Duration::from_secs(86_400),
            cache_duration: Duration::from_secs(600),
            sign_with: Some(&key),
        };
        let xml = federation_metadata_with(&urls, "https://idp.example/wsfed", &certs, &terms);
        // The document declares fed: where xsi:type names it; the signature covers the
        // exclusive canonical form, which does not.
        assert!(xml.contains("xmlns:fed=") && xml.contains("cacheDuration=\"PT600S\""));
        let root = parse(&xml).expect("parses");
        verify_enveloped(&root, "ID", std::slice::from_ref(&vk)).expect("verifies");
        let changed = parse(&xml.replace("/wsfed<", "/evil<")).expect("parses");
        assert!(verify_enveloped(&changed, "ID", std::slice::from_ref(&vk)).is_err());
    }
}
