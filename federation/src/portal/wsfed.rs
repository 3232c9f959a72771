//! WS-Federation passive requests at `/wsfed`: sign-in for a registered realm, and
//! sign-out. It must never send a browser to a reply URL that is not registered.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::{info, warn};

use crate::session::{LogoutNext, Prompt, Target};

use super::http::{set_cookie, Resp};
use super::{pages, Portal, MAX_WCTX, SSO_COOKIE};

impl Portal {
    pub(super) fn wsfed(&self, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let q = req.uri().query().unwrap_or("");
        if q.len() > 16 * 1024 {
            return Err(self.bad_request("The request is too large."));
        }
        let mut wa = None;
        let mut wtrealm = None;
        let mut wreply = None;
        let mut wctx = None;
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let slot = match &*k {
                "wa" => &mut wa,
                "wtrealm" => &mut wtrealm,
                "wreply" => &mut wreply,
                "wctx" => &mut wctx,
                _ => continue,
            };
            if slot.is_some() {
                return Err(self.bad_request(&format!("The parameter {k} appears more than once.")));
            }
            *slot = Some(v.into_owned());
        }
        let apps = self.current_apps();
        match wa.as_deref() {
            Some("wsignin1.0") => {
                let Some(realm) = wtrealm else {
                    return Err(self.bad_request(
                        "wtrealm is missing: which application is this sign-in for?",
                    ));
                };
                let Some(rp) = apps.wsfed.get(&realm) else {
                    warn!(realm = %realm.chars().take(200).collect::<String>(), "WS-Federation sign-in for an unregistered realm");
                    return Err(self.bad_request(&format!(
                        "The application {:?} is not registered with this sign-in service.",
                        realm.chars().take(200).collect::<String>()
                    )));
                };
                let reply = rp.reply_for(wreply.as_deref()).map_err(|u| {
                    warn!(realm = %realm, wreply = %u.chars().take(200).collect::<String>(), "wreply not registered");
                    self.bad_request(&format!("The reply address {:?} is not registered for this application. Nothing was sent.", u.chars().take(200).collect::<String>()))
                })?;
                if let Some(n) = wctx.as_ref().map(String::len).filter(|n| *n > MAX_WCTX) {
                    return Err(self.bad_request(&format!(
                        "wctx is {n} bytes long; at most {MAX_WCTX} are accepted."
                    )));
                }
                Ok(self.proceed(
                    Target::WsFed {
                        realm: realm.clone(),
                        reply: reply.to_owned(),
                        wctx,
                    },
                    Prompt::IfNeeded,
                    req,
                ))
            }
            Some("wsignout1.0" | "wsignoutcleanup1.0") => {
                // Back to the application only if it is a registered reply URL.
                let back = wreply.as_deref().and_then(|w| {
                    apps.wsfed
                        .values()
                        .find_map(|rp| rp.reply_urls.iter().find(|u| *u == w))
                });
                // A WS-Federation sign-out is a plain GET that any page can cause: with a
                // session, its user confirms it first.
                if let Some((_, s)) = self.session_of(req) {
                    info!("WS-Federation sign-out: asking the user to confirm");
                    return Ok(self.confirm_logout(
                        &s,
                        &LogoutNext::WsFed {
                            back: back.cloned(),
                        },
                        None,
                    ));
                }
                let mut r = match back {
                    Some(u) => Self::redirect(u),
                    None => self.html(
                        StatusCode::OK,
                        pages::message("Signed out", "You are signed out.", None),
                        "'none'",
                    ),
                };
                set_cookie(&mut r, SSO_COOKIE, "", Some(0));
                Ok(r)
            }
            Some(other) => Err(self.bad_request(&format!(
                "wa={:?} is not supported (wsignin1.0 and wsignout1.0 are).",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(self.bad_request("wa is missing.")),
        }
    }
}
