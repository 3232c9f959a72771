//! Two independent AD forests (the lab's two Samba DCs) in one sync configuration, one
//! connector each, exporting to one real endpoint: both forests' users arrive, each under
//! its own anchor and connector; a UPN both forests claim is kept by the object exported
//! first and the other is held back with an error naming both objects, the run goes on,
//! and the error clears by itself once the conflict is fixed in AD.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use causeway_store::{SqliteStore, Synced as _, Users as _};
use common::endpoint::{bin, Endpoint};
use common::{lab, tls_config, Lab};
use ldap3::{Ldap, Mod};

/// An administrator's connection to forest `prefix` (`AD` or `AD2`).
async fn admin_of(lab: &Lab, prefix: &str) -> Ldap {
    let get = |k: &str| lab.get(&format!("{prefix}_{k}")).to_owned();
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
        ldap3::LdapConnSettings::new().set_config(tls_config(Some(Path::new(&get("CA_CERT"))))),
        &get("LDAPS_URL"),
    )
    .await
    .expect("connect as admin");
    ldap3::drive!(conn);
    ldap.simple_bind(&get("ADMIN_DN"), &get("ADMIN_PASSWORD"))
        .await
        .expect("admin bind")
        .success()
        .expect("admin bind accepted");
    ldap
}

/// Makes `OU=cw-forests<tag>` in the forest with one user `sam` whose UPN is `upn`.
async fn ou_with_user(adm: &mut Ldap, base: &str, tag: &str, sam: &str, upn: &str) -> String {
    let ou = format!("OU=cw-forests{tag},{base}");
    let user = format!("CN={sam},{ou}");
    let _ = adm.delete(&user).await;
    let _ = adm.delete(&ou).await;
    adm.add(
        &ou,
        vec![("objectClass", HashSet::from(["organizationalUnit"]))],
    )
    .await
    .expect("add round trip")
    .success()
    .unwrap_or_else(|e| panic!("add {ou}: {e}"));
    adm.add(
        &user,
        vec![
            ("objectClass", HashSet::from(["user"])),
            ("sAMAccountName", HashSet::from([sam])),
            ("userPrincipalName", HashSet::from([upn])),
            ("displayName", HashSet::from([sam])),
            // Disabled and without a password: only its identity matters here.
            ("userAccountControl", HashSet::from(["546"])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .unwrap_or_else(|e| panic!("add {user}: {e}"));
    ou
}

fn connector(lab: &Lab, name: &str, prefix: &str, ou: &str, pw_file: &str) -> String {
    let get = |k: &str| lab.get(&format!("{prefix}_{k}")).to_owned();
    format!(
        "[[connector]]\nname = {name:?}\nkind = \"ad\"\nservers = [{:?}]\nca_file = {:?}\nbind_dn = {:?}\nbind_password_file = {pw_file:?}\nbase_dn = {:?}\ninclude_ous = [{ou:?}]\n\n",
        get("LDAPS_URL"),
        get("CA_CERT"),
        get("SVC_SYNC_DN"),
        get("BASE_DN"),
    )
}

fn sync(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("sync").args(args).arg("-c").arg(cfg);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run causeway sync");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_forests_sync_side_by_side_and_a_shared_upn_is_held_back_until_fixed() {
    let lab = lab();
    let tag = (std::process::id() % 100_000).to_string();
    let shared = format!("twin{tag}@{}", lab.get("AD2_SHARED_UPN_SUFFIX"));
    let mut adm1 = admin_of(lab, "AD").await;
    let mut adm2 = admin_of(lab, "AD2").await;
    let ou1 = ou_with_user(
        &mut adm1,
        lab.get("AD_BASE_DN"),
        &tag,
        &format!("twin{tag}"),
        &shared,
    )
    .await;
    let ou2 = ou_with_user(
        &mut adm2,
        lab.get("AD2_BASE_DN"),
        &tag,
        &format!("twin{tag}"),
        &shared,
    )
    .await;
    let only2 = format!("solo{tag}@lab2.causeway.test");
    adm2.add(
        &format!("CN=solo{tag},{ou2}"),
        vec![
            ("objectClass", HashSet::from(["user"])),
            (
                "sAMAccountName",
                HashSet::from([format!("solo{tag}").as_str()]),
            ),
            ("userPrincipalName", HashSet::from([only2.as_str()])),
            ("userAccountControl", HashSet::from(["546"])),
        ],
    )
    .await
    .expect("add round trip")
    .success()
    .expect("solo added");

    let ep = Endpoint::start("sync-forests", "", &[]);
    let store = SqliteStore::open(&ep.data().join("directory.sqlite")).expect("store");
    let dir = ep.dir.join("sync");
    std::fs::create_dir_all(&dir).expect("dir");
    for (file, key) in [
        ("one.pw", "AD_SVC_SYNC_PASSWORD"),
        ("two.pw", "AD2_SVC_SYNC_PASSWORD"),
    ] {
        let p = dir.join(file);
        std::fs::write(&p, format!("{}\n", lab.get(key))).expect("pw");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cfg = dir.join("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sync]\nstate_dir = \"state\"\nendpoints = [{:?}]\n\n{}{}",
            ep.url,
            connector(lab, "forest-one", "AD", &ou1, "one.pw"),
            connector(lab, "forest-two", "AD2", &ou2, "two.pw"),
        ),
    )
    .expect("config");
    let token = ep.cli(&["certs", "token", "--for", "sync", "--ttl", "10m"], None);
    let (ok, out) = sync(
        &cfg,
        &["register"],
        &[("CAUSEWAY_SYNC_TOKEN", token.trim())],
    );
    assert!(ok, "{out}");
    let (ok, out) = sync(&cfg, &["run", "--once"], &[]);
    assert!(
        ok,
        "the run goes on past the conflict: {out}\n{}",
        ep.logs()
    );

    // Forest one exported first and keeps the UPN; forest two's other user arrived.
    let held = store
        .user_by_upn(&shared)
        .await
        .expect("read")
        .expect("one holds it");
    let one_anchor = {
        let o = store
            .synced_object(held.id.as_str())
            .await
            .expect("read")
            .expect("synced");
        assert_eq!(o.connector, "forest-one");
        assert!(o.object.dn.contains("DC=lab,"), "{}", o.object.dn);
        o.object.anchor
    };
    let solo = store
        .user_by_upn(&only2)
        .await
        .expect("read")
        .expect("forest two's user");
    let o = store
        .synced_object(solo.id.as_str())
        .await
        .expect("read")
        .expect("synced");
    assert_eq!(o.connector, "forest-two");

    // The conflict is on record for forest two's run, naming both objects.
    let (ok, runs) = sync(&cfg, &["runs", "--connector", "forest-two"], &[]);
    assert!(ok, "{runs}");
    assert!(runs.contains(&shared), "the run names the UPN: {runs}");
    assert!(
        runs.contains(&one_anchor),
        "and the object that holds it: {runs}"
    );
    assert!(
        runs.contains(&format!("CN=twin{tag},OU=cw-forests{tag},DC=lab2")),
        "and its own DN: {runs}"
    );

    // Fixed in forest two: the next run exports it, and its run has no error.
    let fixed = format!("twin{tag}-two@{}", lab.get("AD2_SHARED_UPN_SUFFIX"));
    adm2.modify(
        &format!("CN=twin{tag},{ou2}"),
        vec![Mod::Replace(
            "userPrincipalName",
            HashSet::from([fixed.as_str()]),
        )],
    )
    .await
    .expect("modify round trip")
    .success()
    .expect("renamed");
    let (ok, out) = sync(&cfg, &["run", "--once"], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("forest-two: run") && out.contains("0 errors"),
        "{out}"
    );
    let two = store
        .user_by_upn(&fixed)
        .await
        .expect("read")
        .expect("exported now");
    assert_ne!(two.id, held.id, "each forest's object under its own anchor");

    for (adm, ou) in [(&mut adm1, &ou1), (&mut adm2, &ou2)] {
        let (entries, _) = adm
            .search(ou, ldap3::Scope::OneLevel, "(objectClass=*)", vec!["1.1"])
            .await
            .expect("search")
            .success()
            .expect("ok");
        for e in entries {
            let _ = adm.delete(&ldap3::SearchEntry::construct(e).dn).await;
        }
        let _ = adm.delete(ou).await;
    }
}
