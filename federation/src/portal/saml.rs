//! The SAML 2.0 sign-on side: AuthnRequests in (signature, Destination, replay, ACS,
//! NameID format, IsPassive/ForceAuthn), IdP-initiated sign-on, and messages out through
//! the browser. It must never answer to an ACS that is not in the application's metadata.

use std::time::SystemTime;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::warn;

use crate::saml::{
    self, binding, AuthnRequest, BINDING_POST, NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED,
};
use crate::session::{Prompt, Target};
use crate::xml::{self, VerifiedKey};

use super::http::{origin, query_param, Resp};
use super::{pages, Portal};

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
        if let Some(b) = &req.protocol_binding {
            if b != BINDING_POST {
                return Err(self.bad_request("The application asks for the answer over a binding other than HTTP-POST, which this sign-in service does not offer."));
            }
        }
        let acs = sp.acs_for(req.acs_url.as_deref(), req.acs_index).map_err(|u| {
            warn!(app = %sp.entity_id, acs = %u.chars().take(200).collect::<String>(), "AuthnRequest names an unregistered AssertionConsumerService");
            self.bad_request(&format!("The application asked for the answer to go to {:?}, which is not in its registered metadata. Nothing was sent.", u.chars().take(200).collect::<String>()))
        })?;
        let format = match req.name_id_format.as_deref() {
            None | Some(NAMEID_UNSPECIFIED) => sp
                .name_id_formats
                .iter()
                .find(|f| {
                    [NAMEID_PERSISTENT, NAMEID_EMAIL, NAMEID_UNSPECIFIED].contains(&f.as_str())
                })
                .cloned()
                .unwrap_or_else(|| NAMEID_PERSISTENT.to_owned()),
            Some(f @ (NAMEID_PERSISTENT | NAMEID_EMAIL)) => f.to_owned(),
            Some(f) => {
                return Err(self.bad_request(&format!("The application asks for the NameID format {:?}; this sign-in service issues persistent, emailAddress and unspecified.", f.chars().take(200).collect::<String>())));
            }
        };
        // Recorded last, once the request is known to be answerable.
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
        let target = Target::Saml {
            sp: sp.entity_id.clone(),
            acs: acs.to_owned(),
            request_id: Some(req.id.clone()),
            relay_state: msg.relay_state.clone(),
            name_id_format: format,
        };
        match (req.is_passive, req.force_authn) {
            // A fresh sign-in that shows nothing cannot be done, session or not.
            (true, true) => Err(self.no_passive(target)),
            (true, false) => Ok((target, Prompt::Never)),
            (false, true) => Ok((target, Prompt::Always)),
            (false, false) => Ok((target, Prompt::IfNeeded)),
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
        let format = sp
            .name_id_formats
            .iter()
            .find(|f| [NAMEID_PERSISTENT, NAMEID_EMAIL, NAMEID_UNSPECIFIED].contains(&f.as_str()))
            .cloned()
            .unwrap_or_else(|| NAMEID_PERSISTENT.to_owned());
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
