//! WS-Federation passive requests at `/wsfed`: sign-in for a registered realm, and
//! sign-out. It must never send a browser to a reply URL that is not registered.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::{info, warn};

use crate::apps::Apps;
use crate::session::{LogoutNext, Prompt, Target};

use super::http::{set_cookie, Resp};
use super::{pages, Portal, SSO_COOKIE};
use causeway_saml::wsfed::query::{check_wctx, parse_query, WsFedRequest};

/// Why a sign-in's relying party cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RefusedReply {
    /// `wtrealm` is not a registered realm.
    UnknownRealm,
    /// `wreply` (here) is not one of the realm's reply URLs; empty when the realm has
    /// none at all.
    UnregisteredReply(String),
}

/// Where a sign-in's token goes: `wreply` if it is one of the realm's registered reply
/// URLs, else the realm's first (its default).
pub(super) fn sign_in_reply<'a>(
    apps: &'a Apps,
    realm: &str,
    wreply: Option<&str>,
) -> Result<&'a str, RefusedReply> {
    let rp = apps.wsfed.get(realm).ok_or(RefusedReply::UnknownRealm)?;
    rp.reply_for(wreply)
        .map_err(RefusedReply::UnregisteredReply)
}

/// Where a sign-out goes back to: `wreply` only if it is a reply URL registered for some
/// relying party (any one: a sign-out names no realm), else nowhere (the signed-out page).
pub(super) fn sign_out_return<'a>(apps: &'a Apps, wreply: Option<&str>) -> Option<&'a String> {
    let w = wreply?;
    apps.wsfed
        .values()
        .find_map(|rp| rp.reply_urls.iter().find(|u| *u == w))
}

impl Portal {
    pub(super) fn wsfed(&self, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let request = parse_query(req.uri().query().unwrap_or(""))
            .map_err(|e| self.bad_request(&e.to_string()))?;
        let apps = self.current_apps();
        match request {
            WsFedRequest::SignIn {
                wtrealm: realm,
                wreply,
                wctx,
            } => {
                let reply = match sign_in_reply(&apps, &realm, wreply.as_deref()) {
                    Ok(reply) => reply,
                    Err(RefusedReply::UnknownRealm) => {
                        warn!(realm = %realm.chars().take(200).collect::<String>(), "WS-Federation sign-in for an unregistered realm");
                        return Err(self.bad_request(&format!(
                            "The application {:?} is not registered with this sign-in service.",
                            realm.chars().take(200).collect::<String>()
                        )));
                    }
                    Err(RefusedReply::UnregisteredReply(u)) => {
                        warn!(realm = %realm, wreply = %u.chars().take(200).collect::<String>(), "wreply not registered");
                        return Err(self.bad_request(&format!("The reply address {:?} is not registered for this application. Nothing was sent.", u.chars().take(200).collect::<String>())));
                    }
                };
                check_wctx(wctx.as_deref()).map_err(|e| self.bad_request(&e.to_string()))?;
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
            WsFedRequest::SignOut { wreply } => {
                let back = sign_out_return(&apps, wreply.as_deref());
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::WsFedRealm;

    fn apps() -> Apps {
        let mut apps = Apps::default();
        for (realm, urls) in [
            ("urn:a", vec!["https://a.test/back", "https://a.test/other"]),
            ("urn:b", vec!["https://b.test/"]),
        ] {
            apps.wsfed.insert(
                realm.into(),
                WsFedRealm {
                    realm: realm.into(),
                    reply_urls: urls.into_iter().map(Into::into).collect(),
                    name: None,
                },
            );
        }
        apps
    }

    #[test]
    fn a_sign_in_is_answered_at_a_registered_reply_url_of_its_own_realm_only() {
        let apps = apps();
        assert_eq!(
            sign_in_reply(&apps, "urn:a", None),
            Ok("https://a.test/back")
        );
        assert_eq!(
            sign_in_reply(&apps, "urn:a", Some("https://a.test/other")),
            Ok("https://a.test/other")
        );
        // Another realm's reply URL is not this realm's.
        assert_eq!(
            sign_in_reply(&apps, "urn:a", Some("https://b.test/")),
            Err(RefusedReply::UnregisteredReply("https://b.test/".into()))
        );
        assert_eq!(
            sign_in_reply(&apps, "urn:a", Some("https://a.test/back/x")),
            Err(RefusedReply::UnregisteredReply(
                "https://a.test/back/x".into()
            ))
        );
        assert_eq!(
            sign_in_reply(&apps, "urn:A", None),
            Err(RefusedReply::UnknownRealm)
        );
    }

    #[test]
    fn a_sign_out_returns_only_to_a_reply_url_registered_for_some_realm() {
        let apps = apps();
        let back = |w| sign_out_return(&apps, w).map(String::as_str);
        assert_eq!(
            back(Some("https://a.test/other")),
            Some("https://a.test/other")
        );
        assert_eq!(back(Some("https://b.test/")), Some("https://b.test/"));
        // Exact matches only: no prefix, no other path, no case folding, no default.
        assert_eq!(back(Some("https://b.test/evil")), None);
        assert_eq!(back(Some("https://a.test/BACK")), None);
        assert_eq!(back(Some("https://a.test")), None);
        assert_eq!(back(Some("")), None);
        assert_eq!(back(None), None);
    }
}
