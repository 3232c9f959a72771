//! SAML 2.0 metadata both ways: ours written out (the IdP's `EntityDescriptor`, also
//! embedded in the WS-Fed document) and theirs read in (service providers registered from
//! their metadata, whose URLs are the only ones a Response or logout message is sent to).

use std::time::{Duration, SystemTime};

use super::encrypt::EncryptionKey;
use super::{fmt_time, new_id, parse_time, BINDING_POST, BINDING_REDIRECT, NAMEID_FORMATS};
use crate::url::is_safe_http_url;
use crate::xml::{ns, parse, El, Node, SigningKey, VerifiedKey, XmlError, XmlSigError};

/// Why SP metadata or a Response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpError {
    /// Not XML we accept.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The signature is missing or wrong.
    #[error(transparent)]
    Signature(#[from] XmlSigError),
    /// Something required is missing or wrong.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> SpError {
    SpError::Invalid(s.into())
}

/// An endpoint of the SP (ACS or logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Binding URI.
    pub binding: String,
    /// Location.
    pub location: String,
    /// ResponseLocation (logout).
    pub response_location: Option<String>,
    /// index (ACS).
    pub index: Option<u16>,
    /// isDefault (ACS).
    pub is_default: bool,
}

/// A registered SAML service provider.
#[derive(Debug, Clone)]
pub struct ServiceProvider {
    /// entityID.
    pub entity_id: String,
    /// AssertionConsumerService endpoints (HTTP-POST ones are used).
    pub acs: Vec<Endpoint>,
    /// SingleLogoutService endpoints.
    pub slo: Vec<Endpoint>,
    /// Signing certificates (base64 DER).
    pub signing_certs: Vec<String>,
    /// Encryption certificates (base64 DER): `KeyDescriptor use="encryption"`, or one
    /// without `use` (which serves both).
    pub encryption_certs: Vec<String>,
    /// AuthnRequestsSigned: its requests must be signed.
    pub authn_requests_signed: bool,
    /// WantAssertionsSigned: it accepts only signed Assertions.
    pub want_assertions_signed: bool,
    /// The earliest `validUntil` of the document and its EntityDescriptor, if any:
    /// after it the metadata must not be relied on (fetch a fresh copy).
    pub valid_until: Option<SystemTime>,
    /// Its NameIDFormats, in preference order.
    pub name_id_formats: Vec<String>,
}

fn check_url(what: &str, u: &str) -> Result<(), SpError> {
    if is_safe_http_url(u) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {:?} is not an absolute http(s) URL",
            u.chars().take(120).collect::<String>()
        )))
    }
}

impl ServiceProvider {
    /// Reads an SP's metadata: an `EntityDescriptor` (or an `EntitiesDescriptor` holding
    /// exactly one SP) with an `SPSSODescriptor`.
    pub fn from_metadata(xml: &str) -> Result<Self, SpError> {
        let root = parse(xml)?;
        let ed = if root.is(ns::MD, "EntityDescriptor") {
            &root
        } else if root.is(ns::MD, "EntitiesDescriptor") {
            let mut sps = root
                .children_named(ns::MD, "EntityDescriptor")
                .filter(|e| e.child(ns::MD, "SPSSODescriptor").is_some());
            let one = sps
                .next()
                .ok_or_else(|| invalid("the metadata describes no service provider"))?;
            if sps.next().is_some() {
                return Err(invalid(
                    "the metadata describes several service providers; register them one by one",
                ));
            }
            one
        } else {
            return Err(invalid(
                "not SAML 2.0 metadata (expected md:EntityDescriptor)",
            ));
        };
        // A validUntil without a time zone (xs:dateTime allows it) is not comparable
        // with our clock and is ignored rather than refused.
        let valid_until = [&root, ed]
            .into_iter()
            .filter_map(|el| el.attr("validUntil").and_then(parse_time))
            .min();
        let entity_id = ed
            .attr("entityID")
            .filter(|e| !e.is_empty() && e.len() <= 1024)
            .ok_or_else(|| invalid("the EntityDescriptor has no entityID"))?
            .to_owned();
        let sp = ed.child(ns::MD, "SPSSODescriptor").ok_or_else(|| {
            invalid(format!(
                "{entity_id} has no SPSSODescriptor: it is not a service provider"
            ))
        })?;
        let endpoint = |e: &Node, what: &str| -> Result<Endpoint, SpError> {
            let location = e
                .attr("Location")
                .ok_or_else(|| invalid(format!("a {what} has no Location")))?
                .to_owned();
            check_url(what, &location)?;
            let response_location = e.attr("ResponseLocation").map(str::to_owned);
            if let Some(r) = &response_location {
                check_url(what, r)?;
            }
            Ok(Endpoint {
                binding: e.attr("Binding").unwrap_or_default().to_owned(),
                location,
                response_location,
                index: e.attr("index").and_then(|i| i.parse().ok()),
                is_default: matches!(e.attr("isDefault"), Some("true" | "1")),
            })
        };
        let acs = sp
            .children_named(ns::MD, "AssertionConsumerService")
            .map(|e| endpoint(e, "AssertionConsumerService"))
            .collect::<Result<Vec<_>, _>>()?;
        if !acs.iter().any(|a| a.binding == BINDING_POST) {
            return Err(invalid(format!(
                "{entity_id} has no AssertionConsumerService with the HTTP-POST binding"
            )));
        }
        let slo = sp
            .children_named(ns::MD, "SingleLogoutService")
            .map(|e| endpoint(e, "SingleLogoutService"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut signing_certs = Vec::new();
        let mut encryption_certs = Vec::new();
        for kd in sp.children_named(ns::MD, "KeyDescriptor") {
            let usage = kd.attr("use");
            for c in kd
                .child(ns::DS, "KeyInfo")
                .into_iter()
                .flat_map(|k| k.children_named(ns::DS, "X509Data"))
                .flat_map(|d| d.children_named(ns::DS, "X509Certificate"))
            {
                let b64: String = c
                    .text()
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                // A key for both uses that cannot encrypt (not RSA) is still a signing
                // key; one marked for encryption only must be usable for it.
                match (usage, EncryptionKey::from_cert_base64(&b64)) {
                    (Some("signing"), _) => {}
                    (_, Ok(_)) => encryption_certs.push(b64.clone()),
                    (Some("encryption"), Err(e)) => {
                        return Err(invalid(format!(
                            "{entity_id}: an encryption certificate is unusable: {e}"
                        )))
                    }
                    (_, Err(_)) => {}
                }
                if usage == Some("encryption") {
                    continue;
                }
                VerifiedKey::from_cert_base64(&b64).map_err(|e| {
                    invalid(format!(
                        "{entity_id}: a signing certificate is unusable: {e}"
                    ))
                })?;
                signing_certs.push(b64);
            }
        }
        let authn_requests_signed = matches!(sp.attr("AuthnRequestsSigned"), Some("true" | "1"));
        if authn_requests_signed && signing_certs.is_empty() {
            return Err(invalid(format!(
                "{entity_id} says its requests are signed but its metadata has no signing certificate"
            )));
        }
        Ok(Self {
            entity_id,
            acs,
            slo,
            signing_certs,
            encryption_certs,
            authn_requests_signed,
            want_assertions_signed: matches!(sp.attr("WantAssertionsSigned"), Some("true" | "1")),
            valid_until,
            name_id_formats: sp
                .children_named(ns::MD, "NameIDFormat")
                .map(Node::text)
                .collect(),
        })
    }

    /// The keys that may sign this SP's messages.
    pub fn keys(&self) -> Vec<VerifiedKey> {
        self.signing_certs
            .iter()
            .filter_map(|c| VerifiedKey::from_cert_base64(c).ok())
            .collect()
    }

    /// The ACS URL for a request: the one it names if registered (exact match), the one
    /// with the index it names, or the default. `Err` names the refused URL.
    pub fn acs_for(&self, url: Option<&str>, index: Option<u16>) -> Result<&str, String> {
        let post = || self.acs.iter().filter(|a| a.binding == BINDING_POST);
        if let Some(u) = url {
            return post()
                .find(|a| a.location == u)
                .map(|a| a.location.as_str())
                .ok_or_else(|| u.to_owned());
        }
        if let Some(i) = index {
            return post()
                .find(|a| a.index == Some(i))
                .map(|a| a.location.as_str())
                .ok_or_else(|| format!("index {i}"));
        }
        post()
            .find(|a| a.is_default)
            .or_else(|| post().next())
            .map(|a| a.location.as_str())
            .ok_or_else(|| "no HTTP-POST endpoint".to_owned())
    }

    /// The key to encrypt assertions to: the first encryption certificate, if any.
    pub fn encryption_key(&self) -> Option<EncryptionKey> {
        self.encryption_certs
            .iter()
            .find_map(|c| EncryptionKey::from_cert_base64(c).ok())
    }

    /// Where logout messages to this SP go: (binding, URL for requests, URL for responses).
    pub fn logout_endpoint(&self) -> Option<(&str, &str, &str)> {
        let pick = |b: &str| self.slo.iter().find(|e| e.binding == b);
        pick(BINDING_REDIRECT)
            .or_else(|| pick(BINDING_POST))
            .map(|e| {
                (
                    e.binding.as_str(),
                    e.location.as_str(),
                    e.response_location.as_deref().unwrap_or(&e.location),
                )
            })
    }
}

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
        .children(NAMEID_FORMATS.map(|f| El::new("md", ns::MD, "NameIDFormat").text(f)))
        .children(endpoints("SingleSignOnService", &urls.sso))
}

/// How long a relying party may use our metadata, and whether it is signed.
#[derive(Debug, Clone, Copy)]
pub struct MetadataTerms<'a> {
    /// `validUntil`: after this the document must not be used.
    pub valid_until: SystemTime,
    /// `cacheDuration`: how often a relying party should fetch it again.
    pub cache_duration: Duration,
    /// The key that signs the document (an enveloped signature over the
    /// EntityDescriptor), or none for an unsigned document.
    pub sign_with: Option<&'a SigningKey>,
}

/// Our IdP metadata (an `EntityDescriptor` with [`idp_descriptor`]), valid until
/// `valid_until`, unsigned, to be fetched again every hour.
pub fn idp_metadata(urls: &IdpUrls, certs_b64: &[String], valid_until: SystemTime) -> String {
    idp_metadata_with(
        urls,
        certs_b64,
        &MetadataTerms {
            valid_until,
            cache_duration: Duration::from_secs(3600),
            sign_with: None,
        },
    )
}

/// Our IdP metadata on `terms`. A signed document carries an `ID` (what its signature
/// refers to) and the signature as the EntityDescriptor's first child, as the schema
/// orders it.
pub fn idp_metadata_with(
    urls: &IdpUrls,
    certs_b64: &[String],
    terms: &MetadataTerms<'_>,
) -> String {
    let id = new_id();
    let mut ed = El::new("md", ns::MD, "EntityDescriptor")
        .attr("entityID", urls.entity_id.clone())
        .attr("validUntil", fmt_time(terms.valid_until))
        .attr("cacheDuration", xs_duration(terms.cache_duration))
        .attr_opt("ID", terms.sign_with.map(|_| id.clone()))
        .child(idp_descriptor(urls, certs_b64));
    if let Some(k) = terms.sign_with {
        k.sign(&mut ed, &id, 0);
    }
    ed.to_document()
}

/// An xs:duration of whole seconds: `PT3600S`.
pub fn xs_duration(d: Duration) -> String {
    format!("PT{}S", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP_META: &str = r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example/meta">
  <md:SPSSODescriptor AuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://sp.example/slo"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs" index="1"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs2" index="2" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"#;

    #[test]
    fn sp_metadata_is_read_and_only_registered_acs_urls_are_used() {
        let sp = ServiceProvider::from_metadata(SP_META).expect("reads");
        assert_eq!(sp.entity_id, "https://sp.example/meta");
        assert_eq!(sp.acs_for(None, None), Ok("https://sp.example/acs2"));
        assert_eq!(sp.acs_for(None, Some(1)), Ok("https://sp.example/acs"));
        assert_eq!(
            sp.acs_for(Some("https://sp.example/acs"), None),
            Ok("https://sp.example/acs")
        );
        assert!(sp.acs_for(Some("https://evil.example/acs"), None).is_err());
        assert!(sp.acs_for(Some("https://sp.example/acs/"), None).is_err());
        assert_eq!(
            sp.logout_endpoint(),
            Some((
                BINDING_REDIRECT,
                "https://sp.example/slo",
                "https://sp.example/slo"
            ))
        );
        assert!(ServiceProvider::from_metadata("<x/>").is_err());
        assert!(ServiceProvider::from_metadata(
            &SP_META.replace("https://sp.example/acs2", "javascript:alert(1)")
        )
        .is_err());
        assert!(ServiceProvider::from_metadata(&SP_META.replace(
            "AuthnRequestsSigned=\"false\"",
            "AuthnRequestsSigned=\"true\""
        ))
        .is_err());
    }

    #[test]
    fn signed_metadata_verifies_carries_its_terms_and_unsigned_has_no_id() {
        use crate::xml::{test_key, verify_enveloped};
        let (key, vk) = test_key();
        let urls = IdpUrls::under("https://idp.example");
        let certs = vec![key.cert_base64().to_owned()];
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let terms = MetadataTerms {
            valid_until: t0,
            cache_duration: Duration::from_secs(7200),
            sign_with: Some(&key),
        };
        let xml = idp_metadata_with(&urls, &certs, &terms);
        let root = parse(&xml).expect("parses");
        verify_enveloped(&root, "ID", std::slice::from_ref(&vk)).expect("signed");
        assert_eq!(root.attr("cacheDuration"), Some("PT7200S"));
        assert_eq!(root.attr("validUntil"), Some(fmt_time(t0).as_str()));
        // The signature comes first, as the schema orders it.
        assert!(root
            .elements()
            .next()
            .is_some_and(|e| e.is(ns::DS, "Signature")));
        let changed = parse(&xml.replace("/saml/sso", "/evil/sso")).expect("parses");
        assert!(verify_enveloped(&changed, "ID", std::slice::from_ref(&vk)).is_err());
        let plain = idp_metadata(&urls, &certs, t0);
        assert!(
            !plain.contains(" ID=") && !plain.contains("Signature"),
            "{plain}"
        );
        assert!(plain.contains("cacheDuration=\"PT3600S\""));
        for f in NAMEID_FORMATS {
            assert!(plain.contains(f), "{f} offered");
        }
    }

    #[test]
    fn encryption_keys_are_read_from_encryption_and_dual_use_key_descriptors() {
        use crate::xml::test_key;
        let (key, _) = test_key();
        let kd = |usage: &str| {
            format!(
                "<md:KeyDescriptor {usage}><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
                key.cert_base64()
            )
        };
        let with = |usage: &str| {
            SP_META.replace(
                "<md:SingleLogoutService",
                &format!("{}<md:SingleLogoutService", kd(usage)),
            )
        };
        let sp = ServiceProvider::from_metadata(&with("use=\"encryption\"")).expect("reads");
        assert_eq!((sp.encryption_certs.len(), sp.signing_certs.len()), (1, 0));
        assert!(sp.encryption_key().is_some());
        let sp = ServiceProvider::from_metadata(&with("")).expect("reads");
        assert_eq!((sp.encryption_certs.len(), sp.signing_certs.len()), (1, 1));
        let sp = ServiceProvider::from_metadata(&with("use=\"signing\"")).expect("reads");
        assert_eq!((sp.encryption_certs.len(), sp.signing_certs.len()), (0, 1));
        assert!(sp.encryption_key().is_none());
        let broken = with("use=\"encryption\"").replace(key.cert_base64(), "bm90IGEgY2VydA==");
        assert!(ServiceProvider::from_metadata(&broken).is_err());
    }
}
