use std::collections::BTreeMap;

use causeway_credential::{Password, PhsVerifier};

use super::openldap::{generalized_time, record};
use super::*;
use crate::ad::entry::{Entry, Values};

const ALICE_NT: &str = "9172D29A2718FB749F12DEC01E082C92";

fn entry(attrs: &[(&str, &str)]) -> Entry {
    let mut a: BTreeMap<String, Values> = BTreeMap::new();
    a.entry("objectclass".into()).or_default().values =
        vec![b"inetOrgPerson".to_vec(), b"sambaSamAccount".to_vec()];
    for (k, v) in attrs {
        a.entry((*k).into())
            .or_default()
            .values
            .push(v.as_bytes().to_vec());
    }
    Entry {
        guid: Guid::from_bytes(&[7; 16]).expect("ok"),
        sid: None,
        dn: "uid=alice,ou=people,dc=ldap".into(),
        deleted: false,
        attrs: a,
    }
}

/// The lab's slapd users: alice's hash verifies her password; carol's pwdReset is
/// must-change, bob's permanent lock and an `D` flag are disabled, dave's pwdEndTime in
/// 2009 is his expiry; a bad hash is an error that quotes none of it; `Debug` shows no hash.
#[test]
fn slapd_entries_become_records_with_the_lab_users_flags() {
    let alice = record(entry(&[
        ("sambantpassword", ALICE_NT),
        ("sambapwdlastset", "1796152684"),
        ("sambaacctflags", "[U          ]"),
    ]))
    .expect("ok")
    .expect("a samba user");
    let v = PhsVerifier::derive_from_nt_hash(alice.nt.as_ref().expect("hash"));
    assert!(v.verify(&Password::new("Blue-Harbor-41".into()).expect("ok")));
    assert!(!v.verify(&Password::new("Blue-Harbor-42".into()).expect("ok")));
    assert!(!alice.must_change() && !alice.disabled && alice.account_expires.is_none());
    assert_eq!(alice.changed_at(), Some(1_796_152_684));
    let shown = format!("{alice:?}");
    assert!(
        !shown.to_ascii_uppercase().contains(&ALICE_NT[..8]),
        "{shown}"
    );

    let carol = record(entry(&[
        ("sambantpassword", ALICE_NT),
        ("pwdreset", "TRUE"),
    ]))
    .expect("ok")
    .expect("user");
    assert!(carol.must_change());
    let bob = record(entry(&[("pwdaccountlockedtime", "000001010000Z")]))
        .expect("ok")
        .expect("user");
    assert!(bob.disabled && bob.nt.is_none());
    assert!(
        record(entry(&[("sambaacctflags", "[UD         ]")]))
            .expect("ok")
            .expect("user")
            .disabled
    );
    let dave = record(entry(&[("pwdendtime", "20091013000000Z")]))
        .expect("ok")
        .expect("user");
    assert_eq!(
        dave.account_expires,
        Some(UNIX_EPOCH + Duration::from_secs(1_255_392_000))
    );
    let e = record(entry(&[(
        "sambantpassword",
        "ZZ72D29A2718FB749F12DEC01E082C92",
    )]))
    .expect_err("refused");
    assert!(!e.to_string().contains("ZZ72"), "{e}");
    let mut plain = entry(&[]);
    plain.attrs.remove("objectclass");
    let plain = record(plain).expect("ok").expect("a record");
    assert!(
        plain.nt.is_none() && !plain.disabled,
        "no Samba account: no password"
    );
    let mut gone = entry(&[("sambantpassword", ALICE_NT)]);
    gone.deleted = true;
    assert!(
        record(gone).expect("ok").is_none(),
        "a deletion is no record"
    );
}

#[test]
fn generalized_times_are_read_as_utc() {
    assert_eq!(generalized_time("19700101000000Z"), Some(0));
    assert_eq!(generalized_time("20091013000000Z"), Some(1_255_392_000));
    assert_eq!(generalized_time("20240229123456Z"), Some(1_709_210_096));
    assert_eq!(generalized_time("2009101300000Z"), None);
    assert_eq!(generalized_time("20091313000000Z"), None);
}

fn rec(pwd_last_set: Option<i64>, disabled: bool) -> HashRecord {
    HashRecord {
        anchor: Guid::from_bytes(&[1; 16]).expect("ok"),
        dn: "uid=x".into(),
        nt: Some(NtHash::from_hex(ALICE_NT).expect("ok")),
        pwd_last_set,
        must_change: false,
        disabled,
        account_expires: None,
    }
}

/// Only a changed password gets a new verifier; a re-read of the same one pushes
/// nothing; flags alone push flags; a source without a password time is pushed each time
/// it is read (it cannot say whether the password changed).
#[test]
fn only_changes_are_pushed() {
    let r = rec(Some(5), false);
    assert_eq!(decide(&r, None), Decision::Verifier);
    let m = r.mark();
    assert_eq!(decide(&rec(Some(5), false), Some(&m)), Decision::Unchanged);
    assert_eq!(decide(&rec(Some(6), false), Some(&m)), Decision::Verifier);
    assert_eq!(decide(&rec(Some(5), true), Some(&m)), Decision::Flags);
    assert_eq!(decide(&rec(Some(0), false), Some(&m)), Decision::Verifier);
    let none = rec(None, false);
    assert_eq!(decide(&none, Some(&none.mark())), Decision::Verifier);
}

/// Derivation over the pool gives one verifier per hash, in order, each with its own salt.
#[tokio::test]
async fn derivation_keeps_the_order_and_salts_each_verifier() {
    let pws = [
        "One-Pw-1",
        "Two-Pw-2",
        "Three-Pw-3",
        "One-Pw-1",
        "Five-Pw-5",
    ];
    let hashes = pws
        .iter()
        .map(|p| NtHash::from_password(&Password::new((*p).into()).expect("ok")))
        .collect();
    let vs = derive_all(hashes).await;
    assert_eq!(vs.len(), pws.len());
    for (v, p) in vs.iter().zip(pws) {
        assert!(v.verify(&Password::new(p.into()).expect("ok")), "{p}");
    }
    assert_ne!(
        vs[0].expose_encoded(),
        vs[3].expose_encoded(),
        "the same password gets a fresh salt"
    );
}

/// Users read without a single hash is the bind account's missing right, named with the
/// grant; one user with a hash is enough to tell it is not.
#[test]
fn no_readable_hash_names_the_missing_right() {
    let text = r#"
[sync]
state_dir = "s"
endpoints = ["https://idp"]
[[connector]]
name = "ldap"
kind = "openldap"
servers = ["ldaps://ldap"]
ca_file = "ca.pem"
bind_dn = "cn=sync,dc=x"
bind_password_env = "X"
base_dn = "dc=x"
password_hash_sync = true
"#;
    let cfg = crate::config::SyncConfig::parse(text, std::path::Path::new("s.toml")).expect("ok");
    let c = &cfg.connectors[0];
    let mut without = rec(Some(1), false);
    without.nt = None;
    let e = unreadable_hashes(c, &[without]).expect("an error");
    assert!(
        e.error.contains("cn=sync,dc=x") && e.error.contains("sambaNTPassword"),
        "{}",
        e.error
    );
    let mut again = rec(Some(1), false);
    again.nt = None;
    assert!(unreadable_hashes(c, &[again, rec(Some(2), false)]).is_none());
    assert!(unreadable_hashes(c, &[]).is_none());
}
