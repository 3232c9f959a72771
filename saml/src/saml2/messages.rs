//! SAML 2.0 messages: AuthnRequest and LogoutRequest in, signed Response and
//! LogoutResponse out.

use std::time::{Duration, SystemTime};

use super::encrypt::{EncryptError, EncryptionKey};
use super::{fmt_time, new_id, parse_time, AUTHN_PASSWORD_PROTECTED, STATUS_SUCCESS};
use crate::xml::{ns, parse_message, El, Node, SigningKey, XmlError};

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Not XML we accept.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// Another message than expected.
    #[error("expected a SAML 2.0 {expected}, got {got}")]
    WrongMessage {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: String,
    },
    /// A required part is missing or invalid.
    #[error("the {message} {problem}")]
    Invalid {
        /// The message.
        message: &'static str,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(message: &'static str, problem: impl Into<String>) -> MessageError {
    MessageError::Invalid {
        message,
        problem: problem.into(),
    }
}

fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// Checks an xs:ID-like value: 1..=256 characters of letters, digits, `_ - .`, not starting
/// with a digit.
fn check_id(message: &'static str, id: Option<&str>) -> Result<String, MessageError> {
    let id = id.ok_or_else(|| invalid(message, "has no ID"))?;
    let ok = !id.is_empty()
        && id.len() <= 256
        && !id.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(invalid(
            message,
            format!("has an invalid ID {:?}", short(id)),
        ))
    }
}

fn expect_root(root: &Node, local: &'static str) -> Result<(), MessageError> {
    if root.is(ns::SAMLP, local) {
        Ok(())
    } else {
        Err(MessageError::WrongMessage {
            expected: local,
            got: short(&format!("{{{}}}{}", root.ns, root.local)),
        })
    }
}

fn issuer_of(message: &'static str, root: &Node) -> Result<String, MessageError> {
    let i = root
        .child(ns::SAML, "Issuer")
        .map(Node::text)
        .ok_or_else(|| invalid(message, "has no Issuer"))?;
    if i.is_empty() || i.len() > 1024 {
        return Err(invalid(message, "has an empty or oversized Issuer"));
    }
    Ok(i)
}

fn check_version(message: &'static str, root: &Node) -> Result<(), MessageError> {
    if root.attr("Version") != Some("2.0") {
        return Err(invalid(message, "is not SAML version 2.0"));
    }
    Ok(())
}

/// A parsed AuthnRequest.
#[derive(Debug, Clone)]
pub struct AuthnRequest {
    /// Its ID (answered in InResponseTo).
    pub id: String,
    /// The SP's entity id.
    pub issuer: String,
    /// AssertionConsumerServiceURL, if given.
    pub acs_url: Option<String>,
    /// AssertionConsumerServiceIndex, if given.
    pub acs_index: Option<u16>,
    /// ProtocolBinding, if given.
    pub protocol_binding: Option<String>,
    /// Destination, if given.
    pub destination: Option<String>,
    /// NameIDPolicy's Format, if given.
    pub name_id_format: Option<String>,
    /// NameIDPolicy's AllowCreate, if given.
    pub name_id_allow_create: Option<bool>,
    /// NameIDPolicy's SPNameQualifier, if given (an affiliation the NameID is to be
    /// shared with; only the SP's own entity id is supported).
    pub name_id_sp_name_qualifier: Option<String>,
    /// RequestedAuthnContext, if given.
    pub requested_authn_context: Option<RequestedAuthnContext>,
    /// ForceAuthn.
    pub force_authn: bool,
    /// IsPassive.
    pub is_passive: bool,
    /// IssueInstant, if given.
    pub issue_instant: Option<SystemTime>,
    /// The parsed document (for signature checks).
    pub root: Node,
}

/// The authentication contexts a request asks for (SAMLCore 3.3.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedAuthnContext {
    /// `exact` (the default), `minimum`, `maximum` or `better`.
    pub comparison: String,
    /// The AuthnContextClassRef values, at most [`MAX_AUTHN_CONTEXT_CLASSES`].
    pub class_refs: Vec<String>,
}

/// Most AuthnContextClassRefs read from one request (the rest are ignored).
pub const MAX_AUTHN_CONTEXT_CLASSES: usize = 16;

/// How far ahead of our clock a signed request's IssueInstant may be (clock skew).
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How old a signed request may be, on top of [`CLOCK_SKEW`]: a browser takes seconds to
/// carry it here, so this is generous and still keeps a captured request short-lived.
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(5 * 60);

fn xs_bool(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

impl AuthnRequest {
    /// Parses an AuthnRequest.
    pub fn parse(xml: &str) -> Result<Self, MessageError> {
        const M: &str = "AuthnRequest";
        let root = parse_message(xml)?;
        expect_root(&root, M)?;
        check_version(M, &root)?;
        let id = check_id(M, root.attr("ID"))?;
        let issuer = issuer_of(M, &root)?;
        let acs_index = root
            .attr("AssertionConsumerServiceIndex")
            .map(|v| {
                v.parse::<u16>()
                    .map_err(|_| invalid(M, "has an invalid AssertionConsumerServiceIndex"))
            })
            .transpose()?;
        let url = |name: &str| -> Result<Option<String>, MessageError> {
            match root.attr(name) {
                None => Ok(None),
                Some(v) if v.len() <= 2048 => Ok(Some(v.to_owned())),
                Some(_) => Err(invalid(M, format!("has an oversized {name}"))),
            }
        };
        let policy = root.child(ns::SAMLP, "NameIDPolicy");
        let policy_attr = |name: &str| -> Result<Option<String>, MessageError> {
            match policy.and_then(|p| p.attr(name)) {
                None => Ok(None),
                Some(v) if v.len() <= 1024 => Ok(Some(v.to_owned())),
                Some(_) => Err(invalid(M, format!("has an oversized NameIDPolicy {name}"))),
            }
        };
        let allow_create = match policy.and_then(|p| p.attr("AllowCreate")) {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(v) => {
                return Err(invalid(
                    M,
                    format!("has an invalid NameIDPolicy AllowCreate {:?}", short(v)),
                ))
            }
        };
        let requested_authn_context = match root.child(ns::SAMLP, "RequestedAuthnContext") {
            None => None,
            Some(r) => {
                let comparison = r.attr("Comparison").unwrap_or("exact");
                if !matches!(comparison, "exact" | "minimum" | "maximum" | "better") {
                    return Err(invalid(
                        M,
                        format!(
                            "has an invalid RequestedAuthnContext Comparison {:?}",
                            short(comparison)
                        ),
                    ));
                }
                let class_refs: Vec<String> = r
                    .children_named(ns::SAML, "AuthnContextClassRef")
                    .take(MAX_AUTHN_CONTEXT_CLASSES)
                    .map(|c| c.text().trim().to_owned())
                    .collect();
                if class_refs.iter().any(|c| c.len() > 1024) {
                    return Err(invalid(M, "has an oversized AuthnContextClassRef"));
                }
                Some(RequestedAuthnContext {
                    comparison: comparison.to_owned(),
                    class_refs,
                })
            }
        };
        Ok(Self {
            requested_authn_context,
            acs_url: url("AssertionConsumerServiceURL")?,
            protocol_binding: url("ProtocolBinding")?,
            destination: url("Destination")?,
            name_id_format: policy_attr("Format")?,
            name_id_allow_create: allow_create,
            name_id_sp_name_qualifier: policy_attr("SPNameQualifier")?,
            force_authn: xs_bool(root.attr("ForceAuthn")),
            is_passive: xs_bool(root.attr("IsPassive")),
            issue_instant: root
                .attr("IssueInstant")
                .map(|v| {
                    parse_time(v).ok_or_else(|| {
                        invalid(M, format!("has an invalid IssueInstant {:?}", short(v)))
                    })
                })
                .transpose()?,
            acs_index,
            id,
            issuer,
            root,
        })
    }
}

impl AuthnRequest {
    /// Checks that the request was issued within [`CLOCK_SKEW`] ahead of `now` and at most
    /// [`MAX_REQUEST_AGE`] plus [`CLOCK_SKEW`] before it (for signed requests, whose
    /// IssueInstant is covered by the signature). Returns the end of that window: until
    /// then its ID must not be answered again.
    pub fn check_issue_instant(&self, now: SystemTime) -> Result<SystemTime, MessageError> {
        const M: &str = "AuthnRequest";
        let at = self
            .issue_instant
            .ok_or_else(|| invalid(M, "has no IssueInstant"))?;
        let mins = |d: Duration| d.as_secs().div_ceil(60);
        if at > now + CLOCK_SKEW {
            return Err(invalid(
                M,
                format!(
                    "was issued at {}, more than {} minutes ahead of this service's clock ({}): check the application's clock",
                    fmt_time(at),
                    mins(CLOCK_SKEW),
                    fmt_time(now)
                ),
            ));
        }
        let end = at + MAX_REQUEST_AGE + CLOCK_SKEW;
        if now > end {
            return Err(invalid(
                M,
                format!(
                    "was issued at {}, more than {} minutes before this service's clock ({}): it is stale or replayed, or the application's clock is wrong",
                    fmt_time(at),
                    mins(MAX_REQUEST_AGE + CLOCK_SKEW),
                    fmt_time(now)
                ),
            ));
        }
        Ok(end + Duration::from_secs(1))
    }
}

/// A parsed LogoutRequest.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    /// Its ID.
    pub id: String,
    /// The SP's entity id.
    pub issuer: String,
    /// The NameID being logged out.
    pub name_id: String,
    /// SessionIndex values.
    pub session_indexes: Vec<String>,
    /// Destination, if given.
    pub destination: Option<String>,
    /// The parsed document (for signature checks).
    pub root: Node,
}

impl LogoutRequest {
    /// Parses a LogoutRequest.
    pub fn parse(xml: &str) -> Result<Self, MessageError> {
        const M: &str = "LogoutRequest";
        let root = parse_message(xml)?;
        expect_root(&root, M)?;
        check_version(M, &root)?;
        Ok(Self {
            id: check_id(M, root.attr("ID"))?,
            issuer: issuer_of(M, &root)?,
            name_id: root
                .child(ns::SAML, "NameID")
                .map(Node::text)
                .ok_or_else(|| invalid(M, "has no NameID"))?,
            session_indexes: root
                .children_named(ns::SAMLP, "SessionIndex")
                .map(Node::text)
                .take(16)
                .collect(),
            destination: root.attr("Destination").map(str::to_owned),
            root,
        })
    }
}

/// Reads the ID, issuer, InResponseTo and status of a LogoutResponse (from an SP
/// answering our LogoutRequest).
pub fn parse_logout_response(
    xml: &str,
) -> Result<(Node, String, Option<String>, bool), MessageError> {
    const M: &str = "LogoutResponse";
    let root = parse_message(xml)?;
    expect_root(&root, M)?;
    check_version(M, &root)?;
    let issuer = issuer_of(M, &root)?;
    let irt = root.attr("InResponseTo").map(str::to_owned);
    let ok = root
        .child(ns::SAMLP, "Status")
        .and_then(|s| s.child(ns::SAMLP, "StatusCode"))
        .and_then(|c| c.attr("Value"))
        == Some(STATUS_SUCCESS);
    Ok((root, issuer, irt, ok))
}

/// One attribute of an assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlAttribute {
    /// Name (a URI).
    pub name: &'static str,
    /// FriendlyName.
    pub friendly: &'static str,
    /// Values (one attribute, several values).
    pub values: Vec<String>,
}

/// What goes into a Response.
#[derive(Debug, Clone)]
pub struct ResponseParams<'a> {
    /// Our entity id.
    pub issuer: &'a str,
    /// The ACS URL it is posted to (Destination and Recipient).
    pub acs_url: &'a str,
    /// The SP's entity id (the audience).
    pub audience: &'a str,
    /// The request answered (none for IdP-initiated).
    pub in_response_to: Option<&'a str>,
    /// NameID value.
    pub name_id: &'a str,
    /// NameID format.
    pub name_id_format: &'a str,
    /// The SSO session's index.
    pub session_index: &'a str,
    /// When the user authenticated.
    pub authn_instant: SystemTime,
    /// When the SSO session ends.
    pub session_not_on_or_after: SystemTime,
    /// Now.
    pub now: SystemTime,
    /// How long the assertion may be used (a few minutes).
    pub validity: Duration,
    /// Attributes.
    pub attributes: &'a [SamlAttribute],
}

/// Which parts of a Response carry a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignParts {
    /// The Response and its Assertion (the default: every SP accepts it).
    #[default]
    Both,
    /// Only the Response (the Assertion is covered by it).
    Response,
    /// Only the Assertion (the Response envelope is not signed).
    Assertion,
}

/// How a Response is shaped for one application.
#[derive(Debug, Clone)]
pub struct ResponseOptions<'a> {
    /// Which parts are signed.
    pub sign: SignParts,
    /// The SP's key, to encrypt the (signed) Assertion to.
    pub encrypt_to: Option<&'a EncryptionKey>,
    /// The NameFormat of every attribute (URI names or plain ones).
    pub attribute_name_format: &'static str,
}

impl Default for ResponseOptions<'_> {
    fn default() -> Self {
        Self {
            sign: SignParts::Both,
            encrypt_to: None,
            attribute_name_format: super::ATTRNAME_URI,
        }
    }
}

/// Builds the Response with its Assertion, both signed with `key`.
pub fn build_response(p: &ResponseParams<'_>, key: &SigningKey) -> String {
    build_response_with(p, &ResponseOptions::default(), key)
        .expect("nothing to encrypt: building cannot fail")
}

/// Builds the Response as `o` says: which parts are signed, whether the Assertion is
/// encrypted (after it was signed, so that the SP verifies what it decrypted), and how
/// attribute names are marked.
pub fn build_response_with(
    p: &ResponseParams<'_>,
    o: &ResponseOptions<'_>,
    key: &SigningKey,
) -> Result<String, EncryptError> {
    let response_id = new_id();
    let assertion_id = new_id();
    let now = fmt_time(p.now);
    // A little slack for relying parties whose clocks run behind.
    let not_before = fmt_time(p.now.checked_sub(Duration::from_secs(60)).unwrap_or(p.now));
    let not_on_or_after = fmt_time(p.now + p.validity);
    let issuer = || El::new("saml", ns::SAML, "Issuer").text(p.issuer);
    let mut attrs = El::new("saml", ns::SAML, "AttributeStatement");
    for a in p.attributes.iter().filter(|a| !a.values.is_empty()) {
        let mut el = El::new("saml", ns::SAML, "Attribute")
            .attr("Name", a.name)
            .attr("FriendlyName", a.friendly)
            .attr("NameFormat", o.attribute_name_format);
        for v in &a.values {
            el = el.child(El::new("saml", ns::SAML, "AttributeValue").text(v.clone()));
        }
        attrs = attrs.child(el);
    }
    let mut assertion = El::new("saml", ns::SAML, "Assertion")
        .attr("ID", assertion_id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", now.clone())
        .child(issuer())
        .child(
            El::new("saml", ns::SAML, "Subject")
                .child(
                    El::new("saml", ns::SAML, "NameID")
                        .attr("Format", p.name_id_format)
                        .attr("SPNameQualifier", p.audience)
                        .text(p.name_id),
                )
                .child(
                    El::new("saml", ns::SAML, "SubjectConfirmation")
                        .attr("Method", "urn:oasis:names:tc:SAML:2.0:cm:bearer")
                        .child(
                            El::new("saml", ns::SAML, "SubjectConfirmationData")
                                .attr_opt("InResponseTo", p.in_response_to)
                                .attr("NotOnOrAfter", not_on_or_after.clone())
                                .attr("Recipient", p.acs_url),
                        ),
                ),
        )
        .child(
            El::new("saml", ns::SAML, "Conditions")
                .attr("NotBefore", not_before)
                .attr("NotOnOrAfter", not_on_or_after)
                .child(
                    El::new("saml", ns::SAML, "AudienceRestriction")
                        .child(El::new("saml", ns::SAML, "Audience").text(p.audience)),
                ),
        )
        .child(
            El::new("saml", ns::SAML, "AuthnStatement")
                .attr("AuthnInstant", fmt_time(p.authn_instant))
                .attr("SessionIndex", p.session_index)
                .attr("SessionNotOnOrAfter", fmt_time(p.session_not_on_or_after))
                .child(
                    El::new("saml", ns::SAML, "AuthnContext").child(
                        El::new("saml", ns::SAML, "AuthnContextClassRef")
                            .text(AUTHN_PASSWORD_PROTECTED),
                    ),
                ),
        );
    if p.attributes.iter().any(|a| !a.values.is_empty()) {
        assertion = assertion.child(attrs);
    }
    if o.sign != SignParts::Response {
        key.sign(&mut assertion, &assertion_id, 1);
    }
    let assertion = match o.encrypt_to {
        Some(k) => k.encrypt_assertion(&assertion.to_canonical())?,
        None => assertion,
    };
    let mut response = El::new("samlp", ns::SAMLP, "Response")
        .attr("ID", response_id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", now)
        .attr("Destination", p.acs_url)
        .attr_opt("InResponseTo", p.in_response_to)
        .child(issuer())
        .child(status(STATUS_SUCCESS))
        .child(assertion);
    if o.sign != SignParts::Assertion {
        key.sign(&mut response, &response_id, 1);
    }
    Ok(response.to_document())
}

fn status(code: &str) -> El {
    El::new("samlp", ns::SAMLP, "Status")
        .child(El::new("samlp", ns::SAMLP, "StatusCode").attr("Value", code.to_owned()))
}

/// A Response that carries an error status and no assertion (e.g. `Responder` with
/// `NoPassive`, or `AuthnFailed`).
pub fn build_error_response(
    issuer: &str,
    acs_url: &str,
    in_response_to: Option<&str>,
    top: &str,
    second: Option<&str>,
    now: SystemTime,
    key: &SigningKey,
) -> String {
    let id = new_id();
    let mut code = El::new("samlp", ns::SAMLP, "StatusCode").attr("Value", top.to_owned());
    if let Some(s) = second {
        code = code.child(El::new("samlp", ns::SAMLP, "StatusCode").attr("Value", s.to_owned()));
    }
    let mut r = El::new("samlp", ns::SAMLP, "Response")
        .attr("ID", id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", fmt_time(now))
        .attr("Destination", acs_url)
        .attr_opt("InResponseTo", in_response_to)
        .child(El::new("saml", ns::SAML, "Issuer").text(issuer))
        .child(El::new("samlp", ns::SAMLP, "Status").child(code));
    key.sign(&mut r, &id, 1);
    r.to_document()
}

/// A LogoutResponse (signed when `key` is given: the HTTP-POST binding; the Redirect
/// binding signs the query string instead).
///
/// With `partial`, the status is Success with PartialLogout below it: the session here
/// has ended, but an application of the session did not confirm its own logout.
pub fn build_logout_response(
    issuer: &str,
    destination: &str,
    in_response_to: &str,
    partial: bool,
    now: SystemTime,
    key: Option<&SigningKey>,
) -> String {
    let id = new_id();
    let mut r = El::new("samlp", ns::SAMLP, "LogoutResponse")
        .attr("ID", id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", fmt_time(now))
        .attr("Destination", destination)
        .attr("InResponseTo", in_response_to)
        .child(El::new("saml", ns::SAML, "Issuer").text(issuer))
        .child(if partial {
            El::new("samlp", ns::SAMLP, "Status").child(
                El::new("samlp", ns::SAMLP, "StatusCode")
                    .attr("Value", STATUS_SUCCESS)
                    .child(
                        El::new("samlp", ns::SAMLP, "StatusCode")
                            .attr("Value", super::STATUS_PARTIAL_LOGOUT),
                    ),
            )
        } else {
            status(STATUS_SUCCESS)
        });
    if let Some(k) = key {
        k.sign(&mut r, &id, 1);
    }
    r.to_document()
}

/// A LogoutRequest from us to an SP (when the session ends at the IdP). The NameID is
/// the one the SP received: same value, Format and SPNameQualifier (the SP's entity id).
#[allow(clippy::too_many_arguments)]
pub fn build_logout_request(
    issuer: &str,
    destination: &str,
    name_id: &str,
    name_id_format: &str,
    sp_name_qualifier: &str,
    session_index: &str,
    now: SystemTime,
    key: Option<&SigningKey>,
) -> (String, String) {
    let id = new_id();
    let mut r = El::new("samlp", ns::SAMLP, "LogoutRequest")
        .attr("ID", id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", fmt_time(now))
        .attr("Destination", destination)
        .child(El::new("saml", ns::SAML, "Issuer").text(issuer))
        .child(
            El::new("saml", ns::SAML, "NameID")
                .attr("Format", name_id_format.to_owned())
                .attr("SPNameQualifier", sp_name_qualifier.to_owned())
                .text(name_id),
        )
        .child(El::new("samlp", ns::SAMLP, "SessionIndex").text(session_index));
    if let Some(k) = key {
        k.sign(&mut r, &id, 1);
    }
    (id, r.to_document())
}

/// An AuthnRequest (what an SP sends; the demo application and the benchmark use it).
pub fn build_authn_request(
    issuer: &str,
    destination: &str,
    acs_url: &str,
    now: SystemTime,
) -> (String, String) {
    let id = new_id();
    let r = El::new("samlp", ns::SAMLP, "AuthnRequest")
        .attr("ID", id.clone())
        .attr("Version", "2.0")
        .attr("IssueInstant", fmt_time(now))
        .attr("Destination", destination)
        .attr("AssertionConsumerServiceURL", acs_url)
        .attr("ProtocolBinding", super::BINDING_POST)
        .child(El::new("saml", ns::SAML, "Issuer").text(issuer))
        .child(
            El::new("samlp", ns::SAMLP, "NameIDPolicy")
                .attr("Format", super::NAMEID_PERSISTENT)
                .attr("AllowCreate", "true"),
        );
    (id, r.to_document())
}

#[cfg(test)]
mod tests;
