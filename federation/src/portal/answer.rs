//! Finishing a sign-in flow: the answer for a browser with a session (a SAML Response or a
//! WS-Federation token), NoPassive, or the way to the sign-in page. It must never send an
//! answer anywhere but the registered URL the flow carries.

use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::{info, warn};

use crate::session::{Participant, Prompt, Session, Target};
use causeway_saml::saml2::{self as saml, messages};

use super::http::{origin, Resp};
use super::{claims, pages, Portal};

/// What a flow gets without the sign-in page.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum WithoutPage<S> {
    /// The answer, for this session.
    Complete(S),
    /// NoPassive: the application asked for no prompt, and there is no session.
    NoPassive,
    /// The user has to sign in.
    SignIn,
}

/// Decides by `prompt` and the browser's session, which is looked up only when it can
/// count (ForceAuthn asks for the password whatever the session).
pub(super) fn without_page<S>(
    prompt: Prompt,
    session: impl FnOnce() -> Option<S>,
) -> WithoutPage<S> {
    if prompt != Prompt::Always {
        if let Some(s) = session() {
            return WithoutPage::Complete(s);
        }
    }
    if prompt == Prompt::Never {
        return WithoutPage::NoPassive;
    }
    WithoutPage::SignIn
}

impl Portal {
    /// Answers at once for a browser with a session (unless the password is asked for
    /// again); otherwise keeps the request as a flow and sends the browser to sign in,
    /// or, when the application asked for no prompt, tells it the user is not signed in.
    pub(super) fn proceed(&self, target: Target, prompt: Prompt, req: &Request<Incoming>) -> Resp {
        self.answer_without_page(target, prompt, req)
            .unwrap_or_else(|target| {
                let flow = self.flows.start(target, prompt, SystemTime::now());
                Self::redirect(&format!("/login?flow={flow}"))
            })
    }

    pub(super) fn continue_flow(&self, blob: &str, req: &Request<Incoming>) -> Resp {
        let flow = match self.flows.open(blob, SystemTime::now()) {
            Ok(f) => f,
            Err(e) => return self.flow_refused(e),
        };
        match self.answer_without_page(flow.target, flow.prompt, req) {
            Ok(r) => r,
            // The same sealed state goes on to the sign-in page.
            Err(_) => Self::redirect(&format!(
                "/login?flow={}",
                form_urlencoded::byte_serialize(blob.as_bytes()).collect::<String>()
            )),
        }
    }

    /// The answer that needs no sign-in page: the assertion for a browser with a
    /// session (unless `prompt` is Always), or NoPassive when `prompt` is Never. Gives
    /// the target back when the user has to sign in.
    pub(super) fn answer_without_page(
        &self,
        target: Target,
        prompt: Prompt,
        req: &Request<Incoming>,
    ) -> Result<Resp, Target> {
        match without_page(prompt, || self.session_of(req)) {
            WithoutPage::Complete((c, s)) => {
                // Single sign-on: a token from the session, no password typed.
                if let Some(app) = target.app_id() {
                    crate::audit::record(crate::audit::Event::token_issued(
                        &s.upn, None, app, "session",
                    ));
                }
                Ok(self.complete(target, &c, &s))
            }
            WithoutPage::NoPassive => Ok(self.no_passive(target)),
            WithoutPage::SignIn => Err(target),
        }
    }

    /// The answer to IsPassive without a usable session: a signed Response with status
    /// Responder / NoPassive, posted to the application, which then knows the user is not
    /// signed in without anything shown to them.
    pub(super) fn no_passive(&self, target: Target) -> Resp {
        match target {
            Target::Saml {
                sp,
                acs,
                request_id,
                relay_state,
                ..
            } => {
                info!(app = %sp, "passive sign-in request without a session: answered NoPassive");
                self.saml_error(
                    &sp,
                    &acs,
                    request_id.as_deref(),
                    relay_state.as_deref(),
                    Some(saml::STATUS_NO_PASSIVE),
                )
            }
            Target::Oidc { client_id, request } => self.oidc_login_required(&client_id, &request),
            // Only SAML and OpenID Connect ask for passive sign-in.
            other => {
                let flow = self.flows.start(other, Prompt::IfNeeded, SystemTime::now());
                Self::redirect(&format!("/login?flow={flow}"))
            }
        }
    }

    pub(super) fn complete(&self, target: Target, cookie_value: &str, s: &Session) -> Resp {
        let now = SystemTime::now();
        let keys = self.current_keys();
        match target {
            Target::Portal => Self::redirect("/"),
            Target::Oidc { client_id, request } => {
                self.oidc_complete(&client_id, &request, cookie_value, s)
            }
            Target::Saml {
                sp,
                acs,
                request_id,
                relay_state,
                name_id_format,
            } => {
                let apps = self.current_apps();
                let settings = apps.saml_settings_of(&sp);
                let name_id =
                    claims::saml_name_id(&name_id_format, s, &sp, &settings, &self.pairwise);
                let attrs = claims::saml_attributes(s, &settings);
                // Encryption was checked possible when the settings were loaded; an SP
                // whose key went away since is answered with an error, never in clear.
                let encrypt_to = if settings.encrypt_assertions {
                    match apps.saml.get(&sp).and_then(|a| a.encryption_key()) {
                        Some(k) => Some(k),
                        None => {
                            warn!(app = %sp, "assertions are to be encrypted but the application has no encryption key: answered Responder");
                            return self.saml_error(
                                &sp,
                                &acs,
                                request_id.as_deref(),
                                relay_state.as_deref(),
                                None,
                            );
                        }
                    }
                } else {
                    None
                };
                let built = messages::build_response_with(
                    &messages::ResponseParams {
                        issuer: &self.urls.entity_id,
                        acs_url: &acs,
                        audience: &sp,
                        in_response_to: request_id.as_deref(),
                        name_id: &name_id,
                        name_id_format: &name_id_format,
                        session_index: &s.session_index,
                        authn_instant: s.authn_instant,
                        session_not_on_or_after: s.expires,
                        now,
                        validity: self.cfg.token_validity,
                        attributes: &attrs,
                    },
                    &messages::ResponseOptions {
                        sign: settings.sign.parts(),
                        encrypt_to: encrypt_to.as_ref(),
                        attribute_name_format: settings.attribute_names.name_format(),
                    },
                    &keys.signing,
                );
                let xml = match built {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(app = %sp, error = %e, "the assertion could not be encrypted: answered Responder");
                        return self.saml_error(
                            &sp,
                            &acs,
                            request_id.as_deref(),
                            relay_state.as_deref(),
                            None,
                        );
                    }
                };
                self.sessions.add_participant(
                    cookie_value,
                    Participant {
                        app: sp.clone(),
                        name_id,
                        format: name_id_format.clone(),
                    },
                );
                info!(app = %sp, format = %name_id_format, encrypted = encrypt_to.is_some(), "SAML assertion issued");
                let name = self.saml_app_name(&sp);
                self.send_saml(
                    true,
                    &acs,
                    "SAMLResponse",
                    &xml,
                    relay_state.as_deref(),
                    &name,
                )
            }
            Target::WsFed { realm, reply, wctx } => {
                let rstr = causeway_saml::wsfed::build_rstr(
                    &causeway_saml::wsfed::TokenParams {
                        issuer: &self.urls.entity_id,
                        realm: &realm,
                        immutable_id: &s.immutable_id,
                        upn: &s.upn,
                        mail: s.mail.as_deref(),
                        display_name: s.display_name.as_deref(),
                        groups: &claims::groups(s),
                        authn_instant: s.authn_instant,
                        now,
                        validity: self.cfg.token_validity.max(Duration::from_secs(3600)),
                    },
                    &keys.signing,
                );
                self.sessions.add_participant(
                    cookie_value,
                    Participant {
                        app: realm.clone(),
                        name_id: s.immutable_id.clone(),
                        format: "wsfed".into(),
                    },
                );
                info!(realm = %realm, "WS-Federation token issued");
                let mut fields = vec![("wa", "wsignin1.0"), ("wresult", rstr.as_str())];
                if let Some(c) = wctx.as_deref() {
                    fields.push(("wctx", c));
                }
                let name = self.realm_name(&realm);
                self.html(
                    StatusCode::OK,
                    pages::autopost(&reply, &fields, &name),
                    origin(&reply),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_answers_unless_the_password_is_forced_and_no_prompt_without_one_is_no_passive() {
        let with = || Some("s");
        let without = || None::<&str>;
        assert_eq!(
            without_page(Prompt::IfNeeded, with),
            WithoutPage::Complete("s")
        );
        assert_eq!(without_page(Prompt::IfNeeded, without), WithoutPage::SignIn);
        assert_eq!(
            without_page(Prompt::Never, with),
            WithoutPage::Complete("s")
        );
        assert_eq!(without_page(Prompt::Never, without), WithoutPage::NoPassive);
        assert_eq!(without_page(Prompt::Always, without), WithoutPage::SignIn);
        // ForceAuthn: the session is not even looked at.
        assert_eq!(
            without_page(Prompt::Always, || -> Option<&str> { panic!("looked up") }),
            WithoutPage::SignIn
        );
    }
}
