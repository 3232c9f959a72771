use super::*;
use crate::saml::messages::{build_response, AuthnRequest, ResponseParams, SamlAttribute};
use crate::saml::{build_authn_request_for_tests, NAMEID_PERSISTENT};
use crate::xml::test_key;

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
            crate::saml::BINDING_REDIRECT,
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

#[test]
fn authn_requests_parse_and_hostile_ones_do_not() {
    let (_, xml) = build_authn_request_for_tests();
    let r = AuthnRequest::parse(&xml).expect("parses");
    assert_eq!(r.issuer, "https://sp.example/meta");
    assert_eq!(r.acs_url.as_deref(), Some("https://sp.example/acs"));
    assert!(AuthnRequest::parse(&xml.replace("Version=\"2.0\"", "Version=\"1.1\"")).is_err());
    assert!(AuthnRequest::parse("<!DOCTYPE x [<!ENTITY e \"e\">]><x>&e;</x>").is_err());
    assert!(AuthnRequest::parse(&xml.replace("AuthnRequest", "LogoutRequest")).is_err());
    assert!(AuthnRequest::parse(&xml.replace("ID=\"_", "ID=\"1")).is_err());
}
