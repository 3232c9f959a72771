//! The OpenID Connect provider of a real `causeway serve`: discovery, JWKS, the code flow
//! with PKCE through the shared sign-in page, tokens checked against the JWKS with
//! openssl, UserInfo, one SSO session across OIDC and SAML, revocation and introspection,
//! and each bad input answered with its own OAuth error (or an error page where a
//! redirect would go to an unregistered place).

mod common;

use common::endpoint::{form_action, header, hidden, pct, Browser};
use common::federation::USER;
use common::oidc::*;
use serde_json::Value;

#[test]
fn code_flow_with_pkce_signs_in_once_for_oidc_and_saml_and_tokens_verify_against_the_jwks() {
    let o = endpoint("oidc-flow", "");
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let anon = Browser::new(&ep.dir.join("anon"));

    let (s, disc) = get_json(&anon, &format!("{u}/.well-known/openid-configuration"));
    assert_eq!(s, 200);
    assert_eq!(disc["issuer"], u.as_str());
    assert_eq!(
        disc["authorization_endpoint"],
        format!("{u}/oidc/authorize")
    );
    assert_eq!(
        disc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(disc["request_parameter_supported"], false);
    let (s, jwks) = get_json(&anon, disc["jwks_uri"].as_str().expect("jwks_uri"));
    assert_eq!(s, 200);
    assert!(!jwks["keys"].as_array().expect("keys").is_empty());

    // No session: the shared sign-in page, naming the client, then a code at the
    // registered redirect URI with the state and issuer.
    let b = Browser::new(&ep.dir.join("browser"));
    let (s, _, page, _) = b.follow(&u, &authorize_url(&u, ""));
    assert_eq!(s, 200);
    assert!(page.contains("RP One"), "the page names the client: {page}");
    let (s, head, _) = b.sign_in(&u, &page, USER, &o.password);
    assert_eq!(s, 303);
    let loc = header(&head, "location").expect("location");
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let p = location_params(&head);
    assert_eq!(param(&p, "state"), Some("st-1"));
    assert_eq!(param(&p, "iss"), Some(u.as_str()));
    let code = param(&p, "code").expect("code").to_owned();

    let client = basic_client(&ep.dir.join("rp1"), "rp1", &o.secret);
    let (s, t) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    let at = t["access_token"].as_str().expect("access_token").to_owned();
    let (_, id) = verify_jwt(t["id_token"].as_str().expect("id_token"), &jwks);
    assert_eq!(id["iss"], u.as_str());
    assert_eq!(id["aud"], "rp1");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id["exp"].as_u64() > id["iat"].as_u64());
    assert!(id["auth_time"].as_u64() <= id["iat"].as_u64());
    // at_hash binds the access token (OIDC Core §3.1.3.6), computed here with openssl.
    let digest = openssl::sha::sha256(at.as_bytes());
    let want = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest[..16],
    );
    assert_eq!(id["at_hash"], want.as_str());
    let sub = id["sub"].as_str().expect("sub").to_owned();
    let (h, at_claims) = verify_jwt(&at, &jwks);
    assert_eq!(h["typ"], "at+jwt", "RFC 9068");
    assert_eq!(at_claims["client_id"], "rp1");
    assert_eq!(at_claims["sub"], sub.as_str());

    let bearer =
        Browser::new(&ep.dir.join("bearer")).with_header(&format!("authorization: Bearer {at}"));
    let (s, info) = get_json(&bearer, &format!("{u}/oidc/userinfo"));
    assert_eq!(s, 200, "{info}");
    assert_eq!(info["sub"], sub.as_str());
    assert_eq!(info["preferred_username"], USER);
    assert_eq!(info["email"], USER);
    assert_eq!(info["name"], "Carla Cloud");
    assert_eq!(info["groups"], serde_json::json!([]));
    let (s, _, body) = bearer.request("POST", &format!("{u}/oidc/userinfo"), Some(&[]), None);
    assert_eq!(s, 200, "UserInfo by POST: {body}");

    // The pairwise sub is not the immutable id, and stays the same on the next sign-in.
    let users = ep.cli(&["users", "list"], None);
    assert!(
        !users.contains(&sub),
        "pairwise, not the immutable id: {users}"
    );
    let (s, head, _) = b.get(&authorize_url(&u, ""));
    assert_eq!(s, 303, "the session answers without the page");
    let code2 = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (_, t2) = redeem(&client, &u, &code2, VERIFIER);
    let (_, id2) = verify_jwt(t2["id_token"].as_str().expect("id_token"), &jwks);
    assert_eq!(id2["sub"], sub.as_str());

    // One session across protocols: the SAML demo application signs in without a page.
    let (s, _, page, _) = b.follow(
        &u,
        &format!("{u}/saml/idp-init?sp={}", pct(&format!("{u}/demo/app1"))),
    );
    assert_eq!(s, 200);
    assert!(
        page.contains("id=\"autopost\"") && !page.contains("id=\"password\""),
        "{page}"
    );

    // prompt=none with the session: a code; prompt=login: the page again; response_mode
    // form_post: an auto-post form to the redirect URI.
    let (s, head, _) = b.get(&authorize_url(&u, "&prompt=none"));
    assert_eq!(s, 303);
    assert!(param(&location_params(&head), "code").is_some());
    let (s, _, page, _) = b.follow(&u, &authorize_url(&u, "&prompt=login"));
    assert_eq!(s, 200);
    assert!(page.contains("id=\"password\""), "prompt=login asks again");
    let (s, _, page) = b.get(&authorize_url(&u, "&response_mode=form_post"));
    assert_eq!(s, 200);
    assert_eq!(form_action(&page).as_deref(), Some(REDIRECT));
    assert_eq!(hidden(&page, "state").as_deref(), Some("st-1"));
    assert!(hidden(&page, "code").is_some());

    // Introspection for its own client, then revocation: UserInfo refuses it after.
    let (s, _, body) = client.post(&format!("{u}/oidc/introspect"), &[("token", &at)]);
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], sub.as_str());
    let (s, _, _) = client.post(&format!("{u}/oidc/revoke"), &[("token", &at)]);
    assert_eq!(s, 200);
    let (s, _, body) = client.post(&format!("{u}/oidc/introspect"), &[("token", &at)]);
    assert_eq!((s, body.as_str()), (200, r#"{"active":false}"#));
    let (s, head, _) = bearer.get(&format!("{u}/oidc/userinfo"));
    assert_eq!(s, 401);
    assert!(header(&head, "www-authenticate").is_some_and(|h| h.contains("invalid_token")));

    // RP-initiated logout: an unregistered return address is an error page; a registered
    // one is reached after the user confirms, the session is over and so are its tokens.
    let at2 = t2["access_token"].as_str().expect("at").to_owned();
    let hint = t2["id_token"].as_str().expect("id_token").to_owned();
    let (s, head, _) = b.get(&format!(
        "{u}/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri={}",
        pct("https://evil.test/")
    ));
    assert_eq!(s, 400);
    assert!(header(&head, "location").is_none());
    let (s, _, page) = b.get(&format!(
        "{u}/oidc/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye-1",
        pct(POST_LOGOUT)
    ));
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("RP One"),
        "the confirmation names the client: {page}"
    );
    let (csrf, next) = (
        hidden(&page, "csrf").expect("csrf"),
        hidden(&page, "next").expect("next"),
    );
    let (s, head, _) = b.post(&format!("{u}/logout"), &[("csrf", &csrf), ("next", &next)]);
    assert_eq!(s, 303);
    assert_eq!(
        header(&head, "location").as_deref(),
        Some(format!("{POST_LOGOUT}?state=bye-1").as_str())
    );
    assert!(
        !common::federation::signed_in(ep, &b),
        "the SSO session ended"
    );
    let bearer2 =
        Browser::new(&ep.dir.join("bearer2")).with_header(&format!("authorization: Bearer {at2}"));
    assert_eq!(
        bearer2.get(&format!("{u}/oidc/userinfo")).0,
        401,
        "its tokens ended with it"
    );

    // Nothing secret in the logs.
    let logs = ep.logs();
    for (what, v) in [
        ("password", o.password.as_str()),
        ("client secret", o.secret.as_str()),
        ("code", code.as_str()),
        ("access token", at.as_str()),
    ] {
        assert!(!logs.contains(v), "the {what} is in the logs");
    }
}

#[test]
fn bad_authorization_and_token_requests_each_get_their_own_oauth_error() {
    let o = endpoint("oidc-bad", "");
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let anon = Browser::new(&ep.dir.join("anon"));

    // Where a redirect would go somewhere unregistered: an error page, no Location.
    for (what, url) in [
        (
            "unknown client",
            authorize_url(&u, "").replace("client_id=rp1", "client_id=nobody"),
        ),
        (
            "unregistered redirect URI",
            authorize_url(&u, "").replace(&pct(REDIRECT), &pct("https://evil.test/cb")),
        ),
        (
            "a redirect URI that only starts like one",
            authorize_url(&u, "").replace(&pct(REDIRECT), &pct(&format!("{REDIRECT}/x"))),
        ),
        (
            "oversized query",
            authorize_url(&u, &format!("&ui_locales={}", "x".repeat(9000))),
        ),
    ] {
        let (s, head, page) = anon.get(&url);
        assert_eq!(s, 400, "{what}: {page}");
        assert!(
            header(&head, "location").is_none(),
            "{what}: never redirected"
        );
    }

    // Errors that may go back to the client: the precise code, with the state.
    let public = |extra: &str| {
        format!("{u}/oidc/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid&state=s{extra}", pct(PUBLIC_REDIRECT))
    };
    for (what, url, code) in [
        ("public client without PKCE", public(""), "invalid_request"),
        (
            "plain PKCE",
            public(&format!(
                "&code_challenge={CHALLENGE}&code_challenge_method=plain"
            )),
            "invalid_request",
        ),
        (
            "request object",
            authorize_url(&u, "&request=eyJhbGciOiJub25lIn0.e30."),
            "request_not_supported",
        ),
        (
            "request_uri",
            authorize_url(&u, "&request_uri=https%3A%2F%2Fx.test%2Fr"),
            "request_uri_not_supported",
        ),
        (
            "implicit flow",
            authorize_url(&u, "").replace("response_type=code", "response_type=id_token"),
            "unsupported_response_type",
        ),
        (
            "no openid scope",
            authorize_url(&u, "").replace("scope=openid%20profile", "scope=profile"),
            "invalid_scope",
        ),
        (
            "oversized nonce",
            authorize_url(&u, "").replace("nonce=n-1", &format!("nonce={}", "n".repeat(600))),
            "invalid_request",
        ),
        (
            "prompt=none without a session",
            authorize_url(&u, "&prompt=none"),
            "login_required",
        ),
    ] {
        let (s, head, _) = anon.get(&url);
        assert_eq!(s, 303, "{what}");
        let p = location_params(&head);
        assert_eq!(param(&p, "error"), Some(code), "{what}");
        assert!(param(&p, "state").is_some(), "{what}: the state is echoed");
        assert!(param(&p, "code").is_none(), "{what}");
    }

    let b = Browser::new(&ep.dir.join("browser"));
    let head = sign_in_to_client(ep, &b, &authorize_url(&u, ""), &o.password);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let client = basic_client(&ep.dir.join("rp1"), "rp1", &o.secret);

    // Wrong secret: invalid_client, and nothing about the user or the code.
    let wrong = basic_client(&ep.dir.join("wrong"), "rp1", "not-the-secret");
    let (s, v) = redeem(&wrong, &u, &code, VERIFIER);
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(v.get("id_token").is_none());
    // A client assertion (private_key_jwt, alg=none here) is refused, not ignored.
    let (s, _, body) = anon.post(
        &format!("{u}/oidc/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "rp1"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "eyJhbGciOiJub25lIn0.e30."),
        ],
    );
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("invalid_client"));
    // Wrong verifier: invalid_grant, and the code is spent.
    let (s, v) = redeem(
        &client,
        &u,
        &code,
        "wrong-verifier-wrong-verifier-wrong-verifier-1",
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code is tried once: {v}"
    );

    // A reused code: invalid_grant, and the token the first redemption got is revoked.
    let (s, head, _) = b.get(&authorize_url(&u, ""));
    assert_eq!(s, 303);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (s, t) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!(s, 200);
    let at = t["access_token"].as_str().expect("at").to_owned();
    let bearer =
        Browser::new(&ep.dir.join("bearer")).with_header(&format!("authorization: Bearer {at}"));
    assert_eq!(bearer.get(&format!("{u}/oidc/userinfo")).0, 200);
    let (s, v) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    assert!(
        v["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{v}"
    );
    assert_eq!(
        bearer.get(&format!("{u}/oidc/userinfo")).0,
        401,
        "revoked by the reuse"
    );

    // Unsupported grant, repeated parameters, an oversized body.
    let (s, _, body) = client.post(
        &format!("{u}/oidc/token"),
        &[
            ("grant_type", "password"),
            ("username", USER),
            ("password", "x"),
        ],
    );
    assert_eq!(s, 400);
    assert!(body.contains("unsupported_grant_type"), "{body}");
    let (s, _, body) = client.request(
        "POST",
        &format!("{u}/oidc/token"),
        None,
        Some(b"grant_type=authorization_code&code=a&code=b&redirect_uri=x"),
    );
    assert_eq!(s, 400);
    assert!(
        body.contains("invalid_request") && body.contains("more than once"),
        "{body}"
    );
    let big = format!("grant_type=authorization_code&code={}", "c".repeat(20_000));
    let (s, _, _) = client.request(
        "POST",
        &format!("{u}/oidc/token"),
        None,
        Some(big.as_bytes()),
    );
    assert_eq!(s, 413);
    // A public client redeems with its id and verifier only; with the wrong one, never.
    let pb = Browser::new(&ep.dir.join("public"));
    let start = format!("{u}/oidc/authorize?response_type=code&client_id=spa&redirect_uri={}&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=S256", pct(PUBLIC_REDIRECT));
    let head = sign_in_to_client(ep, &pb, &start, &o.password);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (s, _, body) = anon.post(
        &format!("{u}/oidc/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "spa"),
            ("redirect_uri", PUBLIC_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("id_token"));
}

#[test]
fn refresh_tokens_rotate_and_a_reused_one_revokes_every_token_of_the_sign_in() {
    let o = endpoint("oidc-refresh", "");
    let (ep, u) = (&o.ep, o.ep.url.clone());
    let b = Browser::new(&ep.dir.join("browser"));
    let start = authorize_url(&u, "").replace(
        "scope=openid%20profile",
        "scope=openid%20offline_access%20profile",
    );
    let head = sign_in_to_client(ep, &b, &start, &o.password);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let client = basic_client(&ep.dir.join("rp1"), "rp1", &o.secret);
    let (s, t) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!(s, 200, "{t}");
    let r1 = t["refresh_token"]
        .as_str()
        .expect("refresh_token with offline_access")
        .to_owned();
    let refresh = |r: &str| {
        let (s, _, body) = client.post(
            &format!("{u}/oidc/token"),
            &[("grant_type", "refresh_token"), ("refresh_token", r)],
        );
        (s, serde_json::from_str::<Value>(&body).expect("json"))
    };
    let (s, t2) = refresh(&r1);
    assert_eq!(s, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(r1, r2, "a new refresh token at every use");
    let at2 = t2["access_token"].as_str().expect("at").to_owned();
    let (_, _, jwks) = Browser::new(&ep.dir.join("anon")).get(&format!("{u}/oidc/jwks"));
    let jwks: Value = serde_json::from_str(&jwks).expect("jwks");
    let (_, id2) = verify_jwt(t2["id_token"].as_str().expect("id_token"), &jwks);
    let (_, id1) = verify_jwt(t["id_token"].as_str().expect("id_token"), &jwks);
    assert_eq!(id2["sub"], id1["sub"]);
    assert_eq!(id2["auth_time"], id1["auth_time"], "the same sign-in");
    let bearer =
        Browser::new(&ep.dir.join("bearer")).with_header(&format!("authorization: Bearer {at2}"));
    assert_eq!(bearer.get(&format!("{u}/oidc/userinfo")).0, 200);
    // Another client cannot use it.
    let (s, _, body) = Browser::new(&ep.dir.join("spa")).post(
        &format!("{u}/oidc/token"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &r2),
            ("client_id", "spa"),
        ],
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid_grant"));
    // The first one again: reuse, so the whole family and the access tokens end.
    let (s, v) = refresh(&r1);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let (s, v) = refresh(&r2);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "the live one went with its family: {v}"
    );
    assert_eq!(bearer.get(&format!("{u}/oidc/userinfo")).0, 401);
    // Without offline_access, no refresh token.
    let (s, head, _) = b.get(&authorize_url(&u, ""));
    assert_eq!(s, 303);
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let (_, t) = redeem(&client, &u, &code, VERIFIER);
    assert!(t.get("refresh_token").is_none(), "{t}");
    assert!(!ep.logs().contains(&r1) && !ep.logs().contains(&r2));
}
