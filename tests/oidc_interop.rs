//! Independent relying parties against a real `causeway serve`'s OpenID Connect provider:
//! authlib (Python) and openid-client (JavaScript) run the whole client side themselves,
//! and headless Chromium signs in to an OIDC client and then to a SAML application on one
//! SSO session. The tools come from scripts/install-test-tools.sh.

mod common;

use std::path::Path;
use std::process::Command;

use common::federation::{tools, USER};
use common::oidc::*;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("run the relying party");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn authlib_runs_discovery_code_pkce_id_token_userinfo_revocation_and_logout() {
    let tools = tools();
    let o = endpoint("oidc-authlib", "");
    let dir = &o.ep.dir;
    std::fs::write(dir.join("secret"), &o.secret).expect("secret");
    std::fs::write(dir.join("pw"), &o.password).expect("pw");
    let s = |p: &Path| p.display().to_string();
    let (ok, out, err) = run(Command::new(tools.join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oidc_rp.py"))
        .args([
            "--issuer",
            &o.ep.url,
            "--ca",
            &s(&o.ep.data().join("ca/ca.pem")),
        ])
        .args([
            "--client-id",
            "rp1",
            "--client-secret-file",
            &s(&dir.join("secret")),
        ])
        .args(["--redirect-uri", REDIRECT, "--post-logout-uri", POST_LOGOUT])
        .args(["--user", USER, "--password-file", &s(&dir.join("pw"))]));
    assert!(ok, "authlib: {out}\n{err}\n{}", o.ep.logs());
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let checks = v["checks"].as_object().expect("checks");
    assert!(checks.len() >= 15, "{out}");
    assert!(checks.values().all(|c| c == true), "{out}");
    assert!(!out.contains(&o.secret) && !out.contains(&o.password));
}

#[test]
fn chromium_signs_in_to_the_demo_oidc_client_then_to_a_saml_app_without_a_second_prompt() {
    let tools = tools();
    let o = endpoint("oidc-chromium", "");
    std::fs::write(o.ep.dir.join("pw"), &o.password).expect("pw");
    let (ok, out, err) = run(Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oidc_browser.mjs"))
        .args(["--oidc", &format!("{}/demo-oidc/", o.ep.url)])
        .args(["--saml", &format!("{}/demo/app1/", o.ep.url)])
        .args(["--user", USER])
        .arg("--password-file")
        .arg(o.ep.dir.join("pw"))
        .env("CAUSEWAY_TOOLS_DIR", &tools));
    assert!(ok, "chromium: {out}\n{err}\n{}", o.ep.logs());
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        v["loginUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/login?flow=")),
        "{out}"
    );
    // The demo client checked the ID token (it shows only one it accepted).
    assert_eq!(v["idToken"]["iss"], format!("\"{}\"", o.ep.url), "{out}");
    assert_eq!(v["idToken"]["aud"], "\"demo-oidc\"", "{out}");
    assert_eq!(
        v["userinfo"]["preferred_username"],
        format!("\"{USER}\""),
        "{out}"
    );
    assert_eq!(v["samlAskedPassword"], false, "one session: {out}");
    assert_eq!(v["samlHasAttributes"], true, "{out}");
    assert!(!out.contains(&o.password));
}

#[test]
fn openid_client_runs_discovery_code_pkce_userinfo_refresh_rotation_revocation_and_logout() {
    let tools = tools();
    let o = endpoint("oidc-openid-client", "");
    let dir = &o.ep.dir;
    std::fs::write(dir.join("secret"), &o.secret).expect("secret");
    std::fs::write(dir.join("pw"), &o.password).expect("pw");
    let s = |p: &Path| p.display().to_string();
    let (ok, out, err) = run(Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oidc_rp.mjs"))
        .args(["--issuer", &o.ep.url, "--client-id", "rp1"])
        .args(["--client-secret-file", &s(&dir.join("secret"))])
        .args(["--redirect-uri", REDIRECT, "--post-logout-uri", POST_LOGOUT])
        .args(["--user", USER, "--password-file", &s(&dir.join("pw"))])
        .env("NODE_EXTRA_CA_CERTS", o.ep.data().join("ca/ca.pem"))
        .env("CAUSEWAY_TOOLS_DIR", &tools));
    assert!(ok, "openid-client: {out}\n{err}\n{}", o.ep.logs());
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let checks = v["checks"].as_object().expect("checks");
    assert!(checks.len() >= 12, "{out}");
    assert!(checks.values().all(|c| c == true), "{out}");
    assert!(!out.contains(&o.secret) && !out.contains(&o.password));
}
