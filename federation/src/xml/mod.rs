//! XML for SAML and WS-Federation: a writer that emits exclusive-canonical XML directly,
//! a bounded reader for XML from outside, exclusive canonicalisation of what was read,
//! and enveloped XML signatures (RSA-SHA256, exclusive c14n).
//!
//! Why by hand: samael signs through libxmlsec1 (a second parse of every document we
//! emit, errors printed on stderr, no SAML 1.1 for WS-Federation), and no maintained Rust
//! crate canonicalises and signs XML. Everything we sign we also build, so the writer
//! produces the canonical form itself and a signature needs no canonicaliser at all;
//! `xmlsec1` and pysaml2 check the result independently in the tests. The reader refuses
//! DTDs (so no entity expansion), and bounds size, depth, element and attribute counts.

mod c14n;
mod dsig;
mod reader;
mod writer;

#[cfg(test)]
pub(crate) use dsig::tests::test_key;
pub use dsig::{verify_enveloped, SigningKey, VerifiedKey, XmlSigError};
pub use reader::{parse, Content, Node, XmlError, MAX_XML_BYTES};
pub use writer::El;

/// XML namespaces used here.
pub mod ns {
    /// SAML 2.0 protocol.
    pub const SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
    /// SAML 2.0 assertion.
    pub const SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
    /// SAML 2.0 metadata.
    pub const MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
    /// SAML 1.0/1.1 assertion.
    pub const SAML1: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
    /// XML digital signatures.
    pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    /// WS-Trust 2005/02 (what WS-Federation passive uses).
    pub const WST: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
    /// WS-Policy.
    pub const WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";
    /// WS-Addressing.
    pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
    /// WS-Federation.
    pub const FED: &str = "http://docs.oasis-open.org/wsfed/federation/200706";
    /// WS-Security utility.
    pub const WSU: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
    /// XML Schema instance.
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
    /// Exclusive canonicalisation (without comments).
    pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    /// The enveloped-signature transform.
    pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    /// RSA with SHA-256.
    pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    /// RSA with SHA-512.
    pub const RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
    /// RSA with SHA-1 (refused).
    pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
    /// SHA-256.
    pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
    /// SHA-512.
    pub const SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
}

/// Escapes text for an HTML or XML text node or a double-quoted attribute.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
