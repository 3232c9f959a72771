//! The relying party's side of a SAML 2.0 sign-in: a Response checked as a careful SP
//! does (both signatures, Destination, Recipient, InResponseTo, Audience, validity). The
//! demo applications and the tests use it to prove what the IdP sends.

use std::time::{Duration, SystemTime};

use causeway_saml::saml2::{parse_time, SpError, STATUS_SUCCESS};
use causeway_saml::xml::{ns, parse_message, verify_enveloped, Node, VerifiedKey};

fn invalid(s: impl Into<String>) -> SpError {
    SpError::Invalid(s.into())
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
