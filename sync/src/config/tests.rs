use super::*;

const GOOD: &str = r#"
[sync]
state_dir = "/var/lib/causeway-sync"
endpoints = ["https://idp.example.com:8443", "https://idp2.example.com"]
poll_interval = "2m"

[safety]
delete_threshold = 100
delete_threshold_percent = 10

[[connector]]
name = "corp"
kind = "ad"
servers = ["ldaps://dc1.corp.example", "ldaps://dc2.corp.example:636"]
ca_file = "corp-ca.pem"
bind_dn = "CN=svc-sync,CN=Users,DC=corp,DC=example"
bind_password_file = "/etc/causeway/corp.pw"
base_dn = "DC=corp,DC=example"
include_ous = ["OU=Staff, DC=corp,DC=example"]
exclude_ous = ["OU=Service Accounts,OU=Staff,DC=corp,DC=example"]
filter = "(!(description=no-sync))"

[connector.attributes]
upn = "mail"

[[connector]]
name = "lab-ldap"
kind = "openldap"
servers = ["ldap://ldap.example:389"]
ca_file = "/etc/causeway/ldap-ca.pem"
bind_dn = "cn=sync,ou=system,dc=example"
bind_password_env = "LDAP_SYNC_PW"
base_dn = "dc=example"
"#;

fn parse(t: &str) -> Result<SyncConfig, ConfigError> {
    SyncConfig::parse(t, Path::new("/etc/causeway/sync.toml"))
}

fn err(t: &str) -> String {
    parse(t).expect_err("invalid").to_string()
}

#[test]
fn a_full_config_validates() {
    let c = parse(GOOD).expect("valid");
    assert_eq!(
        c.endpoints,
        vec![
            ("idp.example.com".into(), 8443),
            ("idp2.example.com".into(), 443)
        ]
    );
    assert_eq!(c.poll_interval, Duration::from_secs(120));
    assert_eq!(c.hash_interval, DEFAULT_HASH_POLL);
    assert_eq!(
        c.delete_threshold,
        DeleteThreshold {
            count: 100,
            percent: 10
        }
    );
    assert!(!c.staging);
    let ad = &c.connectors[0];
    assert_eq!(ad.kind, ConnectorKind::ActiveDirectory);
    assert_eq!(ad.servers[0].url, "ldaps://dc1.corp.example:636");
    assert_eq!(
        ad.ca_file.as_deref(),
        Some(Path::new("/etc/causeway/corp-ca.pem"))
    );
    assert_eq!(ad.include_ous, vec!["OU=Staff,DC=corp,DC=example"]);
    assert!(ad.change_notification, "on by default for AD");
    assert_eq!(ad.mapping.source(Field::Upn), "mail");
    assert_eq!(ad.mapping.source(Field::DisplayName), "displayname");
    assert_eq!(
        c.connectors[1].mapping,
        Mapping::for_kind(ConnectorKind::OpenLdap)
    );
    assert_eq!(
        ad.password,
        PasswordSource::File("/etc/causeway/corp.pw".into())
    );
    let ol = &c.connectors[1];
    assert_eq!(ol.kind, ConnectorKind::OpenLdap);
    assert_eq!(ol.servers[0].transport, Transport::StartTls);
    assert!(!ol.change_notification);
    assert_eq!(ol.password, PasswordSource::Env("LDAP_SYNC_PW".into()));
}

#[test]
fn the_shipped_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync.example.toml");
    let text = std::fs::read_to_string(&path).expect("sync.example.toml");
    SyncConfig::parse(&text, &path).expect("the example is valid");
}

#[test]
fn errors_name_the_line_and_column() {
    let t = GOOD.replace("kind = \"openldap\"", "kind = \"novell\"");
    let line = t.lines().position(|l| l.contains("novell")).expect("line") + 1;
    assert_eq!(
        err(&t),
        format!("/etc/causeway/sync.toml:{line}:8: kind \"novell\": use \"ad\" or \"openldap\"")
    );
    let t = GOOD.replace("poll_interval = \"2m\"", "poll_interval = \"2 weeks\"");
    assert!(err(&t).contains(":5:17: "), "{}", err(&t));
    let t = GOOD.replace("name = \"lab-ldap\"", "name = \"corp\"");
    assert!(
        err(&t).ends_with("two connectors are named \"corp\""),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("[safety]", "[safety]\nsurprise = 1");
    assert!(err(&t).contains("unknown field `surprise`"), "{}", err(&t));
}

#[test]
fn attribute_overrides_name_known_fields_and_ldap_attributes() {
    let t = GOOD.replace("upn = \"mail\"", "login = \"mail\"");
    assert!(
        err(&t).contains("\"login\" is not a mapped field; use one of upn, mail,"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("upn = \"mail\"", "upn = \"mail;binary\"");
    assert!(
        err(&t).contains("\"mail;binary\" is not an LDAP attribute name"),
        "{}",
        err(&t)
    );
}

#[test]
fn scopes_must_lie_under_the_base() {
    let t = GOOD.replace(
        "exclude_ous = [\"OU=Service Accounts,OU=Staff,DC=corp,DC=example\"]",
        "exclude_ous = [\"OU=Elsewhere,DC=other,DC=example\"]",
    );
    assert!(
        err(&t).contains("exclude_ous \"OU=Elsewhere,DC=other,DC=example\" is not under base_dn"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("base_dn = \"dc=example\"", "base_dn = \"example\"");
    assert!(
        err(&t).contains("base_dn: \"example\" is not a DN"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("(!(description=no-sync))", "(description=unclosed");
    let line = t
        .lines()
        .position(|l| l.starts_with("filter ="))
        .expect("line")
        + 1;
    // The column is that of the end of the value, where the closing ')' is missing.
    assert!(
        err(&t).contains(&format!("sync.toml:{line}:32: filter is not an LDAP filter such as (department=Sales): the filter ends inside a value")),
        "{}",
        err(&t)
    );
}

#[test]
fn passwords_come_from_a_file_or_the_environment_never_the_config() {
    let t = GOOD.replace("bind_password_env = \"LDAP_SYNC_PW\"\n", "");
    assert!(
        err(&t).contains("needs bind_password_file or bind_password_env"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace(
        "bind_password_env = \"LDAP_SYNC_PW\"",
        "bind_password_env = \"LDAP_SYNC_PW\"\nbind_password_file = \"x\"",
    );
    assert!(err(&t).contains("not both"), "{}", err(&t));
    let t = GOOD.replace(
        "bind_password_env = \"LDAP_SYNC_PW\"",
        "bind_password = \"hunter2\"",
    );
    assert!(
        err(&t).contains("unknown field `bind_password`"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("ldap://ldap.example:389", "ldap+plain://ldap.example");
    assert!(err(&t).contains("allow_plain_ldap"), "{}", err(&t));
    let t = GOOD.replace("ca_file = \"corp-ca.pem\"\n", "");
    assert!(
        err(&t).contains("ca_file must name the PEM file"),
        "{}",
        err(&t)
    );
    let t = GOOD.replace("https://idp2.example.com", "http://idp2.example.com");
    assert!(err(&t).contains("must start with https://"), "{}", err(&t));
}

#[test]
fn a_bind_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("causeway-sync-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("pw");
    std::fs::write(&file, "Unique-Bind-Pw-77\n").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut c = parse(GOOD).expect("valid").connectors.remove(0);
    c.password = PasswordSource::File(file.clone());
    let e = c.bind_password().expect_err("loose");
    assert!(
        e.contains("mode 644") && !e.contains("Unique-Bind-Pw-77"),
        "{e}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let pw = c.bind_password().expect("private");
    assert_eq!(
        pw.expose_secret(),
        "Unique-Bind-Pw-77",
        "the newline is not part of it"
    );
    assert!(!format!("{pw:?}").contains("Unique"), "Debug redacts");
    c.password = PasswordSource::Env("CAUSEWAY_TEST_UNSET_VARIABLE".into());
    assert_eq!(
        c.bind_password().expect_err("unset"),
        "connector corp: environment variable CAUSEWAY_TEST_UNSET_VARIABLE is not set"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dn_scope_comparison_ignores_case_and_spaces_after_commas() {
    assert!(is_under("CN=a,OU=Staff,DC=corp", "ou=staff, dc=CORP"));
    assert!(is_under("DC=corp", "DC=corp"));
    assert!(!is_under("CN=a,OU=Staffing,DC=corp", "OU=Staff,DC=corp"));
    assert!(!is_under("DC=corp", "OU=Staff,DC=corp"));
    // An escaped comma is part of the value, not a separator.
    assert!(!is_under("CN=x\\,OU=Staff,DC=corp", "OU=Staff,DC=corp"));
    assert!(is_under("CN=x\\,y,OU=Staff,DC=corp", "OU=Staff,DC=corp"));
}

#[test]
fn openldap_delta_defaults_to_auto_and_bad_values_name_their_line() {
    assert_eq!(
        parse(GOOD).expect("valid").connectors[1].delta,
        OpenLdapDelta::Auto
    );
    for (v, want) in [
        ("auto", OpenLdapDelta::Auto),
        ("content_sync", OpenLdapDelta::ContentSync),
        ("modify_timestamp", OpenLdapDelta::ModifyTimestamp),
    ] {
        let t = format!("{GOOD}delta = \"{v}\"\n");
        assert_eq!(parse(&t).expect("valid").connectors[1].delta, want, "{v}");
    }
    let t = format!("{GOOD}delta = \"usn\"\n");
    let line = t.lines().count();
    assert_eq!(
        err(&t),
        format!("/etc/causeway/sync.toml:{line}:9: delta \"usn\": use \"auto\", \"content_sync\" or \"modify_timestamp\"")
    );
    // On an AD connector it is refused (DirSync is its only delta).
    let t = GOOD.replace(
        "[connector.attributes]",
        "delta = \"modify_timestamp\"\n[connector.attributes]",
    );
    let line = t
        .lines()
        .position(|l| l.starts_with("delta"))
        .expect("line")
        + 1;
    assert!(
        err(&t).contains(&format!("sync.toml:{line}:9: delta is an OpenLDAP setting")),
        "{}",
        err(&t)
    );
}

/// Hash sync is off unless a connector asks for it; its interval defaults to Entra's 2
/// minutes and is bounded to 1s..=1h, an interval out of bounds named by line.
#[test]
fn hash_sync_is_opt_in_and_its_interval_is_bounded() {
    let c = parse(GOOD).expect("valid");
    assert!(c.connectors.iter().all(|c| !c.password_hash_sync));
    let on = format!("{GOOD}password_hash_sync = true\n");
    let c = parse(&on).expect("valid");
    assert!(c.connectors[1].password_hash_sync && !c.connectors[0].password_hash_sync);
    let t = GOOD.replace(
        "poll_interval = \"2m\"",
        "poll_interval = \"2m\"\nhash_interval = \"2h\"",
    );
    let line = t
        .lines()
        .position(|l| l.starts_with("hash_interval"))
        .expect("line")
        + 1;
    assert!(
        err(&t).contains(&format!(
            "sync.toml:{line}:17: hash_interval must be at most 1h"
        )),
        "{}",
        err(&t)
    );
    let t = GOOD.replace(
        "poll_interval = \"2m\"",
        "poll_interval = \"2m\"\nhash_interval = \"30s\"",
    );
    assert_eq!(
        parse(&t).expect("valid").hash_interval,
        Duration::from_secs(30)
    );
}
