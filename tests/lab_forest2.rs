//! The lab's second forest, checked for real: a second Samba AD DC (`AD2_*` facts, its own
//! realm, address and CA) that its own least-privilege `svc-sync` reads over LDAPS with the
//! same DirSync rights as the first forest's, that is independent of the first forest
//! (another domain SID, another CA), and that holds `dup`, whose UPN is also a user's in
//! the first forest: the cross-forest conflict a multi-forest sync must quarantine.
//!
//! Runs against the lab of `$CAUSEWAY_LAB_DIR/lab.env` like `tests/lab.rs`, starting one
//! with `scripts/lab.sh start` (both forests) if none runs.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use causeway_sync::ad::dirsync::Cookie;
use causeway_sync::ad::entry::{Entry, EntryError, Guid, Sid};
use causeway_sync::ad::import;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use common::{lab, tls_config, Lab};

/// An LDAPS connection to forest `prefix`'s DC, trusting only `ca_prefix`'s CA.
async fn connect(lab: &Lab, prefix: &str, ca_prefix: &str) -> ldap3::result::Result<Ldap> {
    let ca = lab.get(&format!("{ca_prefix}_CA_CERT"));
    let (conn, ldap) = LdapConnAsync::with_settings(
        LdapConnSettings::new()
            .set_config(tls_config(Some(Path::new(ca))))
            .set_conn_timeout(Duration::from_secs(10)),
        lab.get(&format!("{prefix}_LDAPS_URL")),
    )
    .await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// Bound as `who` (`SVC_SYNC` or `ADMIN`) of forest `prefix`, over CA-verified LDAPS.
async fn bound(lab: &Lab, prefix: &str, who: &str) -> Ldap {
    let mut ldap = connect(lab, prefix, prefix)
        .await
        .unwrap_or_else(|e| panic!("connect to {prefix}: {e}"));
    ldap.simple_bind(
        lab.get(&format!("{prefix}_{who}_DN")),
        lab.get(&format!("{prefix}_{who}_PASSWORD")),
    )
    .await
    .expect("bind round trip")
    .success()
    .unwrap_or_else(|e| panic!("{prefix} {who} bind refused: {e}"));
    ldap
}

/// Every live object of forest `prefix` with this UPN: (DN, objectGUID).
async fn by_upn(ldap: &mut Ldap, base: &str, upn: &str) -> Vec<(String, Guid)> {
    let filter = format!("(userPrincipalName={})", ldap3::ldap_escape(upn));
    let (entries, _) = ldap
        .search(base, Scope::Subtree, &filter, vec!["objectGUID"])
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    entries
        .into_iter()
        .map(SearchEntry::construct)
        .map(|e| {
            let guid = Guid::from_bytes(&e.bin_attrs["objectGUID"][0]).expect("16-byte GUID");
            (e.dn, guid)
        })
        .collect()
}

/// The domain's SID (the domain object's own objectSid), as forest `prefix`'s svc-sync reads it.
async fn domain_sid(ldap: &mut Ldap, base: &str) -> Sid {
    let (entries, _) = ldap
        .search(base, Scope::Base, "(objectClass=domain)", vec!["objectSid"])
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    let e = SearchEntry::construct(entries.into_iter().next().expect("the domain object"));
    Sid::from_bytes(&e.bin_attrs["objectSid"][0]).expect("a SID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forest2_svc_sync_binds_over_ldaps_and_finds_the_conflict_user() {
    let lab = lab();
    let upn = lab.user_in("AD2", "dup", "UPN");
    assert_eq!(
        upn,
        lab.user_in("AD", "dup", "UPN"),
        "the lab promises one UPN in both forests"
    );
    assert_ne!(lab.get("AD2_BASE_DN"), lab.get("AD_BASE_DN"));

    let mut two = bound(lab, "AD2", "SVC_SYNC").await;
    let found2 = by_upn(&mut two, lab.get("AD2_BASE_DN"), upn).await;
    assert_eq!(found2.len(), 1, "{upn} in forest 2: {found2:?}");
    assert!(
        found2[0].0.eq_ignore_ascii_case(lab.get("AD2_DUP_DN")),
        "{}",
        found2[0].0
    );

    let mut one = bound(lab, "AD", "SVC_SYNC").await;
    let found1 = by_upn(&mut one, lab.get("AD_BASE_DN"), upn).await;
    assert_eq!(found1.len(), 1, "{upn} in forest 1: {found1:?}");
    assert!(
        found1[0].0.eq_ignore_ascii_case(lab.get("AD_DUP_DN")),
        "{}",
        found1[0].0
    );
    // Two objects, not one seen twice: what a sync must treat as a conflict.
    assert_ne!(found1[0].1, found2[0].1);

    // The conflict user signs in to its own forest with its own password only.
    let mut own = connect(lab, "AD2", "AD2").await.expect("connect");
    let res = own
        .simple_bind(upn, lab.user_in("AD2", "dup", "PASSWORD"))
        .await
        .expect("bind round trip");
    assert_eq!(res.rc, 0, "{res:?}");
    let mut other = connect(lab, "AD2", "AD2").await.expect("connect");
    let res = other
        .simple_bind(upn, lab.user_in("AD", "dup", "PASSWORD"))
        .await
        .expect("bind round trip");
    assert_eq!(res.rc, 49, "forest 1's password in forest 2: {res:?}");
    for mut l in [two, one, own, other] {
        let _ = l.unbind().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_forests_have_their_own_domain_sid_and_ca() {
    let lab = lab();
    let mut one = bound(lab, "AD", "SVC_SYNC").await;
    let mut two = bound(lab, "AD2", "SVC_SYNC").await;
    let sid1 = domain_sid(&mut one, lab.get("AD_BASE_DN")).await;
    let sid2 = domain_sid(&mut two, lab.get("AD2_BASE_DN")).await;
    assert!(sid1.as_str().starts_with("S-1-5-21-"), "{}", sid1.as_str());
    assert!(sid2.as_str().starts_with("S-1-5-21-"), "{}", sid2.as_str());
    assert_ne!(sid1, sid2, "two provisions, two domains");
    // Forest 2's users are forest 2's: their SIDs extend its domain SID, not forest 1's.
    let (users, _) = two
        .search(
            lab.get("AD2_BASE_DN"),
            Scope::Subtree,
            "(objectClass=user)",
            vec!["objectSid"],
        )
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    assert!(
        users.len() >= 4,
        "bob, carol, svc-sync, dup: {}",
        users.len()
    );
    for e in users.into_iter().map(SearchEntry::construct) {
        let sid = Sid::from_bytes(&e.bin_attrs["objectSid"][0]).expect("a SID");
        assert!(
            sid.as_str().starts_with(&format!("{}-", sid2.as_str())),
            "{}: {}",
            e.dn,
            sid.as_str()
        );
    }
    // Each DC's certificate chains to its own CA only.
    assert!(
        connect(lab, "AD2", "AD").await.is_err(),
        "forest 2's DC certificate verified under forest 1's CA"
    );
    assert!(
        connect(lab, "AD", "AD2").await.is_err(),
        "forest 1's DC certificate verified under forest 2's CA"
    );
    let _ = one.unbind().await;
    let _ = two.unbind().await;
}

/// One DirSync pass of forest 2 to the end, as its svc-sync.
async fn pass(ldap: &mut Ldap, base: &str, cookie: Cookie) -> (Vec<Entry>, Cookie) {
    let attrs = ["objectGUID", "objectClass", "isDeleted", "displayName"].map(str::to_owned);
    let mut out = Vec::new();
    let p = import::pass(
        ldap,
        base,
        &attrs,
        cookie,
        Duration::from_secs(30),
        |page, _| {
            for e in page {
                out.push(e?);
            }
            Ok::<_, EntryError>(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("forest 2 DirSync pass: {e}"));
    (out, p.cookie)
}

/// Forest 2's svc-sync has both rights the first forest's has: the replication rights
/// (DirSync at all) and List/Read on Deleted Objects (without it Samba silently leaves
/// deletions out of a delta).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forest2_svc_sync_reads_dirsync_deltas_with_deletions() {
    let lab = lab();
    let base = lab.get("AD2_BASE_DN");
    let mut adm = bound(lab, "AD2", "ADMIN").await;
    let mut sync = bound(lab, "AD2", "SVC_SYNC").await;
    let dn = format!("CN=forest2-probe-{},CN=Users,{base}", std::process::id());
    let _ = adm.delete(&dn).await;

    let (all, cookie) = pass(&mut sync, base, Cookie::default()).await;
    let dup = by_upn(&mut adm, base, lab.user_in("AD2", "dup", "UPN")).await;
    assert!(
        all.iter().any(|e| e.guid == dup[0].1),
        "the full pass has dup"
    );

    adm.add(
        &dn,
        vec![
            ("objectClass", HashSet::from(["contact"])),
            ("displayName", HashSet::from(["forest 2 probe"])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .expect("contact added");
    let (added, cookie) = pass(&mut sync, base, cookie).await;
    let probe = added
        .iter()
        .find(|e| e.dn.eq_ignore_ascii_case(&dn))
        .unwrap_or_else(|| panic!("the delta has the new contact: {added:?}"))
        .guid;

    adm.delete(&dn)
        .await
        .expect("delete round trip")
        .success()
        .expect("deleted");
    let (deleted, _) = pass(&mut sync, base, cookie).await;
    let e = deleted
        .iter()
        .find(|e| e.guid == probe)
        .expect("the delta after a delete carries the tombstone");
    assert!(e.deleted, "isDeleted: TRUE");
    let _ = sync.unbind().await;
    let _ = adm.unbind().await;
}
