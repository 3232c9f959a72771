//! The federation endpoint under hostile input, as a real `causeway serve` process sees it:
//! malformed and oversized requests get a clear 4xx cheaply, outcomes reveal nothing, a
//! source without a session is throttled alone, and no secret reaches the logs.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::endpoint::{alert, deflate_b64, hidden, Browser};
use common::federation::*;

#[test]
fn hostile_input_gets_a_clear_4xx_and_costs_little() {
    let config =
        "[[wsfed_app]]\nrealm = \"urn:test:realm\"\nreply_urls = [\"https://rp.example/wsfed\"]\n";
    let (ep, pw) = endpoint_with_user("hostile", config);
    let b = Browser::new(&ep.dir);
    let u = &ep.url;
    let enc = common::endpoint::pct;
    let sp = format!("{u}/demo/app1");
    let req = |issuer: &str, acs: &str| {
        format!("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_r1\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\" AssertionConsumerServiceURL=\"{acs}\"><saml:Issuer>{issuer}</saml:Issuer></samlp:AuthnRequest>")
    };
    let good = req(&sp, &format!("{sp}/acs"));
    let (s, h, _) = b.get(&format!(
        "{u}/saml/sso?SAMLRequest={}",
        enc(&deflate_b64(&good))
    ));
    assert_eq!(s, 303, "a good request goes to the sign-in page: {h}");
    let check = |what: &str, (s, h, body): (u16, String, String), want: u16, words: &str| {
        assert_eq!(s, want, "{what}: {h}{body}");
        assert!(
            common::endpoint::header(&h, "location").is_none(),
            "{what}: never a redirect"
        );
        let text = alert(&body).unwrap_or(body.clone());
        assert!(text.to_lowercase().contains(words), "{what}: {text}");
    };
    let dtd = format!(
        "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>{}",
        good.replace("_r1", "_r1&b;")
    );
    check(
        "DOCTYPE",
        b.get(&format!(
            "{u}/saml/sso?SAMLRequest={}",
            enc(&deflate_b64(&dtd))
        )),
        400,
        "doctype",
    );
    let bomb = deflate_b64(&"a".repeat(30 * 1024 * 1024));
    let started = Instant::now();
    check(
        "deflate bomb",
        b.get(&format!("{u}/saml/sso?SAMLRequest={}", enc(&bomb))),
        400,
        "inflates",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bomb cost {:?}",
        started.elapsed()
    );
    check(
        "bad base64",
        b.get(&format!("{u}/saml/sso?SAMLRequest=%%%%")),
        400,
        "base64",
    );
    check(
        "unknown issuer",
        b.get(&format!(
            "{u}/saml/sso?SAMLRequest={}",
            enc(&deflate_b64(&req(
                "https://evil.example",
                "https://evil.example/acs"
            )))
        )),
        400,
        "not registered",
    );
    check(
        "unregistered ACS",
        b.get(&format!(
            "{u}/saml/sso?SAMLRequest={}",
            enc(&deflate_b64(&req(&sp, "https://evil.example/acs")))
        )),
        400,
        "not in its registered metadata",
    );
    let post_body = format!("SAMLRequest={}", enc(&"QUFB".repeat(100_000)));
    let (s, _, _) = b.request(
        "POST",
        &format!("{u}/saml/sso"),
        None,
        Some(post_body.as_bytes()),
    );
    assert_eq!(s, 413, "oversized body");
    check("unregistered wreply", b.get(&format!("{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Atest%3Arealm&wreply=https%3A%2F%2Fevil.example%2F")), 400, "not registered");
    check(
        "unknown realm",
        b.get(&format!("{u}/wsfed?wa=wsignin1.0&wtrealm=urn%3Aother")),
        400,
        "not registered",
    );
    // The sign-in form: missing, wrong and replayed anti-forgery tokens.
    let (_, _, page, _) = b.follow(u, &format!("{u}/login"));
    let flow = hidden(&page, "flow").expect("flow");
    let csrf = hidden(&page, "csrf").expect("csrf");
    check(
        "missing csrf",
        b.post(
            &format!("{u}/login"),
            &[("flow", &flow), ("username", USER), ("password", &pw)],
        ),
        400,
        "incomplete",
    );
    check(
        "wrong csrf",
        b.post(
            &format!("{u}/login"),
            &[
                ("flow", &flow),
                ("csrf", "forged"),
                ("username", USER),
                ("password", &pw),
            ],
        ),
        403,
        "not issued to this browser",
    );
    // Another browser (no login cookie) cannot use this form: login CSRF.
    let other = Browser::new(&ep.dir.join("other"));
    check(
        "other browser",
        other.post(
            &format!("{u}/login"),
            &[
                ("flow", &flow),
                ("csrf", &csrf),
                ("username", USER),
                ("password", &pw),
            ],
        ),
        403,
        "not issued to this browser",
    );
    let (s, h, _) = b.post(
        &format!("{u}/login"),
        &[
            ("flow", &flow),
            ("csrf", &csrf),
            ("username", USER),
            ("password", &pw),
        ],
    );
    assert_eq!(s, 303, "the real form works once: {h}");
    let cookie = h
        .lines()
        .map(str::to_lowercase)
        .find(|l| l.starts_with("set-cookie: __host-causeway_sso="))
        .expect("session cookie");
    for attr in ["secure", "httponly", "samesite=lax", "path=/", "max-age="] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    check(
        "replayed form",
        b.post(
            &format!("{u}/login"),
            &[
                ("flow", &flow),
                ("csrf", &csrf),
                ("username", USER),
                ("password", &pw),
            ],
        ),
        400,
        "already used",
    );
    let big = "x".repeat(20_000);
    let (s, _, _) = b.post(
        &format!("{u}/login"),
        &[
            ("flow", &flow),
            ("csrf", &csrf),
            ("username", &big),
            ("password", &big),
        ],
    );
    assert_eq!(s, 413);
}

#[test]
fn wrong_password_and_disabled_account_read_differently_and_reveal_nothing() {
    let (ep, pw) = endpoint_with_user("messages", "");
    let b = Browser::new(&ep.dir);
    let (_, _, page, _) = b.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, "Wrong-1");
    let wrong = alert(&page).expect("alert");
    assert!(wrong.contains("incorrect"), "{wrong}");
    let (_, _, page) = b.sign_in(&ep.url, &page, "nobody@cloud.causeway.test", "Wrong-2");
    assert_eq!(
        alert(&page).as_deref(),
        Some(wrong.as_str()),
        "unknown users read like a wrong password"
    );
    ep.cli(&["users", "disable", USER], None);
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, "Wrong-3");
    assert_eq!(
        alert(&page).as_deref(),
        Some(wrong.as_str()),
        "a wrong password never learns the account is disabled"
    );
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, &pw);
    assert!(alert(&page).expect("alert").contains("disabled"));
}

#[test]
fn a_source_without_a_session_gets_429_past_its_budget_and_others_do_not() {
    let config = "[throttle]\nanonymous_per_source_per_second = 1\nanonymous_burst = 30\n";
    let (ep, pw) = endpoint_with_user("budget", config);
    let u = ep.url.clone();
    // A user who signs in first holds a session: never counted, however often it asks.
    let user = Browser::new(&ep.dir.join("user"));
    let page = sign_in_from(&ep, &user, &format!("{u}/demo/app1/"), USER, &pw);
    assert!(page.contains("SAMLResponse"));
    // One source without cookies, as fast as it is answered: a burst, then 429s.
    let burst = |interface: &str, n: usize| -> Vec<String> {
        let mut k = String::new();
        for _ in 0..n {
            k.push_str(&format!("url = \"{u}/login\"\noutput = \"/dev/null\"\n"));
        }
        let kfile = ep.dir.join(format!("burst-{interface}.curl"));
        std::fs::write(&kfile, k).expect("curl config");
        let out = Command::new("curl")
            .args([
                "-sk",
                "--http1.1",
                "--interface",
                interface,
                "-w",
                "%{http_code}\\n",
                "-K",
            ])
            .arg(&kfile)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let codes = burst("127.0.0.1", 60);
    let refused = codes.iter().filter(|c| *c == "429").count();
    assert!(
        (25..=35).contains(&(60 - refused)),
        "about the burst of 30 admitted, the rest refused: {codes:?}"
    );
    let (s, h, body) = Browser::new(&ep.dir.join("late")).get(&format!("{u}/login"));
    assert_eq!(s, 429, "{body}");
    assert!(common::endpoint::header(&h, "retry-after").is_some(), "{h}");
    assert!(
        alert(&body)
            .unwrap_or(body.clone())
            .contains("Too many sign-in requests"),
        "{body}"
    );
    // Another source has its own budget.
    let other = burst("127.0.0.9", 5);
    assert!(other.iter().all(|c| c == "303"), "{other:?}");
    // The signed-in user is not affected by its address's spent budget.
    let (s, _, page, _) = user.follow(&u, &format!("{u}/demo/app1/"));
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("SAMLResponse"), "{page}");
    // Metadata is never counted.
    let (s, _, _) = Browser::new(&ep.dir.join("md")).get(&format!("{u}/saml/metadata"));
    assert_eq!(s, 200);
}

#[test]
fn no_password_cookie_or_key_in_the_logs() {
    let (ep, pw) = endpoint_with_user("noleak", "");
    let b = Browser::new(&ep.dir);
    let page = sign_in_from(&ep, &b, &format!("{}/demo/app1/", ep.url), USER, &pw);
    let (_, _, p2, _) = b.follow(&ep.url, &format!("{}/demo/app2/", ep.url));
    assert!(p2.contains("id=\"autopost\""));
    let _ = page;
    let other = Browser::new(&ep.dir.join("other"));
    let (_, _, login, _) = other.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    let (_, _, wrong) = other.sign_in(&ep.url, &login, USER, &format!("{pw}-wrong"));
    assert!(alert(&wrong).is_some_and(|a| a.contains("incorrect")));
    let jar = std::fs::read_dir(&ep.dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("jar-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    let cookie = jar
        .lines()
        .find(|l| l.contains("__Host-causeway_sso"))
        .and_then(|l| l.split('\t').nth(6))
        .expect("session cookie in the jar")
        .to_owned();
    assert!(cookie.len() > 20);
    let logs = ep.logs();
    assert!(
        logs.contains("SAML assertion issued"),
        "logs were captured at TRACE: {}",
        &logs[..logs.len().min(2000)]
    );
    assert!(!logs.contains(&pw), "the password appears in the logs");
    assert!(
        !logs.contains(&cookie),
        "the session cookie appears in the logs"
    );
    let key_dir = ep.data().join("token-signing");
    for e in std::fs::read_dir(&key_dir).expect("keys") {
        let p = e.expect("entry").path();
        if p.to_string_lossy().ends_with(".key.pem") {
            let pem = std::fs::read_to_string(&p).expect("key");
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).expect("meta").permissions().mode() & 0o077,
                0,
                "key file is private"
            );
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                assert!(
                    !logs.contains(line),
                    "a private key line appears in the logs"
                );
            }
        }
    }
}
