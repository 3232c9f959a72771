use super::flow::{FLOW_FUTURE_SKEW, MAX_USED_FLOWS};
use super::replay::MAX_SEEN_REQUESTS;
use super::*;

#[test]
fn sessions_are_found_by_cookie_and_end() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let who = Identity {
        upn: "a@b.c".into(),
        immutable_id: "id".into(),
        mail: None,
        display_name: None,
        groups: Vec::new(),
    };
    let (c, sess) = s.create(who.clone(), Duration::from_secs(60), now);
    assert_eq!(s.get(&c, now).expect("live").upn, "a@b.c");
    assert!(s.get("other", now).is_none());
    assert!(
        s.get(&c, now + Duration::from_secs(61)).is_none(),
        "expired"
    );
    let (c, _) = s.create(who, Duration::from_secs(60), now);
    s.add_participant(
        &c,
        Participant {
            app: "sp".into(),
            name_id: "n".into(),
            format: "f".into(),
        },
    );
    let idx = s.get(&c, now).expect("live").session_index;
    assert_ne!(idx, sess.session_index);
    assert!(s.end_by_index("sp", "n", &idx).is_some());
    assert!(s.get(&c, now).is_none());
}

#[test]
fn a_logout_chain_tells_every_other_application_in_sign_in_order_once() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let who = Identity {
        upn: "a@b.c".into(),
        immutable_id: "id".into(),
        mail: None,
        display_name: None,
        groups: Vec::new(),
    };
    let (c, _) = s.create(who, Duration::from_secs(60), now);
    for app in ["a", "b", "c"] {
        s.add_participant(
            &c,
            Participant {
                app: app.into(),
                name_id: "n".into(),
                format: "f".into(),
            },
        );
    }
    let session = s.end(&c).expect("live");
    let mut chain = LogoutChain::new(
        &session,
        Some(LogoutOrigin {
            app: "b".into(),
            request_id: "_r".into(),
            relay_state: None,
        }),
    );
    let order: Vec<String> = std::iter::from_fn(|| chain.pending.pop().map(|p| p.app)).collect();
    assert_eq!(
        order,
        ["a", "c"],
        "the asking application is answered, not told"
    );
    let logouts = Logouts::default();
    let id = logouts.park(LogoutChain::new(&session, None));
    assert_eq!(logouts.take(&id).expect("parked").pending.len(), 3);
    assert!(logouts.take(&id).is_none(), "a parked logout is taken once");
}

fn flows() -> Flows {
    Flows::new(FlowKey::from_bytes(&[7; 32]))
}

fn saml_target() -> Target {
    Target::Saml {
        sp: "https://sp.example/metadata".into(),
        acs: "https://sp.example/acs".into(),
        request_id: Some("_req1".into()),
        relay_state: Some("state é".into()),
        name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
    }
}

#[test]
fn sealed_flow_state_reads_back_as_it_was_made_and_says_nothing_in_clear() {
    let f = flows();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let blob = f.start(saml_target(), Prompt::Always, now);
    assert!(!blob.contains("sp.example") && blob.len() < 600, "{blob}");
    let flow = f.open(&blob, now).expect("opens");
    assert_eq!(flow.prompt, Prompt::Always);
    assert_eq!(flow.created(), now);
    match &flow.target {
        Target::Saml {
            acs, relay_state, ..
        } => {
            assert_eq!(acs, "https://sp.example/acs");
            assert_eq!(relay_state.as_deref(), Some("state é"));
        }
        other => panic!("{other:?}"),
    }
    let ws = f.start(
        Target::WsFed {
            realm: "urn:r".into(),
            reply: "https://rp/".into(),
            wctx: Some("x".repeat(2048)),
        },
        Prompt::IfNeeded,
        now,
    );
    assert!(ws.len() <= MAX_FLOW_BLOB);
    assert!(matches!(
        f.open(&ws, now).expect("opens").target,
        Target::WsFed { wctx: Some(w), .. } if w.len() == 2048
    ));
    // Two seals of the same flow differ (random nonce).
    assert_ne!(blob, f.start(saml_target(), Prompt::Always, now));
    assert_eq!(format!("{:?}", FlowKey::random()), "FlowKey([redacted])");
}

#[test]
fn damaged_altered_foreign_and_expired_flow_state_is_refused_for_what_it_is() {
    let f = flows();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let blob = f.start(Target::Portal, Prompt::IfNeeded, now);
    assert_eq!(f.open("%%%", now).err(), Some(FlowError::Malformed));
    assert_eq!(f.open(&blob[..20], now).err(), Some(FlowError::Malformed));
    assert_eq!(
        f.open(&"A".repeat(MAX_FLOW_BLOB + 1), now).err(),
        Some(FlowError::Malformed)
    );
    // One flipped bit anywhere after the version byte.
    let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&blob)
        .expect("b64");
    for i in 1..raw.len() {
        raw[i] ^= 1;
        let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(f.open(&t, now).err(), Some(FlowError::Tampered), "byte {i}");
        raw[i] ^= 1;
    }
    // Sealed under another key (another deployment, or a lost key file).
    let other = Flows::new(FlowKey::from_bytes(&[8; 32]));
    assert_eq!(other.open(&blob, now).err(), Some(FlowError::Tampered));
    // A logout confirmation is not a flow, nor the other way round.
    let lo = f.seal_logout(&LogoutNext::WsFed { back: None }, now);
    assert_eq!(f.open(&lo, now).err(), Some(FlowError::Tampered));
    assert_eq!(f.open_logout(&blob, now).err(), Some(FlowError::Tampered));
    assert_eq!(
        f.open_logout(&lo, now),
        Ok(LogoutNext::WsFed { back: None })
    );
    // Expiry is checked on use, against the creation time sealed inside.
    assert!(f
        .open(&blob, now + FLOW_TTL - Duration::from_secs(1))
        .is_ok());
    assert_eq!(
        f.open(&blob, now + FLOW_TTL).err(),
        Some(FlowError::Expired)
    );
    assert_eq!(
        f.open_logout(&lo, now + FLOW_TTL).err(),
        Some(FlowError::Expired)
    );
    assert_eq!(
        f.open(&blob, now - FLOW_FUTURE_SKEW - Duration::from_secs(1))
            .err(),
        Some(FlowError::Expired),
        "from the future"
    );
}

#[test]
fn a_flow_signs_in_once_and_only_from_the_browser_it_was_shown_to() {
    let f = flows();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let unbound = f.start(Target::Portal, Prompt::IfNeeded, now);
    let browser = token_hash("cookie");
    // The redirect's state is not a form: it has no token and no browser.
    assert_eq!(
        f.take_if(&unbound, "", Some(browser), now).err(),
        Some(FlowError::Forged)
    );
    let flow = f.open(&unbound, now).expect("opens");
    let (form, csrf) = f.bind(&flow, browser);
    assert_eq!(
        f.take_if(&form, "wrong", Some(browser), now).err(),
        Some(FlowError::Forged)
    );
    assert_eq!(
        f.take_if(&form, &csrf, Some(token_hash("other")), now)
            .err(),
        Some(FlowError::Forged)
    );
    assert_eq!(
        f.take_if(&form, &csrf, None, now).err(),
        Some(FlowError::Forged)
    );
    // A re-rendered form has a new token; the old token does not fit it.
    let (form2, csrf2) = f.bind(&flow, browser);
    assert_ne!(csrf, csrf2);
    assert_eq!(
        f.take_if(&form2, &csrf, Some(browser), now).err(),
        Some(FlowError::Forged)
    );
    let taken = f.take_if(&form, &csrf, Some(browser), now).expect("taken");
    assert_eq!(
        f.used_len(),
        0,
        "a failed or pending attempt writes nothing"
    );
    assert!(f.mark_used(&taken, now), "first sign-in");
    assert!(!f.mark_used(&taken, now), "a concurrent second one loses");
    for (blob, token) in [(&form, &csrf), (&form2, &csrf2)] {
        assert_eq!(
            f.take_if(blob, token, Some(browser), now).err(),
            Some(FlowError::Used),
            "every rendering of a used flow is spent"
        );
    }
    assert_eq!(f.open(&unbound, now).err(), Some(FlowError::Used));
    // The record goes once the flow would have expired anyway.
    assert_eq!(f.used_len(), 1);
    let later = now + FLOW_TTL + FLOW_FUTURE_SKEW;
    let other = f.open(&f.start(Target::Portal, Prompt::IfNeeded, later), later);
    assert!(f.mark_used(&other.expect("opens"), later));
    assert_eq!(f.used_len(), 1, "the expired record was dropped");
}

#[test]
fn a_flood_of_unauthenticated_flow_starts_neither_evicts_a_pending_sign_in_nor_grows_state() {
    // The old table held 100,000 flows and dropped the oldest: this many starts
    // pushed out a real user's flow, who then read "expired" with the right password.
    let f = flows();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let user = f.start(saml_target(), Prompt::IfNeeded, now);
    let browser = token_hash("user's login cookie");
    let (form, csrf) = f.bind(&f.open(&user, now).expect("opens"), browser);
    for _ in 0..120_000 {
        let _ = f.start(Target::Portal, Prompt::IfNeeded, now);
    }
    assert_eq!(f.used_len(), 0, "no state for requests without a password");
    let flow = f
        .take_if(&form, &csrf, Some(browser), now + Duration::from_secs(60))
        .expect("the user's pending sign-in is intact");
    assert!(matches!(flow.target, Target::Saml { .. }));
}

#[test]
fn the_used_once_record_and_the_request_id_cache_stay_within_their_bounds() {
    let f = flows();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let flow = f
        .open(&f.start(Target::Portal, Prompt::IfNeeded, now), now)
        .expect("opens");
    for i in 0..MAX_USED_FLOWS + 10 {
        let mut g = flow.clone();
        g.id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        assert!(f.mark_used(&g, now));
    }
    assert_eq!(f.used_len(), MAX_USED_FLOWS);
    let s = SeenRequests::default();
    let until = now + Duration::from_secs(600);
    for i in 0..MAX_SEEN_REQUESTS + 10 {
        assert!(s.first_use("sp", &format!("_{i}"), until, now));
    }
    assert_eq!(s.len(), MAX_SEEN_REQUESTS);
    let shown = format!("{flow:?}");
    assert!(
        !shown.contains("csrf") && shown.contains("bound: false"),
        "{shown}"
    );
}

#[test]
fn the_flow_key_is_created_private_then_loaded_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("causeway-flowkey-{}", random_token()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(FLOW_KEY_FILE);
    let now = SystemTime::now();
    let a = Flows::new(FlowKey::load_or_create(&path).expect("created"));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let blob = a.start(Target::Portal, Prompt::IfNeeded, now);
    // A restart loads the same key: pending sign-ins survive it.
    let b = Flows::new(FlowKey::load_or_create(&path).expect("loaded"));
    assert!(b.open(&blob, now).is_ok());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = FlowKey::load_or_create(&path).expect_err("loose");
    assert!(e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::write(&path, b"short").expect("write");
    let e = FlowKey::load_or_create(&path).expect_err("short");
    assert!(e.contains("holds 5 bytes"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_signed_request_id_is_answered_once_per_application_until_its_window_ends() {
    let s = SeenRequests::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let until = now + Duration::from_secs(600);
    assert!(s.first_use("sp1", "_a", until, now));
    assert!(!s.first_use("sp1", "_a", until, now), "replay");
    assert!(
        s.first_use("sp2", "_a", until, now),
        "another application's ID"
    );
    assert!(
        s.first_use("sp1", "_a", until, until),
        "the window refuses it from here"
    );
    assert_eq!(s.len(), 1, "records past their window were dropped");
}
