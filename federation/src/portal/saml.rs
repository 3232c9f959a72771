//! The SAML 2.0 sign-on side: AuthnRequests in (signature, Destination, replay, ACS,
//! NameIDPolicy, RequestedAuthnContext, binding, IsPassive/ForceAuthn), IdP-initiated
//! sign-on, and messages out through the browser; what cannot be met is answered with a
//! signed SAML error at the verified ACS. It must never answer to an ACS that is not in
//! the application's metadata.

use std::time::SystemTime;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::warn;

use crate::apps::NameIdFormat;
use crate::session::{Prompt, Target};
use causeway_saml::saml2::{
    self as saml, binding, messages, AuthnRequest, BINDING_POST, NAMEID_FORMATS, NAMEID_PERSISTENT,
    NAMEID_UNSPECIFIED,
};
use causeway_saml::xml::{self, VerifiedKey};

use super::http::{origin, query_param, Resp};
use super::{pages, Portal};

/// How a request's IsPassive and ForceAuthn let the sign-in page be shown: None when
/// they cannot both be met (a fresh sign-in that shows nothing), which is answered
/// NoPassive at once, session or not.
pub(super) fn prompt_for(is_passive: bool, force_authn: bool) -> Option<Prompt> {
    match (is_passive, force_authn) {
        (true, true) => None,
        (true, false) => Some(Prompt::Never),
        (false, true) => Some(Prompt::Always),
        (false, false) => Some(Prompt::IfNeeded),
    }
}

/// The NameID format for an application that leaves the choice to us: the one its
/// settings pin, else the first of its metadata's formats that this service issues,
/// else persistent.
pub(super) fn default_name_id_format(
    sp_formats: &[String],
    pinned: Option<NameIdFormat>,
) -> String {
    if let Some(p) = pinned {
        return p.uri().to_owned();
    }
    sp_formats
        .iter()
        .find(|f| NAMEID_FORMATS.contains(&f.as_str()))
        .cloned()
        .unwrap_or_else(|| NAMEID_PERSISTENT.to_owned())
}

/// What a request's NameIDPolicy asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Policy<'a> {
    /// Format.
    pub(super) format: Option<&'a str>,
    /// SPNameQualifier.
    pub(super) sp_name_qualifier: Option<&'a str>,
}

/// The NameID format to issue for a request's NameIDPolicy: unspecified (or none) leaves
/// the choice to us; persistent, transient, emailAddress are honoured unless the
/// application is pinned to another one. `Err` says why the policy cannot be met (it is
/// answered InvalidNameIDPolicy): a format we do not issue, one the application's
/// settings rule out, or an SPNameQualifier other than the application itself (we keep
/// no affiliations). AllowCreate needs no decision: persistent ids are derived, not
/// stored, so there is nothing that could not be created.
pub(super) fn name_id_format(
    policy: Policy<'_>,
    entity_id: &str,
    sp_formats: &[String],
    pinned: Option<NameIdFormat>,
) -> Result<String, String> {
    let clip = |s: &str| s.chars().take(200).collect::<String>();
    if let Some(q) = policy.sp_name_qualifier.filter(|q| *q != entity_id) {
        return Err(format!(
            "it asks for NameIDs shared with {:?}; only its own entity id is supported as SPNameQualifier",
            clip(q)
        ));
    }
    match policy.format {
        None | Some(NAMEID_UNSPECIFIED) => Ok(default_name_id_format(sp_formats, pinned)),
        Some(f) => match (NameIdFormat::from_uri(f), pinned) {
            (None, _) => Err(format!(
                "it asks for the NameID format {:?}; this service issues persistent, transient, emailAddress and unspecified",
                clip(f)
            )),
            (Some(asked), Some(p)) if asked != p => Err(format!(
                "it asks for the NameID format {f}, but its settings give it {}",
                p.uri()
            )),
            (Some(asked), _) => Ok(asked.uri().to_owned()),
        },
    }
}

/// The authentication context classes no stronger than a password over TLS (what every
/// sign-in here is), weakest first; `unspecified` asks for nothing in particular.
const AC: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:";
const WEAKER_OR_EQUAL: [&str; 5] = [
    "unspecified",
    "InternetProtocol",
    "InternetProtocolPassword",
    "Password",
    "PasswordProtectedTransport",
];

/// Whether a sign-in with a password over TLS (PasswordProtectedTransport, the class of
/// every assertion here) meets a request's RequestedAuthnContext. `Err` says why not (it
/// is answered NoAuthnContext): an application that asks for more (MFA, a certificate,
/// a smart card) must not get a password sign-in dressed as one. A class we do not know
/// counts as stronger than ours.
pub(super) fn authn_context_met(
    requested: Option<&saml::RequestedAuthnContext>,
) -> Result<(), String> {
    let Some(r) = requested else {
        return Ok(());
    };
    let known = |c: &str| {
        c.strip_prefix(AC)
            .and_then(|l| WEAKER_OR_EQUAL.iter().position(|w| *w == l))
    };
    const OURS: usize = 4;
    let met = r
        .class_refs
        .iter()
        .any(|c| match (r.comparison.as_str(), known(c)) {
            (_, Some(0)) => true,
            ("exact", k) => k == Some(OURS),
            ("minimum", k) => k.is_some(),
            ("better", k) => k.is_some_and(|k| k < OURS),
            // maximum: ours must be no stronger than one of them.
            (_, k) => k.is_none_or(|k| k == OURS),
        });
    if met {
        return Ok(());
    }
    let asked: Vec<String> = r
        .class_refs
        .iter()
        .take(4)
        .map(|c| c.rsplit(':').next().unwrap_or(c).chars().take(80).collect())
        .collect();
    Err(format!(
        "it asks for an authentication context {} [{}]; sign-in here is PasswordProtectedTransport",
        r.comparison,
        asked.join(", ")
    ))
}

impl Portal {
    /// Checks a message's signature against the application's registered certificates:
    /// true when one verified, false when the message is unsigned and the application
    /// does not promise to sign (the caller decides what an unsigned message may do).
    pub(super) fn check_signature(
        &self,
        sp: &saml::ServiceProvider,
        msg: &binding::Inbound,
        root: &xml::Node,
        what: &str,
    ) -> Result<bool, Resp> {
        let keys: Vec<VerifiedKey> = sp.keys();
        let signed_xml = root.child(xml::ns::DS, "Signature").is_some();
        if let Some(sig) = &msg.redirect_signature {
            let mut ok = false;
            for k in &keys {
                match k.verify_raw(&sig.alg, &sig.signed, &sig.signature) {
                    Ok(true) => {
                        ok = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Err(self.bad_request(&format!(
                            "The {what} from {} is signed in a way we do not accept: {e}.",
                            sp.entity_id
                        )));
                    }
                }
            }
            if !ok {
                warn!(app = %sp.entity_id, "{what} signature does not verify");
                return Err(self.bad_request(&format!("The {what} from {} has a signature that does not verify with the certificate in its registered metadata.", sp.entity_id)));
            }
            return Ok(true);
        }
        if signed_xml || (sp.authn_requests_signed && !msg.redirect) {
            return xml::verify_enveloped(root, "ID", &keys)
                .map(|()| true)
                .map_err(|e| {
                    warn!(app = %sp.entity_id, error = %e, "{what} signature refused");
                    self.bad_request(&format!(
                        "The {what} from {} is not correctly signed: {e}.",
                        sp.entity_id
                    ))
                });
        }
        if sp.authn_requests_signed {
            return Err(self.bad_request(&format!(
                "{} signs its requests (its metadata says so), but this {what} is not signed.",
                sp.entity_id
            )));
        }
        Ok(false)
    }

    pub(super) fn saml_sso_post(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
    ) -> Result<Resp, Resp> {
        let (target, prompt) = self.saml_target(msg)?;
        let flow = self.flows.start(target, prompt, SystemTime::now());
        // Cross-site POSTs carry no SameSite=Lax cookie: continue with a same-site GET so
        // that an SSO session is seen.
        Ok(Self::redirect(&format!("/saml/continue?flow={flow}")))
    }

    pub(super) fn saml_sso(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
        req: &Request<Incoming>,
    ) -> Result<Resp, Resp> {
        let (target, prompt) = self.saml_target(msg)?;
        Ok(self.proceed(target, prompt, req))
    }

    /// Where a SAML AuthnRequest wants the answer, once every check has passed, and
    /// whether it asks for the password even with a session (ForceAuthn) or for no
    /// prompt at all (IsPassive). Both at once cannot be met: that is answered NoPassive
    /// at once (as the error side of the result, although it is a normal SAML answer).
    pub(super) fn saml_target(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
    ) -> Result<(Target, Prompt), Resp> {
        let msg =
            msg.map_err(|e| self.bad_request(&format!("The SAML request is unreadable: {e}.")))?;
        if !msg.is_request {
            return Err(self.bad_request("Expected a SAMLRequest at the sign-on address."));
        }
        let req = AuthnRequest::parse(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The SAML request was refused: {e}.")))?;
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&req.issuer) else {
            warn!(issuer = %req.issuer.chars().take(200).collect::<String>(), "AuthnRequest from an unregistered application");
            return Err(self.bad_request(&format!("The application {:?} is not registered with this sign-in service. Ask your administrator to register it (causeway apps add).", req.issuer.chars().take(200).collect::<String>())));
        };
        let signed = self.check_signature(sp, &msg, &req.root, "sign-in request")?;
        let now = SystemTime::now();
        match &req.destination {
            Some(d) if d != &self.urls.sso => {
                return Err(self.bad_request(&format!(
                    "The request was meant for {:?}, not for this sign-in service ({}).",
                    d.chars().take(200).collect::<String>(),
                    self.urls.sso
                )));
            }
            // The signature covers Destination only if it is there (SAML bindings
            // 3.4.5.2 and 3.5.5.2 require it in signed requests): without it a signed
            // request for another IdP could be replayed here.
            None if signed => {
                return Err(self.bad_request(&format!(
                    "The signed request from {} names no Destination; a signed request must name this sign-in service ({}).",
                    sp.entity_id, self.urls.sso
                )));
            }
            _ => {}
        }
        // A signed request is good for a few minutes and for one answer; an unsigned one
        // proves nothing about when it was made, so these checks would mean nothing.
        let replay_until = if signed {
            Some(req.check_issue_instant(now).map_err(|e| {
                warn!(app = %sp.entity_id, "signed sign-in request outside its time window");
                self.bad_request(&format!("The sign-in request was refused: {e}."))
            })?)
        } else {
            None
        };
        let acs = sp.acs_for(req.acs_url.as_deref(), req.acs_index).map_err(|u| {
            warn!(app = %sp.entity_id, acs = %u.chars().take(200).collect::<String>(), "AuthnRequest names an unregistered AssertionConsumerService");
            self.bad_request(&format!("The application asked for the answer to go to {:?}, which is not in its registered metadata. Nothing was sent.", u.chars().take(200).collect::<String>()))
        })?;
        // Recorded once the request is known to be answerable (from here on, a NameID
        // policy that cannot be met is answered too, as a SAML error).
        if let Some(until) = replay_until {
            if !self
                .seen_requests
                .first_use(&sp.entity_id, &req.id, until, now)
            {
                warn!(app = %sp.entity_id, "signed sign-in request replayed");
                return Err(self.bad_request(&format!(
                    "This sign-in request from {} was answered already (its ID {:?} was seen before); a request is used once. Go back to the application and sign in again.",
                    sp.entity_id, req.id
                )));
            }
        }
        // What cannot be met is answered as SAML at the verified ACS, never as a page.
        let refuse = |second: &str, why: &str| {
            warn!(app = %sp.entity_id, reason = %why, status = %second.rsplit(':').next().unwrap_or(""), "sign-in request cannot be met: answered with a SAML error");
            self.saml_error(
                &sp.entity_id,
                acs,
                Some(&req.id),
                msg.relay_state.as_deref(),
                Some(second),
            )
        };
        if let Some(b) = req
            .protocol_binding
            .as_deref()
            .filter(|b| *b != BINDING_POST)
        {
            return Err(refuse(
                saml::STATUS_UNSUPPORTED_BINDING,
                &format!(
                    "it asks for the answer over {:?}; this service answers over HTTP-POST",
                    b.chars().take(200).collect::<String>()
                ),
            ));
        }
        if let Err(why) = authn_context_met(req.requested_authn_context.as_ref()) {
            return Err(refuse(saml::STATUS_NO_AUTHN_CONTEXT, &why));
        }
        let settings = apps.saml_settings_of(&sp.entity_id);
        let policy = Policy {
            format: req.name_id_format.as_deref(),
            sp_name_qualifier: req.name_id_sp_name_qualifier.as_deref(),
        };
        let format = match name_id_format(
            policy,
            &sp.entity_id,
            &sp.name_id_formats,
            settings.name_id_format,
        ) {
            Ok(f) => f,
            Err(why) => return Err(refuse(saml::STATUS_INVALID_NAMEID_POLICY, &why)),
        };
        let target = Target::Saml {
            sp: sp.entity_id.clone(),
            acs: acs.to_owned(),
            request_id: Some(req.id.clone()),
            relay_state: msg.relay_state.clone(),
            name_id_format: format,
        };
        match prompt_for(req.is_passive, req.force_authn) {
            Some(prompt) => Ok((target, prompt)),
            None => Err(self.no_passive(target)),
        }
    }

    pub(super) fn idp_initiated(&self, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let Some(entity) = query_param(req, "sp") else {
            return Err(
                self.bad_request("Name the application: /saml/idp-init?sp=<its entity id>.")
            );
        };
        let relay = query_param(req, "RelayState");
        if let Some(n) = relay
            .as_ref()
            .map(String::len)
            .filter(|n| *n > binding::MAX_RELAY_STATE)
        {
            return Err(self.bad_request(&format!(
                "RelayState is {n} bytes long; at most {} are accepted.",
                binding::MAX_RELAY_STATE
            )));
        }
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&entity) else {
            return Err(self.bad_request(&format!(
                "The application {:?} is not registered with this sign-in service.",
                entity.chars().take(200).collect::<String>()
            )));
        };
        let acs = sp.acs_for(None, None).map_err(|_| {
            self.bad_request("The application has no HTTP-POST assertion consumer service.")
        })?;
        let format = default_name_id_format(
            &sp.name_id_formats,
            apps.saml_settings_of(&sp.entity_id).name_id_format,
        );
        Ok(self.proceed(
            Target::Saml {
                sp: sp.entity_id.clone(),
                acs: acs.to_owned(),
                request_id: None,
                relay_state: relay,
                name_id_format: format,
            },
            Prompt::IfNeeded,
            req,
        ))
    }

    /// A signed Response with status Responder (and `second` below it) and no assertion, posted to
    /// `acs` (a verified ACS of `sp`): how a request that cannot be met is answered, so
    /// the application learns why instead of the user seeing a page from us.
    pub(super) fn saml_error(
        &self,
        sp: &str,
        acs: &str,
        in_response_to: Option<&str>,
        relay_state: Option<&str>,
        second: Option<&str>,
    ) -> Resp {
        let xml = messages::build_error_response(
            &self.urls.entity_id,
            acs,
            in_response_to,
            saml::STATUS_RESPONDER,
            second,
            SystemTime::now(),
            &self.current_keys().signing,
        );
        let name = self.saml_app_name(sp);
        self.send_saml(true, acs, "SAMLResponse", &xml, relay_state, &name)
    }

    /// An SP's display name (its settings' `name`), or its entity id.
    pub(super) fn saml_app_name(&self, sp: &str) -> String {
        self.current_apps()
            .saml_settings
            .get(sp)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| sp.to_owned())
    }

    /// Sends a SAML message through the browser: an auto-posting form (HTTP-POST, signed
    /// already) or a redirect whose query string is signed (HTTP-Redirect binding).
    pub(super) fn send_saml(
        &self,
        post: bool,
        url: &str,
        param: &str,
        xml: &str,
        relay_state: Option<&str>,
        app: &str,
    ) -> Resp {
        if post {
            let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
            let mut fields = vec![(param, encoded.as_str())];
            if let Some(rs) = relay_state {
                fields.push(("RelayState", rs));
            }
            return self.html(
                StatusCode::OK,
                pages::autopost(url, &fields, app),
                origin(url),
            );
        }
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair(param, &binding::deflate_encode(xml));
        if let Some(rs) = relay_state {
            q.append_pair("RelayState", rs);
        }
        q.append_pair("SigAlg", xml::ns::RSA_SHA256);
        let signed = q.finish();
        let sig = base64::engine::general_purpose::STANDARD
            .encode(self.current_keys().signing.sign_raw(signed.as_bytes()));
        let sig: String = form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        Self::redirect(&format!("{url}{sep}{signed}&Signature={sig}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_saml::saml2::NAMEID_EMAIL;

    const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
    const KERBEROS: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos";

    #[test]
    fn is_passive_and_force_authn_map_to_the_prompt_and_both_at_once_to_no_passive() {
        assert_eq!(prompt_for(false, false), Some(Prompt::IfNeeded));
        assert_eq!(prompt_for(false, true), Some(Prompt::Always));
        assert_eq!(prompt_for(true, false), Some(Prompt::Never));
        assert_eq!(prompt_for(true, true), None);
    }

    #[test]
    fn the_name_id_format_asked_for_is_honoured_or_refused_and_none_falls_back_to_settings_or_metadata(
    ) {
        let sp = |f: &[&str]| f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let asked = |f: &'static str| Policy {
            format: Some(f),
            sp_name_qualifier: None,
        };
        let none = Policy::default();
        let me = "https://sp.example";
        // The first format of the metadata that we issue (transient included now).
        assert_eq!(
            name_id_format(none, me, &sp(&[KERBEROS, TRANSIENT, NAMEID_EMAIL]), None),
            Ok(TRANSIENT.to_owned())
        );
        assert_eq!(
            name_id_format(
                asked(NAMEID_UNSPECIFIED),
                me,
                &sp(&[NAMEID_UNSPECIFIED]),
                None
            ),
            Ok(NAMEID_UNSPECIFIED.to_owned())
        );
        assert_eq!(
            name_id_format(none, me, &sp(&[KERBEROS]), None),
            Ok(NAMEID_PERSISTENT.to_owned())
        );
        assert_eq!(
            name_id_format(none, me, &[], None),
            Ok(NAMEID_PERSISTENT.to_owned())
        );
        // Asked for explicitly: given whatever the metadata lists (SimpleSAMLphp asks
        // for transient).
        for f in [TRANSIENT, NAMEID_EMAIL, NAMEID_PERSISTENT] {
            assert_eq!(
                name_id_format(asked(f), me, &sp(&[NAMEID_PERSISTENT]), None),
                Ok(f.to_owned())
            );
        }
        // A format we do not issue, or one the settings rule out: refused, saying why.
        let e = name_id_format(asked(KERBEROS), me, &sp(&[KERBEROS]), None).expect_err("kerberos");
        assert!(e.contains("kerberos") && e.contains("transient"), "{e}");
        let pinned = Some(NameIdFormat::Email);
        assert_eq!(
            name_id_format(none, me, &sp(&[TRANSIENT]), pinned),
            Ok(NAMEID_EMAIL.to_owned())
        );
        assert_eq!(
            name_id_format(asked(NAMEID_UNSPECIFIED), me, &[], pinned),
            Ok(NAMEID_EMAIL.to_owned())
        );
        let e = name_id_format(asked(TRANSIENT), me, &[], pinned).expect_err("pinned");
        assert!(e.contains("its settings give it"), "{e}");
        // SPNameQualifier: the SP itself, or refused (no affiliations).
        let q = |q: &'static str| Policy {
            format: Some(TRANSIENT),
            sp_name_qualifier: Some(q),
        };
        assert_eq!(
            name_id_format(q(me), me, &[], None),
            Ok(TRANSIENT.to_owned())
        );
        let e = name_id_format(q("urn:affiliation"), me, &[], None).expect_err("affiliation");
        assert!(e.contains("SPNameQualifier"), "{e}");
    }

    #[test]
    fn a_password_sign_in_meets_only_the_authn_contexts_it_is() {
        let ctx = |comparison: &str, classes: &[&str]| saml::RequestedAuthnContext {
            comparison: comparison.into(),
            class_refs: classes.iter().map(|c| format!("{AC}{c}")).collect(),
        };
        let met = |c: &str, l: &[&str]| authn_context_met(Some(&ctx(c, l))).is_ok();
        assert!(authn_context_met(None).is_ok());
        assert!(met("exact", &["PasswordProtectedTransport"]));
        assert!(met("exact", &["unspecified"]));
        assert!(met("exact", &["X509", "PasswordProtectedTransport"]));
        assert!(!met("exact", &["Password"]));
        assert!(met("minimum", &["Password"]));
        assert!(met("minimum", &["PasswordProtectedTransport"]));
        assert!(
            !met("minimum", &["MobileTwoFactorContract"]),
            "MFA asked, password given"
        );
        assert!(met("better", &["Password"]));
        assert!(!met("better", &["PasswordProtectedTransport"]));
        assert!(met("maximum", &["X509"]));
        assert!(!met("maximum", &["Password"]));
        // Only DeclRefs (no class): nothing to meet.
        assert!(!met("exact", &[]));
        let e = authn_context_met(Some(&ctx("minimum", &["Smartcard"]))).expect_err("smartcard");
        assert!(e.contains("Smartcard") && e.contains("minimum"), "{e}");
    }
}
