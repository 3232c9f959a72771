//! A demo OpenID Connect client mounted beside the portal under `/demo-oidc/` (`causeway
//! demo`, `causeway serve --demo-apps`): a confidential client with a secret made at
//! start-up, which signs its user in with the code flow (PKCE S256, state, nonce),
//! redeems the code at the provider's token endpoint (in-process, the same code path),
//! checks the ID token as a careful relying party does (RS256 signature against the
//! published keys, issuer, audience, expiry, nonce, at_hash) and shows its claims and
//! UserInfo's. It lives in the binary; the portal knows it only as a [`Mount`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;
use sha2::Digest;
use zeroize::Zeroizing;

use causeway_federation::portal::{
    cookie, pages, query_param, set_cookie, Mount, MountFuture, Portal, Resp,
};
use causeway_federation::session::random_token;
use causeway_oidc::{Client, SubjectType};
use causeway_saml::xml::escape_html as e;

/// The demo client's id.
pub(crate) const CLIENT_ID: &str = "demo-oidc";
const PREFIX: &str = "/demo-oidc/";
const COOKIE: &str = "__Host-demo_oidc";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Pending {
    verifier: String,
    nonce: String,
    created: Instant,
}

/// The demo OpenID Connect client.
pub(crate) struct DemoOidc {
    base: String,
    secret: Zeroizing<String>,
    secret_sha256: String,
    pending: Mutex<HashMap<String, Pending>>,
    /// Cookie → (ID token claims, UserInfo).
    seen: Mutex<HashMap<String, (Value, Value)>>,
}

impl std::fmt::Debug for DemoOidc {
    // The secret, pending states and cookies stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoOidc")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl DemoOidc {
    pub(crate) fn new(public_url: &str) -> Self {
        let (secret, secret_sha256) = causeway_oidc::client::new_secret();
        Self {
            base: public_url.trim_end_matches('/').to_owned(),
            secret,
            secret_sha256,
            pending: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn redirect_uri(&self) -> String {
        format!("{}{PREFIX}callback", self.base)
    }

    async fn answer(&self, portal: &Arc<Portal>, req: Request<Incoming>) -> Result<Resp, Resp> {
        let tail = req.uri().path().trim_start_matches(PREFIX).to_owned();
        match (req.method(), tail.as_str()) {
            (&Method::GET, "") => {
                if let Some((claims, info)) =
                    cookie(&req, COOKIE).and_then(|c| lock(&self.seen).get(&c).cloned())
                {
                    return Ok(portal.html(StatusCode::OK, claims_page(&claims, &info), "'self'"));
                }
                Ok(self.start(portal))
            }
            (&Method::GET, "callback") => self.callback(portal, &req).await,
            _ => Err(portal.error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address.",
            )),
        }
    }

    /// Sends the browser to the authorization endpoint with PKCE, state and nonce.
    fn start(&self, portal: &Portal) -> Resp {
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = causeway_oidc::b64url(&sha2::Sha256::digest(verifier.as_bytes()));
        {
            let mut p = lock(&self.pending);
            p.retain(|_, v| v.created.elapsed() < Duration::from_secs(900));
            if p.len() < 10_000 {
                p.insert(
                    state.clone(),
                    Pending {
                        verifier,
                        nonce: nonce.clone(),
                        created: Instant::now(),
                    },
                );
            }
        }
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", CLIENT_ID)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", "openid profile email groups")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        Portal::redirect(&format!("{}/oidc/authorize?{q}", portal.oidc_issuer()))
    }

    async fn callback(&self, portal: &Arc<Portal>, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let refuse = |why: &str| {
            portal.bad_request(&format!(
                "The demo OpenID Connect client refused the sign-in: {why}."
            ))
        };
        if let Some(err) = query_param(req, "error") {
            return Err(refuse(&format!(
                "the provider answered {}",
                err.chars().take(64).collect::<String>()
            )));
        }
        let state = query_param(req, "state").unwrap_or_default();
        let pending = lock(&self.pending)
            .remove(&state)
            .ok_or_else(|| refuse("it did not ask for this sign-in (unknown or reused state)"))?;
        if query_param(req, "iss").as_deref() != Some(portal.oidc_issuer()) {
            return Err(refuse("the answer is not from its provider (iss)"));
        }
        let code = Zeroizing::new(query_param(req, "code").ok_or_else(|| refuse("no code"))?);
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("code_verifier", &pending.verifier)
            .finish();
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLIENT_ID}:{}", self.secret.as_str()))
        );
        let tokens = body_json(portal.token_request(Some(&basic), form.as_bytes())).await;
        let (Some(id_token), Some(access)) =
            (tokens["id_token"].as_str(), tokens["access_token"].as_str())
        else {
            return Err(refuse(&format!(
                "the token endpoint answered {}",
                tokens["error"].as_str().unwrap_or("nothing usable")
            )));
        };
        let claims = check_id_token(id_token, access, &pending.nonce, portal).map_err(refuse)?;
        let info = body_json(portal.userinfo_of(access)).await;
        let c = random_token();
        {
            let mut seen = lock(&self.seen);
            if seen.len() > 10_000 {
                seen.clear();
            }
            seen.insert(c.clone(), (claims, info));
        }
        let mut r = Portal::redirect(PREFIX);
        set_cookie(&mut r, COOKIE, &c, Some(3600));
        Ok(r)
    }
}

async fn body_json(r: Resp) -> Value {
    let body = r
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// The checks OIDC Core §3.1.3.7 asks of a client, with the provider's published keys.
fn check_id_token(
    id_token: &str,
    access: &str,
    nonce: &str,
    portal: &Portal,
) -> Result<Value, &'static str> {
    let c = causeway_oidc::jwt::verify(id_token, "JWT", &portal.oidc_published_keys())
        .ok_or("the ID token's signature does not verify")?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if c["iss"] != portal.oidc_issuer() {
        return Err("the ID token is from another issuer");
    }
    if c["aud"] != CLIENT_ID {
        return Err("the ID token is for another client");
    }
    if c["exp"].as_u64().is_none_or(|exp| exp <= now) {
        return Err("the ID token has expired");
    }
    if c["nonce"] != nonce {
        return Err("the ID token's nonce is not the one sent");
    }
    if c["at_hash"] != causeway_oidc::token::at_hash(access).as_str() {
        return Err("the ID token's at_hash does not match the access token");
    }
    Ok(c)
}

impl Mount for DemoOidc {
    fn prefix(&self) -> &str {
        PREFIX
    }

    fn oidc_clients(&self) -> Vec<Client> {
        vec![Client {
            client_id: CLIENT_ID.into(),
            name: Some("Demo OpenID Connect client".into()),
            redirect_uris: vec![self.redirect_uri()],
            post_logout_redirect_uris: vec![format!("{}{PREFIX}", self.base)],
            public: false,
            secret_sha256: Some(self.secret_sha256.clone()),
            subject_type: SubjectType::Pairwise,
            jwks: None,
            frontchannel_logout_uri: None,
        }]
    }

    fn handle<'a>(&'a self, portal: &'a Arc<Portal>, req: Request<Incoming>) -> MountFuture<'a> {
        Box::pin(self.answer(portal, req))
    }
}

/// The demo client's page: the checked ID token's claims and UserInfo's.
fn claims_page(claims: &Value, info: &Value) -> String {
    let rows = |v: &Value| {
        v.as_object().map_or(String::new(), |o| {
            o.iter()
                .map(|(k, v)| {
                    format!(
                        "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                        e(k),
                        e(&v.to_string())
                    )
                })
                .collect()
        })
    };
    pages::page(
        "Demo OpenID Connect client",
        &format!(
            "<div class=\"brand\">Demo OpenID Connect client</div><h1>Welcome</h1><p class=\"lead\">This demo client received an ID token from Causeway and checked it (signature, issuer, audience, expiry, nonce, at_hash).</p>\
<table id=\"claims\"><caption>ID token</caption>{}</table><table id=\"userinfo\"><caption>UserInfo</caption>{}</table>\
<p class=\"note\"><a href=\"/demo/app1/\">Open the demo SAML application</a> — it signs you in without asking again.</p><p class=\"note\"><a href=\"/\">Causeway start page</a></p>",
            rows(claims),
            rows(info)
        ),
    )
}
