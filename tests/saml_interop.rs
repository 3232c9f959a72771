//! SAML interop as SPs other than ours see it, against a real `causeway serve`: every
//! NameID format an IdP is expected to issue (and a signed error Response, not a page,
//! for a policy, context or binding it cannot meet), pairwise persistent NameIDs, and
//! signed metadata, checked by `xmlsec1` and `xmllint`. Per-application settings are in
//! `saml_interop_settings.rs`. The tools come from `scripts/install-test-tools.sh`.

mod common;

use std::process::Command;

use common::endpoint::{form_action, Browser, Endpoint};
use common::federation::*;
use common::saml::*;

#[test]
fn every_issued_nameid_format_gets_a_response_and_an_unmeetable_policy_a_signed_error_at_the_acs() {
    let (ep, pw) = endpoint_with_user("saml-nameid", "");
    let entity = "https://sp.interop.test/metadata";
    let acs = "https://sp.interop.test/acs";
    let md = ep.dir.join("sp.xml");
    std::fs::write(&md, sp_metadata(entity, acs)).expect("write");
    register(&ep, &md, &[]);
    wait_loaded(&ep, entity);
    let cert = idp_cert(&ep);
    let b = Browser::new(&ep.dir.join("browser"));

    // Transient, as SimpleSAMLphp asks by default: a signed Response, not an HTML 400.
    let start = sso(
        &ep,
        &authn(
            entity,
            "_t1",
            &format!("Format=\"{TRANSIENT}\" AllowCreate=\"true\""),
        ),
    );
    let page = sign_in_from(&ep, &b, &start, USER, &pw);
    assert_eq!(form_action(&page).as_deref(), Some(acs));
    let xml = response_of(&page);
    assert_eq!(
        status_codes(&xml),
        vec!["urn:oasis:names:tc:SAML:2.0:status:Success"]
    );
    let (format, t1) = name_id(&xml);
    assert_eq!(format, TRANSIENT, "{xml}");
    let file = ep.dir.join("transient.xml");
    std::fs::write(&file, &xml).expect("write");
    let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, None);
    assert!(ok, "Response signature: {e}");
    let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, Some(ASSERTION_SIG));
    assert!(ok, "Assertion signature: {e}");
    // A second sign-on in the session: another transient value.
    let ask = |id: &str, policy: &str| {
        let (s, _, page, _) = b.follow(&ep.url, &sso(&ep, &authn(entity, id, policy)));
        assert_eq!(s, 200, "{page}");
        assert_eq!(form_action(&page).as_deref(), Some(acs), "{page}");
        response_of(&page)
    };
    let (_, t2) = name_id(&ask("_t2", &format!("Format=\"{TRANSIENT}\"")));
    assert!(
        !t1.is_empty() && t1 != t2,
        "transient ids are fresh: {t1} {t2}"
    );

    // Persistent (AllowCreate false, SPNameQualifier the SP itself): pairwise, stable.
    let id = immutable_id(&ep);
    let policy =
        format!("Format=\"{PERSISTENT}\" AllowCreate=\"false\" SPNameQualifier=\"{entity}\"");
    let (format, p1) = name_id(&ask("_p1", &policy));
    let (_, p2) = name_id(&ask("_p2", &format!("Format=\"{PERSISTENT}\"")));
    assert_eq!(format, PERSISTENT);
    assert_eq!(p1, p2, "persistent ids are stable");
    assert!(
        !p1.is_empty() && p1 != id,
        "pairwise, not the immutable id {id}: {p1}"
    );
    // emailAddress: the mail address; unspecified or no policy leave the choice to us
    // (the metadata lists no format): persistent.
    assert_eq!(
        name_id(&ask("_e", &format!("Format=\"{EMAIL}\""))),
        (EMAIL.into(), USER.into())
    );
    assert_eq!(
        name_id(&ask("_u", &format!("Format=\"{UNSPECIFIED}\""))),
        (PERSISTENT.into(), p1.clone())
    );
    assert_eq!(name_id(&ask("_n", "")), (PERSISTENT.into(), p1.clone()));

    // A format we do not issue, and an affiliation: a signed error Response at the
    // verified ACS (with InResponseTo), never a page, and a log line saying why.
    for (req, policy, why) in [
        ("_k", format!("Format=\"{KERBEROS}\""), "kerberos"),
        (
            "_q",
            format!("Format=\"{PERSISTENT}\" SPNameQualifier=\"urn:affiliation:other\""),
            "urn:affiliation:other",
        ),
    ] {
        let xml = ask(req, &policy);
        assert_eq!(status_codes(&xml), vec![RESPONDER, INVALID_POLICY], "{xml}");
        assert!(!xml.contains("Assertion"), "no assertion: {xml}");
        assert!(xml.contains(&format!("InResponseTo=\"{req}\"")), "{xml}");
        let file = ep.dir.join("error.xml");
        std::fs::write(&file, &xml).expect("write");
        let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, None);
        assert!(ok, "the error Response is signed: {e}");
        let logs = ep.logs();
        assert!(
            logs.lines()
                .any(|l| l.contains("status=InvalidNameIDPolicy") && l.contains(why)),
            "the log says why ({why}): {logs}"
        );
    }

    // Siblings: an authentication context stronger than a password (MFA asked for) and
    // an answer binding we do not offer are answered the same way, never as a page.
    let mfa = authn(entity, "_mfa", "").replace(
        "</samlp:AuthnRequest>",
        "<samlp:RequestedAuthnContext Comparison=\"minimum\"><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>",
    );
    let artifact =
        authn(entity, "_art", "").replace("bindings:HTTP-POST", "bindings:HTTP-Artifact");
    let ppt = authn(entity, "_ppt", "").replace(
        "</samlp:AuthnRequest>",
        "<samlp:RequestedAuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></samlp:RequestedAuthnContext></samlp:AuthnRequest>",
    );
    let answer = |xml: &str| {
        let (s, _, page, _) = b.follow(&ep.url, &sso(&ep, xml));
        assert_eq!(s, 200, "{page}");
        assert_eq!(form_action(&page).as_deref(), Some(acs), "{page}");
        response_of(&page)
    };
    for (xml, second, why) in [
        (
            &mfa,
            "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext",
            "MobileTwoFactorContract",
        ),
        (
            &artifact,
            "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding",
            "HTTP-Artifact",
        ),
    ] {
        let r = answer(xml);
        assert_eq!(status_codes(&r), vec![RESPONDER, second], "{r}");
        assert!(!r.contains("Assertion"), "{r}");
        assert!(
            ep.logs()
                .lines()
                .any(|l| l.contains(why) && l.contains("SAML error")),
            "{why}"
        );
    }
    // Exactly what a sign-in here is: an assertion.
    assert_eq!(
        status_codes(&answer(&ppt)),
        vec!["urn:oasis:names:tc:SAML:2.0:status:Success"]
    );
}

#[test]
fn persistent_nameids_are_pairwise_per_application_unless_it_is_set_to_the_immutable_id() {
    let (ep, pw) = endpoint_with_user("saml-pairwise", "");
    let apps = [
        (
            "https://a.interop.test/metadata",
            "https://a.interop.test/acs",
            vec![],
        ),
        (
            "https://b.interop.test/metadata",
            "https://b.interop.test/acs",
            vec![],
        ),
        (
            "https://m365.interop.test/metadata",
            "https://m365.interop.test/acs",
            vec!["--persistent-id", "immutable-id"],
        ),
    ];
    for (i, (entity, acs, extra)) in apps.iter().enumerate() {
        let md = ep.dir.join(format!("sp{i}.xml"));
        std::fs::write(&md, sp_metadata(entity, acs)).expect("write");
        register(&ep, &md, extra);
    }
    for (entity, _, _) in &apps {
        wait_loaded(&ep, entity);
    }
    let id = immutable_id(&ep);
    let persistent = format!("Format=\"{PERSISTENT}\"");
    // Two separate browser sessions: the ids must not depend on the session.
    let mut seen = Vec::new();
    for run in 0..2 {
        let b = Browser::new(&ep.dir.join(format!("browser{run}")));
        let mut ids = Vec::new();
        for (n, (entity, _, _)) in apps.iter().enumerate() {
            let start = sso(&ep, &authn(entity, &format!("_r{run}{n}"), &persistent));
            let page = if n == 0 {
                sign_in_from(&ep, &b, &start, USER, &pw)
            } else {
                b.follow(&ep.url, &start).2
            };
            ids.push(name_id(&response_of(&page)).1);
        }
        seen.push(ids);
    }
    assert_eq!(seen[0], seen[1], "stable across sessions");
    let ids = &seen[0];
    assert_ne!(
        ids[0], ids[1],
        "two applications cannot join their records on the NameID"
    );
    assert!(
        ids[0] != id && ids[1] != id,
        "pairwise ids are not the immutable id"
    );
    assert_eq!(
        ids[2], id,
        "the application set to the immutable id gets it"
    );
    // The key behind them is private to the endpoint's owner.
    use std::os::unix::fs::PermissionsExt;
    let key = ep.data().join("token-signing/pairwise-nameid.key");
    let mode = std::fs::metadata(&key)
        .expect("pairwise key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn signed_saml_and_wsfed_metadata_verify_with_xmlsec1_and_carry_valid_until_and_cache_duration() {
    let tools = tools();
    let config = "[saml]\nsign_metadata = true\nmetadata_valid_for = \"2d\"\nmetadata_cache_duration = \"2h\"\n";
    let ep = Endpoint::start("saml-metadata", config, &[]);
    let before = xs_time(2 * 86_400 - 5);
    let (s, _, md) = Browser::new(&ep.dir.join("md")).get(&format!("{}/saml/metadata", ep.url));
    let after = xs_time(2 * 86_400 + 5);
    assert_eq!(s, 200);
    assert!(md.contains("cacheDuration=\"PT7200S\""), "{md}");
    let until = md
        .split("validUntil=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("validUntil");
    assert!(
        before.as_str() <= until && until <= after.as_str(),
        "{before} <= {until} <= {after}"
    );
    assert!(md.contains(TRANSIENT), "transient is offered: {md}");
    let file = ep.dir.join("idp-metadata.xml");
    std::fs::write(&file, &md).expect("write");
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(tools.join("xsd/saml-schema-metadata-2.0.xsd"))
        .arg(&file)
        .output()
        .expect("xmllint");
    assert!(
        out.status.success(),
        "schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = write_pem(&ep.dir, "idp.pem", &metadata_certs(&md)[0]);
    let ids = ["ID|urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"];
    let (ok, e) = xmlsec_verify(&file, &cert, &ids, None);
    assert!(ok, "metadata signature: {e}");
    let tampered = ep.dir.join("tampered.xml");
    std::fs::write(&tampered, md.replace("/saml/sso", "/evil/sso")).expect("write");
    assert!(
        !xmlsec_verify(&tampered, &cert, &ids, None).0,
        "a changed copy fails"
    );
    // The WS-Federation document is signed the same way (its RoleDescriptor declares the
    // prefix its xsi:type names, which exclusive c14n leaves out).
    let (s, _, fm) = Browser::new(&ep.dir.join("fm")).get(&format!(
        "{}/FederationMetadata/2007-06/FederationMetadata.xml",
        ep.url
    ));
    assert_eq!(s, 200);
    assert!(
        fm.contains("cacheDuration=\"PT7200S\"") && fm.contains("<ds:Signature"),
        "{fm}"
    );
    let file = ep.dir.join("federation-metadata.xml");
    std::fs::write(&file, &fm).expect("write");
    let (ok, e) = xmlsec_verify(&file, &cert, &ids, None);
    assert!(ok, "FederationMetadata signature: {e}");
    let tampered = ep.dir.join("fm-tampered.xml");
    std::fs::write(&tampered, fm.replace("/wsfed<", "/evil<")).expect("write");
    assert!(
        !xmlsec_verify(&tampered, &cert, &ids, None).0,
        "a changed copy fails"
    );
}
