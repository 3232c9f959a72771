//! The federation endpoint as relying parties and browsers see it: a real `causeway serve`
//! process, our signatures checked by `xmlsec1`, our metadata by `xmllint` against the
//! OASIS schema, a real SAML SP (pysaml2), a real browser (Debian's Chromium through
//! playwright-core), hostile input, token-signing key rollover, and no secret in the logs.
//! The tools come from `scripts/install-test-tools.sh` (run by `scripts/test.sh`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::endpoint::{b64decode, form_action, hidden, Browser};
use common::federation::*;

#[test]
fn xmlsec1_verifies_response_assertion_and_wsfed_token_and_metadata_is_schema_valid() {
    let tools = tools();
    let config = "[[wsfed_app]]\nrealm = \"urn:federation:MicrosoftOnline\"\nreply_urls = [\"https://login.microsoftonline.com/login.srf\"]\n";
    let (ep, pw) = endpoint_with_user("xmlsec", config);
    let b = Browser::new(&ep.dir);
    let (s, _, md) = b.get(&format!("{}/saml/metadata", ep.url));
    assert_eq!(s, 200);
    let md_file = ep.dir.join("idp-metadata.xml");
    std::fs::write(&md_file, &md).expect("write");
    let schema = tools.join("xsd/saml-schema-metadata-2.0.xsd");
    let out = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .arg(&md_file)
        .output()
        .expect("xmllint");
    assert!(
        out.status.success(),
        "metadata is not schema-valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = write_pem(&ep.dir, "idp.pem", &metadata_certs(&md)[0]);

    // SAML 2.0: IdP-initiated to the demo application.
    let sp = format!("{}/demo/app1", ep.url);
    let page = sign_in_from(
        &ep,
        &b,
        &format!("{}/saml/idp-init?sp={}", ep.url, common::endpoint::pct(&sp)),
        USER,
        &pw,
    );
    let xml = b64decode(&hidden(&page, "SAMLResponse").expect("SAMLResponse"));
    let file = ep.dir.join("response.xml");
    std::fs::write(&file, &xml).expect("write");
    let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, None);
    assert!(ok, "Response signature: {e}");
    let (ok, e) = xmlsec_verify(&file, &cert, &SAML2_IDS, Some(ASSERTION_SIG));
    assert!(ok, "Assertion signature: {e}");
    let text = String::from_utf8_lossy(&xml);
    for must in [
        "SubjectConfirmationData",
        "InResponseTo",
        "AudienceRestriction",
        "SessionIndex=",
        "NotOnOrAfter=",
        "Carla Cloud",
        "rsa-sha256",
        "xml-exc-c14n",
    ] {
        if must == "InResponseTo" {
            assert!(
                !text.contains(must),
                "IdP-initiated responses answer no request"
            );
            continue;
        }
        assert!(text.contains(must), "{must} missing in {text}");
    }
    // A tampered copy fails.
    let tampered = ep.dir.join("tampered.xml");
    std::fs::write(&tampered, text.replace("Carla Cloud", "Mallory")).expect("write");
    assert!(!xmlsec_verify(&tampered, &cert, &SAML2_IDS, Some(ASSERTION_SIG)).0);

    // WS-Federation: the SAML 1.1 assertion inside the RSTR.
    let (_, _, page, _) = b.follow(&ep.url, &format!("{}/wsfed?wa=wsignin1.0&wtrealm=urn%3Afederation%3AMicrosoftOnline&wctx=LoginOptions%3D3%26id%3D%C3%A9", ep.url));
    assert!(
        page.contains("id=\"autopost\""),
        "SSO session should sign in without a prompt: {page}"
    );
    assert_eq!(
        form_action(&page).as_deref(),
        Some("https://login.microsoftonline.com/login.srf")
    );
    assert_eq!(
        hidden(&page, "wctx").as_deref(),
        Some("LoginOptions=3&id=é"),
        "wctx echoed unchanged"
    );
    assert_eq!(hidden(&page, "wa").as_deref(), Some("wsignin1.0"));
    let rstr = hidden(&page, "wresult").expect("wresult");
    assert!(
        rstr.contains("<t:RequestedSecurityToken><saml:Assertion"),
        "no whitespace before the assertion"
    );
    assert!(rstr.contains(
        "AttributeName=\"UPN\" AttributeNamespace=\"http://schemas.xmlsoap.org/claims\""
    ));
    assert!(rstr.contains("AttributeName=\"ImmutableID\""));
    let file = ep.dir.join("rstr.xml");
    std::fs::write(&file, &rstr).expect("write");
    let (ok, e) = xmlsec_verify(
        &file,
        &cert,
        &["AssertionID|urn:oasis:names:tc:SAML:1.0:assertion:Assertion"],
        None,
    );
    assert!(ok, "WS-Fed assertion signature: {e}");
    let (s, _, fm) = b.get(&format!(
        "{}/FederationMetadata/2007-06/FederationMetadata.xml",
        ep.url
    ));
    assert_eq!(s, 200);
    let mut certs = metadata_certs(&fm);
    certs.dedup();
    assert!(
        fm.contains("PassiveRequestorEndpoint") && certs.len() == 1,
        "{fm}"
    );
}

#[test]
fn pysaml2_sp_signs_in_sp_and_idp_initiated_and_logs_out() {
    let tools = tools();
    let (ep, pw) = endpoint_with_user("pysaml2", "");
    let dir = ep.dir.clone();
    let s = |p: &str| dir.join(p).display().to_string();
    let (ok, _, e) = python(
        &tools,
        &["keygen", "--key", &s("sp.key"), "--cert", &s("sp.crt")],
    );
    assert!(ok, "{e}");
    // Registers a pysaml2 SP (signed requests) from the metadata it makes itself.
    let register = |base: &str, file: &str| {
        let entity = format!("{base}/metadata");
        let (ok, md, e) = python(
            &tools,
            &[
                "metadata",
                "--entity-id",
                &entity,
                "--base-url",
                base,
                "--key",
                &s("sp.key"),
                "--cert",
                &s("sp.crt"),
                "--sign-requests",
            ],
        );
        assert!(ok, "{e}");
        std::fs::write(dir.join(file), md).expect("write");
        let out = ep.cli(&["apps", "add", "--saml-metadata", &s(file)], None);
        assert!(out.contains("registered SAML application"), "{out}");
        entity
    };
    let sp_base = "https://sp.causeway.test";
    let entity = register(sp_base, "sp.xml");
    // A second SP, for single logout across the applications of one session.
    let sp2_base = "https://sp2.causeway.test";
    let entity2 = register(sp2_base, "sp2.xml");
    let b = Browser::new(&dir);
    let (_, _, idp_md) = b.get(&format!("{}/saml/metadata", ep.url));
    std::fs::write(dir.join("idp.xml"), idp_md).expect("write");
    std::fs::write(dir.join("pw"), &pw).expect("write");
    std::fs::write(dir.join("wrong"), "not-the-password").expect("write");
    let ca = s("data/ca/ca.pem");
    assert!(Path::new(&ca).exists(), "endpoint CA at {ca}");
    // The endpoint reloads registered applications every 10 s: wait until it knows both
    // SPs (an unsigned request from an SP whose metadata demands signatures is refused
    // with its own message; an unknown issuer gets another), not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(60);
    for known in [&entity, &entity2] {
        let probe = common::endpoint::deflate_b64(&format!(
            "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_probe\" Version=\"2.0\" IssueInstant=\"{}\"><saml:Issuer>{known}</saml:Issuer></samlp:AuthnRequest>",
            xs_time(0)
        ));
        loop {
            let (_, _, body) = b.get(&format!(
                "{}/saml/sso?SAMLRequest={}",
                ep.url,
                common::endpoint::pct(&probe)
            ));
            if body.contains("signs its requests") {
                break;
            }
            assert!(Instant::now() < deadline, "{known} not loaded: {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let common_args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "--idp-metadata",
            &s("idp.xml"),
            "--entity-id",
            &entity,
            "--base-url",
            sp_base,
            "--key",
            &s("sp.key"),
            "--cert",
            &s("sp.crt"),
            "--ca",
            &ca,
            "--user",
            USER,
            "--sign-requests",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |cmd: &str, extra: &[&str]| {
        let mut a = vec![cmd.to_string()];
        a.extend(common_args(extra));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        python(&tools, &refs)
    };
    // SP-initiated, Redirect binding, signed request, then single logout.
    let (ok, out, e) = run("login", &["--password-file", &s("pw"), "--then-logout"]);
    assert!(
        ok,
        "pysaml2 login failed: {out}{e}\n{}",
        ep.logs()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let users = ep.cli(&["users", "list"], None);
    let immutable = users
        .lines()
        .find(|l| l.contains(USER))
        .and_then(|l| l.split_whitespace().find(|w| w.ends_with("==")))
        .unwrap_or_default()
        .to_owned();
    // Persistent NameIDs are pairwise: neither the immutable id nor empty.
    let name_id = json_field(&out, "name_id").unwrap_or_default();
    assert!(
        !immutable.is_empty() && name_id.len() == 43 && name_id != immutable,
        "{out}\n{users}"
    );
    assert!(out.contains("Carla Cloud"), "attributes: {out}");
    assert_eq!(
        json_field(&out, "session_ended").as_deref(),
        Some("true"),
        "{out}"
    );
    // POST binding.
    let (ok, out, e) = run("login", &["--password-file", &s("pw"), "--binding", "post"]);
    assert!(ok, "POST binding: {out}{e}");
    // IdP-initiated.
    let (ok, out, e) = run("idp-init", &["--password-file", &s("pw")]);
    assert!(ok, "IdP-initiated: {out}{e}");
    // SSO: the second request does not prompt.
    let (ok, out, e) = run("sso-twice", &["--password-file", &s("pw")]);
    assert!(ok, "SSO: {out}{e}");
    // Email NameID on request.
    let (ok, out, e) = run(
        "login",
        &["--password-file", &s("pw"), "--nameid-format", "email"],
    );
    assert!(ok, "email NameID: {out}{e}");
    assert_eq!(json_field(&out, "name_id").as_deref(), Some(USER));
    // IsPassive: NoPassive without a session (no page), an assertion with one; and
    // ForceAuthn asks again. Over both bindings (POST goes through /saml/continue).
    for binding in ["redirect", "post"] {
        let (ok, out, e) = run(
            "passive",
            &["--password-file", &s("pw"), "--binding", binding],
        );
        assert!(ok, "IsPassive over {binding}: {out}{e}");
        for (k, v) in [
            ("without_session", "NoPassive"),
            ("without_session_relay_state_ok", "true"),
            ("with_session_name_id_ok", "true"),
            ("passive_and_force_authn", "NoPassive"),
            ("force_authn_login_page_shown", "true"),
        ] {
            assert_eq!(
                json_field(&out, k).as_deref(),
                Some(v),
                "{binding} {k}: {out}"
            );
        }
    }
    // Single logout from one SP ends the other SP's session too, through the browser,
    // and then answers the SP that asked.
    let (ok, out, e) = run(
        "slo-chain",
        &[
            "--password-file",
            &s("pw"),
            "--second-entity-id",
            &entity2,
            "--second-base-url",
            sp2_base,
        ],
    );
    assert!(ok, "SLO across two SPs: {out}{e}");
    for (k, v) in [
        ("second_login_page_shown", "false"),
        ("second_sp_session_cleared", "true"),
        ("logout_ok", "true"),
        ("logout_second_status", "null"),
        ("logout_signature", "valid"),
        ("sp_session_cleared", "true"),
        ("session_ended", "true"),
    ] {
        assert_eq!(json_field(&out, k).as_deref(), Some(v), "SLO {k}: {out}");
    }
    assert!(
        out.contains(&format!("\"peers_told\": [\n    \"{entity2}\"")),
        "the second SP was told: {out}"
    );
    // A wrong password: the page says so.
    let (ok, out, e) = run("login", &["--password-file", &s("wrong"), "--expect-error"]);
    assert!(ok, "{out}{e}");
    assert!(out.contains("user name or password is incorrect"), "{out}");
}

#[test]
fn chromium_signs_in_once_for_two_applications() {
    let tools = tools();
    let (ep, pw) = endpoint_with_user("browser", "");
    std::fs::write(ep.dir.join("pw"), &pw).expect("write");
    std::fs::write(ep.dir.join("wrong"), "Wrong-Password-1").expect("write");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/browser");
    std::fs::create_dir_all(&shots).expect("artifacts dir");
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/browser.mjs"))
        .args([
            "--app1",
            &format!("{}/demo/app1/", ep.url),
            "--app2",
            &format!("{}/demo/app2/", ep.url),
            "--user",
            USER,
        ])
        .arg("--password-file")
        .arg(ep.dir.join("pw"))
        .arg("--wrong-password-file")
        .arg(ep.dir.join("wrong"))
        .arg("--shots")
        .arg(&shots)
        .env("CAUSEWAY_TOOLS_DIR", &tools)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser run failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (k, v) in [
        ("app2_prompted", "false"),
        ("nojs_signed_in", "true"),
        ("labels_ok", "true"),
        ("lang", "en"),
    ] {
        assert_eq!(
            json_field(&stdout, k).as_deref(),
            Some(v),
            "{k} in {stdout}"
        );
    }
    assert!(
        stdout.contains("incorrect"),
        "wrong-password message: {stdout}"
    );
    assert!(stdout.contains("Carla Cloud"), "app attributes: {stdout}");
    assert!(shots.join("01-login.png").exists());
}

#[test]
fn an_sp_that_refreshed_metadata_before_the_switch_keeps_accepting_tokens() {
    let (ep, pw) = endpoint_with_user("rollover", "");
    let b = Browser::new(&ep.dir);
    let md = |b: &Browser| b.get(&format!("{}/saml/metadata", ep.url)).2;
    let before = metadata_certs(&md(&b));
    assert_eq!(before.len(), 1);
    let out = ep.cli(&["certs", "rollover"], None);
    assert!(out.contains("published"), "{out}");
    // The endpoint reloads keys every 10 s; the SP refreshes its metadata in the overlap.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refreshed = loop {
        let c = metadata_certs(&md(&b));
        if c.len() == 2 {
            break c;
        }
        assert!(Instant::now() < deadline, "the new key was not published");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        refreshed[0], before[0],
        "the old key still signs and is listed first"
    );
    let sp = format!("{}/demo/app1", ep.url);
    let token = |b: &Browser, n: &str| {
        let page = {
            let (_, _, p, _) = b.follow(
                &ep.url,
                &format!("{}/saml/idp-init?sp={}", ep.url, common::endpoint::pct(&sp)),
            );
            if p.contains("id=\"password\"") {
                b.sign_in(&ep.url, &p, USER, &pw).2
            } else {
                p
            }
        };
        let f = ep.dir.join(format!("{n}.xml"));
        std::fs::write(
            &f,
            b64decode(&hidden(&page, "SAMLResponse").expect("response")),
        )
        .expect("write");
        f
    };
    let verifies_with = |f: &Path, certs: &[String]| {
        certs.iter().enumerate().any(|(i, c)| {
            let pem = write_pem(&ep.dir, &format!("k{i}.pem"), c);
            xmlsec_verify(f, &pem, &SAML2_IDS, Some(ASSERTION_SIG)).0
                && xmlsec_verify(f, &pem, &SAML2_IDS, None).0
        })
    };
    let t1 = token(&b, "t1");
    assert!(verifies_with(&t1, &refreshed));
    ep.cli(&["certs", "rollover", "--activate-now"], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t2 = token(&b, "t2");
        if !verifies_with(&t2, &before) {
            assert!(
                verifies_with(&t2, &refreshed),
                "a token after the switch verifies with the metadata fetched before it"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the endpoint never switched keys"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
