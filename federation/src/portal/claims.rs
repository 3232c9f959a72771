//! What an application is told about the user: the session's identity taken from the
//! directory store's record and group names (read at sign-in by the login step), the SAML
//! NameID and attributes, the groups. Pure: no I/O.
//! It must never put anything in a token the record does not hold (no password, no
//! verifier, nothing from the request).

use crate::session::{Identity, Session};
use causeway_saml::saml2::{SamlAttribute, NAMEID_EMAIL, NAMEID_UNSPECIFIED};
use causeway_store::UserRecord;

/// Most values the groups claim carries: Entra's limit for SAML tokens. A user in more
/// groups gets the first 150 by name (the sign-in logs how many were left out); an
/// application that needs them all should read them from the directory instead.
pub(super) const MAX_GROUPS: usize = 150;

/// The identity a session keeps from the user's record and group names (as the store
/// read them at sign-in, sorted), bounded to [`MAX_GROUPS`].
pub(super) fn identity_of(user: UserRecord, mut groups: Vec<String>) -> Identity {
    groups.truncate(MAX_GROUPS);
    Identity {
        upn: user.upn,
        immutable_id: user.id.as_str().to_owned(),
        mail: user.mail,
        display_name: user.display_name,
        groups,
    }
}

/// The groups claim: the group names the session was given at sign-in.
pub(super) fn groups(s: &Session) -> Vec<String> {
    s.groups.clone()
}

/// The NameID for `format`: the mail address (the UPN when there is none) for
/// emailAddress, the UPN for unspecified, else (persistent) the immutable id.
pub(super) fn saml_name_id(format: &str, s: &Session) -> String {
    match format {
        NAMEID_EMAIL => s.mail.clone().unwrap_or_else(|| s.upn.clone()),
        NAMEID_UNSPECIFIED => s.upn.clone(),
        _ => s.immutable_id.clone(),
    }
}

/// The attributes of a SAML assertion, in this order, each present even when empty.
pub(super) fn saml_attributes(s: &Session) -> Vec<SamlAttribute> {
    vec![
        SamlAttribute {
            name: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
            friendly: "upn",
            values: vec![s.upn.clone()],
        },
        SamlAttribute {
            name: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            friendly: "mail",
            values: s.mail.iter().cloned().collect(),
        },
        SamlAttribute {
            name: "http://schemas.microsoft.com/identity/claims/displayname",
            friendly: "displayName",
            values: s.display_name.iter().cloned().collect(),
        },
        SamlAttribute {
            name: "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
            friendly: "groups",
            values: groups(s),
        },
        SamlAttribute {
            name: "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID",
            friendly: "immutableID",
            values: vec![s.immutable_id.clone()],
        },
    ]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::session::Sessions;
    use causeway_saml::saml2::NAMEID_PERSISTENT;
    use causeway_store::{ImmutableId, Source};

    fn record(mail: Option<&str>, display_name: Option<&str>) -> UserRecord {
        let now = SystemTime::now();
        UserRecord {
            id: ImmutableId::random(),
            upn: "Carla@Corp.Test".into(),
            display_name: display_name.map(Into::into),
            mail: mail.map(Into::into),
            source: Source::Ad,
            disabled: false,
            has_verifier: true,
            protected: false,
            deleted_at: None,
            created_at: now,
            updated_at: now,
            password: Default::default(),
        }
    }

    fn session_of(user: UserRecord) -> Session {
        let who = identity_of(user, Vec::new());
        Sessions::default()
            .create(who, Duration::from_secs(3600), SystemTime::now())
            .1
    }

    fn claims(s: &Session) -> Vec<(&'static str, &'static str, Vec<String>)> {
        saml_attributes(s)
            .into_iter()
            .map(|a| (a.friendly, a.name, a.values))
            .collect()
    }

    #[test]
    fn a_full_record_yields_its_upn_mail_name_and_immutable_id_and_no_groups() {
        let user = record(Some("carla@mail.test"), Some("Carla Diaz"));
        let id = user.id.as_str().to_owned();
        let s = session_of(user);
        // The UPN as the record spells it (not folded).
        assert_eq!(
            (s.upn.as_str(), s.immutable_id.as_str()),
            ("Carla@Corp.Test", id.as_str())
        );
        assert_eq!(
            claims(&s),
            vec![
                (
                    "upn",
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                    vec!["Carla@Corp.Test".to_owned()]
                ),
                (
                    "mail",
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                    vec!["carla@mail.test".to_owned()]
                ),
                (
                    "displayName",
                    "http://schemas.microsoft.com/identity/claims/displayname",
                    vec!["Carla Diaz".to_owned()]
                ),
                (
                    "groups",
                    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                    vec![]
                ),
                (
                    "immutableID",
                    "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID",
                    vec![id]
                ),
            ]
        );
        assert!(groups(&s).is_empty());
    }

    #[test]
    fn the_groups_read_at_sign_in_are_the_claim_bounded_to_150() {
        let groups = vec!["Engineering".to_owned(), "Staff".to_owned()];
        let who = identity_of(record(None, None), groups.clone());
        let s = Sessions::default()
            .create(who, Duration::from_secs(3600), SystemTime::now())
            .1;
        let claim = saml_attributes(&s)
            .into_iter()
            .find(|a| a.friendly == "groups")
            .expect("groups attribute");
        assert_eq!(claim.values, groups);
        assert_eq!(super::groups(&s), groups);
        let many: Vec<String> = (0..400).map(|i| format!("g{i:03}")).collect();
        let who = identity_of(record(None, None), many.clone());
        assert_eq!(who.groups.len(), MAX_GROUPS);
        assert_eq!(who.groups[..], many[..MAX_GROUPS]);
    }

    #[test]
    fn a_record_without_mail_or_name_keeps_those_attributes_with_no_value() {
        let s = session_of(record(None, None));
        let c = claims(&s);
        assert_eq!(
            c.iter().map(|(f, _, v)| (*f, v.len())).collect::<Vec<_>>(),
            vec![
                ("upn", 1),
                ("mail", 0),
                ("displayName", 0),
                ("groups", 0),
                ("immutableID", 1)
            ]
        );
    }

    #[test]
    fn the_name_id_is_the_immutable_id_the_upn_or_the_mail_by_format() {
        let with_mail = session_of(record(Some("carla@mail.test"), None));
        let without = session_of(record(None, None));
        let id = with_mail.immutable_id.clone();
        assert_eq!(saml_name_id(NAMEID_PERSISTENT, &with_mail), id);
        assert_eq!(
            saml_name_id(NAMEID_UNSPECIFIED, &with_mail),
            "Carla@Corp.Test"
        );
        assert_eq!(saml_name_id(NAMEID_EMAIL, &with_mail), "carla@mail.test");
        // No mail: the UPN stands in for it.
        assert_eq!(saml_name_id(NAMEID_EMAIL, &without), "Carla@Corp.Test");
        // Any other format (the request was checked before) gets the stable id.
        assert_eq!(
            saml_name_id(
                "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
                &with_mail
            ),
            id
        );
    }
}
