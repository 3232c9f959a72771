//! Enveloped XML signatures: RSA-SHA256 over exclusive-canonical XML. Signing works on
//! the writer's tree (already canonical); verification canonicalises a parsed element and
//! accepts exactly one reference, to the signed element's own ID, so a signature over
//! one element can never vouch for another (signature wrapping).

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use sha2::Digest;

use super::c14n::{
    canonicalize, prefix_list, C14nError, MAX_CANONICAL_BYTES, MAX_INCLUSIVE_PREFIXES,
};
use super::ns;
use super::reader::Node;
use super::writer::El;

const EXC_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlSigError {
    /// There is no signature.
    #[error("the message is not signed")]
    NotSigned,
    /// The signature's shape or algorithms are not what we accept.
    #[error("the signature is not acceptable: {0}")]
    Unsupported(String),
    /// The signature does not cover the signed element.
    #[error("the signature does not refer to the signed element")]
    WrongReference,
    /// The digest does not match: the content was changed after signing.
    #[error("the signed content was changed after signing (digest mismatch)")]
    DigestMismatch,
    /// No trusted key verifies the signature.
    #[error("the signature does not verify with any trusted key")]
    BadSignature,
}

/// A private key that signs tokens, with its certificate.
pub struct SigningKey {
    key: PKey<Private>,
    cert_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl SigningKey {
    /// A signing key from a private key and its certificate (DER).
    pub fn new(key: PKey<Private>, cert_der: &[u8]) -> Self {
        Self {
            key,
            cert_b64: b64(cert_der),
        }
    }

    /// The certificate, base64 (as `X509Certificate` carries it).
    pub fn cert_base64(&self) -> &str {
        &self.cert_b64
    }

    /// RSA-SHA256 (PKCS#1 v1.5) over `data`.
    pub fn sign_raw(&self, data: &[u8]) -> Vec<u8> {
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key)
            .expect("an RSA key signs");
        s.update(data).expect("signer accepts data");
        s.sign_to_vec().expect("RSA signing does not fail")
    }

    /// The `ds:Signature` element for the element whose ID is `id` and whose canonical
    /// form (without this signature) is `canonical`.
    pub fn signature(&self, id: &str, canonical: &str) -> El {
        let digest = b64(&sha2::Sha256::digest(canonical.as_bytes()));
        let signed_info = El::new("ds", ns::DS, "SignedInfo")
            .child(El::new("ds", ns::DS, "CanonicalizationMethod").attr("Algorithm", ns::EXC_C14N))
            .child(El::new("ds", ns::DS, "SignatureMethod").attr("Algorithm", ns::RSA_SHA256))
            .child(
                El::new("ds", ns::DS, "Reference")
                    .attr("URI", format!("#{id}"))
                    .child(
                        El::new("ds", ns::DS, "Transforms")
                            .child(
                                El::new("ds", ns::DS, "Transform").attr("Algorithm", ns::ENVELOPED),
                            )
                            .child(
                                El::new("ds", ns::DS, "Transform").attr("Algorithm", ns::EXC_C14N),
                            ),
                    )
                    .child(El::new("ds", ns::DS, "DigestMethod").attr("Algorithm", ns::SHA256))
                    .child(El::new("ds", ns::DS, "DigestValue").text(digest)),
            );
        let value = b64(&self.sign_raw(signed_info.to_canonical().as_bytes()));
        El::new("ds", ns::DS, "Signature")
            .child(signed_info)
            .child(El::new("ds", ns::DS, "SignatureValue").text(value))
            .child(
                El::new("ds", ns::DS, "KeyInfo").child(
                    El::new("ds", ns::DS, "X509Data").child(
                        El::new("ds", ns::DS, "X509Certificate").text(self.cert_b64.clone()),
                    ),
                ),
            )
    }

    /// Signs `el` (whose ID is `id`): computes its signature and inserts it as child
    /// number `at` (after the Issuer for SAML 2.0, last for SAML 1.1).
    pub fn sign(&self, el: &mut El, id: &str, at: usize) {
        let sig = self.signature(id, &el.to_canonical());
        el.insert_child(at, sig);
    }
}

/// A public key trusted to sign messages (from a certificate).
#[derive(Clone)]
pub struct VerifiedKey(PKey<Public>);

impl std::fmt::Debug for VerifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedKey")
    }
}

impl VerifiedKey {
    /// The key of a DER certificate.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, String> {
        let cert =
            openssl::x509::X509::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
        cert.public_key()
            .map(Self)
            .map_err(|e| format!("bad certificate key: {e}"))
    }

    /// The key of a base64 certificate (as in metadata; whitespace ignored).
    pub fn from_cert_base64(s: &str) -> Result<Self, String> {
        let der = decode_b64(s).ok_or("certificate is not base64")?;
        Self::from_cert_der(&der)
    }

    /// Checks a detached signature (HTTP-Redirect binding) with `alg` (an XML-DSig URI).
    pub fn verify_raw(&self, alg: &str, data: &[u8], sig: &[u8]) -> Result<bool, XmlSigError> {
        let md = digest_for_signature(alg)?;
        let mut v = openssl::sign::Verifier::new(md, &self.0)
            .map_err(|e| XmlSigError::Unsupported(e.to_string()))?;
        v.update(data)
            .map_err(|e| XmlSigError::Unsupported(e.to_string()))?;
        Ok(v.verify(sig).unwrap_or(false))
    }
}

fn digest_for_signature(alg: &str) -> Result<MessageDigest, XmlSigError> {
    match alg {
        ns::RSA_SHA256 => Ok(MessageDigest::sha256()),
        ns::RSA_SHA512 => Ok(MessageDigest::sha512()),
        ns::RSA_SHA1 => Err(XmlSigError::Unsupported(
            "RSA-SHA1 is too weak; sign with RSA-SHA256".into(),
        )),
        other => Err(XmlSigError::Unsupported(format!(
            "signature algorithm {:?}",
            other.chars().take(80).collect::<String>()
        ))),
    }
}

/// Decodes base64 that may contain whitespace (as XML carries it).
pub(crate) fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

fn algorithm(n: &Node) -> &str {
    n.attr("Algorithm").unwrap_or("")
}

fn quoted(s: &str) -> String {
    format!("{:?}", s.chars().take(80).collect::<String>())
}

/// The bounded `InclusiveNamespaces PrefixList` of a c14n method or transform.
fn inclusive_prefixes(n: &Node) -> Result<Vec<&str>, XmlSigError> {
    match n
        .child(EXC_NS, "InclusiveNamespaces")
        .and_then(|i| i.attr("PrefixList"))
    {
        None => Ok(Vec::new()),
        Some(list) => prefix_list(list).map_err(|_| {
            XmlSigError::Unsupported(format!(
                "the InclusiveNamespaces PrefixList names more than {MAX_INCLUSIVE_PREFIXES} prefixes, or too long a one"
            ))
        }),
    }
}

fn canonical(n: &Node, inclusive: &[&str], exclude: Option<&Node>) -> Result<String, XmlSigError> {
    canonicalize(n, inclusive, exclude).map_err(|e| match e {
        C14nError::TooLarge => XmlSigError::Unsupported(format!(
            "the canonical form of the signed content exceeds {MAX_CANONICAL_BYTES} bytes"
        )),
        C14nError::PrefixList => XmlSigError::Unsupported("the PrefixList is too long".into()),
    })
}

/// The transforms of a reference, which must be exactly: enveloped signature, then
/// exclusive c14n (optionally with a PrefixList). Returns the inclusive prefixes.
///
/// XML-DSig §4.4.3.2 says a reference whose last transform yields a node-set (as the
/// enveloped transform alone does) is converted to octets with *inclusive* Canonical XML
/// 1.0. We do not implement inclusive c14n, and digesting such a reference as exclusive
/// c14n would compare the wrong octets, so it is refused with a clear message; SAML
/// (SAMLCore §5.4.4) has signers add the exclusive transform.
fn reference_transforms(r: &Node) -> Result<Vec<&str>, XmlSigError> {
    let ts: Vec<&Node> = r
        .child(ns::DS, "Transforms")
        .map(|t| t.elements().collect())
        .unwrap_or_default();
    match ts.as_slice() {
        [env, exc] if algorithm(env) == ns::ENVELOPED && algorithm(exc) == ns::EXC_C14N => {
            inclusive_prefixes(exc)
        }
        [only] if algorithm(only) == ns::ENVELOPED => Err(XmlSigError::Unsupported(
            "the reference has only the enveloped-signature transform, which implies inclusive \
             c14n 1.0; sign with the enveloped-signature and exclusive c14n transforms"
                .into(),
        )),
        [] => Err(XmlSigError::Unsupported(
            "the reference lacks the enveloped-signature transform".into(),
        )),
        _ => {
            let names: Vec<String> = ts.iter().take(4).map(|t| quoted(algorithm(t))).collect();
            Err(XmlSigError::Unsupported(format!(
                "the reference's transforms must be exactly enveloped-signature then exclusive \
                 c14n, in that order (got {})",
                names.join(", ")
            )))
        }
    }
}

/// The exclusive canonical form of `node` as a document apex, with the prefixes of an
/// `InclusiveNamespaces PrefixList` (space-separated, `#default` for the default
/// namespace); bounded like verification's (the fuzz target's entry point).
pub fn exclusive_c14n(node: &Node, prefix_list_attr: &str) -> Result<String, XmlSigError> {
    let inclusive = prefix_list(prefix_list_attr)
        .map_err(|_| XmlSigError::Unsupported("the PrefixList is too long".into()))?;
    canonical(node, &inclusive, None)
}

/// Verifies the enveloped signature of `el`, whose ID attribute is `id_attr`, with any
/// of `keys`.
///
/// Order matters for cost: the signature over `SignedInfo` (small, bounded: one RSA
/// verification per trusted key) is checked before the reference is digested, so a
/// message that no trusted key signed never costs a canonicalisation of its content.
pub fn verify_enveloped(el: &Node, id_attr: &str, keys: &[VerifiedKey]) -> Result<(), XmlSigError> {
    let mut sigs = el.children_named(ns::DS, "Signature");
    let sig = sigs.next().ok_or(XmlSigError::NotSigned)?;
    if sigs.next().is_some() {
        return Err(XmlSigError::Unsupported("more than one signature".into()));
    }
    let id = el.attr(id_attr).ok_or(XmlSigError::WrongReference)?;
    let unsupported = |m: &str| XmlSigError::Unsupported(m.to_owned());
    let si = sig
        .child(ns::DS, "SignedInfo")
        .ok_or_else(|| unsupported("no SignedInfo"))?;
    let cm = si
        .child(ns::DS, "CanonicalizationMethod")
        .ok_or_else(|| unsupported("no CanonicalizationMethod"))?;
    if algorithm(cm) != ns::EXC_C14N {
        return Err(XmlSigError::Unsupported(format!(
            "canonicalisation {} (only exclusive c14n is accepted)",
            quoted(algorithm(cm))
        )));
    }
    let sm = si
        .child(ns::DS, "SignatureMethod")
        .ok_or_else(|| unsupported("no SignatureMethod"))?;
    let md = digest_for_signature(algorithm(sm))?;
    let mut refs = si.children_named(ns::DS, "Reference");
    let r = refs.next().ok_or_else(|| unsupported("no Reference"))?;
    if refs.next().is_some() {
        return Err(unsupported("more than one Reference"));
    }
    if r.attr("URI").and_then(|u| u.strip_prefix('#')) != Some(id) {
        return Err(XmlSigError::WrongReference);
    }
    let inclusive = reference_transforms(r)?;
    let dm = r
        .child(ns::DS, "DigestMethod")
        .ok_or_else(|| unsupported("no DigestMethod"))?;
    let digest_len = match algorithm(dm) {
        ns::SHA256 => 32,
        ns::SHA512 => 64,
        other => {
            return Err(XmlSigError::Unsupported(format!(
                "digest {} (SHA-256 or SHA-512 only)",
                quoted(other)
            )))
        }
    };
    let expected = decode_b64(
        &r.child(ns::DS, "DigestValue")
            .ok_or_else(|| unsupported("no DigestValue"))?
            .text(),
    )
    .filter(|d| d.len() == digest_len)
    .ok_or_else(|| unsupported("DigestValue is not a base64 digest of the named method"))?;
    let value = decode_b64(
        &sig.child(ns::DS, "SignatureValue")
            .ok_or_else(|| unsupported("no SignatureValue"))?
            .text(),
    )
    .ok_or_else(|| unsupported("SignatureValue is not base64"))?;

    // 1. The signature over SignedInfo: cheap and bounded.
    let signed = canonical(si, &inclusive_prefixes(cm)?, None)?;
    let mut verified = false;
    for k in keys {
        let mut v = openssl::sign::Verifier::new(md, &k.0)
            .map_err(|e| XmlSigError::Unsupported(e.to_string()))?;
        if v.update(signed.as_bytes()).is_ok() && v.verify(&value).unwrap_or(false) {
            verified = true;
            break;
        }
    }
    if !verified {
        return Err(XmlSigError::BadSignature);
    }

    // 2. Only now the reference: canonicalise the signed element, bounded, and digest it.
    let content = canonical(el, &inclusive, Some(sig))?;
    let actual = match digest_len {
        32 => sha2::Sha256::digest(content.as_bytes()).to_vec(),
        _ => sha2::Sha512::digest(content.as_bytes()).to_vec(),
    };
    use subtle::ConstantTimeEq;
    if bool::from(actual.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(XmlSigError::DigestMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::reader::parse;
    use crate::xml::test_key;

    #[test]
    fn what_we_sign_verifies_and_any_change_does_not() {
        let (sk, vk) = test_key();
        let mut e = El::new("saml", ns::SAML, "Assertion")
            .attr("ID", "_a1")
            .child(El::new("saml", ns::SAML, "Issuer").text("https://idp"))
            .child(El::new("saml", ns::SAML, "Subject").text("alice & bob"));
        sk.sign(&mut e, "_a1", 1);
        let xml = e.to_document();
        let n = parse(&xml).expect("parses");
        assert_eq!(
            verify_enveloped(&n, "ID", std::slice::from_ref(&vk)),
            Ok(())
        );
        // Re-indented by a pretty printer? Whitespace is content: refused.
        let changed = xml.replace("alice", "mallory");
        let n = parse(&changed).expect("parses");
        assert_eq!(
            verify_enveloped(&n, "ID", std::slice::from_ref(&vk)),
            Err(XmlSigError::DigestMismatch)
        );
        // Another key does not verify it.
        let (_, other) = test_key();
        let n = parse(&xml).expect("parses");
        assert_eq!(
            verify_enveloped(&n, "ID", &[other]),
            Err(XmlSigError::BadSignature)
        );
        // A signature copied onto an element with another ID refers elsewhere.
        let moved = xml.replace("ID=\"_a1\"", "ID=\"_a2\"");
        let n = parse(&moved).expect("parses");
        assert_eq!(
            verify_enveloped(&n, "ID", &[vk]),
            Err(XmlSigError::WrongReference)
        );
    }

    fn signed_doc() -> (String, VerifiedKey) {
        let (sk, vk) = test_key();
        let mut e = El::new("saml", ns::SAML, "Assertion")
            .attr("ID", "_a1")
            .child(El::new("saml", ns::SAML, "Issuer").text("https://idp"))
            .child(El::new("saml", ns::SAML, "Subject").text("alice"));
        sk.sign(&mut e, "_a1", 1);
        (e.to_document(), vk)
    }

    #[test]
    fn the_signature_over_signed_info_is_checked_before_any_digest() {
        let (xml, _) = signed_doc();
        let (_, stranger) = test_key();
        // Content changed *and* a key that never signed it: the old order digested the
        // content first and answered DigestMismatch; now the cheap check answers first.
        let changed = xml.replace("alice", "mallory");
        let n = parse(&changed).expect("parses");
        assert_eq!(
            verify_enveloped(&n, "ID", &[stranger]),
            Err(XmlSigError::BadSignature)
        );
        // No trusted key at all: refused without canonicalising the content.
        assert_eq!(
            verify_enveloped(&n, "ID", &[]),
            Err(XmlSigError::BadSignature)
        );
    }

    #[test]
    fn transforms_must_be_enveloped_then_exclusive() {
        let (xml, vk) = signed_doc();
        let env = "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"></ds:Transform>";
        let exc =
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>";
        assert!(xml.contains(&format!("{env}{exc}")), "{xml}");
        let only_enveloped = xml.replace(exc, "");
        let swapped = xml.replace(&format!("{env}{exc}"), &format!("{exc}{env}"));
        let twice = xml.replace(exc, &format!("{exc}{exc}"));
        for (what, doc, words) in [
            ("only enveloped", only_enveloped, "implies inclusive"),
            ("swapped", swapped, "in that order"),
            ("twice", twice, "in that order"),
        ] {
            let n = parse(&doc).expect("parses");
            match verify_enveloped(&n, "ID", std::slice::from_ref(&vk)) {
                Err(XmlSigError::Unsupported(m)) => assert!(m.contains(words), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_long_prefix_list_is_refused_before_any_work() {
        let (xml, vk) = signed_doc();
        let exc =
            "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:Transform>";
        let list: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        let with_list = xml.replace(
            exc,
            &format!("<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{}\"></ec:InclusiveNamespaces></ds:Transform>", list.join(" ")),
        );
        let n = parse(&with_list).expect("parses");
        match verify_enveloped(&n, "ID", &[vk]) {
            Err(XmlSigError::Unsupported(m)) => assert!(m.contains("PrefixList"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
