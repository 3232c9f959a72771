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
#[cfg(any(test, feature = "test-keys"))]
mod test_key;
mod writer;

pub use dsig::{exclusive_c14n, verify_enveloped, SigningKey, VerifiedKey, XmlSigError};
pub use reader::{
    parse, parse_message, parse_with, Attr, Content, Limits, Node, XmlError, MAX_MESSAGE_BYTES,
    MAX_NS_IN_SCOPE, MAX_NS_PER_ELEMENT, MAX_NS_URI_BYTES, MAX_XML_BYTES,
};
#[cfg(any(test, feature = "test-keys"))]
pub use test_key::test_key;
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
    escape_html_into(s, &mut out);
    out
}

/// [`escape_html`], appended to `out`.
pub fn escape_html_into(s: &str, out: &mut String) {
    escape_into(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&#39;"),
        _ => None,
    });
}

/// Appends `s` to `out`, replacing each byte that `entity` names. Runs of bytes that need
/// no escaping are copied whole: responses carry kilobytes of base64 (certificates,
/// signatures, the encoded Response itself), and a per-character loop was a measurable
/// part of answering a sign-in. Only ASCII bytes may be named, so every cut falls on a
/// character boundary.
pub(crate) fn escape_into(s: &str, out: &mut String, entity: impl Fn(u8) -> Option<&'static str>) {
    const BLOCK: usize = 32;
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Whole blocks with nothing to escape are skipped by a test without early exit,
        // which the compiler turns into vector compares.
        if let Some(block) = bytes.get(i..i + BLOCK) {
            if !block
                .iter()
                .fold(false, |any, &b| any | entity(b).is_some())
            {
                i += BLOCK;
                continue;
            }
        }
        if let Some(rep) = entity(bytes[i]) {
            debug_assert!(bytes[i].is_ascii());
            out.push_str(&s[start..i]);
            out.push_str(rep);
            start = i + 1;
        }
        i += 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod escape_tests {
    use super::escape_html;

    fn naive(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '&' => "&amp;".to_owned(),
                '<' => "&lt;".to_owned(),
                '>' => "&gt;".to_owned(),
                '"' => "&quot;".to_owned(),
                '\'' => "&#39;".to_owned(),
                c => c.to_string(),
            })
            .collect()
    }

    #[test]
    fn block_skipping_escapes_exactly_like_a_character_loop() {
        let pieces = [
            "a",
            "é",
            "€",
            "𝄞",
            "&",
            "<",
            ">",
            "\"",
            "'",
            "0123456789abcdef",
        ];
        // Every length up to a few blocks, with special and multi-byte characters at
        // every position relative to the 32-byte blocks.
        for n in 0..100usize {
            let s: String = (0..n).map(|i| pieces[(i * 7 + n) % pieces.len()]).collect();
            assert_eq!(escape_html(&s), naive(&s), "{s:?}");
            let long = format!("{}{s}", "A".repeat(n));
            assert_eq!(escape_html(&long), naive(&long));
        }
    }
}
