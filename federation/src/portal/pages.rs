//! Server-rendered pages: no external assets, no JavaScript needed (the only script
//! submits the auto-post form, which has a button for browsers without scripts), labels
//! on every field, `lang`, visible focus, contrast above WCAG AA.

use causeway_saml::xml::{escape_html as e, escape_html_into};

/// The stylesheet (inline; its hash is allowed by the Content-Security-Policy).
pub const CSS: &str = "body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1b1f24}\
main{max-width:26rem;margin:8vh auto;background:#fff;border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.12);padding:2rem 2.2rem}\
h1{font-size:1.45rem;margin:0 0 .3rem}p.lead{margin:0 0 1.4rem;color:#454d57}\
.brand{font-weight:700;letter-spacing:.02em;color:#0b4f8a;margin-bottom:1.2rem}\
label{display:block;font-weight:600;margin:1rem 0 .35rem}\
input[type=text],input[type=email],input[type=password]{box-sizing:border-box;width:100%;padding:.65rem .7rem;font-size:1rem;border:1px solid #6b7580;border-radius:6px}\
input:focus,button:focus,a:focus{outline:3px solid #1766c2;outline-offset:2px}\
button{margin-top:1.4rem;width:100%;padding:.75rem;font-size:1rem;font-weight:600;color:#fff;background:#0b5cad;border:0;border-radius:6px;cursor:pointer}\
button:hover{background:#094a8c}\
.alert{border-left:4px solid #b3261e;background:#fdecea;color:#5f1410;padding:.75rem .9rem;border-radius:4px;margin:0 0 1rem}\
.note{color:#454d57;font-size:.9rem;margin-top:1.2rem}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;border-bottom:1px solid #d5dae0;padding:.4rem .3rem;vertical-align:top;word-break:break-all}\
ul.apps{padding-left:1.1rem}a{color:#0b4f8a}";

/// The auto-post script (its hash is allowed by the Content-Security-Policy).
pub const AUTOPOST_JS: &str = "document.getElementById('autopost').submit();";

/// A page in the portal's layout (its stylesheet is allowed by the portal's CSP): for the
/// portal's own pages and mounted applications alike.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>",
        e(title)
    )
}

/// The sign-in form.
pub fn login(
    flow: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
    app: Option<&str>,
) -> String {
    let alert = error.map_or(String::new(), |m| {
        format!(
            "<p class=\"alert\" role=\"alert\" id=\"error\">{}</p>",
            e(m)
        )
    });
    let to = app.map_or(String::new(), |a| {
        format!(" to continue to <strong>{}</strong>", e(a))
    });
    let autofocus_user = if username.is_empty() {
        " autofocus"
    } else {
        ""
    };
    let autofocus_pw = if username.is_empty() {
        ""
    } else {
        " autofocus"
    };
    page(
        "Sign in",
        &format!(
            "<div class=\"brand\">Causeway</div><h1>Sign in</h1><p class=\"lead\">Use your organisation account{to}.</p>{alert}\
<form method=\"post\" action=\"/login\" novalidate>\
<input type=\"hidden\" name=\"flow\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label for=\"username\">Email or user name</label>\
<input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required maxlength=\"256\" value=\"{}\"{autofocus_user}{}>\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required maxlength=\"256\"{autofocus_pw}{}>\
<button type=\"submit\">Sign in</button></form>\
<p class=\"note\">Signing in on a shared computer? Sign out when you are done.</p>",
            e(flow),
            e(csrf),
            e(username),
            if error.is_some() { " aria-describedby=\"error\"" } else { "" },
            if error.is_some() { " aria-describedby=\"error\"" } else { "" },
        ),
    )
}

/// A form that posts itself to an application (with a button when scripts are off).
pub fn autopost(action: &str, fields: &[(&str, &str)], app: &str) -> String {
    // Written into one buffer: the fields carry the whole encoded token (kilobytes).
    let size: usize = fields.iter().map(|(k, v)| 48 + k.len() + v.len()).sum();
    let mut out = String::with_capacity(1024 + CSS.len() + AUTOPOST_JS.len() + size);
    out.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\"><title>Signing in</title><style>");
    out.push_str(CSS);
    out.push_str("</style></head><body><main><div class=\"brand\">Causeway</div><h1>Signing you in</h1><p class=\"lead\">Continuing to <strong>");
    escape_html_into(app, &mut out);
    out.push_str("</strong>…</p><form id=\"autopost\" method=\"post\" action=\"");
    escape_html_into(action, &mut out);
    out.push_str("\">");
    for (k, v) in fields {
        out.push_str("<input type=\"hidden\" name=\"");
        escape_html_into(k, &mut out);
        out.push_str("\" value=\"");
        escape_html_into(v, &mut out);
        out.push_str("\">");
    }
    out.push_str("<noscript><p>Scripts are off in this browser: press Continue.</p></noscript><button type=\"submit\">Continue</button></form></main><script>");
    out.push_str(AUTOPOST_JS);
    out.push_str("</script></body></html>");
    out
}

/// A message page (errors, signed out).
pub fn message(title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let link = link.map_or(String::new(), |(href, label)| {
        format!("<p><a href=\"{}\">{}</a></p>", e(href), e(label))
    });
    page(
        title,
        &format!(
            "<div class=\"brand\">Causeway</div><h1>{}</h1><p class=\"lead\" role=\"alert\" id=\"error\">{}</p>{link}",
            e(title),
            e(text)
        ),
    )
}

/// The start page of a signed-in user.
pub fn home(upn: &str, csrf: &str, apps: &[(String, String)]) -> String {
    let mut list = String::new();
    for (href, name) in apps {
        list.push_str(&format!("<li><a href=\"{}\">{}</a></li>", e(href), e(name)));
    }
    let apps = if list.is_empty() {
        "<p>No applications are registered yet.</p>".to_owned()
    } else {
        format!("<h2>Your applications</h2><ul class=\"apps\">{list}</ul>")
    };
    page(
        "Causeway",
        &format!(
            "<div class=\"brand\">Causeway</div><h1>Signed in</h1><p class=\"lead\">as <strong id=\"who\">{}</strong></p>{apps}\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            e(upn),
            e(csrf)
        ),
    )
}

/// "Sign out of Causeway?": the confirmation of a sign-out that a link or an unsigned
/// request asked for. Only its POST (with the session's anti-forgery token) signs out.
pub fn confirm_logout(upn: &str, csrf: &str, next: &str, app: Option<&str>) -> String {
    let asked = app.map_or(String::new(), |a| {
        format!(" <strong>{}</strong> asked for it.", e(a))
    });
    page(
        "Sign out of Causeway?",
        &format!(
            "<div class=\"brand\">Causeway</div><h1>Sign out of Causeway?</h1><p class=\"lead\" id=\"confirm\">You are signed in as <strong>{}</strong>.{asked} Signing out also signs you out of the applications you opened through Causeway.</p>\
<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"next\" value=\"{}\"><button type=\"submit\">Sign out</button></form>\
<p class=\"note\"><a href=\"/\">Stay signed in</a></p>",
            e(upn),
            e(csrf),
            e(next)
        ),
    )
}
