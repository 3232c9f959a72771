//! Rollover timelines, driven by an injected `now`.

use super::*;
use causeway_testkit::TempDir as TestDir;
use std::os::unix::fs::PermissionsExt;

/// A short-lived policy: 2-day keys, published a day before expiry, signing 12 hours later.
fn short() -> RolloverPolicy {
    RolloverPolicy {
        key_lifetime: Duration::from_secs(2 * DAY),
        publish_before_expiry: Duration::from_secs(DAY),
        activate_after_publish: Duration::from_secs(DAY / 2),
    }
}

fn new_set(name: &str, p: &RolloverPolicy, t0: SystemTime) -> (TestDir, KeySet) {
    let d = TestDir::new(name);
    let set = KeySet::load_or_create(&d.path().join("keys"), p, t0).expect("created");
    (d, set)
}

#[test]
fn first_key_signs_at_once_and_is_private() {
    let d = TestDir::new("signing-first");
    let dir = d.path().join("keys");
    let now = SystemTime::now();
    let p = RolloverPolicy::default();
    let set = KeySet::load_or_create(&dir, &p, now).expect("created");
    let k = set.active(now).expect("active");
    assert_eq!(set.published(now).len(), 1);
    let mode = fs::metadata(dir.join(format!("{}.key.pem", k.id)))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!format!("{k:?}").contains("PRIVATE"));
    // Loading again finds the same key; nothing new is made.
    let again = KeySet::load_or_create(&dir, &p, now).expect("loaded");
    assert_eq!(again.all().len(), 1);
}

#[test]
fn rollover_publishes_first_and_switches_later() {
    let d = TestDir::new("signing-roll");
    let dir = d.path().join("keys");
    let p = RolloverPolicy::default();
    let t0 = SystemTime::now();
    let mut set = KeySet::load_or_create(&dir, &p, t0).expect("created");
    let first = set.active(t0).expect("active").id.clone();
    // 344 days on: not yet 20 days before expiry.
    let t1 = t0 + Duration::from_secs(344 * DAY);
    assert!(!set.maintain(&p, t1).expect("maintain"));
    // 346 days on: the successor is published but the old key still signs.
    let t2 = t0 + Duration::from_secs(346 * DAY);
    assert!(set.maintain(&p, t2).expect("maintain"));
    assert_eq!(set.active(t2).expect("active").id, first);
    assert_eq!(set.published(t2).len(), 2);
    assert_eq!(set.published(t2)[0].id, first);
    assert!(
        !set.maintain(&p, t2).expect("maintain"),
        "one successor only"
    );
    // Five days after publication the new key signs; both stay published until the
    // old one expires.
    let t3 = t2 + Duration::from_secs(5 * DAY);
    let second = set.active(t3).expect("active").id.clone();
    assert_ne!(second, first);
    assert_eq!(set.published(t3).len(), 2);
    assert_eq!(set.published(t3)[0].id, second);
    let t4 = t0 + Duration::from_secs(366 * DAY);
    assert_eq!(set.published(t4).len(), 1);
    // Another process sees the same state.
    let other = KeySet::load(&dir).expect("load");
    assert_eq!(other.active(t3).expect("active").id, second);
}

#[test]
fn forced_rollover_and_activate_now() {
    let d = TestDir::new("signing-force");
    let dir = d.path().join("keys");
    let p = RolloverPolicy::default();
    let now = SystemTime::now();
    let mut set = KeySet::load_or_create(&dir, &p, now).expect("created");
    let first = set.active(now).expect("active").id.clone();
    let next = set
        .rollover(&p, now, Activation::Scheduled)
        .expect("rollover");
    assert_ne!(next.id, first);
    assert_eq!(next.change, RolloverChange::Created);
    assert_eq!(set.active(now).expect("active").id, first);
    // Asking again does not pile up keys.
    let again = set.rollover(&p, now, Activation::Scheduled).expect("again");
    assert_eq!(again.id, next.id);
    assert_eq!(again.change, RolloverChange::Unchanged);
    let later = now + Duration::from_secs(1);
    let switched = set.rollover(&p, later, Activation::Now).expect("now");
    assert_eq!(switched.id, next.id);
    assert_eq!(set.active(later).expect("active").id, next.id);
}

#[test]
fn policy_is_checked() {
    assert!(RolloverPolicy::default().validate().is_ok());
    let bad = RolloverPolicy {
        activate_after_publish: Duration::from_secs(30 * DAY),
        ..RolloverPolicy::default()
    };
    assert!(bad.validate().is_err());
}

/// The fault: a 2-day key maintained under the default policy (publish 20 days
/// before expiry, sign 5 days after) got a successor starting in 5 days, after the key's
/// end. The successor must start before the signing key expires, with the margin.
#[test]
fn successor_of_a_short_lived_key_starts_before_it_expires() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (_d, mut set) = new_set("signing-short", &short(), t0);
    let first = set.active(t0).expect("active");
    let (first_id, expires) = (first.id.clone(), first.not_after);
    assert!(set
        .maintain(&RolloverPolicy::default(), t0)
        .expect("maintain"));
    let next = set.pending_after(t0, t0).expect("a successor");
    assert!(
        next.activate_at <= expires - SWITCH_MARGIN,
        "successor starts {:?} after the key expires",
        next.activate_at.duration_since(expires).ok()
    );
    // Every moment up to and past the old key's end has a signing key.
    for h in 0..60 {
        let t = t0 + Duration::from_secs(h * 3600);
        assert!(set.active(t).is_some(), "no signing key {h} h on");
    }
    assert_ne!(set.active(expires).expect("active").id, first_id);
}

/// A key with 30 minutes left (the endpoint was down when publication was due) gets a
/// successor that starts in 15, not 12 hours later.
#[test]
fn key_with_thirty_minutes_left_gets_a_successor_within_them() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (_d, mut set) = new_set("signing-30m", &short(), t0);
    let expires = set.active(t0).expect("active").not_after;
    let late = expires - Duration::from_secs(30 * 60);
    assert!(set.maintain(&short(), late).expect("maintain"));
    let next = set.pending_after(late, late).expect("a successor");
    assert_eq!(
        next.activate_at.duration_since(late).expect("after now"),
        Duration::from_secs(15 * 60)
    );
}

/// A restart after a long downtime: the successor had been scheduled past the old key's
/// end (as the old code did), and the endpoint comes back after that end. It must sign
/// with the published successor at once, not refuse to start.
#[test]
fn restart_after_a_long_downtime_signs_with_the_published_successor() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (d, mut set) = new_set("signing-downtime", &short(), t0);
    let expires = set.active(t0).expect("active").not_after;
    // Published a day before the old key's end, scheduled two days after it.
    let published = t0 + Duration::from_secs(DAY);
    let late = set
        .create_key(&short(), published, expires + Duration::from_secs(2 * DAY))
        .expect("successor")
        .id
        .clone();
    let back = expires + Duration::from_secs(3600);
    assert!(KeySet::load(set.dir())
        .expect("load")
        .active(back)
        .is_none());
    let set = KeySet::load_or_create(&d.path().join("keys"), &short(), back).expect("restart");
    assert_eq!(set.active(back).expect("a key signs").id, late);
    // Everything expired: a new key signs at once.
    let much_later = back + Duration::from_secs(10 * DAY);
    let set =
        KeySet::load_or_create(&d.path().join("keys"), &short(), much_later).expect("restart");
    assert!(set.active(much_later).is_some());
}

/// A successor scheduled after the signing key's end (by an older version, or by hand) is
/// brought forward by maintenance while the old key still signs.
#[test]
fn maintenance_brings_a_too_late_successor_forward() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (_d, mut set) = new_set("signing-forward", &short(), t0);
    let expires = set.active(t0).expect("active").not_after;
    set.create_key(&short(), t0, expires + Duration::from_secs(DAY))
        .expect("successor");
    assert!(set.maintain(&short(), t0).expect("maintain"));
    let next = set.pending_after(t0, t0).expect("successor");
    assert_eq!(next.activate_at, expires - SWITCH_MARGIN);
    assert!(
        !set.maintain(&short(), t0).expect("again"),
        "nothing more to do"
    );
}

/// `certs rollover --activate-after D` with a successor already published moves it to D,
/// and the outcome reports the time read back; without it, the published time stands and
/// is what is reported (not the policy's delay).
#[test]
fn rollover_honours_activate_after_with_a_pending_key_and_reports_the_truth() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let p = RolloverPolicy::default();
    let (_d, mut set) = new_set("signing-after", &p, t0);
    let first = set
        .rollover(&p, t0, Activation::After(Duration::from_secs(2 * DAY)))
        .expect("first");
    assert_eq!(first.change, RolloverChange::Created);
    assert_eq!(first.activate_at, t0 + Duration::from_secs(2 * DAY));
    assert!(!first.lead_time_cut);
    let moved = set
        .rollover(&p, t0, Activation::After(Duration::from_secs(7 * DAY)))
        .expect("moved");
    assert_eq!(
        (moved.id.as_str(), moved.change),
        (first.id.as_str(), RolloverChange::Rescheduled)
    );
    assert_eq!(moved.activate_at, t0 + Duration::from_secs(7 * DAY));
    let reloaded = KeySet::load(set.dir()).expect("load");
    let on_disk = reloaded
        .all()
        .iter()
        .find(|k| k.id == first.id)
        .expect("key");
    assert_eq!(on_disk.activate_at, t0 + Duration::from_secs(7 * DAY));
    let kept = set.rollover(&p, t0, Activation::Scheduled).expect("kept");
    assert_eq!(kept.change, RolloverChange::Unchanged);
    assert_eq!(kept.activate_at, t0 + Duration::from_secs(7 * DAY));
    // Beyond the signing key's end: capped, and said so.
    let capped = set
        .rollover(&p, t0, Activation::After(Duration::from_secs(400 * DAY)))
        .expect("capped");
    assert!(capped.lead_time_cut);
    assert_eq!(
        capped.activate_at,
        capped.signing_key_expires.expect("signing key") - SWITCH_MARGIN
    );
}

/// The key's creation uses the policy given (the command passes the config's).
#[test]
fn rollover_creates_keys_with_the_policys_lifetime() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (_d, mut set) = new_set("signing-life", &short(), t0);
    let r = set
        .rollover(&short(), t0, Activation::Scheduled)
        .expect("roll");
    let k = set.all().iter().find(|k| k.id == r.id).expect("key");
    assert_eq!(
        k.not_after.duration_since(t0).expect("later"),
        Duration::from_secs(2 * DAY)
    );
    assert_eq!(r.activate_at, t0 + Duration::from_secs(DAY / 2));
}

#[test]
fn health_reports_time_left_and_the_published_successor() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let (_d, mut set) = new_set("signing-health", &short(), t0);
    let h = set.health(t0);
    assert_eq!(h.seconds_left(t0), 2 * DAY);
    assert!(h.next_id.is_none());
    let t1 = t0 + Duration::from_secs(DAY + 60);
    assert!(set.maintain(&short(), t1).expect("maintain"));
    let h = set.health(t1);
    assert_eq!(h.seconds_left(t1), DAY - 60);
    assert!(h.next_id.is_some());
    assert_eq!(h.next_activates, Some(t1 + Duration::from_secs(DAY / 2)));
}
