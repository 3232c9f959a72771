//! Whether an object is in a connector's scope: under `base_dn`, not a critical system
//! object (Administrator, krbtgt, the built-in groups), under one of `include_ous`
//! (when any are given), under none of `exclude_ous`, and matching `filter`. An object that
//! was in scope and no longer is becomes a deletion at the endpoint; the reason is kept so
//! `causeway sync object` can say which rule decided.
//!
//! Group membership scoping (`member_of`) needs the group's resolved members, which only
//! the whole connector space has: the planner applies it ([`Decision::NotMember`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::ad::entry::Values;
use crate::config::{is_under, Connector};

/// The scoping decision for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// In scope.
    In,
    /// Not under `base_dn`.
    OutsideBase,
    /// A critical system object (`isCriticalSystemObject`: Administrator, Guest, krbtgt,
    /// the built-in groups): never synchronised, as Entra Connect never does.
    SystemObject,
    /// Not under any of `include_ous`.
    NotIncluded,
    /// Under this excluded OU.
    Excluded(String),
    /// Does not match `filter`.
    Filtered,
    /// Not a member, directly or through nested groups, of the `member_of` group.
    NotMember(String),
    /// In scope, but held back: another object claims its UPN or mail (see the plan's
    /// quarantine list).
    Quarantined,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::In => f.write_str("in scope"),
            Self::OutsideBase => f.write_str("out of scope: not under base_dn"),
            Self::SystemObject => f.write_str("out of scope: a critical system object"),
            Self::NotIncluded => f.write_str("out of scope: under none of include_ous"),
            Self::Excluded(ou) => write!(f, "out of scope: under excluded {ou}"),
            Self::Filtered => f.write_str("out of scope: does not match filter"),
            Self::NotMember(g) => write!(f, "out of scope: not a member (direct or nested) of {g}"),
            Self::Quarantined => {
                f.write_str("quarantined: its UPN or mail is claimed by another object")
            }
        }
    }
}

/// Decides one object's scope from its DN and whole attribute set (lower-case names).
pub fn decide(c: &Connector, dn: &str, attrs: &BTreeMap<String, Values>) -> Decision {
    if !is_under(dn, &c.base_dn) {
        return Decision::OutsideBase;
    }
    if attrs
        .get("iscriticalsystemobject")
        .and_then(|v| v.values.first())
        .is_some_and(|v| v.eq_ignore_ascii_case(b"TRUE"))
    {
        return Decision::SystemObject;
    }
    if !c.include_ous.is_empty() && !c.include_ous.iter().any(|ou| is_under(dn, ou)) {
        return Decision::NotIncluded;
    }
    if let Some(ou) = c.exclude_ous.iter().find(|ou| is_under(dn, ou)) {
        return Decision::Excluded(ou.clone());
    }
    if c.filter.as_ref().is_some_and(|f| !f.matches(attrs)) {
        return Decision::Filtered;
    }
    Decision::In
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncConfig;
    use std::path::Path;

    fn connector(extra: &str) -> Connector {
        let text = format!(
            r#"
[sync]
state_dir = "s"
endpoints = ["https://idp"]
[[connector]]
name = "c"
kind = "ad"
servers = ["ldaps://dc"]
ca_file = "ca.pem"
bind_dn = "CN=s,DC=corp"
bind_password_env = "X"
base_dn = "DC=corp"
{extra}
"#
        );
        SyncConfig::parse(&text, Path::new("s.toml"))
            .expect("valid")
            .connectors
            .remove(0)
    }

    fn attrs(dept: &str) -> BTreeMap<String, Values> {
        BTreeMap::from([(
            "department".to_owned(),
            Values {
                values: vec![dept.as_bytes().to_vec()],
                ..Values::default()
            },
        )])
    }

    #[test]
    fn each_rule_decides_in_order() {
        let c = connector(
            "include_ous = [\"OU=Staff,DC=corp\"]\nexclude_ous = [\"OU=Temps,OU=Staff,DC=corp\"]\nfilter = \"(department=Sales)\"",
        );
        let sales = attrs("Sales");
        assert_eq!(decide(&c, "CN=a,OU=Staff,DC=corp", &sales), Decision::In);
        assert_eq!(decide(&c, "CN=a,DC=other", &sales), Decision::OutsideBase);
        assert_eq!(
            decide(&c, "CN=a,OU=Admins,DC=corp", &sales),
            Decision::NotIncluded
        );
        assert_eq!(
            decide(&c, "CN=a,OU=Temps,OU=Staff,DC=corp", &sales).to_string(),
            "out of scope: under excluded OU=Temps,OU=Staff,DC=corp"
        );
        assert_eq!(
            decide(&c, "CN=a,OU=Staff,DC=corp", &attrs("HR")),
            Decision::Filtered,
            "an edit out of the filter leaves scope"
        );
        let mut system = attrs("Sales");
        system.insert(
            "iscriticalsystemobject".into(),
            Values {
                values: vec![b"TRUE".to_vec()],
                ..Values::default()
            },
        );
        assert_eq!(
            decide(&c, "CN=Administrator,OU=Staff,DC=corp", &system).to_string(),
            "out of scope: a critical system object"
        );
    }

    #[test]
    fn without_includes_the_whole_base_is_in_scope() {
        let c = connector("");
        assert_eq!(
            decide(&c, "CN=a,CN=Users,DC=corp", &BTreeMap::new()),
            Decision::In
        );
    }
}
