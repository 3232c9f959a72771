//! Two demo SAML applications mounted beside the portal under `/demo/` (`causeway demo`,
//! `causeway serve --demo-apps`): each starts an SP-initiated sign-in and shows the
//! attributes of the assertion it received, after checking it as a careful relying party
//! does (both signatures against the published keys, destination, recipient, request,
//! audience, validity) with the testkit's SP-side check. They live in the binary, not in
//! the IdP's library: the portal knows them only as a [`Mount`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use causeway_federation::portal::{
    cookie, pages, query_param, read_body, set_cookie, Mount, MountFuture, Portal, Resp,
};
use causeway_federation::session::random_token;
use causeway_saml::saml2::{self as saml, binding, ServiceProvider};
use causeway_saml::xml::escape_html as e;
use causeway_testkit::sp;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Pending {
    request_id: String,
    created: Instant,
}

/// What a demo application received: the NameID and the attributes.
type Received = (String, Vec<(String, Vec<String>)>);

/// The two demo applications.
pub(crate) struct DemoApps {
    base: String,
    pending: Mutex<HashMap<String, Pending>>,
    seen: Mutex<HashMap<String, Received>>,
}

const APPS: [(&str, &str); 2] = [
    ("app1", "Demo application 1"),
    ("app2", "Demo application 2"),
];

impl DemoApps {
    pub(crate) fn new(public_url: &str) -> Self {
        Self {
            base: public_url.trim_end_matches('/').to_owned(),
            pending: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn entity(&self, app: &str) -> String {
        format!("{}/demo/{app}", self.base)
    }

    fn acs(&self, app: &str) -> String {
        format!("{}/demo/{app}/acs", self.base)
    }

    /// Their metadata, as an operator would register it.
    fn metadata(&self) -> Vec<ServiceProvider> {
        APPS.iter()
            .filter_map(|(app, _)| {
                let xml = format!(
                    "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{}\"><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:NameIDFormat>{}</md:NameIDFormat><md:AssertionConsumerService Binding=\"{}\" Location=\"{}\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>",
                    self.entity(app),
                    saml::NAMEID_PERSISTENT,
                    saml::BINDING_POST,
                    self.acs(app)
                );
                ServiceProvider::from_metadata(&xml).ok()
            })
            .collect()
    }

    async fn answer(&self, portal: &Arc<Portal>, req: Request<Incoming>) -> Result<Resp, Resp> {
        let path = req.uri().path().to_owned();
        let rest = path.trim_start_matches("/demo/");
        let (app, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Some((app, title)) = APPS.iter().find(|(a, _)| *a == app).copied() else {
            return Err(portal.error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such demo application.",
            ));
        };
        let cookie_name = format!("__Host-demo_{app}");
        match (req.method(), tail) {
            (&Method::GET, "") => {
                if query_param(&req, "signout").is_some() {
                    if let Some(c) = cookie(&req, &cookie_name) {
                        lock(&self.seen).remove(&c);
                    }
                }
                if let Some((name_id, attrs)) =
                    cookie(&req, &cookie_name).and_then(|c| lock(&self.seen).get(&c).cloned())
                {
                    let other = if app == "app1" {
                        "/demo/app2/"
                    } else {
                        "/demo/app1/"
                    };
                    return Ok(portal.html(
                        StatusCode::OK,
                        demo_page(title, &name_id, &attrs, other),
                        "'self'",
                    ));
                }
                let (id, xml) = saml::messages::build_authn_request(
                    &self.entity(app),
                    &portal.urls().sso,
                    &self.acs(app),
                    SystemTime::now(),
                );
                let relay = random_token();
                {
                    let mut p = lock(&self.pending);
                    p.retain(|_, v| v.created.elapsed() < Duration::from_secs(900));
                    if p.len() < 10_000 {
                        p.insert(
                            relay.clone(),
                            Pending {
                                request_id: id,
                                created: Instant::now(),
                            },
                        );
                    }
                }
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("SAMLRequest", &binding::deflate_encode(&xml))
                    .append_pair("RelayState", &relay)
                    .finish();
                Ok(Portal::redirect(&format!("{}?{q}", portal.urls().sso)))
            }
            (&Method::POST, "acs") => {
                let body = read_body(req, binding::MAX_ENCODED + 8192).await?;
                let msg =
                    binding::from_form(&body).map_err(|e| portal.bad_request(&format!("{e}")))?;
                let pending = msg
                    .relay_state
                    .as_deref()
                    .and_then(|r| lock(&self.pending).remove(r))
                    .ok_or_else(|| portal.bad_request("The demo application did not ask for this sign-in (unknown or reused RelayState)."))?;
                let v = sp::validate_response(
                    &msg.xml,
                    &portal.current_verified_keys(),
                    &self.entity(app),
                    &self.acs(app),
                    Some(&pending.request_id),
                    SystemTime::now(),
                )
                .map_err(|e| {
                    portal.bad_request(&format!("The demo application refused the assertion: {e}."))
                })?;
                let c = random_token();
                {
                    let mut seen = lock(&self.seen);
                    if seen.len() > 10_000 {
                        seen.clear();
                    }
                    seen.insert(c.clone(), (v.name_id, v.attributes));
                }
                let mut r = Portal::redirect(&format!("/demo/{app}/"));
                set_cookie(&mut r, &cookie_name, &c, Some(3600));
                Ok(r)
            }
            _ => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
                *r.status_mut() = StatusCode::NOT_FOUND;
                Ok(r)
            }
        }
    }
}

impl std::fmt::Debug for DemoApps {
    // The pending RelayStates and the sessions' cookies stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoApps")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Mount for DemoApps {
    fn prefix(&self) -> &str {
        "/demo/"
    }

    fn service_providers(&self) -> Vec<ServiceProvider> {
        self.metadata()
    }

    fn handle<'a>(&'a self, portal: &'a Arc<Portal>, req: Request<Incoming>) -> MountFuture<'a> {
        Box::pin(self.answer(portal, req))
    }
}

/// The demo application's page: the attributes it received.
fn demo_page(app: &str, name_id: &str, attrs: &[(String, Vec<String>)], other: &str) -> String {
    let mut rows = format!(
        "<tr><th scope=\"row\">NameID</th><td>{}</td></tr>",
        e(name_id)
    );
    for (k, vs) in attrs {
        rows.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            e(k),
            vs.iter().map(|v| e(v)).collect::<Vec<_>>().join("<br>")
        ));
    }
    pages::page(
        app,
        &format!(
            "<div class=\"brand\">{}</div><h1>Welcome</h1><p class=\"lead\">This demo application received a signed SAML assertion from Causeway and checked it.</p>\
<table id=\"attributes\"><caption>Received assertion</caption>{rows}</table><p class=\"note\"><a href=\"{}\">Open the other demo application</a> — it signs you in without asking again.</p>\
<p class=\"note\"><a href=\"/\">Causeway start page</a></p>",
            e(app),
            e(other)
        ),
    )
}
