//! Unit tests of the SAML messages: requests read, responses and errors built.

use super::*;

#[test]
fn a_signed_request_is_accepted_only_inside_its_issue_instant_window() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let (_, xml) = build_authn_request("sp", "https://idp/saml/sso", "https://sp/acs", t0);
    let r = AuthnRequest::parse(&xml).expect("parses");
    assert_eq!(r.issue_instant, Some(t0));
    let end = t0 + MAX_REQUEST_AGE + CLOCK_SKEW;
    assert_eq!(
        r.check_issue_instant(t0).expect("fresh"),
        end + Duration::from_secs(1)
    );
    assert!(r.check_issue_instant(end).is_ok(), "the last second");
    let stale = r
        .check_issue_instant(end + Duration::from_secs(1))
        .expect_err("stale")
        .to_string();
    assert!(
        stale.contains("more than 10 minutes before") && stale.contains("stale or replayed"),
        "{stale}"
    );
    assert!(r.check_issue_instant(t0 - CLOCK_SKEW).is_ok(), "skew");
    let ahead = r
        .check_issue_instant(t0 - CLOCK_SKEW - Duration::from_secs(1))
        .expect_err("future")
        .to_string();
    assert!(ahead.contains("5 minutes ahead"), "{ahead}");
    let none = AuthnRequest::parse(&xml.replace("IssueInstant=", "X="))
        .expect("parses")
        .check_issue_instant(t0)
        .expect_err("missing")
        .to_string();
    assert!(none.contains("has no IssueInstant"), "{none}");
    let bad = AuthnRequest::parse(&xml.replace("IssueInstant=\"", "IssueInstant=\"x"))
        .expect_err("invalid")
        .to_string();
    assert!(bad.contains("invalid IssueInstant"), "{bad}");
}

#[test]
fn authn_requests_parse_and_hostile_ones_do_not() {
    let (_, xml) = build_authn_request(
        "https://sp.example/meta",
        "https://idp/saml/sso",
        "https://sp.example/acs",
        SystemTime::now(),
    );
    let r = AuthnRequest::parse(&xml).expect("parses");
    assert_eq!(r.issuer, "https://sp.example/meta");
    assert_eq!(r.acs_url.as_deref(), Some("https://sp.example/acs"));
    assert!(AuthnRequest::parse(&xml.replace("Version=\"2.0\"", "Version=\"1.1\"")).is_err());
    assert!(AuthnRequest::parse("<!DOCTYPE x [<!ENTITY e \"e\">]><x>&e;</x>").is_err());
    assert!(AuthnRequest::parse(&xml.replace("AuthnRequest", "LogoutRequest")).is_err());
    assert!(AuthnRequest::parse(&xml.replace("ID=\"_", "ID=\"1")).is_err());
}

fn params<'a>(attrs: &'a [SamlAttribute], now: SystemTime) -> ResponseParams<'a> {
    ResponseParams {
        issuer: "https://idp/saml/metadata",
        acs_url: "https://sp.example/acs",
        audience: "https://sp.example/meta",
        in_response_to: Some("_r"),
        name_id: "n",
        name_id_format: super::super::NAMEID_TRANSIENT,
        session_index: "_s",
        authn_instant: now,
        session_not_on_or_after: now + Duration::from_secs(3600),
        now,
        validity: Duration::from_secs(300),
        attributes: attrs,
    }
}

#[test]
fn each_signing_choice_signs_exactly_the_parts_it_names() {
    use crate::xml::{parse, test_key, verify_enveloped};
    let (key, vk) = test_key();
    let attrs = [SamlAttribute {
        name: "mail",
        friendly: "mail",
        values: vec!["a@b".into()],
    }];
    let p = params(&attrs, SystemTime::now());
    for (sign, response_signed, assertion_signed) in [
        (SignParts::Both, true, true),
        (SignParts::Response, true, false),
        (SignParts::Assertion, false, true),
    ] {
        let o = ResponseOptions {
            sign,
            encrypt_to: None,
            attribute_name_format: super::super::ATTRNAME_BASIC,
        };
        let xml = build_response_with(&p, &o, &key).expect("builds");
        let root = parse(&xml).expect("parses");
        let assertion = root.child(ns::SAML, "Assertion").expect("assertion");
        assert_eq!(
            verify_enveloped(&root, "ID", std::slice::from_ref(&vk)).is_ok(),
            response_signed,
            "{sign:?}"
        );
        assert_eq!(
            verify_enveloped(assertion, "ID", std::slice::from_ref(&vk)).is_ok(),
            assertion_signed,
            "{sign:?}"
        );
        assert!(xml.contains("NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\""));
    }
}

#[test]
fn the_name_id_policy_is_read_and_a_bad_allow_create_or_oversized_qualifier_refused() {
    let (_, xml) = build_authn_request(
        "sp",
        "https://idp/saml/sso",
        "https://sp/acs",
        SystemTime::now(),
    );
    let r = AuthnRequest::parse(&xml).expect("parses");
    assert_eq!(r.name_id_allow_create, Some(true));
    assert_eq!(r.name_id_sp_name_qualifier, None);
    let with_q = xml.replace(
        "AllowCreate=\"true\"",
        "AllowCreate=\"0\" SPNameQualifier=\"urn:aff\"",
    );
    let r = AuthnRequest::parse(&with_q).expect("parses");
    assert_eq!(r.name_id_allow_create, Some(false));
    assert_eq!(r.name_id_sp_name_qualifier.as_deref(), Some("urn:aff"));
    let bad = xml.replace("AllowCreate=\"true\"", "AllowCreate=\"yes\"");
    assert!(AuthnRequest::parse(&bad)
        .expect_err("yes")
        .to_string()
        .contains("AllowCreate"));
    let long = xml.replace(
        "AllowCreate=\"true\"",
        &format!("SPNameQualifier=\"{}\"", "q".repeat(2000)),
    );
    assert!(AuthnRequest::parse(&long)
        .expect_err("long")
        .to_string()
        .contains("oversized"));
}

#[test]
fn the_requested_authn_context_is_read_bounded_and_a_bad_comparison_refused() {
    let (_, xml) = build_authn_request(
        "sp",
        "https://idp/saml/sso",
        "https://sp/acs",
        SystemTime::now(),
    );
    assert_eq!(
        AuthnRequest::parse(&xml)
            .expect("parses")
            .requested_authn_context,
        None
    );
    let class = "<saml:AuthnContextClassRef xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"> urn:x </saml:AuthnContextClassRef>";
    let with = |attrs: &str, n: usize| {
        xml.replace(
            "</samlp:AuthnRequest>",
            &format!(
                "<samlp:RequestedAuthnContext{attrs}>{}</samlp:RequestedAuthnContext></samlp:AuthnRequest>",
                class.repeat(n)
            ),
        )
    };
    let r = AuthnRequest::parse(&with("", 1)).expect("parses");
    assert_eq!(
        r.requested_authn_context,
        Some(RequestedAuthnContext {
            comparison: "exact".into(),
            class_refs: vec!["urn:x".into()],
        })
    );
    let many = AuthnRequest::parse(&with(" Comparison=\"minimum\"", 40)).expect("parses");
    let ctx = many.requested_authn_context.expect("context");
    assert_eq!(
        (ctx.comparison.as_str(), ctx.class_refs.len()),
        ("minimum", MAX_AUTHN_CONTEXT_CLASSES)
    );
    let e = AuthnRequest::parse(&with(" Comparison=\"most\"", 1)).expect_err("bad");
    assert!(e.to_string().contains("Comparison"), "{e}");
}
