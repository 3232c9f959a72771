use super::*;
use crate::test_key;
use causeway_saml::saml2::messages::{build_response, ResponseParams, SamlAttribute};
use causeway_saml::saml2::NAMEID_PERSISTENT;
use causeway_saml::xml::XmlSigError;

fn attrs() -> Vec<SamlAttribute> {
    vec![
        SamlAttribute {
            name: "urn:upn",
            friendly: "upn",
            values: vec!["alice@example.com".into()],
        },
        SamlAttribute {
            name: "urn:groups",
            friendly: "groups",
            values: vec!["a & b".into(), "<c>".into()],
        },
    ]
}

#[test]
fn a_response_we_sign_passes_a_careful_sp_and_a_changed_one_does_not() {
    let (key, vk) = test_key();
    let now = SystemTime::now();
    let a = attrs();
    let p = ResponseParams {
        issuer: "https://idp/saml/metadata",
        acs_url: "https://sp.example/acs",
        audience: "https://sp.example/meta",
        in_response_to: Some("_req1"),
        name_id: "AAECAwQFBgcICQoLDA0ODw==",
        name_id_format: NAMEID_PERSISTENT,
        session_index: "_s1",
        authn_instant: now,
        session_not_on_or_after: now + Duration::from_secs(3600),
        now,
        validity: Duration::from_secs(300),
        attributes: &a,
    };
    let xml = build_response(&p, &key);
    let ok = validate_response(
        &xml,
        std::slice::from_ref(&vk),
        p.audience,
        p.acs_url,
        Some("_req1"),
        now,
    )
    .expect("valid");
    assert_eq!(ok.name_id, p.name_id);
    assert_eq!(ok.session_index.as_deref(), Some("_s1"));
    assert_eq!(
        ok.attributes[1].1,
        vec!["a & b".to_string(), "<c>".to_string()]
    );
    let v = |x: &str, irt: Option<&str>, t: SystemTime| {
        validate_response(x, std::slice::from_ref(&vk), p.audience, p.acs_url, irt, t)
    };
    assert!(matches!(
        v(&xml.replace("alice@", "mallory@"), Some("_req1"), now),
        Err(SpError::Signature(XmlSigError::DigestMismatch))
    ));
    assert!(v(&xml, Some("_other"), now).is_err());
    assert!(v(&xml, Some("_req1"), now + Duration::from_secs(900)).is_err());
    let (_, other) = test_key();
    assert!(validate_response(&xml, &[other], p.audience, p.acs_url, Some("_req1"), now).is_err());
}
