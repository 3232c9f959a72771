//! Helpers of the SAML interop tests: SP metadata and AuthnRequests written by hand, the
//! endpoint's `apps add`, waiting until it has loaded an application, and reading what
//! it answered (NameID, status codes).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::endpoint::{b64decode, bin, deflate_b64, hidden, pct, Browser, Endpoint};
use super::federation::{metadata_certs, write_pem, xs_time, USER};

pub const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
pub const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
pub const KERBEROS: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos";
/// Another format we never issue, for probing (so that the log lines of the test are its own).
pub const ENTITY_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
pub const INVALID_POLICY: &str = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
pub const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";

/// Unsigned SP metadata with one HTTP-POST ACS.
pub fn sp_metadata(entity: &str, acs: &str) -> String {
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{entity}\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs}\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"
    )
}

/// An unsigned AuthnRequest from `entity` with this NameIDPolicy (attributes as written).
pub fn authn(entity: &str, id: &str, policy: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{}\" ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\"><saml:Issuer>{entity}</saml:Issuer>{}</samlp:AuthnRequest>",
        xs_time(0),
        if policy.is_empty() {
            String::new()
        } else {
            format!("<samlp:NameIDPolicy {policy}/>")
        }
    )
}

pub fn sso(ep: &Endpoint, xml: &str) -> String {
    format!("{}/saml/sso?SAMLRequest={}", ep.url, pct(&deflate_b64(xml)))
}

/// `causeway apps add …` on the endpoint's data directory: (succeeded, stdout+stderr).
pub fn apps_add(ep: &Endpoint, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["apps", "add"])
        .args(args)
        .arg("--data-dir")
        .arg(ep.data())
        .output()
        .expect("run causeway");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub fn register(ep: &Endpoint, file: &Path, extra: &[&str]) -> String {
    let f = file.display().to_string();
    let mut args = vec!["--saml-metadata", f.as_str()];
    args.extend_from_slice(extra);
    let (ok, out) = apps_add(ep, &args);
    assert!(ok && out.contains("registered"), "{out}");
    out
}

/// Waits until the endpoint has loaded `entity` (it reloads applications every 10 s): a
/// request for a format we never issue is answered at its ACS once the SP is known, and
/// with "not registered" before.
pub fn wait_loaded(ep: &Endpoint, entity: &str) {
    let b = Browser::new(&ep.dir.join("probe"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = authn(entity, "_probe", &format!("Format=\"{ENTITY_FORMAT}\""));
        let (s, _, body) = b.get(&sso(ep, &probe));
        if s == 200 && hidden(&body, "SAMLResponse").is_some() {
            return;
        }
        assert!(
            body.contains("is not registered"),
            "unexpected answer while waiting for {entity}: {s} {body}"
        );
        assert!(Instant::now() < deadline, "{entity} not loaded: {body}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn response_of(page: &str) -> String {
    String::from_utf8(b64decode(
        &hidden(page, "SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse in {page}")),
    ))
    .expect("utf8")
}

/// The NameID's Format and value in a Response.
pub fn name_id(xml: &str) -> (String, String) {
    let el = xml
        .split("<saml:NameID ")
        .nth(1)
        .unwrap_or_else(|| panic!("no NameID in {xml}"));
    let format = el
        .split("Format=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let value = el
        .split_once('>')
        .and_then(|(_, r)| r.split_once("</saml:NameID>"))
        .map(|(v, _)| v.to_owned())
        .unwrap_or_default();
    (format, value)
}

pub fn status_codes(xml: &str) -> Vec<String> {
    xml.split("<samlp:StatusCode ")
        .skip(1)
        .filter_map(|p| p.split("Value=\"").nth(1)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

pub fn immutable_id(ep: &Endpoint) -> String {
    let users = ep.cli(&["users", "list"], None);
    users
        .lines()
        .find(|l| l.contains(USER))
        .and_then(|l| l.split_whitespace().find(|w| w.ends_with("==")))
        .unwrap_or_else(|| panic!("no immutable id in {users}"))
        .to_owned()
}

pub fn idp_cert(ep: &Endpoint) -> std::path::PathBuf {
    let (_, _, md) = Browser::new(&ep.dir.join("md")).get(&format!("{}/saml/metadata", ep.url));
    write_pem(&ep.dir, "idp.pem", &metadata_certs(&md)[0])
}
