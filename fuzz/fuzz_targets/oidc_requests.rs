//! Any bytes as an OpenID Connect request: the first byte picks the parser (authorization
//! request, token request with client authentication, client assertion, JWT read-back),
//! the rest is its input. Never a panic, and every parse stays within the bounds it
//! promises (an accepted authorization request names the registered redirect URI).
#![no_main]

use causeway_oidc::params::{Params, MAX_INPUT};
use causeway_oidc::token::Grant;
use causeway_oidc::{AuthorizeRequest, Client, ClientAuth, SubjectType};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    let client = Client {
        client_id: "app".into(),
        name: None,
        redirect_uris: vec!["https://app.test/cb".into()],
        post_logout_redirect_uris: vec![],
        public: which & 0x80 != 0,
        secret_sha256: None,
        subject_type: SubjectType::Pairwise,
        jwks: Some(JWKS.into()),
        frontchannel_logout_uri: None,
    };
    match which % 4 {
        0 => {
            if let Ok((r, _)) = AuthorizeRequest::parse(input, |id| (id == "app").then_some(&client)) {
                assert!(input.len() <= MAX_INPUT);
                assert_eq!(r.redirect_uri, "https://app.test/cb");
                assert!(r.scopes.iter().any(|s| s == "openid"));
                assert_eq!(AuthorizeRequest::decode(&r.encode()), Some(r));
            }
        }
        1 => {
            let Ok(p) = Params::parse(input) else { return };
            assert!(input.len() <= MAX_INPUT);
            let header = p.get("authorization_header");
            if let Ok(auth) = ClientAuth::from_request(header, &p) {
                let _ = auth.authenticate_at(Some(&client), &["https://idp.test/oidc/token"], 1_900_000_000);
            }
            let _ = Grant::parse(&p);
        }
        2 => {
            if let Ok(text) = std::str::from_utf8(input) {
                let _ = causeway_oidc::assertion::claimed_client(text);
                let _ = causeway_oidc::assertion::verify(text, "app", JWKS, &["https://idp.test"], 1_900_000_000);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(input) {
                assert!(causeway_oidc::jwt::verify(text, "JWT", &[]).is_none(), "no key, no token");
            }
        }
    }
});
