//! OpenID Connect clients of a real `causeway serve` beyond the secret-based code flow:
//! `private_key_jwt` assertions (and the algorithms refused), a client that cached the
//! JWKS through a key rollover, and front-channel logout.

mod common;

use common::endpoint::{header, hidden, pct, Browser};
use common::oidc::*;
use serde_json::Value;

/// Waits (polling, up to a minute) until the endpoint's JWKS satisfies `pred`.
fn jwks_until(b: &Browser, u: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, jwks) = get_json(b, &format!("{u}/oidc/jwks"));
        if pred(&jwks) {
            return jwks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the JWKS never changed: {jwks}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn a_client_that_cached_the_jwks_keeps_validating_through_a_key_rollover() {
    let o = endpoint("oidc-rollover", "");
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let anon = Browser::new(&ep.dir.join("anon"));
    let keys = |j: &Value| j["keys"].as_array().map_or(0, Vec::len);
    let (_, first) = get_json(&anon, &format!("{u}/oidc/jwks"));
    assert_eq!(keys(&first), 1);
    let b = Browser::new(&ep.dir.join("browser"));
    let client = basic_client(&ep.dir.join("rp1"), "rp1", &o.secret);
    let head = sign_in_to_client(ep, &b, &authorize_url(&u, ""), &o.password);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (_, t) = redeem(&client, &u, &code, VERIFIER);
    let (h_old, _) = verify_jwt(t["id_token"].as_str().expect("id_token"), &first);

    // The successor is published before it signs: a client caches that JWKS.
    ep.cli(&["certs", "rollover"], None);
    let cached = jwks_until(&anon, &u, |j| keys(j) == 2);
    // Then it starts signing; the client does not refetch.
    ep.cli(&["certs", "rollover", "--activate-now"], None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let h_new = loop {
        let (s, head, _) = b.get(&authorize_url(&u, ""));
        assert_eq!(s, 303);
        let code = param(&location_params(&head), "code")
            .expect("code")
            .to_owned();
        let (_, t) = redeem(&client, &u, &code, VERIFIER);
        let (h, _) = verify_jwt(t["id_token"].as_str().expect("id_token"), &cached);
        if h["kid"] != h_old["kid"] {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never signed"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_ne!(h_new["kid"], h_old["kid"]);
    // The old key stays published while its tokens may still be valid.
    let (_, now) = get_json(&anon, &format!("{u}/oidc/jwks"));
    let kids: Vec<&Value> = now["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&h_old["kid"]) && kids.contains(&&h_new["kid"]),
        "{now}"
    );
}

/// A compact JWS over `claims` with `header`, signed RS256 by `key`.
fn rs256(
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    header: &Value,
    claims: &Value,
) -> String {
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut s =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), key).expect("signer");
    s.update(input.as_bytes()).expect("update");
    format!("{input}.{}", b64(&s.sign_to_vec().expect("sign")))
}

#[test]
fn private_key_jwt_authenticates_with_a_registered_key_once_and_refuses_none_and_hs256() {
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa"))
        .expect("pkey");
    let rsa = key.rsa().expect("rsa");
    let b64 =
        |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "pk1", "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())}]});
    let o = endpoint_with("oidc-pkjwt", "", |data| {
        std::fs::create_dir_all(data).expect("data");
        let f = data.join("pk.jwks");
        std::fs::write(&f, jwks.to_string()).expect("jwks");
        let out = common::endpoint::run_cli(
            data,
            &[
                "apps",
                "add",
                "--oidc",
                "pk",
                "--redirect-uri",
                REDIRECT,
                "--jwks",
                &f.display().to_string(),
            ],
            None,
        );
        assert!(
            out.contains("private_key_jwt") && !out.contains("client_secret"),
            "{out}"
        );
    });
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let b = Browser::new(&ep.dir.join("browser"));
    let start = authorize_url(&u, "").replace("client_id=rp1", "client_id=pk");
    let code_of = |head: &str| {
        param(&location_params(head), "code")
            .expect("code")
            .to_owned()
    };
    let code = code_of(&sign_in_to_client(ep, &b, &start, &o.password));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |jti: &str| serde_json::json!({"iss": "pk", "sub": "pk", "aud": format!("{u}/oidc/token"), "exp": now + 120, "jti": jti});
    let anon = Browser::new(&ep.dir.join("anon"));
    let redeem_with = |code: &str, assertion: &str| {
        let (s, _, body) = anon.post(
            &format!("{u}/oidc/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ],
        );
        (
            s,
            serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    // alg=none and HS256 keyed with the registered public key: refused, the code untouched.
    let payload = b64(claims("n1").to_string().as_bytes());
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
    let (s, v) = redeem_with(&code, &none);
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("RS256 or ES256")),
        "{v}"
    );
    let h = b64(br#"{"alg":"HS256","kid":"pk1"}"#);
    let pem = key.public_key_to_pem().expect("pem");
    let hkey = openssl::pkey::PKey::hmac(&pem).expect("hmac key");
    let mut m =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &hkey).expect("hmac");
    m.update(format!("{h}.{payload}").as_bytes())
        .expect("update");
    let hs = format!("{h}.{payload}.{}", b64(&m.sign_to_vec().expect("mac")));
    let (s, v) = redeem_with(&code, &hs);
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "{v}"
    );
    // A secret instead of the key: refused too.
    let (s, v) = redeem(
        &basic_client(&ep.dir.join("guess"), "pk", "guess"),
        &u,
        &code,
        VERIFIER,
    );
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    // A good assertion: tokens; the same assertion again: refused (one use).
    let good = rs256(
        &key,
        &serde_json::json!({"alg": "RS256", "kid": "pk1"}),
        &claims("j-1"),
    );
    let (s, v) = redeem_with(&code, &good);
    assert_eq!(s, 200, "{v}");
    assert!(v["id_token"].is_string());
    let (s, head, _) = b.get(&start);
    assert_eq!(s, 303);
    let (s, v) = redeem_with(&code_of(&head), &good);
    assert_eq!(
        (s, v["error"].as_str()),
        (401, Some("invalid_client")),
        "replayed: {v}"
    );
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("used before")),
        "{v}"
    );
}

#[test]
fn front_channel_logout_tells_each_client_of_the_session_with_its_sid() {
    const FC: &str = "https://fc.causeway.test/frontchannel";
    let mut fc_secret = String::new();
    let o = endpoint_with("oidc-frontchannel", "", |data| {
        let out = common::endpoint::run_cli(
            data,
            &[
                "apps",
                "add",
                "--oidc",
                "fc",
                "--redirect-uri",
                REDIRECT,
                "--post-logout-redirect-uri",
                POST_LOGOUT,
                "--frontchannel-logout-uri",
                FC,
            ],
            None,
        );
        fc_secret = secret_of(&out);
    });
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let (_, disc) = get_json(
        &Browser::new(&ep.dir.join("anon")),
        &format!("{u}/.well-known/openid-configuration"),
    );
    assert_eq!(disc["frontchannel_logout_session_supported"], true);
    let b = Browser::new(&ep.dir.join("browser"));
    let start = authorize_url(&u, "").replace("client_id=rp1", "client_id=fc");
    let head = sign_in_to_client(ep, &b, &start, &o.password);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (s, t) = redeem(
        &basic_client(&ep.dir.join("fc"), "fc", &fc_secret),
        &u,
        &code,
        VERIFIER,
    );
    assert_eq!(s, 200, "{t}");
    let (_, jwks) = get_json(&b, &format!("{u}/oidc/jwks"));
    let (_, id) = verify_jwt(t["id_token"].as_str().expect("id_token"), &jwks);
    let sid = id["sid"].as_str().expect("sid").to_owned();
    // rp1 signs in on the same session too, without a front-channel URI.
    let (s, _, _) = b.get(&authorize_url(&u, ""));
    assert_eq!(s, 303);

    let (s, _, page) = b.get(&format!(
        "{u}/oidc/logout?client_id=fc&post_logout_redirect_uri={}&state=z",
        pct(POST_LOGOUT)
    ));
    assert_eq!(s, 200, "{page}");
    let (csrf, next) = (
        hidden(&page, "csrf").expect("csrf"),
        hidden(&page, "next").expect("next"),
    );
    let (s, head, page) = b.post(&format!("{u}/logout"), &[("csrf", &csrf), ("next", &next)]);
    assert_eq!(s, 200, "the front-channel page: {head}{page}");
    let frame = format!("{FC}?iss={}&amp;sid={sid}", pct(&u));
    assert!(
        page.contains(&format!("<iframe src=\"{frame}\"")),
        "one frame for fc with its sid: {page}"
    );
    assert_eq!(
        page.matches("<iframe").count(),
        1,
        "only clients with a front-channel URI"
    );
    assert!(
        page.contains(&format!("content=\"1;url={POST_LOGOUT}?state=z\"")),
        "then on to the registered URI: {page}"
    );
    let csp = header(&head, "content-security-policy").expect("csp");
    assert!(csp.contains("frame-src https://fc.causeway.test"), "{csp}");
    assert!(!common::federation::signed_in(ep, &b));
}
