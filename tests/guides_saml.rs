//! The Google Workspace and Salesforce guides, tested as far as this machine allows (the
//! services are not on loopback): the metadata and `causeway apps add` lines the guides
//! give are taken from the guide files themselves, registered with a real `causeway serve`,
//! and an IdP-initiated sign-in shows what Google or Salesforce would receive: the ACS, the
//! NameID format and the NameID value they match users by.

mod common;

use std::path::Path;

use common::endpoint::{b64decode, form_action, hidden, pct, Browser, Endpoint};
use common::federation::{endpoint_with_user, run_printed, until_sign_in_page, USER};

fn guide(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/guides")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The first fenced block of `lang` in `text`.
fn block<'a>(text: &'a str, lang: &str) -> &'a str {
    text.split(&format!("```{lang}\n"))
        .nth(1)
        .and_then(|r| r.split("```").next())
        .unwrap_or_else(|| panic!("no ```{lang} block"))
}

/// Runs the guide's `causeway apps add` line with `metadata` as its file.
fn register(ep: &Endpoint, line: &str, file: &str, metadata: &str) {
    std::fs::write(ep.dir.join(file), metadata).expect("metadata file");
    run_printed(ep, line);
}

/// Signs in IdP-initiated to `sp` (retrying until the endpoint has loaded it) and returns
/// the ACS the Response goes to and the Response's XML.
fn sign_in_to(ep: &Endpoint, pw: &str, sp: &str) -> (String, String) {
    let b = Browser::new(&ep.dir.join(format!("b-{}", sp.len())));
    let start = format!("{}/saml/idp-init?sp={}", ep.url, pct(sp));
    let page = until_sign_in_page(ep, &b, &start, &String::new);
    let (s, _, page) = b.sign_in(&ep.url, &page, USER, pw);
    assert_eq!(s, 200, "{page}");
    let acs = form_action(&page).expect("an auto-post form");
    let xml = String::from_utf8(b64decode(
        &hidden(&page, "SAMLResponse").expect("SAMLResponse"),
    ))
    .expect("utf-8");
    (acs, xml)
}

fn name_id(xml: &str) -> (String, String) {
    let rest = xml.split("<saml:NameID").nth(1).expect("a NameID");
    let format = rest
        .split("Format=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a NameID Format")
        .to_owned();
    let value = rest
        .split_once('>')
        .and_then(|(_, r)| r.split('<').next())
        .expect("a NameID value")
        .to_owned();
    (format, value)
}

#[test]
fn google_workspace_gets_an_email_name_id_at_its_profile_acs() {
    let (ep, pw) = endpoint_with_user("guide-google", "");
    let text = guide("google-workspace.md");
    let add = block(&text, "sh")
        .lines()
        .find(|l| l.starts_with("causeway apps add"))
        .expect("an apps add line");
    register(&ep, add, "google-sp.xml", block(&text, "xml"));
    let (acs, xml) = sign_in_to(&ep, &pw, "https://accounts.google.com/samlrp/03abc");
    assert_eq!(acs, "https://accounts.google.com/samlrp/acs?rpid=03abc");
    let (format, value) = name_id(&xml);
    assert_eq!(
        format, "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
        "{xml}"
    );
    assert_eq!(value, USER, "the user's mail");
}

#[test]
fn salesforce_gets_the_upn_as_an_unspecified_name_id() {
    let (ep, pw) = endpoint_with_user("guide-salesforce", "");
    let text = guide("salesforce.md");
    let add = block(&text, "sh")
        .lines()
        .find(|l| l.starts_with("causeway apps add"))
        .expect("an apps add line");
    // Salesforce's downloaded SP metadata has this shape (entity id = the My Domain URL).
    let sf = "https://example-dev-ed.my.salesforce.com";
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{sf}"><md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{sf}?so=00D000000000001" index="0" isDefault="true"/></md:SPSSODescriptor></md:EntityDescriptor>"#
    );
    register(&ep, add, "salesforce-sp.xml", &metadata);
    let (acs, xml) = sign_in_to(&ep, &pw, sf);
    assert_eq!(acs, format!("{sf}?so=00D000000000001"));
    let (format, value) = name_id(&xml);
    assert_eq!(
        format, "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        "{xml}"
    );
    assert_eq!(value, USER, "the UPN, matched against the Federation ID");
}
