use super::*;

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

fn user(extra: &[(&str, &[&[u8]])]) -> BTreeMap<String, Values> {
    let mut a = attrs(&[
        (
            "objectClass",
            &[b"top", b"person", b"organizationalPerson", b"user"],
        ),
        ("userPrincipalName", &[b"alice@corp.example"]),
        ("displayName", &[b"Alice Example"]),
        ("userAccountControl", &[b"512"]),
        ("accountExpires", &[b"9223372036854775807"]),
        ("pwdLastSet", &[b"133000000000000000"]),
        (
            "proxyAddresses",
            &[b"smtp:a@old.example", b"SMTP:alice@corp.example"],
        ),
        ("manager", &[b"CN=bob,CN=Users,DC=corp"]),
    ]);
    a.extend(attrs(extra));
    a
}

#[test]
fn kinds_follow_object_class_with_computer_before_user() {
    let k = |c: &[&[u8]]| Kind::of(&c.iter().map(|b| b.to_vec()).collect::<Vec<_>>());
    assert_eq!(
        k(&[b"top", b"person", b"user", b"computer"]),
        Some(Kind::Device)
    );
    assert_eq!(k(&[b"top", b"USER"]), Some(Kind::User));
    assert_eq!(k(&[b"group"]), Some(Kind::Group));
    assert_eq!(k(&[b"contact"]), Some(Kind::Contact));
    assert_eq!(k(&[b"organizationalUnit"]), Some(Kind::OrgUnit));
    assert_eq!(k(&[b"foreignSecurityPrincipal"]), None);
    assert_eq!(k(&[]), None);
}

#[test]
fn a_user_maps_with_the_defaults() {
    let m = map(g(1), "CN=alice,DC=corp", &user(&[]), &Mapping::default())
        .expect("maps")
        .expect("a user");
    assert_eq!(m.kind, Kind::User);
    assert_eq!(m.anchor, g(1), "objectGUID when no consistency GUID is set");
    assert_eq!(m.fields[&Field::Upn], vec!["alice@corp.example"]);
    assert_eq!(m.fields[&Field::DisplayName], vec!["Alice Example"]);
    assert_eq!(m.fields[&Field::ProxyAddresses].len(), 2);
    assert_eq!(
        primary_smtp(&m.fields[&Field::ProxyAddresses]),
        Some("alice@corp.example")
    );
    assert!(!m.fields.contains_key(&Field::Department));
    assert!(m.enabled);
    assert_eq!(m.account_expires, None, "i64::MAX is never");
    assert!(!m.must_change_password);
    assert_eq!(m.manager.as_deref(), Some("CN=bob,CN=Users,DC=corp"));
    assert!(m.members.is_empty());
}

#[test]
fn account_state_comes_from_uac_expiry_and_pwdlastset() {
    // 2009-01-01T00:00:00Z as FILETIME: (1230768000 + 11644473600) * 10^7.
    let m = map(
        g(1),
        "CN=a",
        &user(&[
            ("userAccountControl", &[b"514"]),
            ("accountExpires", &[b"128752416000000000"]),
            ("pwdLastSet", &[b"0"]),
        ]),
        &Mapping::default(),
    )
    .expect("maps")
    .expect("a user");
    assert!(!m.enabled, "514 = NORMAL_ACCOUNT | ACCOUNTDISABLE");
    assert_eq!(m.account_expires, Some(1_230_768_000));
    assert!(m.must_change_password);
    assert!(password_expired(8_388_608));
    assert!(!password_expired(16), "16 is locked out, not expired");
    let zero = map(
        g(1),
        "CN=a",
        &user(&[("accountExpires", &[b"0"])]),
        &Mapping::default(),
    )
    .expect("maps")
    .expect("a user");
    assert_eq!(zero.account_expires, None, "0 is never too");
}

#[test]
fn the_consistency_guid_wins_and_must_be_a_guid() {
    let m = map(
        g(1),
        "CN=a",
        &user(&[("mS-DS-ConsistencyGuid", &[&[7u8; 16]])]),
        &Mapping::default(),
    )
    .expect("maps")
    .expect("a user");
    assert_eq!(m.anchor, g(7));
    let e = map(
        g(1),
        "CN=a",
        &user(&[("mS-DS-ConsistencyGuid", &[&[7u8; 3]])]),
        &Mapping::default(),
    )
    .expect_err("3 bytes");
    assert_eq!(
        e.to_string(),
        "attribute mS-DS-ConsistencyGuid: a GUID is 16 bytes, this one is 3"
    );
}

#[test]
fn overrides_take_a_field_from_another_attribute() {
    let mapping = Mapping::default().with(Field::Upn, "mail");
    let m = map(
        g(1),
        "CN=a",
        &user(&[("mail", &[b"alice.mail@corp.example"])]),
        &mapping,
    )
    .expect("maps")
    .expect("a user");
    assert_eq!(m.fields[&Field::Upn], vec!["alice.mail@corp.example"]);
    assert!(mapping.attributes().iter().any(|a| a == "mail"));
    let names: Vec<_> = mapping
        .attributes()
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let mut dedup = names.clone();
    dedup.dedup();
    assert_eq!(names, dedup, "each attribute asked for once");
}

#[test]
fn groups_keep_members_and_bad_values_are_named() {
    let m = map(
        g(2),
        "CN=g",
        &attrs(&[
            ("objectClass", &[b"group"]),
            ("member", &[b"CN=a", b"CN=b"]),
        ]),
        &Mapping::default(),
    )
    .expect("maps")
    .expect("a group");
    assert_eq!(m.members, vec!["CN=a", "CN=b"]);
    let e = map(
        g(1),
        "CN=a",
        &user(&[("userAccountControl", &[b"lots"])]),
        &Mapping::default(),
    )
    .expect_err("not a number");
    assert_eq!(
        e.to_string(),
        "attribute userAccountControl: not a whole number"
    );
    let e = map(
        g(1),
        "CN=a",
        &user(&[("displayName", &[&[0xff, 0xfe]])]),
        &Mapping::default(),
    )
    .expect_err("not UTF-8");
    assert_eq!(
        e.to_string(),
        "attribute display_name: a value that is not UTF-8 (mapped from displayname)"
    );
    let e = map(
        g(1),
        "CN=a",
        &user(&[("pwdLastSet", &[b"1", b"2"])]),
        &Mapping::default(),
    )
    .expect_err("two values");
    assert!(e.message.contains("2 values"), "{e}");
    assert_eq!(
        map(
            g(1),
            "CN=x",
            &attrs(&[("objectClass", &[b"container"])]),
            &Mapping::default()
        ),
        Ok(None)
    );
}

#[test]
fn a_password_older_than_the_domains_max_age_is_expired_unless_it_never_expires() {
    // pwdLastSet 133000000000000000 is 2022-06-17 (FILETIME); the clock is 50 and 30 days on.
    let set = 133_000_000_000_000_000i64 / 10_000_000 - FILETIME_UNIX_OFFSET;
    let at = |days: i64| {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((set + days * 86_400) as u64)
    };
    let policy = Mapping::default().with_max_password_age(Some(42 * 86_400));
    let expired = |a: &BTreeMap<String, Values>, m: &Mapping, days: i64| {
        map_at(g(1), "CN=alice,DC=corp", a, m, at(days))
            .expect("valid")
            .expect("a user")
            .password_expired
    };
    assert!(expired(&user(&[]), &policy, 50), "50 days old, 42 allowed");
    assert!(!expired(&user(&[]), &policy, 30), "30 days old");
    assert!(
        !expired(&user(&[]), &Mapping::default(), 50),
        "no policy known: never"
    );
    let never = user(&[("userAccountControl", &[b"66048"])]); // 512 | DONT_EXPIRE_PASSWORD
    assert!(!expired(&never, &policy, 50), "DONT_EXPIRE_PASSWORD");
    let must = user(&[("pwdLastSet", &[b"0"])]);
    assert!(
        !expired(&must, &policy, 50),
        "must change at next sign-in, not expired"
    );
}
