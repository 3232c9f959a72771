use std::path::Path;
use std::time::Duration;

use super::*;
use crate::ad::map::map_at;
use crate::config::{ConnectorKind, SyncConfig};

fn g(n: u8) -> Guid {
    Guid::from_bytes(&[n; 16]).expect("16 bytes")
}

fn attrs(pairs: &[(&str, &[&[u8]])]) -> BTreeMap<String, Values> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                Values {
                    values: v.iter().map(|b| b.to_vec()).collect(),
                    ..Values::default()
                },
            )
        })
        .collect()
}

/// An `inetOrgPerson` as the lab's slapd holds one (no `displayName`).
fn person(extra: &[(&str, &[&[u8]])]) -> BTreeMap<String, Values> {
    let mut a = attrs(&[
        ("objectClass", &[b"inetOrgPerson", b"sambaSamAccount"]),
        ("uid", &[b"dora"]),
        ("cn", &[b"Dora Example"]),
        ("sn", &[b"Example"]),
        ("givenName", &[b"Dora"]),
        ("mail", &[b"dora@ldap.example"]),
        ("departmentNumber", &[b"4711"]),
        ("employeeNumber", &[b"E-17"]),
        ("manager", &[b"uid=boss,ou=people,dc=example"]),
    ]);
    a.extend(attrs(extra));
    a
}

fn ol() -> Mapping {
    Mapping::for_kind(ConnectorKind::OpenLdap)
}

/// 2026-12-02T00:00:00Z: day 20789 since 1970-01-01.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(20_789 * 86_400)
}

fn mapped(a: &BTreeMap<String, Values>, m: &Mapping) -> Mapped {
    map_at(g(1), "uid=dora,ou=people,dc=example", a, m, now())
        .expect("maps")
        .expect("a kind sync imports")
}

#[test]
fn kinds_follow_the_standard_object_classes() {
    let k = |c: &[&[u8]]| kind_of(&c.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
    assert_eq!(k(&[b"top", b"inetOrgPerson"]), Some(Kind::User));
    assert_eq!(k(&[b"organizationalPerson"]), Some(Kind::User));
    assert_eq!(k(&[b"PERSON"]), Some(Kind::User));
    assert_eq!(
        k(&[b"account", b"posixAccount", b"shadowAccount"]),
        Some(Kind::User),
        "posixAccount without a person class"
    );
    assert_eq!(k(&[b"groupOfNames"]), Some(Kind::Group));
    assert_eq!(k(&[b"groupOfUniqueNames"]), Some(Kind::Group));
    assert_eq!(k(&[b"organizationalUnit"]), Some(Kind::OrgUnit));
    assert_eq!(k(&[b"device"]), Some(Kind::Device));
    assert_eq!(
        k(&[b"device", b"pwdPolicy"]),
        None,
        "a ppolicy policy entry"
    );
    assert_eq!(k(&[b"organizationalRole", b"simpleSecurityObject"]), None);
    assert_eq!(k(&[b"dcObject", b"organization"]), None);
    assert_eq!(k(&[b"user"]), None, "AD's classes mean nothing here");
}

#[test]
fn a_person_maps_with_the_openldap_defaults_anchored_on_entry_uuid() {
    let a = person(&[]);
    assert_eq!(
        crate::ad::map::map(g(1), "uid=dora", &a, &Mapping::default()),
        Ok(None),
        "the AD mapping does not know an inetOrgPerson"
    );
    let m = mapped(&a, &ol());
    assert_eq!(m.kind, Kind::User);
    assert_eq!((m.anchor, m.guid), (g(1), g(1)));
    let f = |field| m.fields.get(&field).map(|v| v[0].as_str());
    assert_eq!(f(Field::Upn), Some("dora@ldap.example"), "upn from mail");
    assert_eq!(f(Field::Mail), Some("dora@ldap.example"));
    assert_eq!(f(Field::DisplayName), Some("Dora Example"), "cn");
    assert_eq!(f(Field::GivenName), Some("Dora"));
    assert_eq!(f(Field::Surname), Some("Example"));
    assert_eq!(f(Field::Department), Some("4711"));
    assert_eq!(f(Field::EmployeeId), Some("E-17"));
    assert_eq!(f(Field::ProxyAddresses), None);
    assert!(m.enabled && !m.must_change_password);
    assert_eq!(m.account_expires, None);
    assert_eq!(m.manager.as_deref(), Some("uid=boss,ou=people,dc=example"));
    assert!(m.members.is_empty());

    let m = mapped(&person(&[("displayName", &[b"Dr. Dora"])]), &ol());
    assert_eq!(m.fields[&Field::DisplayName], vec!["Dr. Dora"]);
}

#[test]
fn a_ppolicy_lock_or_a_past_shadow_expire_disables_the_account() {
    for lock in [&b"000001010000Z"[..], b"20261201093000Z"] {
        let m = mapped(&person(&[("pwdAccountLockedTime", &[lock])]), &ol());
        assert!(!m.enabled, "{}", String::from_utf8_lossy(lock));
    }
    // Day 20789 began at now(): expired from that instant on, not a second before.
    let m = mapped(&person(&[("shadowExpire", &[b"20789"])]), &ol());
    assert!(!m.enabled);
    assert_eq!(m.account_expires, Some(20_789 * 86_400));
    let m = map_at(
        g(1),
        "uid=dora",
        &person(&[("shadowExpire", &[b"20789"])]),
        &ol(),
        now() - Duration::from_secs(1),
    )
    .expect("maps")
    .expect("a user");
    assert!(m.enabled, "the last second before the day");
    let m = mapped(&person(&[("shadowExpire", &[b"20800"])]), &ol());
    assert!(m.enabled);
    assert_eq!(m.account_expires, Some(20_800 * 86_400));
    let m = mapped(&person(&[("shadowExpire", &[b"-1"])]), &ol());
    assert!(m.enabled);
    assert_eq!(m.account_expires, None, "-1 is never");
    let m = mapped(&person(&[("pwdReset", &[b"TRUE"])]), &ol());
    assert!(m.enabled && m.must_change_password);

    let e = map_at(
        g(1),
        "uid=dora",
        &person(&[("shadowExpire", &[b"soon"])]),
        &ol(),
        now(),
    )
    .expect_err("not a number");
    assert_eq!(
        e.to_string(),
        "attribute shadowExpire: not a whole number of days"
    );
    let e = map_at(
        g(1),
        "uid=dora",
        &person(&[("shadowExpire", &[b"1", b"2"])]),
        &ol(),
        now(),
    )
    .expect_err("two values");
    assert!(e.message.contains("2 values"), "{e}");
}

#[test]
fn groups_take_members_and_unique_members_as_plain_dns() {
    let m = mapped(
        &attrs(&[
            ("objectClass", &[b"groupOfNames"]),
            ("cn", &[b"staff"]),
            ("member", &[b"uid=a,ou=people,dc=example"]),
        ]),
        &ol(),
    );
    assert_eq!(m.kind, Kind::Group);
    assert_eq!(m.members, vec!["uid=a,ou=people,dc=example"]);
    assert_eq!(m.fields[&Field::DisplayName], vec!["staff"]);
    let m = mapped(
        &attrs(&[
            ("objectClass", &[b"groupOfUniqueNames"]),
            ("cn", &[b"ops"]),
            (
                "uniqueMember",
                &[
                    b"uid=a,ou=people,dc=example#'0101'B",
                    b"uid=b,ou=people,dc=example",
                    b"cn=x#'y'B,dc=example",
                ],
            ),
        ]),
        &ol(),
    );
    assert_eq!(
        m.members,
        vec![
            "uid=a,ou=people,dc=example",
            "uid=b,ou=people,dc=example",
            "cn=x#'y'B,dc=example"
        ],
        "the optional UID is dropped; a '#' that is not one is kept"
    );
    let m = mapped(&person(&[("member", &[b"uid=x"])]), &ol());
    assert!(m.members.is_empty(), "only groups have members");
}

#[test]
fn overrides_replace_the_defaults_and_drop_the_cn_fallback() {
    let m = ol()
        .with(Field::Upn, "eduPersonPrincipalName")
        .with(Field::DisplayName, "description");
    let a = person(&[("eduPersonPrincipalName", &[b"dora@uni.example"])]);
    let out = mapped(&a, &m);
    assert_eq!(out.fields[&Field::Upn], vec!["dora@uni.example"]);
    assert_eq!(out.fields[&Field::Mail], vec!["dora@ldap.example"]);
    assert!(
        !out.fields.contains_key(&Field::DisplayName),
        "an override is not padded with cn"
    );
    let names = m.attributes();
    for a in [
        "entryUUID",
        "pwdAccountLockedTime",
        "shadowExpire",
        "uniqueMember",
        "edupersonprincipalname",
    ] {
        assert!(
            names.iter().any(|n| n.eq_ignore_ascii_case(a)),
            "{a} in {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.eq_ignore_ascii_case("sAMAccountName")),
        "no AD names: {names:?}"
    );
    let e = map_at(
        g(1),
        "uid=dora",
        &person(&[("mail", &[&[0xff, 0xfe]])]),
        &ol(),
        now(),
    )
    .expect_err("not UTF-8");
    assert_eq!(
        e.to_string(),
        "attribute upn: a value that is not UTF-8 (mapped from mail)"
    );
}

#[test]
fn the_configuration_picks_the_mapping_by_connector_kind() {
    let text = r#"
[sync]
state_dir = "s"
endpoints = ["https://idp"]

[[connector]]
name = "corp"
kind = "ad"
servers = ["ldaps://dc1"]
ca_file = "ca.pem"
bind_dn = "CN=svc,DC=corp"
bind_password_env = "PW"
base_dn = "DC=corp"

[[connector]]
name = "uni"
kind = "openldap"
servers = ["ldaps://ldap1"]
ca_file = "ca.pem"
bind_dn = "cn=sync,dc=uni"
bind_password_env = "PW"
base_dn = "dc=uni"

[[connector]]
name = "uni2"
kind = "openldap"
servers = ["ldaps://ldap2"]
ca_file = "ca.pem"
bind_dn = "cn=sync,dc=uni"
bind_password_env = "PW"
base_dn = "dc=uni"

[connector.attributes]
upn = "eduPersonPrincipalName"
"#;
    let c = SyncConfig::parse(text, Path::new("/etc/causeway/sync.toml")).expect("valid");
    assert_eq!(c.connectors[0].mapping, Mapping::default());
    assert_eq!(
        c.connectors[0].mapping.source(Field::Upn),
        "userprincipalname"
    );
    let uni = &c.connectors[1].mapping;
    assert_eq!(uni.kind(), ConnectorKind::OpenLdap);
    assert_eq!(uni.source(Field::Upn), "mail");
    assert_eq!(uni.source(Field::Department), "departmentnumber");
    assert_eq!(uni.fallback(Field::DisplayName), Some("cn"));
    let uni2 = &c.connectors[2].mapping;
    assert_eq!(uni2.kind(), ConnectorKind::OpenLdap);
    assert_eq!(uni2.source(Field::Upn), "edupersonprincipalname");
    assert_eq!(uni2.source(Field::Mail), "mail");
}
