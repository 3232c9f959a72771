//! The Microsoft 365 guide, tested as far as this machine allows (Entra ID itself is not on
//! loopback): `causeway apps m365` prints the Graph PowerShell for a real `causeway serve`,
//! its `causeway apps add` line registers Entra ID's realm as printed, and a WS-Federation
//! sign-in for that realm — sent to the PassiveSignInUri the output names, as Entra ID
//! sends users — yields a token whose issuer is the IssuerUri printed, whose ImmutableID is
//! the user's, and whose signature `xmlsec1` verifies with the SigningCertificate printed.

mod common;

use std::process::Command;

use common::endpoint::{bin, form_action, hidden, pct, Browser};
use common::federation::{endpoint_with_user, write_pem, xmlsec_verify, USER};

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
    let run = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {} --data-dir '{}'",
            bin(),
            add.trim_start_matches("causeway "),
            ep.data().display()
        ))
        .output()
        .expect("sh");
    assert!(
        run.status.success(),
        "{add}: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    // Entra ID sends the browser to PassiveSignInUri with its realm (the endpoint reloads
    // registered apps within seconds: retry the start until the realm is known).
    let b = Browser::new(&ep.dir.join("entra"));
    let start = format!(
        "{passive}?wa=wsignin1.0&wtrealm={}&wctx=LoginOptions%3D3",
        pct("urn:federation:MicrosoftOnline")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        let (s, _, page, _) = b.follow(&ep.url, &start);
        if s == 200 && page.contains("id=\"password\"") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{s}: {page}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
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
