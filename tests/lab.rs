//! The AD lab, checked for real: a Samba AD domain controller started on loopback by
//! `scripts/lab.sh` gives every test account exactly the simple-bind answer Active
//! Directory gives it, and the agent's diagnostic mapping reads each answer right.
//!
//! Runs against the lab described by `$CAUSEWAY_LAB_DIR/lab.env` (default
//! `/tmp/causeway-lab`); if no lab is running, starts one with `scripts/lab.sh start`
//! (root needed, as for Samba itself).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use causeway_agent::ad::{bind_outcome, parse_bind_diagnostic, AdBindReason};
use causeway_credential::{Password, PasswordError, SignInOutcome};
use ldap3::{LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry};

use common::{admin, lab, parse_env, read_attr, set_lockout_time_zero, tls_config, Lab};

fn settings(lab: &Lab) -> LdapConnSettings {
    LdapConnSettings::new()
        .set_config(tls_config(Some(&PathBuf::from(lab.get("AD_CA_CERT")))))
        .set_conn_timeout(Duration::from_secs(10))
}

/// One simple bind on a fresh connection, as the agent will do it.
async fn bind(url: &str, settings: LdapConnSettings, name: &str, password: &str) -> LdapResult {
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    ldap3::drive!(conn);
    let res = ldap
        .simple_bind(name, password)
        .await
        .expect("bind round trip");
    let _ = ldap.unbind().await;
    res
}

async fn lockout_time(lab: &Lab, dn: &str) -> String {
    let mut ldap = admin(lab).await;
    let (entries, _) = ldap
        .search(dn, Scope::Base, "(objectClass=user)", vec!["lockoutTime"])
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    let _ = ldap.unbind().await;
    let entry = SearchEntry::construct(entries.into_iter().next().expect("user exists"));
    entry
        .attrs
        .get("lockoutTime")
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| "0".into())
}

fn data_code(res: &LdapResult) -> Option<u32> {
    parse_bind_diagnostic(&res.text).map(AdBindReason::code)
}

/// The table at the heart of the lab: every account, its right password, and exactly what
/// AD answers (result code, `data` code) and what that means for a sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_account_gets_the_bind_result_ad_gives() {
    let lab = lab();
    let url = lab.get("AD_LDAPS_URL");
    // Leave erin as documented (locked); make sure nothing else is left locked by earlier runs.
    let cases: &[(&str, u32, Option<u32>, SignInOutcome)] = &[
        ("alice", 0, None, SignInOutcome::Success),
        ("olivia-staff", 0, None, SignInOutcome::Success),
        (
            "bob-disabled",
            49,
            Some(0x533),
            SignInOutcome::AccountDisabled,
        ),
        (
            "carol-mustchange",
            49,
            Some(0x773),
            SignInOutcome::PasswordMustChange,
        ),
        (
            "dave-expired-account",
            49,
            Some(0x701),
            SignInOutcome::AccountExpired,
        ),
        ("erin-locked", 49, Some(0x775), SignInOutcome::AccountLocked),
        (
            "frank-pwdexpired",
            49,
            Some(0x532),
            SignInOutcome::PasswordExpired,
        ),
        (
            "gina-hours",
            49,
            Some(0x530),
            SignInOutcome::LogonNotPermitted,
        ),
        (
            "hank-workstation",
            49,
            Some(0x531),
            SignInOutcome::LogonNotPermitted,
        ),
    ];
    // Undo lockouts left by earlier runs (erin stays locked: that is her documented state).
    for &(sam, ..) in cases.iter().filter(|c| c.0 != "erin-locked") {
        set_lockout_time_zero(lab, lab.user(sam, "DN")).await;
    }
    for &(sam, rc, data, outcome) in cases {
        for name_field in ["UPN", "DN"] {
            let res = bind(
                url,
                settings(lab),
                lab.user(sam, name_field),
                lab.user(sam, "PASSWORD"),
            )
            .await;
            assert_eq!(
                (res.rc, data_code(&res)),
                (rc, data),
                "{sam} by {name_field}: {res:?}"
            );
            assert_eq!(
                bind_outcome(res.rc, &res.text),
                outcome,
                "{sam}: {}",
                res.text
            );
        }
    }
    // The admin signs in too (the lab's own sanity check).
    let res = bind(
        url,
        settings(lab),
        lab.get("AD_ADMIN_UPN"),
        lab.get("AD_ADMIN_PASSWORD"),
    )
    .await;
    assert_eq!(res.rc, 0, "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_user_are_both_52e_on_samba() {
    let lab = lab();
    let url = lab.get("AD_LDAPS_URL");
    // A wrong password on an account that is not locked: 52e, whatever the account's state.
    // (olivia is used so that alice's bad-password count stays untouched for other tests.)
    for sam in ["olivia-staff", "bob-disabled", "carol-mustchange"] {
        let res = bind(
            url,
            settings(lab),
            lab.user(sam, "UPN"),
            "Not-The-Password-1",
        )
        .await;
        assert_eq!(
            (res.rc, data_code(&res)),
            (49, Some(0x52e)),
            "{sam}: {res:?}"
        );
        assert_eq!(
            bind_outcome(res.rc, &res.text),
            SignInOutcome::InvalidCredentials
        );
    }
    // The locked account answers 775 even to a wrong password.
    let res = bind(
        url,
        settings(lab),
        lab.user("erin-locked", "UPN"),
        "Not-The-Password-1",
    )
    .await;
    assert_eq!(data_code(&res), Some(0x775), "{res:?}");
    // Samba never says 525: an unknown user looks like a wrong password.
    let unknown = format!("nobody-here@{}", lab.get("AD_DNS_DOMAIN"));
    let res = bind(url, settings(lab), &unknown, "Not-The-Password-1").await;
    assert_eq!((res.rc, data_code(&res)), (49, Some(0x52e)), "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_password_never_reaches_a_bind() {
    let lab = lab();
    // Samba refuses DN + empty password with 52e; a Windows DC would treat it as an
    // anonymous bind and answer *success*. So the credential core refuses it first.
    let res = bind(
        lab.get("AD_LDAPS_URL"),
        settings(lab),
        lab.user("alice", "DN"),
        "",
    )
    .await;
    assert_eq!((res.rc, data_code(&res)), (49, Some(0x52e)), "{res:?}");
    assert_eq!(
        Password::new(String::new()).err(),
        Some(PasswordError::Empty)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ldap_is_refused_and_starttls_works() {
    let lab = lab();
    let plain = lab.get("AD_LDAP_URL");
    let res = bind(
        plain,
        settings(lab),
        lab.user("alice", "UPN"),
        lab.user("alice", "PASSWORD"),
    )
    .await;
    assert_eq!(res.rc, 8, "Samba requires TLS for simple binds: {res:?}");
    assert!(
        res.text.contains("Transport encryption required"),
        "{}",
        res.text
    );
    assert_eq!(
        bind_outcome(res.rc, &res.text),
        SignInOutcome::DirectoryUnavailable
    );

    let res = bind(
        plain,
        settings(lab).set_starttls(true),
        lab.user("alice", "UPN"),
        lab.user("alice", "PASSWORD"),
    )
    .await;
    assert_eq!(res.rc, 0, "StartTLS then bind: {res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_really_verified() {
    let lab = lab();
    // Without the lab CA in the trust store, the LDAPS handshake must fail.
    let untrusting = LdapConnSettings::new()
        .set_config(tls_config(None))
        .set_conn_timeout(Duration::from_secs(10));
    let r = LdapConnAsync::with_settings(untrusting, lab.get("AD_LDAPS_URL")).await;
    assert!(
        r.is_err(),
        "a DC certificate from an unknown CA was accepted"
    );
}

/// The lockout account: three wrong passwords pass as 52e, the fourth bind (even with the
/// right password) is 775 and AD records `lockoutTime`; an admin reset unlocks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_account_locks_after_its_threshold() {
    let lab = lab();
    let url = lab.get("AD_LDAPS_URL");
    let dn = lab.user("ivan-lockout", "DN");
    let upn = lab.user("ivan-lockout", "UPN");
    let threshold: u32 = lab.get("AD_PSO_LOCKOUT_THRESHOLD").parse().expect("number");
    assert!(threshold >= 1);
    set_lockout_time_zero(lab, dn).await;
    assert_eq!(lockout_time(lab, dn).await, "0");

    for i in 1..=threshold {
        let res = bind(url, settings(lab), upn, &format!("Wrong-Guess-{i}")).await;
        assert_eq!(data_code(&res), Some(0x52e), "bad bind {i}: {res:?}");
    }
    let res = bind(
        url,
        settings(lab),
        upn,
        lab.user("ivan-lockout", "PASSWORD"),
    )
    .await;
    assert_eq!(
        data_code(&res),
        Some(0x775),
        "after {threshold} bad binds: {res:?}"
    );
    assert_eq!(
        bind_outcome(res.rc, &res.text),
        SignInOutcome::AccountLocked
    );
    assert_ne!(lockout_time(lab, dn).await, "0", "AD records the lockout");

    set_lockout_time_zero(lab, dn).await;
    let res = bind(
        url,
        settings(lab),
        upn,
        lab.user("ivan-lockout", "PASSWORD"),
    )
    .await;
    assert_eq!(res.rc, 0, "unlocked again: {res:?}");
}

#[test]
fn env_parser_keeps_only_key_value_lines() {
    let env = parse_env("AD_HOST=127.0.0.2\nnoise line\nlower=x\nAD_BASE_DN=DC=lab,DC=x\n");
    assert_eq!(env.len(), 2);
    assert_eq!(env["AD_BASE_DN"], "DC=lab,DC=x");
}

/// The domain-wide policy (not a PSO) locks an account after `AD_LOCKOUT_THRESHOLD` bad
/// passwords: this is the threshold the hub's smart lockout must stay below. Uses the
/// account reserved for it, so no other test is disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_lockout_threshold_applies() {
    let lab = lab();
    let url = lab.get("AD_LDAPS_URL");
    let dn = lab.user("kim-domainlock", "DN");
    let upn = lab.user("kim-domainlock", "UPN");
    let threshold: u32 = lab.get("AD_LOCKOUT_THRESHOLD").parse().expect("number");
    let pso: u32 = lab.get("AD_PSO_LOCKOUT_THRESHOLD").parse().expect("number");
    assert!(threshold > pso, "the domain threshold is the looser one");
    set_lockout_time_zero(lab, dn).await;

    for i in 1..threshold {
        let res = bind(url, settings(lab), upn, &format!("Domain-Guess-{i}")).await;
        assert_eq!(data_code(&res), Some(0x52e), "bad bind {i}: {res:?}");
    }
    // One below the threshold: still not locked.
    let res = bind(
        url,
        settings(lab),
        upn,
        lab.user("kim-domainlock", "PASSWORD"),
    )
    .await;
    assert_eq!(
        res.rc,
        0,
        "not yet locked after {} bad binds: {res:?}",
        threshold - 1
    );
    // A success resets the count, so the threshold takes `threshold` fresh failures.
    for i in 1..=threshold {
        let res = bind(url, settings(lab), upn, &format!("Domain-Guess-{i}")).await;
        assert_eq!(data_code(&res), Some(0x52e), "bad bind {i}: {res:?}");
    }
    let res = bind(
        url,
        settings(lab),
        upn,
        lab.user("kim-domainlock", "PASSWORD"),
    )
    .await;
    assert_eq!(
        data_code(&res),
        Some(0x775),
        "locked after {threshold}: {res:?}"
    );
    assert_ne!(lockout_time(lab, dn).await, "0");
    set_lockout_time_zero(lab, dn).await;
    let res = bind(
        url,
        settings(lab),
        upn,
        lab.user("kim-domainlock", "PASSWORD"),
    )
    .await;
    assert_eq!(res.rc, 0, "unlocked: {res:?}");
}

/// Runs `scripts/lab/provision-users.sh n` for the lab in OU=`ou`; its KEY=VALUE output.
fn provision_bench_users(lab: &Lab, n: u32, ou: &str) -> std::collections::HashMap<String, String> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab/provision-users.sh");
    let out = std::process::Command::new(&script)
        .arg(n.to_string())
        .env("CAUSEWAY_LAB_DIR", lab.get("LAB_DIR"))
        .env("BENCH_OU", ou)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "provision-users.sh failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_env(&String::from_utf8_lossy(&out.stdout))
}

/// The benchmark users' script (here with 30 users in their own OU, not the benchmark's):
/// every user carries the attributes an import reads, a second call adds nothing, and a
/// user deleted since is added back on the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_users_are_provisioned_once_and_repaired() {
    let lab = lab();
    let ou = "BenchLabTest";
    let first = provision_bench_users(lab, 30, ou);
    assert_eq!(first["BENCH_USERS"], "30", "{first:?}");
    let again = provision_bench_users(lab, 30, ou);
    assert_eq!(
        (again["BENCH_USERS"].as_str(), again["BENCH_ADDED"].as_str()),
        ("30", "0"),
        "{again:?}"
    );

    let base = format!("OU={ou},{}", lab.get("AD_BASE_DN"));
    assert_eq!(again["BENCH_OU_DN"], base);
    let mut ldap = admin(lab).await;
    let (entries, _) = ldap
        .search(
            &base,
            Scope::OneLevel,
            "(objectClass=user)",
            vec![
                "sAMAccountName",
                "userPrincipalName",
                "mail",
                "givenName",
                "sn",
                "displayName",
                "department",
                "employeeID",
                "userAccountControl",
            ],
        )
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    assert_eq!(entries.len(), 30);
    let dns = lab.get("AD_DNS_DOMAIN");
    let e = entries
        .into_iter()
        .map(SearchEntry::construct)
        .find(|e| e.attrs["sAMAccountName"] == ["bench00029"])
        .expect("bench00029");
    assert_eq!(e.attrs["userPrincipalName"], [format!("bench00029@{dns}")]);
    assert_eq!(e.attrs["mail"], [format!("bench00029@{dns}")]);
    assert_eq!(e.attrs["employeeID"], ["E0000029"]);
    assert_eq!(e.attrs["userAccountControl"], ["512"], "enabled");
    for a in ["givenName", "sn", "displayName", "department"] {
        assert!(e.attrs.get(a).is_some_and(|v| !v[0].is_empty()), "{a}");
    }

    let gone = format!("CN=bench00007,{base}");
    ldap.delete(&gone)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let _ = ldap.unbind().await;
    let repaired = provision_bench_users(lab, 30, ou);
    assert_eq!(
        (
            repaired["BENCH_USERS"].as_str(),
            repaired["BENCH_ADDED"].as_str()
        ),
        ("30", "1"),
        "{repaired:?}"
    );
    assert_eq!(read_attr(lab, &gone, "sAMAccountName").await, "bench00007");
}
