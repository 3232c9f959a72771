//! Helpers the OpenID Connect test files share: an endpoint with registered clients and
//! a user, PKCE values, the authorization request, redeeming a code, and checking an ID
//! token's RS256 signature against the JWKS with openssl (independently of the
//! provider's own code).

#![allow(dead_code)]

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use super::endpoint::{header, pct, run_cli, temp_dir, Browser, Endpoint};
use super::federation::USER;

pub const REDIRECT: &str = "https://rp.causeway.test/callback";
pub const PUBLIC_REDIRECT: &str = "http://127.0.0.1:9/cb";
pub const POST_LOGOUT: &str = "https://rp.causeway.test/signed-out";
/// RFC 7636 Appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub struct OidcEndpoint {
    pub ep: Endpoint,
    pub password: String,
    /// The confidential client `rp1`'s secret.
    pub secret: String,
}

/// The client secret line of `causeway apps add --oidc`'s output.
pub fn secret_of(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_owned()
}

/// An endpoint with the demo apps, a confidential client `rp1` (redirect [`REDIRECT`]),
/// a public client `spa` (redirect [`PUBLIC_REDIRECT`]) and the test user. The clients
/// are registered before the endpoint starts, so it has them from its first request.
pub fn endpoint(name: &str, config: &str) -> OidcEndpoint {
    endpoint_with(name, config, |_| {})
}

/// [`endpoint`], with `before` registering more in the data directory before the start.
pub fn endpoint_with(name: &str, config: &str, before: impl FnOnce(&Path)) -> OidcEndpoint {
    let dir = temp_dir(name);
    let data = dir.join("data");
    // `apps add` writes into an existing data directory only; serve fills in the rest.
    std::fs::create_dir_all(&data).expect("data dir");
    before(&data);
    let out = run_cli(
        &data,
        &[
            "apps",
            "add",
            "--oidc",
            "rp1",
            "--name",
            "RP One",
            "--redirect-uri",
            REDIRECT,
            "--post-logout-redirect-uri",
            POST_LOGOUT,
        ],
        None,
    );
    let secret = secret_of(&out);
    run_cli(
        &data,
        &[
            "apps",
            "add",
            "--oidc",
            "spa",
            "--public",
            "--redirect-uri",
            PUBLIC_REDIRECT,
        ],
        None,
    );
    let ep = Endpoint::start_in(dir, config, &["--demo-apps"]);
    let password = super::federation::add_user(&ep, name);
    OidcEndpoint {
        ep,
        password,
        secret,
    }
}

/// An authorization URL for `rp1` with PKCE, state and nonce, plus `extra` parameters.
pub fn authorize_url(base: &str, extra: &str) -> String {
    format!(
        "{base}/oidc/authorize?response_type=code&client_id=rp1&redirect_uri={}&scope=openid%20profile%20email%20groups&state=st-1&nonce=n-1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        pct(REDIRECT)
    )
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(head: &str) -> Vec<(String, String)> {
    let loc = header(head, "location").expect("location");
    let q = loc.split_once('?').map_or("", |x| x.1);
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// A `client_secret_basic` browser-less client (curl with the header).
pub fn basic_client(dir: &Path, id: &str, secret: &str) -> Browser {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    Browser::new(dir).with_header(&format!("authorization: Basic {b64}"))
}

/// Redeems `code` with `verifier`; (status, JSON).
pub fn redeem(client: &Browser, base: &str, code: &str, verifier: &str) -> (u16, Value) {
    let (s, _, body) = client.post(
        &format!("{base}/oidc/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    );
    (
        s,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("base64url")
}

/// The claims of `jwt` if its RS256 signature verifies under a key of `jwks` with the
/// header's `kid`; panics otherwise.
pub fn verify_jwt(jwt: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&b64url(parts[0])).expect("header");
    assert_eq!(header["alg"], "RS256");
    let kid = header["kid"].as_str().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let n = openssl::bn::BigNum::from_slice(&b64url(jwk["n"].as_str().expect("n"))).expect("n");
    let e = openssl::bn::BigNum::from_slice(&b64url(jwk["e"].as_str().expect("e"))).expect("e");
    let key = openssl::pkey::PKey::from_rsa(
        openssl::rsa::Rsa::from_public_components(n, e).expect("rsa"),
    )
    .expect("pkey");
    let mut v =
        openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).expect("v");
    v.update(format!("{}.{}", parts[0], parts[1]).as_bytes())
        .expect("update");
    assert!(v.verify(&b64url(parts[2])).expect("verify"), "signature");
    let claims = serde_json::from_slice(&b64url(parts[1])).expect("claims");
    (header, claims)
}

/// Signs in through the page from `start` in browser `b`; returns the final redirect's
/// headers (to the client's redirect URI).
pub fn sign_in_to_client(ep: &Endpoint, b: &Browser, start: &str, pw: &str) -> String {
    let (s, _, page, _) = b.follow(&ep.url, start);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"password\""), "the sign-in page: {page}");
    let (s, head, page) = b.sign_in(&ep.url, &page, USER, pw);
    assert_eq!(s, 303, "a redirect to the client: {page}");
    head
}

/// GETs `url` and reads its JSON answer; (status, JSON).
pub fn get_json(b: &Browser, url: &str) -> (u16, Value) {
    let (s, _, body) = b.get(url);
    (
        s,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("{url}: not JSON: {body}")),
    )
}
