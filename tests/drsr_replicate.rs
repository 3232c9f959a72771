//! causeway-drsr's replication driver against the lab's Samba DC over the sealed
//! transport, as `svc-sync` (the two replication rights, not an admin): a full
//! replication of the domain NC in pages, an incremental pass from its watermark, and a
//! one-object refresh, each finding alice with her encrypted `unicodePwd`.
//!
//! Runs against the lab described by `$CAUSEWAY_LAB_ENV` or started by `scripts/lab.sh`.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use causeway_credential::Password;
use causeway_drsr::msg::{Call, CallError};
use causeway_drsr::replicate::{Options, ReplicatedUser, Session};
use causeway_drsr::rpc::{Association, Credentials, Limits, Target, DRSUAPI};

use common::{lab, Lab};

/// The sealed association as the driver's transport (the lead's join adds this `impl`
/// to the crate; the test carries its own so it runs on this branch).
struct Rpc(Association);

impl Call for Rpc {
    fn call(
        &mut self,
        opnum: u16,
        stub: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, CallError>> + Send {
        let stub = stub.to_vec();
        async move { self.0.call(opnum, &stub).await.map_err(CallError::new) }
    }
}

async fn session(lab: &Lab, options: Options) -> Session<Rpc> {
    let target = Target {
        host: lab
            .get("AD_HOST")
            .parse()
            .expect("AD_HOST is an IP address"),
        port: None,
        server_name: lab.get("AD_DC_FQDN").to_owned(),
    };
    let creds = Credentials::Ntlm {
        domain: lab.get("AD_DOMAIN").to_owned(),
        user: lab.user("svc-sync", "SAM").to_owned(),
        password: Password::new(lab.user("svc-sync", "PASSWORD").to_owned())
            .expect("a valid password"),
    };
    let limits = Limits {
        connect_timeout: Duration::from_secs(5),
        call_timeout: Duration::from_secs(120),
        ..Limits::default()
    };
    let assoc = Association::connect(&target, &DRSUAPI, &creds, &limits)
        .await
        .expect("sealed bind to DRSUAPI as svc-sync");
    Session::open(Rpc(assoc), lab.get("AD_DNS_DOMAIN"), options)
        .await
        .expect("IDL_DRSBind, IDL_DRSDomainControllerInfo and IDL_DRSCrackNames")
}

fn assert_is_alice(lab: &Lab, u: &ReplicatedUser) {
    assert_eq!(u.dn, lab.user("alice", "DN"));
    assert_eq!(u.upn.as_deref(), Some(lab.user("alice", "UPN")));
    assert_eq!(u.user_account_control, Some(512));
    assert!(!u.deleted);
    // objectSid's last sub-authority, and an S-1-5-21 domain SID.
    assert_eq!(&u.sid[..2], &[1, 5]);
    assert_eq!(
        u.rid,
        u32::from_le_bytes(u.sid[u.sid.len() - 4..].try_into().expect("4 bytes"))
    );
    // [MS-DRSR] 4.1.10.6.11: 16-byte salt, CRC32, the DES-wrapped 16-byte NT hash.
    let pwd = u
        .unicode_pwd
        .as_ref()
        .expect("alice's encrypted unicodePwd");
    assert_eq!(pwd.as_bytes().len(), 36);
    let history = u.nt_pwd_history.as_ref().expect("alice's ntPwdHistory");
    assert_eq!((history.as_bytes().len() - 20) % 16, 0);
}

#[tokio::test]
#[allow(clippy::print_stdout)] // the figures are its output
async fn full_then_incremental_replication_as_svc_sync_finds_alice_with_her_encrypted_password() {
    let lab = lab();
    let mut s = session(
        lab,
        Options {
            // Small pages, so the watermark hand-back between pages is exercised.
            max_objects: 400,
            dc_host_name: Some(lab.get("AD_DC_FQDN").to_owned()),
            ..Options::default()
        },
    )
    .await;

    let started = Instant::now();
    let mut pass = s.full();
    let (mut pages, mut users, mut deleted, mut skipped, mut alice) = (0, 0, 0, 0, None);
    while let Some(page) = pass.next_page().await.expect("a GetNCChanges page") {
        pages += 1;
        users += page.users.len();
        skipped += page.skipped;
        deleted += page.users.iter().filter(|u| u.deleted).count();
        for u in page.users {
            if u.sam.as_deref() == Some("alice") {
                alice = Some(u);
            }
        }
        assert!(pages < 10_000, "the pass does not end");
    }
    let took = started.elapsed();
    let watermark = pass.watermark().expect("a completed pass").clone();
    println!(
        "full replication: {users} users ({deleted} tombstones), {skipped} other objects, {pages} pages in {:.2} s",
        took.as_secs_f64()
    );
    assert!(pages > 1, "more than one page ({pages})");
    assert!(users >= 12, "the lab's users ({users})");
    let alice = alice.expect("alice in the full replication");
    assert_is_alice(lab, &alice);
    assert!(watermark.highwater.high_prop_update > 0);
    assert!(!watermark.utd.is_empty());

    // Incremental from the watermark: only what changed since (other lab tests may be
    // changing a few objects meanwhile), never the whole domain again.
    let mut inc = s.incremental(&watermark);
    let mut changed = 0;
    while let Some(page) = inc.next_page().await.expect("an incremental page") {
        changed += page.users.len() + page.skipped;
    }
    let next = inc.watermark().expect("a completed incremental pass");
    assert!(next.highwater.high_prop_update >= watermark.highwater.high_prop_update);
    assert!(changed < users, "incremental returned {changed} objects");

    // One object on demand, by name, secrets included.
    let guid = s
        .find_user(lab.user("alice", "UPN"))
        .await
        .expect("CrackNames alice");
    assert_eq!(guid, alice.guid);
    let again = s
        .refresh_one(guid)
        .await
        .expect("EXOP_REPL_OBJ for alice")
        .expect("alice is a user");
    assert_is_alice(lab, &again);
    // A fresh salt per reply: the same hash, differently encrypted.
    assert_ne!(again.unicode_pwd, alice.unicode_pwd);
    s.close().await.expect("IDL_DRSUnbind");
}
