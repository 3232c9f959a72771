//! Smart lockout and throttling as an attacker without an account meets them, through a
//! real `causeway serve` process: the client address behind a trusted proxy, a familiar
//! place that failures elsewhere cannot lock, and counters that outlive a restart.

mod common;

use common::endpoint::{alert, Browser, Endpoint};

const USER: &str = "lena@cloud.causeway.test";
const PASSWORD: &str = "Quiet-Lockout-Pw-1";
const HOME: &str = "198.51.100.10";
const AWAY: &str = "203.0.113.66";

fn sign_in_page(ep: &Endpoint, b: &Browser) -> String {
    let (s, _, page, _) = b.follow(&ep.url, &format!("{}/demo/app1/", ep.url));
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("id=\"password\""),
        "not the sign-in page: {page}"
    );
    page
}

/// Signs in with a fresh browser from `from` (an X-Forwarded-For value, if any); returns
/// the page's alert (None: signed in).
fn attempt(ep: &Endpoint, from: Option<&str>, user: &str, pw: &str) -> Option<String> {
    let mut b = Browser::new(&ep.dir.join("browsers"));
    if let Some(ip) = from {
        b = b.with_header(&format!("X-Forwarded-For: {ip}"));
    }
    let page = sign_in_page(ep, &b);
    let (s, _, page) = b.sign_in(&ep.url, &page, user, pw);
    assert_eq!(s, 200, "{page}");
    alert(&page)
}

#[test]
fn a_familiar_place_survives_failures_elsewhere_and_a_restart() {
    let config = "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[lockout]\nlock_for = \"10m\"\n[throttle]\nper_source_failures_per_minute = 4\n";
    let mut ep = Endpoint::start("lockout", config, &["--demo-apps"]);
    ep.cli(
        &["users", "add", "--upn", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(
        attempt(&ep, Some(HOME), USER, PASSWORD),
        None,
        "signed in at home"
    );

    // An attacker elsewhere: three guesses, then locked, then throttled (only failures
    // spend the source's budget of 4).
    let wrong = attempt(&ep, Some(AWAY), USER, "Guess-1").expect("alert");
    assert!(wrong.contains("incorrect"), "{wrong}");
    for g in ["Guess-2", "Guess-3"] {
        assert_eq!(
            attempt(&ep, Some(AWAY), USER, g).as_deref(),
            Some(wrong.as_str())
        );
    }
    let locked = attempt(&ep, Some(AWAY), USER, PASSWORD).expect("alert");
    assert!(locked.contains("locked"), "{locked}");
    let throttled = attempt(&ep, Some(AWAY), USER, PASSWORD).expect("alert");
    assert!(throttled.contains("Too many"), "{throttled}");
    // Another client behind the same proxy has its own budget.
    let other = attempt(&ep, Some("192.0.2.77"), "nobody@cloud.causeway.test", "x-1");
    assert_eq!(other.as_deref(), Some(wrong.as_str()));
    // At home the victim is not locked out.
    assert_eq!(
        attempt(&ep, Some(HOME), USER, PASSWORD),
        None,
        "home still works"
    );

    // Restart without trusted proxies: the lock is still there for unfamiliar places, and
    // a spoofed header from a peer that is not a trusted proxy does not make one familiar.
    ep.kill();
    let dir = ep.dir.clone();
    drop(ep);
    let ep = Endpoint::start_in(dir, "[lockout]\nlock_for = \"10m\"\n", &["--demo-apps"]);
    let after = attempt(&ep, None, USER, PASSWORD).expect("alert");
    assert!(
        after.contains("locked"),
        "the lock outlived the restart: {after}"
    );
    let spoofed = attempt(&ep, Some(HOME), USER, PASSWORD).expect("alert");
    assert!(
        spoofed.contains("locked"),
        "spoofed X-Forwarded-For ignored: {spoofed}"
    );
}
