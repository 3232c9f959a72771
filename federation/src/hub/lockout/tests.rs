use std::sync::Arc;

use causeway_store::LockoutStore;

use super::*;

fn k(name: &str) -> AccountKey {
    AccountKey::of_name(name)
}

fn pw(s: &str) -> Password {
    Password::new(s.into()).expect("valid")
}

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        threshold: 3,
        lock_for: Duration::from_secs(60),
        window: Duration::from_secs(600),
        ..Default::default()
    }
}

fn fail(l: &SmartLockout, user: &str, p: &str, t: SystemTime) -> Result<(), Refusal> {
    let ticket = l.admit(&k(user), &pw(p), None, t)?;
    ticket.record(SignInOutcome::InvalidCredentials, 1, t);
    Ok(())
}

#[test]
fn locks_after_threshold_distinct_wrong_passwords() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    for i in 0..3 {
        fail(&l, "alice@x", &format!("guess-{i}"), t).expect("admitted");
    }
    assert_eq!(
        l.admit(&k("ALICE@x"), &pw("right-one"), None, t).err(),
        Some(Refusal::Answer(SignInOutcome::AccountLocked))
    );
    assert!(l.locked_for(&k("alice@x"), None, t).is_some());
    // After the lock: one more wrong guess locks again, for twice as long.
    let later = t + Duration::from_secs(61);
    fail(&l, "alice@x", "guess-9", later).expect("admitted");
    let left = l
        .locked_for(&k("alice@x"), None, later)
        .expect("locked again");
    assert!(left > Duration::from_secs(100), "{left:?}");
}

#[test]
fn parallel_guesses_cannot_overshoot_the_threshold() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    let mut tickets = Vec::new();
    let mut refused = 0;
    for i in 0..120 {
        match l.admit(&k("bob"), &pw(&format!("parallel-{i}")), None, t) {
            Ok(ticket) => tickets.push(ticket),
            Err(o) => {
                assert_eq!(o, Refusal::Busy);
                refused += 1;
            }
        }
    }
    assert_eq!(
        tickets.len(),
        3,
        "only as many in flight as the threshold allows"
    );
    assert_eq!(refused, 117);
    for ticket in tickets {
        ticket.record(SignInOutcome::InvalidCredentials, 1, t);
    }
    assert_eq!(
        l.admit(&k("bob"), &pw("another"), None, t).err(),
        Some(Refusal::Answer(SignInOutcome::AccountLocked))
    );
    // The same wrong password can never be in flight twice.
    let l2 = SmartLockout::new(policy());
    let first = l2.admit(&k("carol"), &pw("same"), None, t).expect("first");
    assert_eq!(
        l2.admit(&k("carol"), &pw("same"), None, t).err(),
        Some(Refusal::Busy)
    );
    drop(first);
    assert!(
        l2.admit(&k("carol"), &pw("same"), None, t).is_ok(),
        "a dropped ticket frees its slot"
    );
}

#[tokio::test]
async fn waiting_is_first_come_first_served() {
    let l = std::sync::Arc::new(SmartLockout::new(policy()));
    let first = l
        .admit(&k("kim"), &pw("same"), None, SystemTime::now())
        .expect("first");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (l2, (got_tx, got_rx), (go_tx, go_rx)) = (
        l.clone(),
        tokio::sync::oneshot::channel(),
        tokio::sync::oneshot::channel::<()>(),
    );
    let waiter = tokio::spawn(async move {
        let ticket = l2
            .admit_waiting(&k("kim"), &pw("same"), None, deadline)
            .await
            .expect("admitted in turn");
        let _ = got_tx.send(());
        let _ = go_rx.await;
        ticket.record(SignInOutcome::Success, 1, SystemTime::now());
    });
    // Until the waiter is queued behind `first` (it runs when this task yields).
    while lock(&l.users)
        .get(&k("kim"))
        .is_none_or(|s| s.queue.is_empty())
    {
        tokio::task::yield_now().await;
    }
    first.record(SignInOutcome::Success, 1, SystemTime::now());
    // The finisher asks again at once: the check that was waiting goes first (it is
    // either still queued in front, or already in flight with the same password).
    assert_eq!(
        l.admit(&k("kim"), &pw("same"), None, SystemTime::now())
            .err(),
        Some(Refusal::Busy)
    );
    got_rx.await.expect("the waiter was admitted");
    let _ = go_tx.send(());
    waiter.await.expect("waiter");
    assert!(l
        .admit(&k("kim"), &pw("same"), None, SystemTime::now())
        .is_ok());
}

#[test]
fn a_repeated_wrong_password_counts_once_and_never_reaches_the_directory() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    fail(&l, "dave", "Summer2026!", t).expect("admitted");
    for _ in 0..20 {
        assert_eq!(
            l.admit(&k("dave"), &pw("Summer2026!"), None, t).err(),
            Some(Refusal::Answer(SignInOutcome::InvalidCredentials))
        );
    }
    assert!(l.admit(&k("dave"), &pw("other"), None, t).is_ok());
}

#[test]
fn retries_that_may_have_bound_count_as_such() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    l.admit(&k("erin"), &pw("w-1"), None, t)
        .expect("in")
        .record(SignInOutcome::InvalidCredentials, 3, t);
    assert_eq!(
        l.admit(&k("erin"), &pw("w-2"), None, t).err(),
        Some(Refusal::Answer(SignInOutcome::AccountLocked))
    );
}

#[test]
fn success_clears_and_outages_do_not_count() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    fail(&l, "frank", "a-1", t).expect("in");
    fail(&l, "frank", "a-2", t).expect("in");
    for _ in 0..10 {
        l.admit(&k("frank"), &pw("a-3"), None, t)
            .expect("in")
            .record(SignInOutcome::DirectoryUnavailable, 1, t);
    }
    l.admit(&k("frank"), &pw("right"), None, t)
        .expect("in")
        .record(SignInOutcome::Success, 1, t);
    assert!(
        l.admit(&k("frank"), &pw("a-1"), None, t).is_ok(),
        "success forgets old guesses"
    );
}

#[test]
fn the_window_slides_from_the_last_failure() {
    let l = SmartLockout::new(LockoutPolicy {
        window: Duration::from_secs(10),
        ..policy()
    });
    let t = SystemTime::now();
    fail(&l, "gina", "w-1", t).expect("in");
    fail(&l, "gina", "w-2", t + Duration::from_secs(9)).expect("in");
    // 11 s after the first failure but 2 s after the last: still counted.
    fail(&l, "gina", "w-3", t + Duration::from_secs(11)).expect("in");
    assert!(l
        .locked_for(&k("gina"), None, t + Duration::from_secs(11))
        .is_some());
    let l = SmartLockout::new(LockoutPolicy {
        window: Duration::from_secs(10),
        ..policy()
    });
    fail(&l, "hank", "w-1", t).expect("in");
    fail(&l, "hank", "w-2", t).expect("in");
    let later = t + Duration::from_secs(11);
    fail(&l, "hank", "w-3", later).expect("in");
    assert!(
        l.admit(&k("hank"), &pw("w-4"), None, later).is_ok(),
        "failures older than the window are forgotten"
    );
}

#[test]
fn sources_are_throttled_and_ipv6_by_64() {
    let l = SmartLockout::new(LockoutPolicy {
        per_source_failures_per_minute: 6,
        ..policy()
    });
    let t = SystemTime::now();
    for i in 0..6 {
        let ip: IpAddr = format!("2001:db8::{i}").parse().expect("ip");
        // Only failures spend the source's budget (a dropped ticket gives it back).
        l.admit(&k(&format!("u{i}")), &pw("p-1"), Some(ip), t)
            .expect("admitted")
            .record(SignInOutcome::InvalidCredentials, 1, t);
    }
    let same64: IpAddr = "2001:db8::ffff".parse().expect("ip");
    assert_eq!(
        l.admit(&k("u9"), &pw("p-1"), Some(same64), t).err(),
        Some(Refusal::Answer(SignInOutcome::Throttled))
    );
    let other: IpAddr = "2001:db8:0:1::1".parse().expect("ip");
    assert!(l.admit(&k("u9"), &pw("p-1"), Some(other), t).is_ok());
    assert!(l
        .admit(
            &k("u8"),
            &pw("p-1"),
            Some(same64),
            t + Duration::from_secs(10)
        )
        .is_ok());
}

#[test]
fn memory_is_bounded_and_locks_survive_a_flood() {
    let l = SmartLockout::new(LockoutPolicy {
        max_tracked: 100,
        ..policy()
    });
    let t = SystemTime::now();
    for i in 0..3 {
        fail(&l, "victim", &format!("v-{i}"), t).expect("in");
    }
    for i in 0..1000 {
        let _ = fail(
            &l,
            &format!("spray-{i}"),
            "x-1",
            t + Duration::from_millis(i),
        );
    }
    assert!(lock(&l.users).len() <= 100);
    assert_eq!(
        l.admit(&k("victim"), &pw("v-9"), None, t).err(),
        Some(Refusal::Answer(SignInOutcome::AccountLocked)),
        "a flood does not evict a lock"
    );
    // Clean users leave no trace at all.
    drop(l.admit(&k("clean"), &pw("p"), None, t));
    assert!(!lock(&l.users).contains_key(&k("clean")));
}

#[test]
fn debug_shows_no_state() {
    let l = SmartLockout::new(policy());
    let _ = fail(&l, "ivan", "Very-Secret-1", SystemTime::now());
    let s = format!("{l:?}");
    assert!(!s.contains("ivan") && !s.contains("Very-Secret"));
}

const HOME: &str = "198.51.100.10";
const AWAY: &str = "203.0.113.66";

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

fn attempt(
    l: &SmartLockout,
    user: &str,
    p: &str,
    from: Option<IpAddr>,
    outcome: SignInOutcome,
    t: SystemTime,
) -> SignInOutcome {
    match l.admit(&k(user), &pw(p), from, t) {
        Ok(ticket) => {
            ticket.record(outcome, 1, t);
            outcome
        }
        Err(Refusal::Answer(o)) => o,
        Err(Refusal::Busy) => panic!("busy"),
    }
}

#[test]
fn failures_elsewhere_do_not_lock_a_familiar_place() {
    let l = SmartLockout::new(policy());
    let t = SystemTime::now();
    let ok = SignInOutcome::Success;
    let bad = SignInOutcome::InvalidCredentials;
    assert_eq!(
        attempt(&l, "vic@corp.example", "Right-1", ip(HOME), ok, t),
        ok
    );
    let mut seen = Vec::new();
    for i in 0..10 {
        seen.push(attempt(
            &l,
            "vic@corp.example",
            &format!("guess-{i}"),
            ip(AWAY),
            bad,
            t,
        ));
    }
    assert_eq!(&seen[..3], &[bad; 3], "{seen:?}");
    assert!(
        seen[3..].iter().all(|o| *o == SignInOutcome::AccountLocked),
        "{seen:?}"
    );
    assert!(l.locked_for(&k("vic@corp.example"), ip(AWAY), t).is_some());
    assert_eq!(l.locked_for(&k("vic@corp.example"), ip(HOME), t), None);
    // At home (same /64 for IPv6 too) the right password still works.
    assert_eq!(
        attempt(&l, "VIC@corp.example ", "Right-1", ip(HOME), ok, t),
        ok
    );
    // The directory's budget is shared: home keeps directory_threshold - threshold
    // guesses, so AD never sees more than directory_threshold wrong passwords.
    assert_eq!(
        attempt(&l, "vic@corp.example", "typo-1", ip(HOME), bad, t),
        bad
    );
    assert_eq!(
        attempt(&l, "vic@corp.example", "typo-2", ip(HOME), bad, t),
        SignInOutcome::AccountLocked
    );
    assert!(l.locked_for(&k("vic@corp.example"), ip(HOME), t).is_some());
}

#[test]
fn familiar_places_are_bounded_and_survive_a_flood_of_failures() {
    let l = SmartLockout::new(LockoutPolicy {
        familiar_locations: 2,
        max_tracked: 10,
        ..policy()
    });
    let t = SystemTime::now();
    let ok = SignInOutcome::Success;
    for h in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        attempt(&l, "pat@corp.example", "Right-1", ip(h), ok, t);
    }
    let places = lock(&l.familiar)[&k("pat@corp.example")].clone();
    assert_eq!(places.len(), 2);
    assert_eq!(
        places[0].0,
        ip("192.0.2.3").expect("ip"),
        "most recent first"
    );
    for i in 0..100 {
        let _ = attempt(
            &l,
            &format!("spray-{i}@corp.example"),
            "x-1",
            ip(AWAY),
            SignInOutcome::UnknownUser,
            t,
        );
    }
    assert_eq!(
        l.place_of(&k("pat@corp.example"), ip("192.0.2.2")),
        Place::Familiar
    );
}

#[test]
fn only_failures_spend_the_source_budget() {
    let l = SmartLockout::new(LockoutPolicy {
        per_source_failures_per_minute: 3,
        ..policy()
    });
    let t = SystemTime::now();
    // A NAT full of people who type their passwords right is never throttled.
    for i in 0..50 {
        let user = format!("user{i}@corp.example");
        assert_eq!(
            attempt(&l, &user, "Right-1", ip(AWAY), SignInOutcome::Success, t),
            SignInOutcome::Success
        );
    }
    // Outages are not the source's fault either.
    for i in 0..5 {
        let user = format!("o{i}@corp.example");
        attempt(
            &l,
            &user,
            "p",
            ip(AWAY),
            SignInOutcome::DirectoryUnavailable,
            t,
        );
    }
    for i in 0..3 {
        let user = format!("f{i}@corp.example");
        let o = attempt(
            &l,
            &user,
            "w",
            ip(AWAY),
            SignInOutcome::InvalidCredentials,
            t,
        );
        assert_eq!(o, SignInOutcome::InvalidCredentials);
    }
    assert_eq!(
        l.admit(&k("late@corp.example"), &pw("Right-1"), ip(AWAY), t)
            .err(),
        Some(Refusal::Answer(SignInOutcome::Throttled))
    );
    assert!(l
        .admit(&k("late@corp.example"), &pw("Right-1"), ip(HOME), t)
        .is_ok());
}

fn tmp_store(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-lockout-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("dir");
    d.join("directory.sqlite")
}

#[test]
fn counters_and_familiar_places_survive_a_restart() {
    let path = tmp_store("restart");
    let t = SystemTime::now();
    {
        let store = Arc::new(causeway_store::SqliteStore::open(&path).expect("open"));
        let l = SmartLockout::new(policy());
        assert_eq!(l.persist_to(store, t).expect("load"), 0);
        attempt(
            &l,
            "rita@corp.example",
            "Right-1",
            ip(HOME),
            SignInOutcome::Success,
            t,
        );
        for i in 0..3 {
            attempt(
                &l,
                "rita@corp.example",
                &format!("g-{i}"),
                ip(AWAY),
                SignInOutcome::InvalidCredentials,
                t,
            );
        }
        // A name that exists nowhere is kept exactly the same way.
        for i in 0..3 {
            attempt(
                &l,
                "nobody@corp.example",
                &format!("g-{i}"),
                ip(AWAY),
                SignInOutcome::UnknownUser,
                t,
            );
        }
        attempt(
            &l,
            "clean@corp.example",
            "w",
            None,
            SignInOutcome::InvalidCredentials,
            t,
        );
        attempt(
            &l,
            "clean@corp.example",
            "Right-1",
            None,
            SignInOutcome::Success,
            t,
        );
        l.flush();
    }
    let store = Arc::new(causeway_store::SqliteStore::open(&path).expect("reopen"));
    let l = SmartLockout::new(policy());
    assert_eq!(
        l.persist_to(store.clone(), t).expect("load"),
        2,
        "a clean account leaves no row"
    );
    for user in ["rita@corp.example", "nobody@corp.example"] {
        assert_eq!(
            l.admit(&k(user), &pw("g-new"), ip(AWAY), t).err(),
            Some(Refusal::Answer(SignInOutcome::AccountLocked)),
            "{user}"
        );
    }
    assert!(l.locked_for(&k("rita@corp.example"), ip(AWAY), t).is_some());
    assert_eq!(
        attempt(
            &l,
            "rita@corp.example",
            "Right-1",
            ip(HOME),
            SignInOutcome::Success,
            t
        ),
        SignInOutcome::Success,
        "home is still familiar after the restart"
    );
    // Once everything has expired, a restart deletes the rows.
    l.flush();
    drop(l);
    let later = t + Duration::from_secs(24 * 3600);
    let l = SmartLockout::new(policy());
    assert_eq!(
        l.persist_to(store.clone(), later).expect("load"),
        1,
        "only the familiar place is left"
    );
    assert_eq!(store.load_lockout(100).expect("rows").len(), 1);
    assert!(l.persist_to(store, later).is_err(), "one store only");
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn account_keys_normalise_names_and_keep_ids_apart() {
    assert_eq!(k(" Alice@CORP.example"), k("alice@corp.example"));
    let id = ImmutableId::from_guid_bytes([7; 16]);
    assert_ne!(AccountKey::of_id(&id), k(id.as_str()));
    let long = "a".repeat(10_000);
    assert_eq!(AccountKey::of_name(&long).as_str().len(), 2 + MAX_KEY_CHARS);
}

#[test]
fn the_answer_floor_is_the_median_of_recent_checks() {
    let l = SmartLockout::new(policy());
    assert_eq!(l.answer_floor(), Duration::ZERO);
    for ms in [5, 1, 9] {
        l.note_check_latency(Duration::from_millis(ms));
    }
    assert_eq!(l.answer_floor(), Duration::from_millis(5));
    for _ in 0..FLOOR_SAMPLES {
        l.note_check_latency(Duration::from_millis(2));
    }
    assert_eq!(
        l.answer_floor(),
        Duration::from_millis(2),
        "only recent checks count"
    );
}

#[test]
fn policy_validation_names_the_setting() {
    assert!(LockoutPolicy::default().validate().is_ok());
    let e = LockoutPolicy {
        directory_threshold: 3,
        ..Default::default()
    }
    .validate()
    .expect_err("equal");
    assert!(e.contains("directory_threshold"), "{e}");
}
