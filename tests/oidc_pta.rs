//! An Active Directory user signs in to an OpenID Connect client with pass-through
//! authentication: the client's authorization request goes to the shared sign-in page
//! of a real `causeway serve`, the password goes page → hub → a real `causeway agent run`
//! → the lab's Samba AD DC, and the client gets an ID token and UserInfo for that user.
//! The user reaches the endpoint through one `causeway sync run --once`.

mod common;

use common::endpoint::{until_agents, Agent, Browser, Endpoint};
use common::oidc::*;
use common::{lab, Lab};

/// Synchronises `sam` from AD as an administrator would, scoped by a filter to that user.
fn sync_user(ep: &Endpoint, lab: &Lab, sam: &str) {
    common::sync_host::sync_lab_users_once(
        ep,
        lab,
        &format!("(sAMAccountName={sam})"),
        "oidc-pta-sync",
        "",
    );
}

fn metric(ep: &Endpoint, outcome: &str, path: &str) -> u64 {
    let (_, _, body) =
        Browser::new(&ep.dir.join("metrics")).get(&format!("{}/metrics", ep.metrics_url));
    let key = format!("causeway_signins_total{{outcome=\"{outcome}\",path=\"{path}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().expect("counter"))
        .unwrap_or(0)
}

#[test]
fn an_ad_user_signs_in_to_an_oidc_client_with_pass_through_authentication() {
    let lab = lab();
    let domain = lab.get("AD_DNS_DOMAIN");
    let alice = lab.user("alice", "UPN").to_owned();
    let alice_pw = lab.user("alice", "PASSWORD").to_owned();
    let o = endpoint(
        "oidc-pta",
        &format!("[[domain]]\nname = {domain:?}\nmethod = \"pta\"\n"),
    );
    let (ep, u) = (&o.ep, o.ep.url.clone());
    sync_user(ep, lab, "alice");
    let mut agent = Agent::enrol_and_run(ep, lab);
    until_agents(ep, 1, &|| agent.logs());
    let before = metric(ep, "success", "pass_through");

    let b = Browser::new(&ep.dir.join("browser"));
    let (s, _, page, _) = b.follow(&u, &authorize_url(&u, ""));
    assert_eq!(s, 200);
    let (s, head, page) = b.sign_in(&u, &page, &alice, &alice_pw);
    assert_eq!(s, 303, "a code for the client: {page}");
    let code = param(&location_params(&head), "code")
        .expect("code")
        .to_owned();
    let client = basic_client(&ep.dir.join("rp1"), "rp1", &o.secret);
    let (s, t) = redeem(&client, &u, &code, VERIFIER);
    assert_eq!(s, 200, "{t}");
    let at = t["access_token"].as_str().expect("at");
    let bearer =
        Browser::new(&ep.dir.join("bearer")).with_header(&format!("authorization: Bearer {at}"));
    let (s, _, body) = bearer.get(&format!("{u}/oidc/userinfo"));
    assert_eq!(s, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        info["preferred_username"]
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case(&alice)),
        "{info}"
    );
    assert_eq!(
        metric(ep, "success", "pass_through"),
        before + 1,
        "checked by the agent against AD"
    );
    let logs = format!("{}{}", ep.logs(), agent.logs());
    assert!(!logs.contains(&alice_pw), "the AD password is in a log");
    agent.kill();
}
