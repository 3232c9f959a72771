//! Pass-through authentication end to end, as a person meets it: a browser (curl with a
//! cookie jar) opens the demo SAML application, is sent to the sign-in page of a real
//! `causeway serve`, types an Active Directory password, and the check goes page → hub →
//! a real `causeway agent run` process → the lab's Samba AD DC. Then every agent stops:
//! with `pta+phs` a user whose verifier was synchronised still signs in against the
//! store; with `pta` alone the page says the directory is unreachable.
//!
//! The users reach the endpoint through `causeway sync` (registered with a one-time token,
//! one `sync run --once`), with their nested groups for the `groups` claim.

mod common;

use std::path::Path;

use causeway_credential::SignInOutcome;
use causeway_store::{SqliteStore, Synced as _, Users as _};
use common::endpoint::{alert, form_action, hidden, until_agents, Agent, Browser, Endpoint};
use common::{lab, Lab};

fn config(method: &str, domain: &str) -> String {
    format!("[[domain]]\nname = {domain:?}\nmethod = {method:?}\n")
}

/// Synchronises `sams` from AD the way an administrator would: a `--for sync` token, a
/// `causeway sync register` and one `causeway sync run --once`, scoped by a filter to
/// these users and the test's groups, with password hash sync on: the same round
/// replicates their NT hashes over DRSR and pushes their verifiers and flags.
async fn sync_users(ep: &Endpoint, lab: &Lab, sams: &[&str]) {
    let filter = format!(
        "(|{}(sAMAccountName=pta-e2e-*))",
        sams.iter()
            .map(|s| format!("(sAMAccountName={s})"))
            .collect::<String>()
    );
    common::sync_host::sync_lab_users_once(
        ep,
        lab,
        &filter,
        "pta-e2e-sync",
        "password_hash_sync = true\n",
    );
}

/// Nested groups for alice in AD (`pta-e2e-outer` ∋ `pta-e2e-inner` ∋ alice), made afresh.
async fn nested_groups(lab: &Lab) {
    let mut ldap = common::admin(lab).await;
    let users = format!("CN=Users,{}", lab.get("AD_BASE_DN"));
    let inner = format!("CN=pta-e2e-inner,{users}");
    let outer = format!("CN=pta-e2e-outer,{users}");
    let _ = ldap.delete(&outer).await;
    let _ = ldap.delete(&inner).await;
    for (dn, cn, member) in [
        (&inner, "pta-e2e-inner", lab.get("AD_ALICE_DN")),
        (&outer, "pta-e2e-outer", inner.as_str()),
    ] {
        ldap.add(
            dn,
            vec![
                ("objectClass", std::collections::HashSet::from(["group"])),
                ("sAMAccountName", std::collections::HashSet::from([cn])),
                ("member", std::collections::HashSet::from([member])),
            ],
        )
        .await
        .expect("add round trip")
        .success()
        .expect("group added");
    }
    let _ = ldap.unbind().await;
}

fn metric(ep: &Endpoint, outcome: &str, path: &str) -> u64 {
    let b = Browser::new(&ep.dir.join("metrics"));
    let (_, _, body) = b.get(&format!("{}/metrics", ep.metrics_url));
    let key = format!("causeway_signins_total{{outcome=\"{outcome}\",path=\"{path}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().expect("counter"))
        .unwrap_or(0)
}

/// Opens the demo application, which sends the browser to the sign-in page; submits the
/// password and returns the page that answers it.
fn sign_in(ep: &Endpoint, b: &Browser, upn: &str, password: &str) -> String {
    let (s, _, page, _) = b.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("id=\"password\""), "the sign-in page: {page}");
    let (s, _, page) = b.sign_in(&ep.url, &page, upn, password);
    assert_eq!(s, 200, "{page}");
    page
}

/// Posts the auto-post form to the demo application and returns what it shows.
fn deliver(ep: &Endpoint, b: &Browser, autopost: &str) -> String {
    let action = form_action(autopost).expect("auto-post form");
    let (s, h, body) = b.post(
        &action,
        &[
            (
                "SAMLResponse",
                &hidden(autopost, "SAMLResponse").expect("SAMLResponse"),
            ),
            (
                "RelayState",
                &hidden(autopost, "RelayState").expect("RelayState"),
            ),
        ],
    );
    assert_eq!(s, 303, "the demo application took the assertion: {h}{body}");
    let (s, _, page, _) = b.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    assert_eq!(s, 200, "{page}");
    page
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a password appears in the {what} log");
    }
}

#[test]
fn ad_users_sign_in_through_the_page_and_fall_back_to_hash_sync_when_no_agent_is_left() {
    let lab = lab();
    let domain = lab.get("AD_DNS_DOMAIN");
    let alice = lab.user("alice", "UPN").to_owned();
    let alice_pw = lab.user("alice", "PASSWORD").to_owned();
    let carol = lab.user("carol-mustchange", "UPN").to_owned();
    let carol_pw = lab.user("carol-mustchange", "PASSWORD").to_owned();
    let bob = lab.user("bob-disabled", "UPN").to_owned();
    let bob_pw = lab.user("bob-disabled", "PASSWORD").to_owned();

    let mut ep = Endpoint::start("pta-e2e", &config("pta+phs", domain), &["--demo-apps"]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("open the store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(nested_groups(lab));
    rt.block_on(sync_users(
        &ep,
        lab,
        &[
            "alice",
            "carol-mustchange",
            "bob-disabled",
            "frank-pwdexpired",
        ],
    ));
    // The account state AD computes reaches the endpoint: frank's password is older than
    // the domain's maxPwdAge, carol must change hers, bob is disabled.
    let state = |sam: &str| {
        let u = rt
            .block_on(store.user_by_upn(lab.user(sam, "UPN")))
            .expect("store readable")
            .unwrap_or_else(|| panic!("{sam} synced"));
        let o = rt
            .block_on(store.synced_object(u.id.as_str()))
            .expect("store readable")
            .expect("synced object");
        (u.disabled, o.object.attrs)
    };
    let (_, frank) = state("frank-pwdexpired");
    assert_eq!(
        frank.get("password_expired"),
        Some(&vec!["true".to_string()]),
        "{frank:?}"
    );
    let (_, carol_attrs) = state("carol-mustchange");
    assert_eq!(
        carol_attrs.get("must_change_password"),
        Some(&vec!["true".to_string()])
    );
    assert!(
        !carol_attrs.contains_key("password_expired"),
        "{carol_attrs:?}"
    );
    let (bob_disabled, _) = state("bob-disabled");
    assert!(bob_disabled, "disabled in AD, disabled at the endpoint");
    let (_, alice_attrs) = state("alice");
    assert!(
        !alice_attrs.contains_key("password_expired"),
        "{alice_attrs:?}"
    );
    let alice_id = rt
        .block_on(store.user_by_upn(&alice))
        .expect("store readable")
        .expect("alice stored")
        .id
        .as_str()
        .to_owned();

    let mut agent = Agent::enrol_and_run(&ep, lab);
    until_agents(&ep, 1, &|| agent.logs());

    // Through the agent: the application receives alice, named by her objectGUID.
    let b = Browser::new(&ep.dir.join("alice"));
    let page = sign_in(&ep, &b, &alice, &alice_pw);
    assert!(
        page.contains("id=\"autopost\""),
        "alice signs in through the agent: {}\nendpoint:\n{}\nagent:\n{}",
        alert(&page).unwrap_or(page.clone()),
        ep.logs(),
        agent.logs()
    );
    let shown = deliver(&ep, &b, &page);
    assert!(
        shown.contains(&alice),
        "the application shows her UPN: {shown}"
    );
    assert!(
        shown.contains(&alice_id),
        "the application shows her immutable id {alice_id}: {shown}"
    );
    for g in ["pta-e2e-inner", "pta-e2e-outer"] {
        assert!(
            shown.contains(g),
            "her groups claim holds {g}, nested included: {shown}"
        );
    }
    assert_eq!(metric(&ep, "success", "pass_through"), 1);
    assert_eq!(metric(&ep, "success", "hash_sync"), 0);

    // AD's own answers reach the page in their own words.
    for (upn, pw, outcome) in [
        (&carol, &carol_pw, SignInOutcome::PasswordMustChange),
        (&bob, &bob_pw, SignInOutcome::AccountDisabled),
    ] {
        let b = Browser::new(&ep.dir.join("others"));
        let page = sign_in(&ep, &b, upn, pw);
        assert_eq!(
            alert(&page).as_deref(),
            Some(outcome.user_message()),
            "{upn}: {page}"
        );
    }
    assert_eq!(metric(&ep, "password_must_change", "pass_through"), 1);
    assert_eq!(metric(&ep, "account_disabled", "pass_through"), 1);

    // Every agent stops: alice's synchronised verifier still signs her in.
    agent.kill();
    until_agents(&ep, 0, &|| agent.logs());
    let b = Browser::new(&ep.dir.join("fallback"));
    let page = sign_in(&ep, &b, &alice, &alice_pw);
    assert!(
        page.contains("id=\"autopost\""),
        "alice signs in with hash sync: {}\n{}",
        alert(&page).unwrap_or(page.clone()),
        ep.logs()
    );
    let shown = deliver(&ep, &b, &page);
    assert!(shown.contains(&alice_id), "{shown}");
    assert_eq!(metric(&ep, "success", "hash_sync"), 1);
    assert_eq!(metric(&ep, "success", "pass_through"), 1);
    // Must change and disabled answer through hash sync as they did through the agent.
    for (upn, pw, outcome) in [
        (&carol, &carol_pw, SignInOutcome::PasswordMustChange),
        (&bob, &bob_pw, SignInOutcome::AccountDisabled),
    ] {
        let b = Browser::new(&ep.dir.join("fallback-flags"));
        let page = sign_in(&ep, &b, upn, pw);
        assert_eq!(
            alert(&page).as_deref(),
            Some(outcome.user_message()),
            "{upn} through hash sync: {page}"
        );
    }
    assert_eq!(metric(&ep, "password_must_change", "hash_sync"), 1);
    assert_eq!(metric(&ep, "account_disabled", "hash_sync"), 1);

    let secrets = [alice_pw.as_str(), carol_pw.as_str(), bob_pw.as_str()];
    assert_no_secret("endpoint", &ep.logs(), &secrets);
    assert_no_secret("agent", &agent.logs(), &secrets);
    assert!(
        agent.logs().contains("TRACE") || agent.logs().contains("DEBUG"),
        "the agent logged at the levels that matter for this check"
    );

    // The audit log names the agent that answered alice's pass-through sign-in, the
    // agent's connection and the sync run that brought her in; and holds no password.
    let audit = ep.cli(&["audit", "--json"], None);
    let pta = audit
        .lines()
        .find(|l| {
            l.contains("\"method\":\"pass_through\"")
                && l.contains("\"outcome\":\"success\"")
                && l.contains(&format!("\"user\":\"{alice}\""))
        })
        .unwrap_or_else(|| panic!("alice's pass-through sign-in audited: {audit}"));
    let agent_id = pta
        .split("\"agent\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the answering agent named: {pta}"));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"agent.connected\"")
                && l.contains(&format!("\"agent\":\"{agent_id}\""))),
        "{audit}"
    );
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"sync.run_finished\"")
                && l.contains("\"target\":\"lab\"")
                && l.contains("\"outcome\":\"succeeded\"")),
        "{audit}"
    );
    assert_no_secret("audit log", &audit, &secrets);

    // Pass-through only, and no agent: the page says the directory is unreachable, not
    // that the password is wrong, and it does not use the stored verifier.
    let dir: &Path = &ep.dir.clone();
    ep.kill();
    let ep = Endpoint::start_in(dir.to_owned(), &config("pta", domain), &["--demo-apps"]);
    until_agents(&ep, 0, &String::new);
    let b = Browser::new(&ep.dir.join("pta-only"));
    let page = sign_in(&ep, &b, &alice, &alice_pw);
    assert_eq!(
        alert(&page).as_deref(),
        Some(SignInOutcome::DirectoryUnavailable.user_message()),
        "{page}"
    );
    assert_eq!(metric(&ep, "directory_unavailable", "pass_through"), 1);
    assert_eq!(metric(&ep, "success", "hash_sync"), 0);
    assert_no_secret("endpoint", &ep.logs(), &secrets);
}
