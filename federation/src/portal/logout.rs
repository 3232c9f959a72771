//! Sign-out: at the endpoint (`/logout`), and SAML single logout (`/saml/slo`) going round
//! the session's applications through the browser. It must never end a session on a
//! request nobody can vouch for (unsigned, or without the session's anti-forgery token).

use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::session::{LogoutChain, LogoutNext, LogoutOrigin, Participant, Session};
use causeway_saml::saml2::{binding, messages, LogoutRequest, BINDING_REDIRECT};

use super::http::{read_body, set_cookie, sso_cookie, Resp};
use super::{pages, Portal, MAX_FORM, SSO_COOKIE};

/// Whether a sign-out form's anti-forgery token is the session's (in constant time).
pub(super) fn csrf_matches(session_csrf: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(session_csrf.as_bytes().ct_eq(given.as_bytes()))
}

/// What a confirmed sign-out at `/logout` goes on to.
#[derive(Debug)]
pub(super) enum Confirmed {
    /// Tell the ended session's applications, then answer the one that asked (if any).
    Chain(LogoutChain),
    /// Back to a registered WS-Federation reply URL.
    Back(String),
    /// The signed-out page.
    SignedOut,
}

/// Decides from the session that ended (none if it had ended already) and what the
/// confirmation form was shown for. A SAML application's request is answered only with
/// the session it was about: without one there is nobody to answer for.
pub(super) fn after_confirmed(ended: Option<Session>, next: Option<LogoutNext>) -> Confirmed {
    match (ended, next) {
        (Some(s), None) => Confirmed::Chain(LogoutChain::new(&s, None)),
        (Some(s), Some(LogoutNext::Saml(o))) => Confirmed::Chain(LogoutChain::new(&s, Some(o))),
        (_, Some(LogoutNext::WsFed { back: Some(u) })) => Confirmed::Back(u),
        _ => Confirmed::SignedOut,
    }
}

/// Whether a LogoutResponse from `issuer` answers the request we are waiting on
/// (`(application, our request's ID)`).
pub(super) fn answers_our_request(
    issuer: &str,
    in_response_to: Option<&str>,
    waiting_for: (&str, &str),
) -> bool {
    issuer == waiting_for.0 && in_response_to == Some(waiting_for.1)
}

/// Takes the next application of the chain that can be told (`endpoint` finds its SAML
/// logout service), in the order they were signed in to; skips those that cannot.
/// None once every application has had its turn.
pub(super) fn next_to_tell<E>(
    chain: &mut LogoutChain,
    endpoint: impl Fn(&str) -> Option<E>,
) -> Option<(Participant, E)> {
    while let Some(p) = chain.pending.pop() {
        if let Some(e) = endpoint(&p.app) {
            return Some((p, e));
        }
    }
    None
}

impl Portal {
    pub(super) async fn logout(&self, req: Request<Incoming>) -> Result<Resp, Resp> {
        let c = sso_cookie(&req);
        let now = SystemTime::now();
        let session = c.as_deref().and_then(|c| self.sessions.get(c, now));
        if req.method() == Method::GET {
            return Ok(match session {
                Some(s) => self.html(StatusCode::OK, pages::home(&s.upn, &s.csrf, &[]), "'self'"),
                None => self.html(
                    StatusCode::OK,
                    pages::message(
                        "Signed out",
                        "You are not signed in.",
                        Some(("/", "Sign in")),
                    ),
                    "'none'",
                ),
            });
        }
        let body = read_body(req, MAX_FORM).await?;
        let mut csrf = String::new();
        let mut next = None;
        for (k, v) in form_urlencoded::parse(&body) {
            match &*k {
                "csrf" => csrf = v.into_owned(),
                "next" => next = Some(v.into_owned()),
                _ => {}
            }
        }
        match (c, session) {
            (Some(c), Some(s)) => {
                if !csrf_matches(&s.csrf, &csrf) {
                    return Err(self.error_page(
                        StatusCode::FORBIDDEN,
                        "Sign-out refused",
                        "The sign-out form was not issued to this session.",
                    ));
                }
                // What the confirmation page was shown for (a sign-out an application asked
                // for without a signature we could check), sealed into its form.
                let next = next
                    .map(|b| self.flows.open_logout(&b, now))
                    .transpose()
                    .map_err(|e| {
                        self.bad_request(&format!(
                            "The sign-out confirmation cannot be used: {e}. Nothing was ended."
                        ))
                    })?;
                let ended = self.sessions.end(&c);
                let frontchannel = ended
                    .as_ref()
                    .map(|s| self.oidc_session_ended(s))
                    .unwrap_or_default();
                info!(
                    asked_by_application = next.is_some(),
                    "signed out at the endpoint"
                );
                // The session's applications are told one after the other, then the
                // application that asked (or the signed-out page).
                let mut r = match after_confirmed(ended, next) {
                    // OpenID Connect clients are told by the browser on the way out
                    // (front-channel), where nothing is left for SAML to chain through.
                    Confirmed::Chain(chain)
                        if !frontchannel.is_empty()
                            && chain.origin.is_none()
                            && chain.pending.iter().all(|p| p.format == "oidc") =>
                    {
                        self.frontchannel_page(&frontchannel, None)
                    }
                    Confirmed::Chain(chain) => self.next_logout(chain),
                    Confirmed::Back(u) if !frontchannel.is_empty() => {
                        self.frontchannel_page(&frontchannel, Some(&u))
                    }
                    Confirmed::Back(u) => Self::redirect(&u),
                    Confirmed::SignedOut if !frontchannel.is_empty() => {
                        self.frontchannel_page(&frontchannel, None)
                    }
                    Confirmed::SignedOut => self.signed_out(),
                };
                set_cookie(&mut r, SSO_COOKIE, "", Some(0));
                Ok(r)
            }
            _ => Ok(self.signed_out()),
        }
    }

    /// "Sign out of Causeway?" for a sign-out that came without a signature we could
    /// verify (a plain link can send one): only the confirmed, CSRF-protected POST to
    /// `/logout` ends the session.
    pub(super) fn confirm_logout(&self, s: &Session, next: &LogoutNext, app: Option<&str>) -> Resp {
        let sealed = self.flows.seal_logout(next, SystemTime::now());
        self.html(
            StatusCode::OK,
            pages::confirm_logout(&s.upn, &s.csrf, &sealed, app),
            "'self'",
        )
    }

    pub(super) fn signed_out(&self) -> Resp {
        let mut r = self.html(
            StatusCode::OK,
            pages::message("Signed out", "You are signed out. Close the browser to end sessions that applications keep on their own.", Some(("/", "Sign in again"))),
            "'none'",
        );
        set_cookie(&mut r, SSO_COOKIE, "", Some(0));
        r
    }

    pub(super) fn saml_slo(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
        cookie_value: Option<Zeroizing<String>>,
    ) -> Result<Resp, Resp> {
        let msg = msg.map_err(|e| {
            self.bad_request(&format!("The SAML logout message is unreadable: {e}."))
        })?;
        if !msg.is_request {
            return self.logout_answered(&msg);
        }
        let lr = LogoutRequest::parse(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The logout request was refused: {e}.")))?;
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&lr.issuer) else {
            return Err(self.bad_request(
                "The logout request comes from an application that is not registered.",
            ));
        };
        let signed = self.check_signature(sp, &msg, &lr.root, "logout request")?;
        if let Some(d) = &lr.destination {
            if d != &self.urls.slo {
                return Err(self.bad_request("The logout request was meant for another address."));
            }
        }
        if !signed {
            // Anybody can send an unsigned request (a plain link does it): it ends no
            // session by itself. With a session, its user is asked; without one there is
            // nothing of this browser's to end, and the application gets its answer.
            let origin = LogoutOrigin {
                app: sp.entity_id.clone(),
                request_id: lr.id.clone(),
                relay_state: msg.relay_state.clone(),
            };
            let session = cookie_value
                .as_deref()
                .and_then(|c| self.sessions.get(c, SystemTime::now()));
            info!(app = %sp.entity_id, with_session = session.is_some(), "unsigned logout request: asking the user to confirm");
            return Ok(match session {
                Some(s) => self.confirm_logout(&s, &LogoutNext::Saml(origin), Some(&sp.entity_id)),
                None => self.answer_logout(&origin, false),
            });
        }
        let by_cookie = cookie_value.as_deref().and_then(|c| {
            let s = self.sessions.get(c, SystemTime::now())?;
            s.participants
                .iter()
                .any(|p| p.app == sp.entity_id && p.name_id == lr.name_id)
                .then(|| self.sessions.end(c))
                .flatten()
        });
        let clear_cookie = by_cookie.is_some();
        let ended = by_cookie.or_else(|| {
            lr.session_indexes
                .iter()
                .find_map(|i| self.sessions.end_by_index(&sp.entity_id, &lr.name_id, i))
        });
        info!(app = %sp.entity_id, session_ended = ended.is_some(), "single logout requested by an application");
        let origin = LogoutOrigin {
            app: sp.entity_id.clone(),
            request_id: lr.id.clone(),
            relay_state: msg.relay_state.clone(),
        };
        let mut r = match ended {
            // The session's other applications are told first, then the one that asked.
            Some(s) => self.next_logout(LogoutChain::new(&s, Some(origin))),
            None => self.answer_logout(&origin, false),
        };
        if clear_cookie {
            set_cookie(&mut r, SSO_COOKIE, "", Some(0));
        }
        Ok(r)
    }

    /// A LogoutResponse from an application we sent a LogoutRequest to, as part of a
    /// single logout: checked, then on to the next application.
    pub(super) fn logout_answered(&self, msg: &binding::Inbound) -> Result<Resp, Resp> {
        let (root, issuer, in_response_to, ok) = messages::parse_logout_response(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The logout response was refused: {e}.")))?;
        let chain = msg
            .relay_state
            .as_deref()
            .and_then(|r| self.logouts.take(r));
        let Some((mut chain, (app, request_id))) =
            chain.and_then(|mut c| c.waiting_for.take().map(|w| (c, w)))
        else {
            // Not (or no longer) part of a logout here: the session is gone already.
            info!(app = %issuer.chars().take(200).collect::<String>(), success = ok, "logout response received outside a single logout");
            return Ok(self.signed_out());
        };
        if !answers_our_request(&issuer, in_response_to.as_deref(), (&app, &request_id)) {
            warn!(app = %app, "logout response does not answer our logout request");
            return Err(self.bad_request(
                "The logout response does not answer this service's logout request.",
            ));
        }
        let apps = self.current_apps();
        if let Some(sp) = apps.saml.get(&app) {
            self.check_signature(sp, msg, &root, "logout response")?;
        }
        info!(app = %app, success = ok, "single logout: the application answered");
        chain.partial |= !ok;
        Ok(self.next_logout(chain))
    }

    /// Sends the browser to the next application of a single logout with a LogoutRequest,
    /// or, when every application has been told, answers the one that asked (or shows
    /// the signed-out page). Applications without a SAML logout service are skipped.
    pub(super) fn next_logout(&self, mut chain: LogoutChain) -> Resp {
        let apps = self.current_apps();
        let next = next_to_tell(&mut chain, |app| {
            let sp = apps.saml.get(app)?;
            sp.logout_endpoint().map(|e| (sp, e))
        });
        if let Some((p, (sp, (binding_uri, location, _)))) = next {
            let keys = self.current_keys();
            let post = binding_uri != BINDING_REDIRECT;
            let (id, xml) = messages::build_logout_request(
                &self.urls.entity_id,
                location,
                &p.name_id,
                &p.format,
                &sp.entity_id,
                &chain.session_index,
                SystemTime::now(),
                post.then_some(&keys.signing),
            );
            chain.waiting_for = Some((sp.entity_id.clone(), id));
            let relay = self.logouts.park(chain);
            info!(app = %sp.entity_id, "single logout: sending a logout request to an application of the session");
            return self.send_saml(
                post,
                location,
                "SAMLRequest",
                &xml,
                Some(&relay),
                &sp.entity_id,
            );
        }
        match &chain.origin {
            Some(o) => self.answer_logout(o, chain.partial),
            None => self.signed_out(),
        }
    }

    /// The LogoutResponse to the application that asked for a logout.
    pub(super) fn answer_logout(&self, origin: &LogoutOrigin, partial: bool) -> Resp {
        let LogoutOrigin {
            app,
            request_id,
            relay_state,
        } = origin;
        let apps = self.current_apps();
        let Some((binding_uri, _, response_url)) =
            apps.saml.get(app).and_then(|sp| sp.logout_endpoint())
        else {
            return self.signed_out();
        };
        let keys = self.current_keys();
        let post = binding_uri != BINDING_REDIRECT;
        let xml = messages::build_logout_response(
            &self.urls.entity_id,
            response_url,
            request_id,
            partial,
            SystemTime::now(),
            post.then_some(&keys.signing),
        );
        self.send_saml(
            post,
            response_url,
            "SAMLResponse",
            &xml,
            relay_state.as_deref(),
            app,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::session::{Identity, Sessions};

    fn session(apps: &[&str]) -> (Sessions, String, Session) {
        let sessions = Sessions::default();
        let (cookie, _) = sessions.create(
            Identity {
                upn: "carla@corp.test".into(),
                immutable_id: "id-1".into(),
                mail: None,
                display_name: None,
                groups: Vec::new(),
            },
            Duration::from_secs(3600),
            SystemTime::now(),
        );
        for a in apps {
            sessions.add_participant(
                &cookie,
                Participant {
                    app: (*a).into(),
                    name_id: "id-1".into(),
                    format: "f".into(),
                },
            );
        }
        let s = sessions.get(&cookie, SystemTime::now()).expect("live");
        (sessions, cookie, s)
    }

    fn origin(app: &str) -> LogoutOrigin {
        LogoutOrigin {
            app: app.into(),
            request_id: "_r1".into(),
            relay_state: None,
        }
    }

    #[test]
    fn the_sign_out_token_must_be_the_sessions_exactly() {
        assert!(csrf_matches("tok-123", "tok-123"));
        assert!(!csrf_matches("tok-123", "tok-124"));
        assert!(!csrf_matches("tok-123", "tok-12"));
        assert!(!csrf_matches("tok-123", "tok-1234"));
        assert!(!csrf_matches("tok-123", ""));
    }

    #[test]
    fn a_confirmed_sign_out_chains_through_the_session_and_returns_only_where_it_may() {
        let (_, _, s) = session(&["sp-a", "sp-b"]);
        let Confirmed::Chain(c) = after_confirmed(Some(s.clone()), None) else {
            panic!("chain");
        };
        assert_eq!((c.pending.len(), c.origin), (2, None));
        let Confirmed::Chain(c) =
            after_confirmed(Some(s.clone()), Some(LogoutNext::Saml(origin("sp-a"))))
        else {
            panic!("chain");
        };
        // The asking application is answered, not sent a request.
        assert_eq!(
            c.pending.iter().map(|p| p.app.as_str()).collect::<Vec<_>>(),
            ["sp-b"]
        );
        assert_eq!(c.origin, Some(origin("sp-a")));
        let back = || {
            Some(LogoutNext::WsFed {
                back: Some("https://rp.test/".into()),
            })
        };
        assert!(
            matches!(after_confirmed(Some(s.clone()), back()), Confirmed::Back(u) if u == "https://rp.test/")
        );
        assert!(matches!(after_confirmed(None, back()), Confirmed::Back(_)));
        assert!(matches!(
            after_confirmed(Some(s), Some(LogoutNext::WsFed { back: None })),
            Confirmed::SignedOut
        ));
        // The session had ended already: no SAML answer on its behalf.
        assert!(matches!(
            after_confirmed(None, Some(LogoutNext::Saml(origin("sp-a")))),
            Confirmed::SignedOut
        ));
        assert!(matches!(after_confirmed(None, None), Confirmed::SignedOut));
    }

    #[test]
    fn a_logout_response_must_come_from_the_application_asked_and_name_our_request() {
        let w = ("sp-a", "_ours");
        assert!(answers_our_request("sp-a", Some("_ours"), w));
        assert!(!answers_our_request("sp-b", Some("_ours"), w));
        assert!(!answers_our_request("sp-a", Some("_other"), w));
        assert!(!answers_our_request("sp-a", None, w));
    }

    #[test]
    fn the_chain_tells_applications_in_sign_in_order_skipping_those_without_a_logout_service() {
        let (_, _, s) = session(&["sp-a", "sp-none", "sp-c", "sp-asker"]);
        let mut chain = LogoutChain::new(&s, Some(origin("sp-asker")));
        let endpoint = |app: &str| (app != "sp-none").then(|| format!("https://{app}/slo"));
        let mut told = Vec::new();
        while let Some((p, e)) = next_to_tell(&mut chain, endpoint) {
            told.push((p.app, e));
        }
        assert_eq!(
            told,
            [
                ("sp-a".to_owned(), "https://sp-a/slo".to_owned()),
                ("sp-c".to_owned(), "https://sp-c/slo".to_owned())
            ]
        );
        assert!(chain.pending.is_empty());
        assert!(next_to_tell(&mut chain, endpoint).is_none());
    }
}
