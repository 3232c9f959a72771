//! Service providers, registered from their SAML metadata, and the SP side of a sign-in
//! (checking a Response as a relying party does), which the demo application, the
//! benchmark and the tests use.

use std::time::{Duration, SystemTime};

use super::{parse_time, BINDING_POST, BINDING_REDIRECT, STATUS_SUCCESS};
use crate::xml::{
    ns, parse, parse_message, verify_enveloped, Node, VerifiedKey, XmlError, XmlSigError,
};

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
    /// AuthnRequestsSigned: its requests must be signed.
    pub authn_requests_signed: bool,
    /// Its NameIDFormats, in preference order.
    pub name_id_formats: Vec<String>,
}

/// Whether `u` is an absolute http(s) URL of at most 2048 characters with nothing that
/// could break out of an HTML attribute or a header (whitespace, controls, `"`, `<`, `>`).
/// Every URL a browser may be sent to passes this when it is registered.
pub fn is_safe_http_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2048
        && !u
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
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
        for kd in sp.children_named(ns::MD, "KeyDescriptor") {
            if kd.attr("use").is_some_and(|u| u != "signing") {
                continue;
            }
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
            authn_requests_signed,
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

/// What a relying party takes from a valid Response.
#[derive(Debug, Clone)]
pub struct ValidatedAssertion {
    /// The IdP.
    pub issuer: String,
    /// NameID value.
    pub name_id: String,
    /// NameID format.
    pub name_id_format: String,
    /// SessionIndex.
    pub session_index: Option<String>,
    /// Attributes: name → values.
    pub attributes: Vec<(String, Vec<String>)>,
}

/// Checks a Response as a careful SP does: both signatures (Response and Assertion) by a
/// trusted key, Destination and Recipient, InResponseTo, Audience, and the time window.
pub fn validate_response(
    xml: &str,
    idp_keys: &[VerifiedKey],
    audience: &str,
    acs_url: &str,
    in_response_to: Option<&str>,
    now: SystemTime,
) -> Result<ValidatedAssertion, SpError> {
    let root = parse_message(xml)?;
    if !root.is(ns::SAMLP, "Response") {
        return Err(invalid("not a SAML 2.0 Response"));
    }
    verify_enveloped(&root, "ID", idp_keys)?;
    let code = root
        .child(ns::SAMLP, "Status")
        .and_then(|s| s.child(ns::SAMLP, "StatusCode"));
    let status = code.and_then(|c| c.attr("Value")).unwrap_or("");
    if status != STATUS_SUCCESS {
        let second = code
            .and_then(|c| c.child(ns::SAMLP, "StatusCode"))
            .and_then(|c| c.attr("Value"))
            .map_or(String::new(), |v| format!(" / {v}"));
        return Err(invalid(format!(
            "the IdP answered with status {status}{second}"
        )));
    }
    if root.attr("Destination") != Some(acs_url) {
        return Err(invalid("the Response's Destination is not this ACS"));
    }
    if root.attr("InResponseTo") != in_response_to {
        return Err(invalid("the Response does not answer our request"));
    }
    let mut assertions = root.children_named(ns::SAML, "Assertion");
    let a = assertions
        .next()
        .ok_or_else(|| invalid("the Response carries no Assertion"))?;
    if assertions.next().is_some() {
        return Err(invalid("the Response carries more than one Assertion"));
    }
    verify_enveloped(a, "ID", idp_keys)?;
    let skew = Duration::from_secs(120);
    let cond = a
        .child(ns::SAML, "Conditions")
        .ok_or_else(|| invalid("the Assertion has no Conditions"))?;
    let nb = cond.attr("NotBefore").and_then(parse_time);
    let noa = cond.attr("NotOnOrAfter").and_then(parse_time);
    match (nb, noa) {
        (Some(nb), Some(noa)) if nb <= now + skew && now < noa + skew => {}
        _ => return Err(invalid("the Assertion is not valid now")),
    }
    let audiences: Vec<String> = cond
        .children_named(ns::SAML, "AudienceRestriction")
        .flat_map(|r| r.children_named(ns::SAML, "Audience"))
        .map(Node::text)
        .collect();
    if !audiences.iter().any(|x| x == audience) {
        return Err(invalid("the Assertion is not for this audience"));
    }
    let subject = a
        .child(ns::SAML, "Subject")
        .ok_or_else(|| invalid("the Assertion has no Subject"))?;
    let scd = subject
        .child(ns::SAML, "SubjectConfirmation")
        .and_then(|c| c.child(ns::SAML, "SubjectConfirmationData"))
        .ok_or_else(|| invalid("no SubjectConfirmationData"))?;
    if scd.attr("Recipient") != Some(acs_url) || scd.attr("InResponseTo") != in_response_to {
        return Err(invalid(
            "the bearer confirmation is for another recipient or request",
        ));
    }
    if scd
        .attr("NotOnOrAfter")
        .and_then(parse_time)
        .is_none_or(|t| now >= t + skew)
    {
        return Err(invalid("the bearer confirmation has expired"));
    }
    let name_id = subject
        .child(ns::SAML, "NameID")
        .ok_or_else(|| invalid("no NameID"))?;
    let issuer = a
        .child(ns::SAML, "Issuer")
        .map(Node::text)
        .unwrap_or_default();
    let attributes = a
        .child(ns::SAML, "AttributeStatement")
        .map(|s| {
            s.children_named(ns::SAML, "Attribute")
                .map(|at| {
                    (
                        at.attr("Name").unwrap_or_default().to_owned(),
                        at.children_named(ns::SAML, "AttributeValue")
                            .map(Node::text)
                            .collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ValidatedAssertion {
        issuer,
        name_id: name_id.text(),
        name_id_format: name_id.attr("Format").unwrap_or_default().to_owned(),
        session_index: a
            .child(ns::SAML, "AuthnStatement")
            .and_then(|s| s.attr("SessionIndex"))
            .map(str::to_owned),
        attributes,
    })
}

#[cfg(test)]
mod tests;
