//! OpenID Connect provider routes: discovery, JWKS, the authorization endpoint (on the
//! same SSO session and sign-in page as SAML and WS-Federation) and RP-initiated logout;
//! `oidc_token` has the back-channel endpoints. It must never send a browser to a
//! redirect URI that is not registered for the client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_oidc::authorize::{answer_fields, redirect_with, PromptKind};
use causeway_oidc::params::{Params, MAX_INPUT};
use causeway_oidc::token as tok;
use causeway_oidc::{AuthorizeRequest, ErrorCode, OAuthError, Refused, ResponseMode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::session::{Participant, Prompt, Session, Target};

use super::answer::{without_page, WithoutPage};
use super::http::{origin, read_body, Resp};
use super::oidc_state::{CodeGrant, User};
use super::{pages, Portal};

/// The discovery document's address.
pub(super) const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Whether the provider answers `path`.
pub(super) fn handles(path: &str) -> bool {
    path == WELL_KNOWN || path.starts_with("/oidc/")
}

pub(super) fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JSON answer; `cache` for public documents, else `no-store` (RFC 6749 §5.1).
pub(super) fn json(status: StatusCode, body: String, cache: bool) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if cache {
        h.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=300"),
        );
    } else {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        h.insert("pragma", HeaderValue::from_static("no-cache"));
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A token-endpoint error (RFC 6749 §5.2); `basic` when the client used the header
/// (then a 401 names the scheme, as §5.2 asks).
pub(super) fn oauth_error(e: &OAuthError, basic: bool) -> Resp {
    let status = StatusCode::from_u16(e.code.token_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json(status, e.to_json(), false);
    if status == StatusCode::UNAUTHORIZED {
        let v = if e.code == ErrorCode::InvalidToken {
            "Bearer error=\"invalid_token\"".to_owned()
        } else if basic {
            "Basic realm=\"causeway\"".to_owned()
        } else {
            String::new()
        };
        if let Ok(v) = HeaderValue::from_str(&v) {
            if !v.is_empty() {
                r.headers_mut().insert("www-authenticate", v);
            }
        }
    }
    r
}

pub(super) fn invalid_grant(d: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// The session id a client sees for a session (OIDC Front-Channel Logout's `sid`): per
/// client, so two clients cannot match their sessions up by it.
fn sid_for(s: &Session, client_id: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"causeway oidc sid v1\0");
    h.update(s.session_index.as_bytes());
    h.update(b"\0");
    h.update(client_id.as_bytes());
    causeway_oidc::b64url(&h.finalize()[..18])
}

/// The `Prompt` of a request: never, always, or only without a usable session.
fn prompt_of(request: &AuthorizeRequest) -> Prompt {
    match request.prompt {
        PromptKind::IfNeeded => Prompt::IfNeeded,
        PromptKind::None => Prompt::Never,
        PromptKind::Login => Prompt::Always,
    }
}

/// Whether a session that signed in at `authn_instant` is recent enough for `max_age`.
pub(super) fn fresh_enough(
    authn_instant: SystemTime,
    max_age: Option<u64>,
    now: SystemTime,
) -> bool {
    max_age.is_none_or(|m| {
        now.duration_since(authn_instant)
            .map_or(true, |age| age <= Duration::from_secs(m))
    })
}

impl Portal {
    /// Answers a request under `/oidc/` or the discovery document.
    pub(super) async fn oidc(self: &Arc<Self>, req: Request<Incoming>) -> Result<Resp, Resp> {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::GET, WELL_KNOWN) => {
                Ok(json(StatusCode::OK, self.oidc_endpoints.document(), true))
            }
            (&Method::GET, "/oidc/jwks") => {
                Ok(json(StatusCode::OK, self.current_keys().jwks.clone(), true))
            }
            (&Method::GET, "/oidc/authorize") => {
                let session = self.session_of(&req);
                let q = req.uri().query().unwrap_or("").as_bytes().to_vec();
                self.authorize(&q, session)
            }
            (&Method::POST, "/oidc/authorize") => {
                let session = self.session_of(&req);
                let body = read_body(req, MAX_INPUT).await?;
                self.authorize(&body, session)
            }
            (&Method::POST, "/oidc/token") => Ok(self.token(req).await),
            (&Method::GET | &Method::POST, "/oidc/userinfo") => Ok(self.userinfo(req).await),
            (&Method::POST, "/oidc/revoke") => Ok(self.revoke(req).await),
            (&Method::POST, "/oidc/introspect") => Ok(self.introspect(req).await),
            (&Method::GET, "/oidc/logout") => {
                let session = self.session_of(&req);
                let q = req.uri().query().unwrap_or("").as_bytes().to_vec();
                self.end_session(&q, session)
            }
            (&Method::POST, "/oidc/logout") => {
                let session = self.session_of(&req);
                let body = read_body(req, MAX_INPUT).await?;
                self.end_session(&body, session)
            }
            (
                _,
                WELL_KNOWN | "/oidc/jwks" | "/oidc/authorize" | "/oidc/token" | "/oidc/userinfo"
                | "/oidc/revoke" | "/oidc/introspect" | "/oidc/logout",
            ) => Err(self.error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "This address does not accept that kind of request.",
            )),
            _ => Err(self.error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing at this address.",
            )),
        }
    }

    /// The authorization endpoint: a code for a browser with a usable session, the sign-in
    /// page otherwise (or `login_required` for `prompt=none`).
    fn authorize(
        &self,
        input: &[u8],
        session: Option<(Zeroizing<String>, Session)>,
    ) -> Result<Resp, Resp> {
        let apps = self.current_apps();
        let (request, client) = match AuthorizeRequest::parse(input, |id| apps.oidc.get(id)) {
            Ok(r) => r,
            Err(Refused::Page(text)) => {
                warn!(reason = %text, "OpenID Connect authorization request refused (not redirected)");
                return Err(self.bad_request(&text));
            }
            Err(Refused::Redirect {
                redirect_uri,
                mode,
                state,
                error,
            }) => {
                info!(
                    error = error.code.as_str(),
                    "OpenID Connect authorization request refused"
                );
                return Ok(self.oidc_answer(
                    &redirect_uri,
                    mode,
                    state.as_deref(),
                    Err(&error),
                    "the application",
                ));
            }
        };
        let now = SystemTime::now();
        let mut prompt = prompt_of(&request);
        // A session older than max_age does not count: the password is asked again (or,
        // for prompt=none, the client hears login_required).
        let session = session.filter(|(_, s)| fresh_enough(s.authn_instant, request.max_age, now));
        if request.max_age.is_some() && session.is_none() && prompt == Prompt::IfNeeded {
            prompt = Prompt::Always;
        }
        let name = client
            .name
            .clone()
            .unwrap_or_else(|| client.client_id.clone());
        let target = Target::Oidc {
            client_id: client.client_id.clone(),
            request: request.encode(),
        };
        Ok(match without_page(prompt, || session) {
            WithoutPage::Complete((c, s)) => self.complete(target, &c, &s),
            WithoutPage::NoPassive => {
                info!(client = %client.client_id, "prompt=none without a usable session: login_required");
                let e = OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in");
                self.oidc_answer(
                    &request.redirect_uri,
                    request.response_mode,
                    request.state.as_deref(),
                    Err(&e),
                    &name,
                )
            }
            WithoutPage::SignIn => {
                let flow = self.flows.start(target, prompt, now);
                Self::redirect(&format!("/login?flow={flow}"))
            }
        })
    }

    /// The display name of a client, or its id.
    pub(super) fn oidc_client_name(&self, client_id: &str) -> String {
        self.current_apps()
            .oidc
            .get(client_id)
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| client_id.to_owned())
    }

    /// The `login_hint` of a pending OpenID Connect sign-in, to fill the form with.
    pub(super) fn oidc_login_hint(t: &Target) -> Option<String> {
        match t {
            Target::Oidc { request, .. } => AuthorizeRequest::decode(request)?.login_hint,
            _ => None,
        }
    }

    /// `prompt=none` reached through a flow without a session: `login_required`.
    pub(super) fn oidc_login_required(&self, client_id: &str, request: &str) -> Resp {
        let Some(r) = self.registered_request(client_id, request) else {
            return self.bad_request("The application is no longer registered.");
        };
        let e = OAuthError::new(ErrorCode::LoginRequired, "the user is not signed in");
        self.oidc_answer(
            &r.redirect_uri,
            r.response_mode,
            r.state.as_deref(),
            Err(&e),
            &self.oidc_client_name(client_id),
        )
    }

    /// The sealed request, if its client and redirect URI are still registered.
    fn registered_request(&self, client_id: &str, request: &str) -> Option<AuthorizeRequest> {
        let r = AuthorizeRequest::decode(request)?;
        let apps = self.current_apps();
        let c = apps.oidc.get(client_id)?;
        (r.client_id == client_id && c.has_redirect_uri(&r.redirect_uri)).then_some(r)
    }

    /// Issues the code for a signed-in session and sends it to the client.
    pub(super) fn oidc_complete(
        &self,
        client_id: &str,
        request: &str,
        cookie_value: &str,
        s: &Session,
    ) -> Resp {
        let Some(r) = self.registered_request(client_id, request) else {
            return self.bad_request("The application is no longer registered, or its redirect URI was removed. Nothing was sent.");
        };
        let apps = self.current_apps();
        let Some(client) = apps.oidc.get(client_id) else {
            return self.bad_request("The application is no longer registered.");
        };
        let name = client.name.clone().unwrap_or_else(|| client_id.to_owned());
        let sub = tok::subject_for(client, &s.immutable_id, self.oidc.pairwise_key());
        let grant = CodeGrant {
            request: r.clone(),
            sub: sub.clone(),
            user: User {
                upn: s.upn.clone(),
                mail: s.mail.clone(),
                display_name: s.display_name.clone(),
                groups: super::claims::groups(s),
            },
            auth_time: s.authn_instant,
            sid: sid_for(s, client_id),
        };
        let Some(code) = self.oidc.issue_code(grant, SystemTime::now()) else {
            warn!("too many unredeemed authorization codes; answering temporarily_unavailable");
            let e = OAuthError::new(ErrorCode::TemporarilyUnavailable, "try again in a minute");
            return self.oidc_answer(
                &r.redirect_uri,
                r.response_mode,
                r.state.as_deref(),
                Err(&e),
                &name,
            );
        };
        self.sessions.add_participant(
            cookie_value,
            Participant {
                app: client_id.to_owned(),
                name_id: sub,
                format: "oidc".into(),
            },
        );
        info!(client = %client_id, "OpenID Connect authorization code issued");
        let code = Zeroizing::new(code);
        self.oidc_answer(
            &r.redirect_uri,
            r.response_mode,
            r.state.as_deref(),
            Ok(&code),
            &name,
        )
    }

    /// Sends an authorization answer to a registered redirect URI, by query or form post.
    fn oidc_answer(
        &self,
        redirect_uri: &str,
        mode: ResponseMode,
        state: Option<&str>,
        result: Result<&str, &OAuthError>,
        app: &str,
    ) -> Resp {
        let fields = answer_fields(&self.oidc_endpoints.issuer, state, result);
        match mode {
            ResponseMode::Query => Self::redirect(&redirect_with(redirect_uri, &fields)),
            ResponseMode::FormPost => {
                let f: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.html(
                    StatusCode::OK,
                    pages::autopost(redirect_uri, &f, app),
                    origin(redirect_uri),
                )
            }
        }
    }

    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): with a session, the
    /// user confirms on the same page as every other sign-out, which ends the SSO session;
    /// then the browser goes to the client's registered `post_logout_redirect_uri` (with
    /// `state`), or to the signed-out page. An unregistered URI is an error page.
    fn end_session(
        &self,
        input: &[u8],
        session: Option<(Zeroizing<String>, Session)>,
    ) -> Result<Resp, Resp> {
        let p = Params::parse(input).map_err(|e| self.bad_request(&e.description))?;
        let bounded = |k: &str, max: usize| {
            p.bounded(k, max)
                .map_err(|e| self.bad_request(&e.description))
        };
        let hint = bounded("id_token_hint", causeway_oidc::jwt::MAX_JWT)?;
        let client_id = bounded("client_id", causeway_oidc::client::MAX_CLIENT_ID)?;
        let back = bounded(
            "post_logout_redirect_uri",
            causeway_oidc::client::MAX_REDIRECT_URI,
        )?;
        let state = bounded("state", causeway_oidc::authorize::MAX_STATE)?;
        // The hint names its client; an expired one still does (it was ours).
        let hinted = match hint {
            Some(h) => {
                let keys = self.current_keys();
                let claims = causeway_oidc::jwt::verify(h, "JWT", &keys.oidc_published)
                    .filter(|c| c["iss"] == self.oidc_endpoints.issuer.as_str())
                    .ok_or_else(|| {
                        self.bad_request(
                            "The id_token_hint was not issued by this sign-in service.",
                        )
                    })?;
                Some(claims["aud"].as_str().unwrap_or_default().to_owned())
            }
            None => None,
        };
        let client = match (hinted.as_deref(), client_id) {
            (Some(a), Some(c)) if a != c => {
                return Err(self.bad_request("client_id and the id_token_hint's audience differ."))
            }
            (Some(c), _) | (None, Some(c)) => Some(c.to_owned()),
            (None, None) => None,
        };
        let apps = self.current_apps();
        let back = match back {
            None => None,
            Some(uri) => {
                let registered = client
                    .as_deref()
                    .and_then(|c| apps.oidc.get(c))
                    .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
                if !registered {
                    warn!("RP-initiated logout with an unregistered post_logout_redirect_uri");
                    return Err(self.bad_request("The post_logout_redirect_uri is not registered for this application (give client_id or id_token_hint). Nothing was ended."));
                }
                let fields: Vec<(String, String)> = state
                    .map(|s| ("state".to_owned(), s.to_owned()))
                    .into_iter()
                    .collect();
                Some(if fields.is_empty() {
                    uri.to_owned()
                } else {
                    redirect_with(uri, &fields)
                })
            }
        };
        match session {
            Some((_, s)) => {
                info!("OpenID Connect logout: asking the user to confirm");
                let name = client.as_deref().map(|c| self.oidc_client_name(c));
                Ok(self.confirm_logout(
                    &s,
                    &crate::session::LogoutNext::WsFed { back },
                    name.as_deref(),
                ))
            }
            None => Ok(match back {
                Some(u) => Self::redirect(&u),
                None => self.signed_out(),
            }),
        }
    }

    /// A session ended: the access tokens its OpenID Connect clients hold end with it.
    /// Returns the front-channel logout URLs of those clients that registered one (with
    /// `iss` and the `sid` their ID tokens carried).
    pub(super) fn oidc_session_ended(&self, s: &Session) -> Vec<String> {
        let apps = self.current_apps();
        let mut urls = Vec::new();
        for p in s.participants.iter().filter(|p| p.format == "oidc") {
            self.oidc.revoke_sub(&p.app, &p.name_id);
            if let Some(u) = apps
                .oidc
                .get(&p.app)
                .and_then(|c| c.frontchannel_logout_uri.as_deref())
            {
                let fields = [
                    ("iss".to_owned(), self.oidc_endpoints.issuer.clone()),
                    ("sid".to_owned(), sid_for(s, &p.app)),
                ];
                urls.push(redirect_with(u, &fields));
            }
        }
        urls
    }

    /// The signed-out page with one hidden frame per front-channel logout URL (their
    /// origins alone allowed as frames), going on to `then` (a registered URL) after a
    /// second, or staying as the signed-out page.
    pub(super) fn frontchannel_page(&self, urls: &[String], then: Option<&str>) -> Resp {
        use causeway_saml::xml::escape_html as e;
        let frames: String = urls
            .iter()
            .map(|u| {
                format!(
                    "<iframe src=\"{}\" title=\"sign-out\" hidden></iframe>",
                    e(u)
                )
            })
            .collect();
        let (refresh, link) = match then {
            Some(t) => (
                format!("<meta http-equiv=\"refresh\" content=\"1;url={}\">", e(t)),
                format!("<p class=\"note\"><a href=\"{}\">Continue</a></p>", e(t)),
            ),
            None => (
                String::new(),
                "<p class=\"note\"><a href=\"/\">Sign in again</a></p>".to_owned(),
            ),
        };
        let body = pages::page(
            "Signed out",
            &format!("{refresh}<div class=\"brand\">Causeway</div><h1>Signed out</h1><p class=\"lead\" id=\"frontchannel\">You are signed out; the applications you opened through Causeway are being told.</p>{frames}{link}"),
        );
        let mut r = self.html(StatusCode::OK, body, "'none'");
        let mut origins: Vec<&str> = urls.iter().map(|u| origin(u)).collect();
        origins.sort_unstable();
        origins.dedup();
        if let Some(csp) = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{v}; frame-src {}", origins.join(" ")))
        {
            if let Ok(v) = HeaderValue::from_str(&csp) {
                r.headers_mut().insert("content-security-policy", v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_counts_from_the_password_and_absent_means_any_age() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(fresh_enough(t0, None, t0 + Duration::from_secs(86_400)));
        assert!(fresh_enough(t0, Some(60), t0 + Duration::from_secs(60)));
        assert!(!fresh_enough(t0, Some(60), t0 + Duration::from_secs(61)));
        assert!(!fresh_enough(t0, Some(0), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn only_the_discovery_document_and_oidc_paths_are_the_providers() {
        assert!(handles(WELL_KNOWN));
        assert!(handles("/oidc/token"));
        assert!(!handles("/oidc"));
        assert!(!handles("/.well-known/other"));
    }
}
