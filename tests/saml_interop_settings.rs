//! Per-application SAML settings against a real `causeway serve`: attribute names,
//! which parts are signed and encrypted assertions, checked by a real SP (pysaml2,
//! `tests/interop/saml_sp.py`) and by `xmlsec1` (decrypting with the SP's key); and
//! `apps add`'s name, refusals and line-precise errors. The tools come from
//! `scripts/install-test-tools.sh`.

mod common;

use std::path::Path;
use std::process::Command;

use common::endpoint::{alert, bin, Browser};
use common::federation::*;
use common::saml::*;

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
