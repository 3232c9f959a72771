//! SAML interop as SPs other than ours see it, against a real `causeway serve`: every
//! NameID format an IdP is expected to issue (and a signed error Response, not a page,
//! for a policy it cannot meet), pairwise persistent NameIDs, per-application settings
//! (attribute names, which parts are signed, encrypted assertions) checked by `xmlsec1`
//! and by a real SP (pysaml2, `tests/interop/saml_sp.py`), `apps add`'s refusals, and
//! signed metadata. The tools come from `scripts/install-test-tools.sh`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::endpoint::Endpoint;
use common::endpoint::{alert, b64decode, bin, deflate_b64, form_action, hidden, pct, Browser};
use common::federation::*;

const PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const KERBEROS: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos";
/// Another format we never issue, for probing (so that the log lines of the test are its own).
const ENTITY_FORMAT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity";
const INVALID_POLICY: &str = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy";
const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";

/// Unsigned SP metadata with one HTTP-POST ACS.
fn sp_metadata(entity: &str, acs: &str) -> String {
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{entity}\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs}\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"
    )
}

/// An unsigned AuthnRequest from `entity` with this NameIDPolicy (attributes as written).
fn authn(entity: &str, id: &str, policy: &str) -> String {
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

fn sso(ep: &Endpoint, xml: &str) -> String {
    format!("{}/saml/sso?SAMLRequest={}", ep.url, pct(&deflate_b64(xml)))
}

/// `causeway apps add …` on the endpoint's data directory: (succeeded, stdout+stderr).
fn apps_add(ep: &Endpoint, args: &[&str]) -> (bool, String) {
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

fn register(ep: &Endpoint, file: &Path, extra: &[&str]) -> String {
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
fn wait_loaded(ep: &Endpoint, entity: &str) {
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

fn response_of(page: &str) -> String {
    String::from_utf8(b64decode(
        &hidden(page, "SAMLResponse").unwrap_or_else(|| panic!("no SAMLResponse in {page}")),
    ))
    .expect("utf8")
}

/// The NameID's Format and value in a Response.
fn name_id(xml: &str) -> (String, String) {
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

fn status_codes(xml: &str) -> Vec<String> {
    xml.split("<samlp:StatusCode ")
        .skip(1)
        .filter_map(|p| p.split("Value=\"").nth(1)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn immutable_id(ep: &Endpoint) -> String {
    let users = ep.cli(&["users", "list"], None);
    users
        .lines()
        .find(|l| l.contains(USER))
        .and_then(|l| l.split_whitespace().find(|w| w.ends_with("==")))
        .unwrap_or_else(|| panic!("no immutable id in {users}"))
        .to_owned()
}

fn idp_cert(ep: &Endpoint) -> std::path::PathBuf {
    let (_, _, md) = Browser::new(&ep.dir.join("md")).get(&format!("{}/saml/metadata", ep.url));
    write_pem(&ep.dir, "idp.pem", &metadata_certs(&md)[0])
}

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
fn pysaml2_and_xmlsec1_accept_encrypted_assertions_oid_names_and_each_signing_choice() {
    let tools = tools();
    let (ep, pw) = endpoint_with_user("saml-settings", "");
    let dir = ep.dir.clone();
    let s = |p: &str| dir.join(p).display().to_string();
    let (ok, _, e) = python(
        &tools,
        &["keygen", "--key", &s("sp.key"), "--cert", &s("sp.crt")],
    );
    assert!(ok, "{e}");
    // Three SPs of one key: encrypted with urn:oid names, only the Assertion signed,
    // only the Response signed.
    let sps = [
        (
            "https://enc.interop.test",
            vec!["--encrypt"],
            vec![
                "--encrypt-assertions",
                "--attribute-names",
                "oid",
                "--name",
                "Interop Wiki",
            ],
        ),
        (
            "https://assertion.interop.test",
            vec![],
            vec!["--sign", "assertion"],
        ),
        (
            "https://response.interop.test",
            // Its metadata must not say WantAssertionsSigned, or the setting is refused.
            vec!["--want-signed", "response"],
            vec!["--sign", "response", "--attribute-names", "plain"],
        ),
    ];
    for (i, (base, md_extra, add_extra)) in sps.iter().enumerate() {
        let entity = format!("{base}/metadata");
        let mut a = vec![
            "metadata",
            "--entity-id",
            &entity,
            "--base-url",
            base,
            "--key",
        ];
        let (key, crt) = (s("sp.key"), s("sp.crt"));
        a.extend_from_slice(&[key.as_str(), "--cert", crt.as_str()]);
        a.extend(md_extra.iter().copied());
        let (ok, md, e) = python(&tools, &a);
        assert!(ok, "{e}");
        if i == 0 {
            assert!(
                md.contains("use=\"encryption\""),
                "pysaml2 publishes an encryption key: {md}"
            );
        }
        let file = dir.join(format!("sp{i}.xml"));
        std::fs::write(&file, md).expect("write");
        let out = register(&ep, &file, add_extra);
        if i == 0 {
            assert!(
                out.contains("encrypted") && out.contains("Interop Wiki"),
                "{out}"
            );
        }
    }
    for (base, _, _) in &sps {
        wait_loaded(&ep, &format!("{base}/metadata"));
    }
    let (_, _, idp_md) = Browser::new(&dir.join("md")).get(&format!("{}/saml/metadata", ep.url));
    std::fs::write(dir.join("idp.xml"), &idp_md).expect("write");
    let cert = write_pem(&dir, "idp.pem", &metadata_certs(&idp_md)[0]);
    std::fs::write(dir.join("pw"), &pw).expect("write");
    let ca = s("data/ca/ca.pem");
    let login = |base: &str, extra: &[&str]| {
        let entity = format!("{base}/metadata");
        let mut a: Vec<String> = [
            "login",
            "--idp-metadata",
            &s("idp.xml"),
            "--entity-id",
            &entity,
            "--base-url",
            base,
            "--key",
            &s("sp.key"),
            "--cert",
            &s("sp.crt"),
            "--ca",
            &ca,
            "--user",
            USER,
            "--password-file",
            &s("pw"),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let (ok, out, e) = python(&tools, &refs);
        assert!(ok, "pysaml2 login to {base}: {out}{e}\n{}", ep.logs());
        out
    };

    // Encrypted (and a transient NameID, as SimpleSAMLphp asks): pysaml2 decrypts it
    // with its key and checks both signatures.
    let saved = s("encrypted.xml");
    let out = login(
        sps[0].0,
        &[
            "--encrypt",
            "--nameid-format",
            "transient",
            "--save-response",
            &saved,
        ],
    );
    assert_eq!(
        json_field(&out, "encrypted").as_deref(),
        Some("true"),
        "{out}"
    );
    assert_eq!(
        json_field(&out, "name_id_format").as_deref(),
        Some(TRANSIENT),
        "{out}"
    );
    assert!(
        out.contains("urn:oid:0.9.2342.19200300.100.1.3"),
        "mail by its OID: {out}"
    );
    assert!(
        out.contains("urn:oid:1.3.6.1.4.1.5923.1.1.1.6"),
        "UPN as eduPersonPrincipalName: {out}"
    );
    let raw = std::fs::read_to_string(&saved).expect("saved response");
    assert!(
        raw.contains("EncryptedAssertion") && !raw.contains("Carla Cloud") && !raw.contains(USER),
        "nothing about the user in clear: {raw}"
    );
    assert!(raw.contains("http://www.w3.org/2009/xmlenc11#aes256-gcm") && raw.contains("rsa-oaep"));
    // xmlsec1 checks the same thing on its own: the Response's signature, then the
    // decryption with the SP's key, then the Assertion's signature inside.
    let file = dir.join("encrypted.xml");
    let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, None);
    assert!(ok, "Response signature over the encrypted assertion: {e}");
    let dec = Command::new("xmlsec1")
        .args(["--decrypt", "--privkey-pem"])
        .arg(dir.join("sp.key"))
        .arg(&file)
        .output()
        .expect("xmlsec1");
    assert!(
        dec.status.success(),
        "xmlsec1 --decrypt: {}",
        String::from_utf8_lossy(&dec.stderr)
    );
    let plain = String::from_utf8_lossy(&dec.stdout).into_owned();
    assert!(
        plain.contains("Carla Cloud") && !plain.contains("EncryptedData"),
        "{plain}"
    );
    let dfile = dir.join("decrypted.xml");
    std::fs::write(&dfile, &plain).expect("write");
    let (ok, e) = xmlsec_verify(&dfile, &cert, &SAML2_IDS, Some(ASSERTION_SIG));
    assert!(ok, "the decrypted Assertion's signature: {e}");

    // Only the Assertion signed; then only the Response (with plain attribute names).
    for (i, want, sigs_at) in [(1, "assertion", "Assertion"), (2, "response", "Response")] {
        let saved = s(&format!("signed-{want}.xml"));
        let out = login(
            sps[i].0,
            &["--want-signed", want, "--save-response", &saved],
        );
        assert_eq!(
            json_field(&out, "encrypted").as_deref(),
            Some("false"),
            "{out}"
        );
        let raw = std::fs::read_to_string(&saved).expect("saved");
        assert_eq!(
            raw.matches("<ds:Signature xmlns").count(),
            1,
            "one signature: {raw}"
        );
        let node = format!("//*[local-name()='{sigs_at}']/*[local-name()='Signature']");
        let (ok, e) = xmlsec_verify(Path::new(&saved), &cert, &SAML2_IDS, Some(&node));
        assert!(ok, "{sigs_at} signature: {e}");
        if i == 2 {
            assert!(
                raw.contains("Name=\"mail\"") && raw.contains("attrname-format:basic"),
                "plain names: {raw}"
            );
        }
    }
}

#[test]
fn apps_add_honours_the_name_refuses_plain_http_and_duplicates_and_bad_settings_name_their_line() {
    let (ep, pw) = endpoint_with_user("saml-apps-add", "");
    let write = |name: &str, entity: &str, acs: &str| {
        let p = ep.dir.join(name);
        std::fs::write(&p, sp_metadata(entity, acs)).expect("write");
        p.display().to_string()
    };
    // Plain http:// to another host: refused; on loopback: accepted.
    let plain = write(
        "plain.xml",
        "https://plain.interop.test/metadata",
        "http://plain.interop.test/acs",
    );
    let (ok, out) = apps_add(&ep, &["--saml-metadata", &plain]);
    assert!(
        !ok && out.contains("plain http://") && out.contains("loopback"),
        "{out}"
    );
    let local = write(
        "local.xml",
        "https://local.interop.test/metadata",
        "http://127.0.0.1:9/acs",
    );
    let (ok, out) = apps_add(&ep, &["--saml-metadata", &local]);
    assert!(ok, "{out}");
    // The name is kept, listed and shown on the sign-in page.
    let entity = "https://wiki.interop.test/metadata";
    let wiki = write("wiki.xml", entity, "https://wiki.interop.test/acs");
    let (ok, out) = apps_add(&ep, &["--saml-metadata", &wiki, "--name", "Team Wiki"]);
    assert!(ok && out.contains("Team Wiki"), "{out}");
    let list = ep.cli(&["apps", "list"], None);
    assert!(list.contains(&format!("{entity} (Team Wiki)")), "{list}");
    // Again: refused without --replace (the registration is unchanged), replaced with it.
    let (ok, out) = apps_add(&ep, &["--saml-metadata", &wiki, "--name", "Other"]);
    assert!(
        !ok && out.contains("registered already") && out.contains("--replace"),
        "{out}"
    );
    assert!(ep.cli(&["apps", "list"], None).contains("(Team Wiki)"));
    let (ok, out) = apps_add(
        &ep,
        &["--saml-metadata", &wiki, "--name", "Team Wiki", "--replace"],
    );
    assert!(ok, "{out}");
    // Encryption to an SP whose metadata has no encryption key: refused.
    let nokey = write(
        "nokey.xml",
        "https://nokey.interop.test/metadata",
        "https://nokey.interop.test/acs",
    );
    let (ok, out) = apps_add(&ep, &["--saml-metadata", &nokey, "--encrypt-assertions"]);
    assert!(!ok && out.contains("no encryption key"), "{out}");
    // WS-Federation realms too.
    let realm = [
        "--wsfed-realm",
        "urn:interop:rp",
        "--reply-url",
        "https://rp.interop.test/",
    ];
    assert!(apps_add(&ep, &realm).0);
    let (ok, out) = apps_add(&ep, &realm);
    assert!(!ok && out.contains("--replace"), "{out}");
    let (ok, out) = apps_add(
        &ep,
        &[
            "--wsfed-realm",
            "urn:interop:plain",
            "--reply-url",
            "http://rp.interop.test/",
        ],
    );
    assert!(!ok && out.contains("plain http://"), "{out}");

    wait_loaded(&ep, entity);
    let b = Browser::new(&ep.dir.join("browser"));
    let (s, _, page, _) = b.follow(&ep.url, &sso(&ep, &authn(entity, "_w", "")));
    assert_eq!(s, 200);
    assert!(
        page.contains("Team Wiki") && page.contains("id=\"password\""),
        "{page}"
    );
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, &pw);
    assert!(
        page.contains("Continuing to <strong>Team Wiki</strong>"),
        "{}",
        alert(&page).unwrap_or(page.clone())
    );

    // A settings file edited by hand into something wrong: the error names file and line.
    let sidecar = std::fs::read_dir(ep.data().join("apps"))
        .expect("apps dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && std::fs::read_to_string(p).is_ok_and(|t| t.contains("Team Wiki"))
        })
        .expect("the settings file beside the metadata");
    std::fs::write(&sidecar, "name = \"Team Wiki\"\nsign = \"everything\"\n").expect("write");
    let out = Command::new(bin())
        .args(["apps", "list", "--data-dir"])
        .arg(ep.data())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("line 2")
            && err.contains(&sidecar.display().to_string()),
        "{err}"
    );
}

#[test]
fn signed_metadata_verifies_with_xmlsec1_and_carries_valid_until_and_cache_duration() {
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
}
