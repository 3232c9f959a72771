//! A restart after a long downtime: the signing key expired while the endpoint was down,
//! and its successor (published before the downtime) had been scheduled to start after that
//! end, as the old rollover did. A real `causeway serve` must start and sign with the
//! published successor at once, instead of refusing ("no token-signing key is active").

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use causeway_certs::signing::{Activation, KeySet, RolloverPolicy};
use common::endpoint::{temp_dir, Browser, Endpoint};

const DAY: u64 = 86_400;

#[test]
fn serve_after_a_long_downtime_signs_with_the_published_successor() {
    let dir = temp_dir("keys-downtime");
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let keys = data.join("token-signing");
    let now = SystemTime::now();
    let short = RolloverPolicy {
        key_lifetime: Duration::from_secs(2 * DAY),
        publish_before_expiry: Duration::from_secs(DAY),
        activate_after_publish: Duration::from_secs(DAY / 2),
    };
    // Three days ago: a 2-day key, expired a day ago.
    let t0 = now - Duration::from_secs(3 * DAY);
    let mut set = KeySet::load_or_create(&keys, &short, t0).expect("first key");
    let first = set.active(t0).expect("active").id.clone();
    // Its successor, published 1.5 days ago with a 10-day life...
    let long = RolloverPolicy {
        key_lifetime: Duration::from_secs(10 * DAY),
        ..short
    };
    let next = set
        .rollover(
            &long,
            t0 + Duration::from_secs(3 * DAY / 2),
            Activation::Scheduled,
        )
        .expect("successor")
        .id;
    // ...but scheduled (as the old code could) to start two days from now.
    let late = now + Duration::from_secs(2 * DAY);
    let secs = late
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    std::fs::write(keys.join(format!("{next}.activate")), format!("{secs}\n")).expect("activate");
    assert!(
        KeySet::load(&keys).expect("load").active(now).is_none(),
        "the set up leaves no key signing"
    );

    let config = "[signing]\nkey_lifetime = \"2d\"\npublish_before_expiry = \"1d\"\nactivate_after_publish = \"12h\"\n";
    let ep = Endpoint::start_in(dir, config, &[]);
    let reloaded = KeySet::load(&keys).expect("load");
    let signing = reloaded.active(SystemTime::now()).expect("a key signs");
    assert_eq!(
        signing.id, next,
        "the published successor signs, not {first} or a new key"
    );
    assert_eq!(reloaded.all().len(), 2, "no unpublished key was made");
    assert!(
        ep.logs().contains("the published successor signs now"),
        "{}",
        ep.logs()
    );
    let (_, _, body) = Browser::new(&ep.dir.join("health")).get(&format!("{}/healthz", ep.url));
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let left = v["signing_key"]["seconds_left"].as_u64().expect("seconds");
    assert!(left > 8 * DAY, "{body}");
}
