//! Pass-through authentication end to end against the lab's real Samba AD: the hub seals
//! each check to an agent, the agent opens it and binds to the DC, and the outcome comes
//! back. These tests drive the hub through its crate API, as the sign-in page will.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use causeway_agent::channel::{self, Identity};
use causeway_agent::validator::{
    DcTarget, DirectorySettings, LoginResolution, Transport, Validator,
};
use causeway_credential::{AgentKeyPair, EnvelopeOpener, Password, SignInOutcome};
use causeway_federation::hub::{AgentPeer, CheckRequest, Hub, HubConfig};
use common::{lab, tls_config, Lab};

fn directory(lab: &Lab, dcs: Vec<DcTarget>) -> DirectorySettings {
    DirectorySettings {
        dcs,
        tls: tls_config(Some(&PathBuf::from(lab.get("AD_CA_CERT")))),
        op_timeout: Duration::from_secs(3),
        pool_per_dc: 8,
        cool_down: Duration::from_secs(10),
        login: LoginResolution::AsTyped,
    }
}

fn ldaps(lab: &Lab) -> DcTarget {
    DcTarget {
        url: lab.get("AD_LDAPS_URL").into(),
        transport: Transport::Ldaps,
    }
}

/// Connects one in-process agent to `hub` over a duplex stream; returns its task.
fn attach_agent(
    hub: &Arc<Hub>,
    agent_id: &str,
    settings: DirectorySettings,
) -> tokio::task::JoinHandle<()> {
    let keys = AgentKeyPair::generate();
    let peer = AgentPeer {
        agent_id: agent_id.into(),
        hpke_public_key: keys.public().clone(),
    };
    let validator = Arc::new(Validator::new(EnvelopeOpener::new(keys), settings));
    let (hub_side, agent_side) = tokio::io::duplex(64 * 1024);
    let h = hub.clone();
    tokio::spawn(async move {
        let _ = h.serve_channel(hub_side, peer).await;
    });
    let me = Identity {
        agent_id: agent_id.into(),
        max_in_flight: 32,
        renewer: None,
    };
    tokio::spawn(async move {
        let _ = channel::run(agent_side, &me, validator, |_| {}).await;
    })
}

async fn wait_for_agents(hub: &Hub, n: usize) {
    for _ in 0..200 {
        if hub.connected_agents().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("agents did not connect");
}

fn req(user: &str, password: &str) -> CheckRequest {
    CheckRequest {
        user_name: user.into(),
        password: Password::new(password.into()).expect("valid"),
        source: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_through_hub_and_agent() {
    let lab = lab();
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let _agent = attach_agent(
        &hub,
        "agt-0000000000000001",
        directory(lab, vec![ldaps(lab)]),
    );
    wait_for_agents(&hub, 1).await;
    let cases = [
        ("alice", None, SignInOutcome::Success),
        (
            "alice",
            Some("Wrong-Password-1"),
            SignInOutcome::InvalidCredentials,
        ),
        ("bob-disabled", None, SignInOutcome::AccountDisabled),
        ("carol-mustchange", None, SignInOutcome::PasswordMustChange),
        ("dave-expired-account", None, SignInOutcome::AccountExpired),
        ("erin-locked", None, SignInOutcome::AccountLocked),
        ("frank-pwdexpired", None, SignInOutcome::PasswordExpired),
        ("gina-hours", None, SignInOutcome::LogonNotPermitted),
        ("hank-workstation", None, SignInOutcome::LogonNotPermitted),
    ];
    for (sam, wrong, want) in cases {
        let pw = wrong.unwrap_or(lab.user(sam, "PASSWORD"));
        let got = hub.check(req(lab.user(sam, "UPN"), pw)).await;
        assert_eq!(got, want, "{sam}");
    }
    // Samba answers 52e for an unknown user: a wrong password, never "directory down".
    let unknown = format!("nobody-here@{}", lab.get("AD_DNS_DOMAIN"));
    assert_eq!(
        hub.check(req(&unknown, "Whatever-1")).await,
        SignInOutcome::InvalidCredentials
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agent_means_directory_unavailable() {
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    assert_eq!(
        hub.check(req("alice@x", "Blue-Harbor-41")).await,
        SignInOutcome::DirectoryUnavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_first_dc_fails_over() {
    let lab = lab();
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    // Nothing listens on 127.0.0.1:1 — a dead DC first in the list.
    let dead = DcTarget {
        url: "ldaps://127.0.0.1:1".into(),
        transport: Transport::Ldaps,
    };
    let _agent = attach_agent(
        &hub,
        "agt-0000000000000002",
        directory(lab, vec![dead, ldaps(lab)]),
    );
    wait_for_agents(&hub, 1).await;
    for _ in 0..3 {
        assert_eq!(
            hub.check(req(lab.user("alice", "UPN"), lab.user("alice", "PASSWORD")))
                .await,
            SignInOutcome::Success
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_dcs_dead_is_directory_unavailable_not_a_wrong_password() {
    let lab = lab();
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let dead = DcTarget {
        url: "ldaps://127.0.0.1:1".into(),
        transport: Transport::Ldaps,
    };
    let _agent = attach_agent(&hub, "agt-0000000000000003", directory(lab, vec![dead]));
    wait_for_agents(&hub, 1).await;
    assert_eq!(
        hub.check(req(lab.user("alice", "UPN"), "Wrong-Anyway-1"))
            .await,
        SignInOutcome::DirectoryUnavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_fails_no_sign_in() {
    common::init_logs();
    let lab = lab();
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let a = attach_agent(
        &hub,
        "agt-00000000000000a1",
        directory(lab, vec![ldaps(lab)]),
    );
    let _b = attach_agent(
        &hub,
        "agt-00000000000000b2",
        directory(lab, vec![ldaps(lab)]),
    );
    wait_for_agents(&hub, 2).await;
    let upn = lab.user("alice", "UPN").to_owned();
    let pw = lab.user("alice", "PASSWORD").to_owned();
    let mut tasks = Vec::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..200 {
        let (hub, upn, pw, answered) = (hub.clone(), upn.clone(), pw.clone(), answered.clone());
        // Spread over 400 ms, so checks are in flight on both agents when one dies.
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 2)).await;
            let o = hub.check(req(&upn, &pw)).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            o
        }));
    }
    // Mid-load by what happened, not by a fixed pause: once the first answers are back.
    tokio::time::timeout(Duration::from_secs(60), async {
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the first answers came back");
    a.abort(); // the agent process dies mid-load
    let mut failures = Vec::new();
    for t in tasks {
        let o = t.await.expect("task");
        if o != SignInOutcome::Success {
            failures.push(o);
        }
    }
    assert!(
        failures.is_empty(),
        "sign-ins failed while one of two agents died: {failures:?}"
    );
}

/// An attacker guessing passwords locks the user at the hub, never in AD: AD sees fewer
/// bad passwords than its own threshold, and `lockoutTime` stays 0. A wrong password
/// repeated is counted once and reaches AD once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_lockout_shields_ad() {
    let lab = lab();
    let dn = lab.user("liam-smartlock", "DN");
    let upn = lab.user("liam-smartlock", "UPN");
    let domain_threshold: u32 = lab.get("AD_LOCKOUT_THRESHOLD").parse().expect("number");
    common::set_lockout_time_zero(lab, dn).await;
    // A right password resets AD's bad-password count to 0 before we start.
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let _agent = attach_agent(
        &hub,
        "agt-00000000000000c3",
        directory(lab, vec![ldaps(lab)]),
    );
    wait_for_agents(&hub, 1).await;
    assert_eq!(
        hub.check(req(upn, lab.user("liam-smartlock", "PASSWORD")))
            .await,
        SignInOutcome::Success
    );
    assert_eq!(common::read_attr(lab, dn, "badPwdCount").await, "0");

    let hub_threshold = hub.lockout().policy().threshold;
    assert!(
        hub_threshold < domain_threshold,
        "the default must stay below AD's threshold"
    );
    let mut outcomes = Vec::new();
    for i in 0..10 {
        outcomes.push(hub.check(req(upn, &format!("Attacker-Guess-{i}"))).await);
    }
    let t = hub_threshold as usize;
    assert!(
        outcomes[..t]
            .iter()
            .all(|o| *o == SignInOutcome::InvalidCredentials),
        "{outcomes:?}"
    );
    assert!(
        outcomes[t..]
            .iter()
            .all(|o| *o == SignInOutcome::AccountLocked),
        "{outcomes:?}"
    );
    // Even the right password is held at the hub while locked.
    assert_eq!(
        hub.check(req(upn, lab.user("liam-smartlock", "PASSWORD")))
            .await,
        SignInOutcome::AccountLocked
    );
    assert_eq!(
        common::read_attr(lab, dn, "lockoutTime").await,
        "0",
        "AD never locked the account"
    );
    assert_eq!(
        common::read_attr(lab, dn, "badPwdCount").await,
        hub_threshold.to_string(),
        "AD saw only the guesses the hub let through"
    );

    // A fresh hub (as after the lock expired): one wrong password repeated five times.
    let hub2 = Hub::new(HubConfig::new("endpoint-test"));
    let _agent2 = attach_agent(
        &hub2,
        "agt-00000000000000c4",
        directory(lab, vec![ldaps(lab)]),
    );
    wait_for_agents(&hub2, 1).await;
    assert_eq!(
        hub2.check(req(upn, lab.user("liam-smartlock", "PASSWORD")))
            .await,
        SignInOutcome::Success
    );
    for _ in 0..5 {
        assert_eq!(
            hub2.check(req(upn, "Same-Wrong-Guess-1")).await,
            SignInOutcome::InvalidCredentials
        );
    }
    assert_eq!(
        common::read_attr(lab, dn, "badPwdCount").await,
        "1",
        "the repeat reached AD once"
    );
    assert_eq!(
        hub2.check(req(upn, lab.user("liam-smartlock", "PASSWORD")))
            .await,
        SignInOutcome::Success,
        "one repeated guess does not lock"
    );
}

/// Sign-in by another attribute than the UPN: the agent searches as the service account
/// and binds with the DN it finds. A bare `alice` fails when bound directly (Samba answers
/// 52e), so success proves the search ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_login_id_through_a_service_account_search() {
    let lab = lab();
    let mut settings = directory(lab, vec![ldaps(lab)]);
    settings.login = LoginResolution::Attribute {
        attribute: "sAMAccountName".into(),
        base: lab.get("AD_BASE_DN").into(),
        service_dn: lab.user("svc-sync", "DN").into(),
        service_password: causeway_credential::Secret::new(lab.user("svc-sync", "PASSWORD").into()),
    };
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let _agent = attach_agent(&hub, "agt-00000000000000e5", settings);
    wait_for_agents(&hub, 1).await;
    assert_eq!(
        hub.check(req("alice", lab.user("alice", "PASSWORD"))).await,
        SignInOutcome::Success
    );
    assert_eq!(
        hub.check(req("bob-disabled", lab.user("bob-disabled", "PASSWORD")))
            .await,
        SignInOutcome::AccountDisabled
    );
    assert_eq!(
        hub.check(req("no-such-person", "Whatever-1")).await,
        SignInOutcome::UnknownUser
    );
    // An LDAP filter injection is a name like any other: escaped, found nowhere.
    assert_eq!(
        hub.check(req("*)(sAMAccountName=alice", "Whatever-1"))
            .await,
        SignInOutcome::UnknownUser
    );
}

/// A DC reached over plain LDAP with StartTLS works like LDAPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_domain_controller() {
    let lab = lab();
    let dc = DcTarget {
        url: lab.get("AD_LDAP_URL").into(),
        transport: Transport::StartTls,
    };
    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let _agent = attach_agent(&hub, "agt-00000000000000f6", directory(lab, vec![dc]));
    wait_for_agents(&hub, 1).await;
    assert_eq!(
        hub.check(req(lab.user("alice", "UPN"), lab.user("alice", "PASSWORD")))
            .await,
        SignInOutcome::Success
    );
    assert_eq!(
        hub.check(req(
            lab.user("carol-mustchange", "UPN"),
            lab.user("carol-mustchange", "PASSWORD")
        ))
        .await,
        SignInOutcome::PasswordMustChange
    );
}

/// Sign-in methods per domain, against the lab: PTA while an agent is connected; with no
/// agent, hash sync only where the domain allows the fallback; cloud-only users always by
/// their verifier; a domain that is not ours is an unknown user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pta_with_phs_fallback_when_no_agent_is_connected() {
    use causeway_credential::PhsVerifier;
    use causeway_federation::signin::{Authenticator, Method, Path};
    use causeway_store::{AdUser, ImmutableId, NewUser, SqliteStore, Users as _};
    let lab = lab();
    let dir = std::env::temp_dir().join(format!("causeway-signin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let store = Arc::new(SqliteStore::open(&dir.join("directory.sqlite")).expect("store"));
    let (upn, right) = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    // What password hash sync stores for alice: a verifier of her AD password.
    let alice = AdUser {
        id: ImmutableId::from_guid_bytes([0xa1; 16]),
        upn: upn.into(),
        display_name: Some("Alice Lab".into()),
        mail: None,
        disabled: false,
    };
    let now = std::time::SystemTime::now();
    store
        .upsert_ad_user(
            &alice,
            Some(&PhsVerifier::derive(
                &Password::new(right.into()).expect("pw"),
            )),
            "test-sync",
            now,
        )
        .await
        .expect("sync");
    store
        .add_cloud_user(
            &NewUser {
                upn: "breakglass@cloud.example".into(),
                display_name: None,
                mail: None,
            },
            &PhsVerifier::derive(&Password::new("Glass-Pw-9".into()).expect("pw")),
            "test",
            now,
        )
        .await
        .expect("cloud user");
    let pw = |s: &str| Password::new(s.into()).expect("valid");
    let domain = lab.get("AD_DNS_DOMAIN").to_owned();

    let hub = Hub::new(HubConfig::new("endpoint-test"));
    let auth = Authenticator::new(
        hub.clone(),
        store.clone(),
        vec![(domain.clone(), Method::PtaWithPhsFallback)],
    );
    // No agent yet: the fallback answers from the verifier.
    assert_eq!(
        auth.authenticate(upn, pw(right), None).await,
        (SignInOutcome::Success, Path::HashSync)
    );
    assert_eq!(
        auth.authenticate(upn, pw("Wrong-Fallback-1"), None).await,
        (SignInOutcome::InvalidCredentials, Path::HashSync)
    );
    // With an agent: pass-through.
    let _agent = attach_agent(
        &hub,
        "agt-00000000000000f7",
        directory(lab, vec![ldaps(lab)]),
    );
    wait_for_agents(&hub, 1).await;
    assert_eq!(
        auth.authenticate(upn, pw(right), None).await,
        (SignInOutcome::Success, Path::PassThrough)
    );
    // Cloud-only users never go to AD; other domains are unknown.
    assert_eq!(
        auth.authenticate("breakglass@cloud.example", pw("Glass-Pw-9"), None)
            .await,
        (SignInOutcome::Success, Path::HashSync)
    );
    assert_eq!(
        auth.authenticate("someone@elsewhere.example", pw("Whatever-1"), None)
            .await
            .0,
        SignInOutcome::UnknownUser
    );

    // PTA only, no agent: the directory is unavailable — not a wrong password.
    let strict = Authenticator::new(
        Hub::new(HubConfig::new("endpoint-test")),
        store.clone(),
        vec![(domain, Method::Pta)],
    );
    assert_eq!(
        strict.authenticate(upn, pw(right), None).await,
        (SignInOutcome::DirectoryUnavailable, Path::PassThrough)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
