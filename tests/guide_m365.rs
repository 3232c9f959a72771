//! The Microsoft 365 guide, tested as far as this machine allows (Entra ID itself is not on
//! loopback): `causeway apps m365` prints the Graph PowerShell for a real `causeway serve`,
//! its `causeway apps add` line registers Entra ID's realm as printed, and a WS-Federation
//! sign-in for that realm — sent to the PassiveSignInUri the output names, as Entra ID
//! sends users — yields a token whose issuer is the IssuerUri printed, whose ImmutableID is
//! the user's, and whose signature `xmlsec1` verifies with the SigningCertificate printed.

mod common;

use std::process::Command;

use common::endpoint::{bin, form_action, hidden, pct, Browser};
use common::federation::{
    endpoint_with_user, run_printed, until_sign_in_page, write_pem, xmlsec_verify, USER,
};

/// The value of `-Name "value"` in the printed PowerShell.
fn ps_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.split(&format!("-{name} \"")).nth(1)?;
    rest.split('"').next()
}

#[test]
fn the_printed_powershell_matches_what_the_endpoint_signs_for_entra_id() {
    let (ep, pw) = endpoint_with_user("guide-m365", "");
    let out = Command::new(bin())
        .args([
            "apps",
            "m365",
            "--endpoint",
            &ep.url,
            "--domain",
            "cloud.causeway.test",
        ])
        .arg("--ca-file")
        .arg(ep.data().join("ca/ca.pem"))
        .output()
        .expect("run causeway apps m365");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("New-MgDomainFederationConfiguration -DomainId \"cloud.causeway.test\""),
        "{text}"
    );
    let issuer = ps_value(&text, "IssuerUri").expect("IssuerUri");
    let passive = ps_value(&text, "PassiveSignInUri").expect("PassiveSignInUri");
    let cert = ps_value(&text, "SigningCertificate").expect("SigningCertificate");
    assert_eq!(
        ps_value(&text, "PreferredAuthenticationProtocol"),
        Some("wsFed")
    );
    assert!(passive.starts_with(&ep.url), "{passive}");

    // Step 1 as printed.
    let add = text
        .lines()
        .find(|l| l.starts_with("causeway apps add"))
        .expect("an apps add line");
    run_printed(&ep, add);

    // Entra ID sends the browser to PassiveSignInUri with its realm (the endpoint reloads
    // registered apps within seconds: retry the start until the realm is known).
    let b = Browser::new(&ep.dir.join("entra"));
    let start = format!(
        "{passive}?wa=wsignin1.0&wtrealm={}&wctx=LoginOptions%3D3",
        pct("urn:federation:MicrosoftOnline")
    );
    let page = until_sign_in_page(&ep, &b, &start, &String::new);
    let (s, _, page) = b.sign_in(&ep.url, &page, USER, &pw);
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        form_action(&page).as_deref(),
        Some("https://login.microsoftonline.com/login.srf"),
        "{page}"
    );
    let rstr = hidden(&page, "wresult").expect("wresult");
    assert!(
        rstr.contains(&format!("Issuer=\"{issuer}\"")),
        "the token's issuer is the IssuerUri printed ({issuer}): {rstr}"
    );
    let immutable_id = rstr
        .split("AttributeName=\"ImmutableID\"")
        .nth(1)
        .and_then(|r| r.split("<saml:AttributeValue>").nth(1))
        .and_then(|r| r.split('<').next())
        .expect("an ImmutableID claim");
    let users = common::endpoint::run_cli(&ep.data(), &["users", "list"], None);
    assert!(
        !immutable_id.is_empty() && users.contains(immutable_id),
        "ImmutableID {immutable_id} is the user's immutable id: {users}"
    );
    let file = ep.dir.join("entra-rstr.xml");
    std::fs::write(&file, &rstr).expect("write");
    let pem = write_pem(&ep.dir, "printed-signing.pem", cert);
    let (ok, e) = xmlsec_verify(
        &file,
        &pem,
        &["AssertionID|urn:oasis:names:tc:SAML:1.0:assertion:Assertion"],
        None,
    );
    assert!(ok, "the printed SigningCertificate verifies the token: {e}");
}

#[test]
fn a_plain_http_endpoint_or_a_bad_domain_is_refused_with_why() {
    for (args, want) in [
        (
            [
                "--endpoint",
                "http://idp.example.com",
                "--domain",
                "corp.example.com",
            ],
            "https://",
        ),
        (
            [
                "--endpoint",
                "https://idp.example.com",
                "--domain",
                "corp example",
            ],
            "DNS domain name",
        ),
    ] {
        let out = Command::new(bin())
            .args(["apps", "m365"])
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn with_saml_p_entra_id_gets_its_immutable_id_as_persistent_name_id_and_idpemail() {
    let (ep, pw) = endpoint_with_user("guide-m365-saml", "");
    let out = Command::new(bin())
        .args([
            "apps",
            "m365",
            "--endpoint",
            &ep.url,
            "--domain",
            "cloud.causeway.test",
        ])
        .args(["--protocol", "saml", "--ca-file"])
        .arg(ep.data().join("ca/ca.pem"))
        .output()
        .expect("run causeway apps m365");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ps_value(&text, "PreferredAuthenticationProtocol"),
        Some("saml")
    );
    let issuer = ps_value(&text, "IssuerUri").expect("IssuerUri");
    let sso = ps_value(&text, "PassiveSignInUri").expect("PassiveSignInUri");
    assert_eq!(sso, format!("{}/saml/sso", ep.url));
    let cert = ps_value(&text, "SigningCertificate").expect("SigningCertificate");
    // The printed registration, with Entra ID's SAML metadata as a file of the same shape
    // (CI cannot fetch Microsoft's).
    let add = text
        .lines()
        .find(|l| l.starts_with("causeway apps add"))
        .expect("an apps add line");
    let url =
        "https://nexus.microsoftonline-p.com/federationmetadata/saml20/federationmetadata.xml";
    assert!(add.contains(url), "{add}");
    let md = ep.dir.join("entra-sp.xml");
    std::fs::write(
        &md,
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:federation:MicrosoftOnline"><md:SPSSODescriptor WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://login.microsoftonline.com/login.srf" index="0" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>"#,
    )
    .expect("metadata");
    run_printed(&ep, &add.replace(url, &md.display().to_string()));

    let b = Browser::new(&ep.dir.join("entra-saml"));
    let start = format!(
        "{}/saml/idp-init?sp={}",
        ep.url,
        pct("urn:federation:MicrosoftOnline")
    );
    let page = until_sign_in_page(&ep, &b, &start, &String::new);
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, &pw);
    assert_eq!(
        form_action(&page).as_deref(),
        Some("https://login.microsoftonline.com/login.srf")
    );
    let xml = String::from_utf8(common::endpoint::b64decode(
        &hidden(&page, "SAMLResponse").expect("SAMLResponse"),
    ))
    .expect("utf-8");
    assert!(xml.contains(&format!(">{issuer}</saml:Issuer>")), "{xml}");
    let users = common::endpoint::run_cli(&ep.data(), &["users", "list", "--json"], None);
    let id = users
        .split("\"immutable_id\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the user's immutable id");
    assert!(
        xml.contains(
            "<saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\""
        ) && xml.contains(&format!(">{id}</saml:NameID>")),
        "the persistent NameID is the immutable id {id}: {xml}"
    );
    assert!(
        xml.contains("Name=\"IDPEmail\"") && xml.contains(&format!(">{USER}<")),
        "IDPEmail carries the UPN: {xml}"
    );
    let file = ep.dir.join("entra-response.xml");
    std::fs::write(&file, &xml).expect("write");
    let pem = write_pem(&ep.dir, "printed-saml-signing.pem", cert);
    let (ok, e) = xmlsec_verify(&file, &pem, &common::federation::SAML2_IDS, None);
    assert!(
        ok,
        "the printed SigningCertificate verifies the Response: {e}"
    );
}
