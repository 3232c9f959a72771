//! Sign-in and sign-out flows of a real `causeway serve` process that must survive abuse:
//! pending sign-ins held by the browser through a flood and a restart, sign-outs that ask
//! first, and signed sign-in requests that must be fresh and are answered once.

mod common;

use std::process::Command;

use common::endpoint::{alert, deflate_b64, form_action, hidden, Browser, Endpoint};
use common::federation::*;

#[test]
fn pending_sign_ins_are_held_by_the_browser_through_a_flood_and_a_restart_and_cannot_be_forged() {
    // The per-source budget for sign-in work is off here: this test is about what each
    // start leaves behind, so every one of them must reach the sign-in page.
    let config = "[throttle]\nanonymous_per_source_per_second = 0\n[[wsfed_app]]\nrealm = \"urn:test:realm\"\nreply_urls = [\"https://rp.example/wsfed\"]\n";
    let (mut ep, pw) = endpoint_with_user("flows", config);
    let u = ep.url.clone();
    let b = Browser::new(&ep.dir);
    let start = format!("{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Atest%3Arealm&wctx=ctx-1");
    let (s, _, page, _) = b.follow(&u, &start);
    assert_eq!(s, 200);
    let flow = hidden(&page, "flow").expect("flow");
    let csrf = hidden(&page, "csrf").expect("csrf");
    assert!(
        !flow.contains("urn") && !flow.contains("ctx-1"),
        "sealed, not readable: {flow}"
    );

    // Unauthenticated flow starts, every kind, from a client without cookies. The old
    // table held 100,000 and evicted the oldest; here each costs the server nothing.
    let flood = 4000;
    let big = format!(
        "{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Atest%3Arealm&wctx={}",
        "w".repeat(2048)
    );
    let urls = [
        big.clone(),
        format!("{u}/"),
        big.clone(),
        format!("{u}/login"),
        big,
        format!(
            "{u}/saml/idp-init?sp={}",
            common::endpoint::pct(&format!("{u}/demo/app1"))
        ),
    ];
    let run = |n: usize| {
        let mut k = String::new();
        for i in 0..n {
            k.push_str(&format!(
                "url = \"{}\"\noutput = \"/dev/null\"\n",
                urls[i % urls.len()]
            ));
        }
        let kfile = ep.dir.join("flood.curl");
        std::fs::write(&kfile, k).expect("curl config");
        let out = Command::new("curl")
            .args(["-sk", "--http1.1", "-w", "%{http_code}\\n", "-K"])
            .arg(&kfile)
            .output()
            .expect("curl");
        let codes = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            codes.lines().filter(|c| *c == "303").count(),
            n,
            "every start goes to the sign-in page"
        );
    };
    let rss_kib = || {
        std::fs::read_to_string(format!("/proc/{}/status", ep.pid()))
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
    };
    // Warmed up first (TLS, buffers, allocator arenas), then measured: the old table
    // kept every start, about 2.6 KB for each with a 2 KiB wctx (255 MB for 100,500).
    run(300);
    let before = rss_kib();
    run(flood);
    let grown = rss_kib().saturating_sub(before);
    eprintln!("memory grew by {grown} KiB over {flood} starts");
    assert!(
        grown < 2 * 1024,
        "memory grew by {grown} KiB over {flood} starts"
    );

    // A restart keeps the key (0600, beside the token-signing keys), so the pending
    // sign-in survives it; the old in-memory table did not.
    ep.kill();
    let ep = Endpoint::start_in(ep.dir.clone(), config, &["--demo-apps"]);
    let (s, _, page) = b.post(
        &format!("{}/login", ep.url),
        &[
            ("flow", &flow),
            ("csrf", &csrf),
            ("username", USER),
            ("password", &pw),
        ],
    );
    assert_eq!(s, 200, "{}", alert(&page).unwrap_or(page.clone()));
    assert_eq!(
        form_action(&page).as_deref(),
        Some("https://rp.example/wsfed")
    );
    assert_eq!(hidden(&page, "wctx").as_deref(), Some("ctx-1"));
    use std::os::unix::fs::PermissionsExt;
    let key = ep.data().join("token-signing/flow-state.key");
    let mode = std::fs::metadata(&key)
        .expect("flow key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Another pending sign-in (in a browser not signed in yet), for what must be refused.
    let u = ep.url.clone();
    let b = Browser::new(&ep.dir.join("second"));
    let start = format!("{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Atest%3Arealm&wctx=ctx-2");
    let (_, h, _) = b.get(&start);
    let unbound = common::endpoint::header(&h, "location")
        .and_then(|l| l.strip_prefix("/login?flow=").map(str::to_owned))
        .expect("the flow travels in the redirect");
    let (_, _, page, _) = b.follow(&u, &start);
    let flow = hidden(&page, "flow").expect("flow");
    let csrf = hidden(&page, "csrf").expect("csrf");
    // A wctx past the bound is refused, with the bound.
    let (s, _, body) = b.get(&format!(
        "{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Atest%3Arealm&wctx={}",
        "w".repeat(2049)
    ));
    assert_eq!(s, 400);
    assert!(
        alert(&body)
            .unwrap_or_default()
            .contains("2049 bytes long; at most 2048"),
        "{body}"
    );
    // Altered state is refused as such, whether in a link or in a posted form.
    let mut altered: Vec<char> = flow.chars().collect();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let (s, _, body) = b.get(&format!("{u}/login?flow={altered}"));
    assert_eq!(s, 400);
    assert!(
        alert(&body)
            .unwrap_or_default()
            .contains("altered on the way"),
        "{body}"
    );
    let (s, _, body) = b.post(
        &format!("{u}/login"),
        &[
            ("flow", &altered),
            ("csrf", &csrf),
            ("username", USER),
            ("password", &pw),
        ],
    );
    assert_eq!(s, 400, "{body}");
    assert!(
        alert(&body).unwrap_or_default().contains("altered"),
        "{body}"
    );
    // The redirect's state is no form: it is bound to no browser.
    let (s, _, body) = b.post(
        &format!("{u}/login"),
        &[
            ("flow", &unbound),
            ("csrf", &csrf),
            ("username", USER),
            ("password", &pw),
        ],
    );
    assert_eq!(s, 403, "{body}");
    assert!(
        alert(&body)
            .unwrap_or_default()
            .contains("not issued to this browser"),
        "{body}"
    );
}

#[test]
fn unsigned_sign_outs_ask_first_and_only_the_confirmed_post_ends_the_session() {
    let config =
        "[[wsfed_app]]\nrealm = \"urn:test:realm\"\nreply_urls = [\"https://rp.example/wsfed\"]\n";
    let (ep, pw) = endpoint_with_user("signout", config);
    let u = ep.url.clone();
    let b = Browser::new(&ep.dir);
    let sign_in = || {
        let (_, _, page, _) = b.follow(&u, &format!("{u}/"));
        let (s, h, _) = b.sign_in(&u, &page, USER, &pw);
        assert_eq!(s, 303, "{h}");
        assert!(signed_in(&ep, &b));
    };
    sign_in();
    // An unsigned LogoutRequest naming a registered application without a signing
    // certificate (the demo application): a plain link an attacker can plant.
    let logout = format!("<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_lo1\" Version=\"2.0\" IssueInstant=\"{}\"><saml:Issuer>{u}/demo/app1</saml:Issuer><saml:NameID>anyone</saml:NameID></samlp:LogoutRequest>", xs_time(0));
    let link = format!(
        "{u}/saml/slo?SAMLRequest={}",
        common::endpoint::pct(&deflate_b64(&logout))
    );
    let (s, _, saml_page) = b.get(&link);
    assert_eq!(s, 200);
    assert!(saml_page.contains("Sign out of Causeway?"), "{saml_page}");
    assert!(signed_in(&ep, &b), "an unsigned LogoutRequest ends nothing");
    let (s, _, ws_page) = b.get(&format!(
        "{u}/wsfed?wa=wsignout1.0&wreply=https%3A%2F%2Frp.example%2Fwsfed"
    ));
    assert_eq!(s, 200);
    assert!(ws_page.contains("Sign out of Causeway?"), "{ws_page}");
    assert!(signed_in(&ep, &b), "wsignout1.0 by itself ends nothing");
    // A cross-site POST carries no anti-forgery token.
    let next = hidden(&ws_page, "next").expect("next");
    let (s, _, _) = b.post(&format!("{u}/logout"), &[("next", &next)]);
    assert_eq!(s, 403);
    assert!(signed_in(&ep, &b));
    // An altered confirmation is refused and ends nothing.
    let csrf = hidden(&ws_page, "csrf").expect("csrf");
    let (s, _, body) = b.post(
        &format!("{u}/logout"),
        &[("csrf", &csrf), ("next", &next[..next.len() - 2])],
    );
    assert_eq!(s, 400, "{body}");
    assert!(signed_in(&ep, &b));
    // Confirmed: signed out, and back to the registered reply URL.
    let (s, h, _) = b.post(&format!("{u}/logout"), &[("csrf", &csrf), ("next", &next)]);
    assert_eq!(s, 303, "{h}");
    assert_eq!(
        common::endpoint::header(&h, "location").as_deref(),
        Some("https://rp.example/wsfed")
    );
    assert!(!signed_in(&ep, &b));
    // The SAML one, confirmed in a new session, answers the application.
    sign_in();
    let (_, _, saml_page) = b.get(&link);
    let (s, _, body) = b.post(
        &format!("{u}/logout"),
        &[
            ("csrf", &hidden(&saml_page, "csrf").expect("csrf")),
            ("next", &hidden(&saml_page, "next").expect("next")),
        ],
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("You are signed out"), "{body}");
    assert!(!signed_in(&ep, &b));
}

#[test]
fn signed_sign_in_requests_must_be_fresh_meant_for_us_and_are_answered_once() {
    let dir = common::endpoint::temp_dir("signed-requests");
    let key = dir.join("sp.key");
    let cert = dir.join("sp.crt");
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=signer.causeway.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok);
    let cert_b64: String = std::fs::read_to_string(&cert)
        .expect("cert")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let sp = "https://signer.causeway.test/sp";
    let acs = "https://signer.causeway.test/acs";
    let md = format!("<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{sp}\"><md:SPSSODescriptor AuthnRequestsSigned=\"true\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs}\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>");
    std::fs::write(dir.join("sp.xml"), md).expect("metadata");
    let config = format!(
        "[[saml_app]]\nmetadata = \"{}\"\n",
        dir.join("sp.xml").display()
    );
    let ep = Endpoint::start_in(dir.clone(), &config, &[]);
    let b = Browser::new(&dir);
    let sso = format!("{}/saml/sso", ep.url);
    let request = |id: &str, instant: &str, dest: Option<&str>| {
        let d = dest.map_or(String::new(), |d| format!(" Destination=\"{d}\""));
        format!("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{instant}\"{d} AssertionConsumerServiceURL=\"{acs}\"><saml:Issuer>{sp}</saml:Issuer></samlp:AuthnRequest>")
    };
    // HTTP-Redirect binding: the signature covers the query string as sent.
    let send = |xml: &str, spoil: bool| {
        use std::io::Write;
        let q = format!(
            "SAMLRequest={}&SigAlg={}",
            common::endpoint::pct(&deflate_b64(xml)),
            common::endpoint::pct("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
        );
        let mut c = Command::new("sh")
            .args(["-c", "openssl dgst -sha256 -sign \"$0\" | base64 -w0"])
            .arg(&key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(q.as_bytes())
            .expect("write");
        let mut sig = String::from_utf8(c.wait_with_output().expect("wait").stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        if spoil {
            sig = format!("AAAA{}", &sig[4..]);
        }
        b.get(&format!(
            "{sso}?{q}&Signature={}",
            common::endpoint::pct(&sig)
        ))
    };
    let refused = |(s, h, body): (u16, String, String), words: &str| {
        assert_eq!(s, 400, "{h}{body}");
        let text = alert(&body).unwrap_or(body);
        assert!(text.contains(words), "wanted {words:?}: {text}");
    };
    let fresh = request("_req1", &xs_time(0), Some(&sso));
    // A bad signature over a request's ID does not use the ID up.
    refused(send(&fresh, true), "does not verify");
    let (s, h, _) = send(&fresh, false);
    assert_eq!(
        s, 303,
        "a fresh signed request goes to the sign-in page: {h}"
    );
    refused(send(&fresh, false), "was answered already");
    refused(
        send(&request("_req2", &xs_time(-16 * 60), Some(&sso)), false),
        "stale or replayed",
    );
    refused(
        send(&request("_req3", &xs_time(10 * 60), Some(&sso)), false),
        "ahead of this service's clock",
    );
    refused(
        send(
            &request("_req4", &xs_time(0), Some("https://other-idp.example/sso")),
            false,
        ),
        "was meant for",
    );
    refused(
        send(&request("_req5", &xs_time(0), None), false),
        "names no Destination",
    );
    // Within the skew, a request is fine.
    let (s, h, _) = send(&request("_req6", &xs_time(4 * 60), Some(&sso)), false);
    assert_eq!(s, 303, "{h}");
}
