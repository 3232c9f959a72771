//! What an application is told about the user: the session's identity taken from the
//! directory store's record and group names (read at sign-in by the login step), the SAML
//! NameID and attributes (as each application's settings ask), the groups. Pure: no I/O.
//! It must never put anything in a token the record does not hold (no password, no
//! verifier, nothing from the request).

use super::pairwise::PairwiseKey;
use crate::apps::{Claim, PersistentId, SamlSettings};
use crate::session::{Identity, Session};
use causeway_saml::saml2::{
    new_id, SamlAttribute, NAMEID_EMAIL, NAMEID_TRANSIENT, NAMEID_UNSPECIFIED,
};
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

/// The NameID for `format` at the application `sp`: the mail address (the UPN when
/// there is none) for emailAddress, the UPN for unspecified, a fresh random value for
/// transient, else (persistent) the pairwise id of the user at `sp`, or the immutable id
/// when the application's settings ask for it.
pub(super) fn saml_name_id(
    format: &str,
    s: &Session,
    sp: &str,
    settings: &SamlSettings,
    pairwise: &PairwiseKey,
) -> String {
    match format {
        NAMEID_EMAIL => s.mail.clone().unwrap_or_else(|| s.upn.clone()),
        NAMEID_UNSPECIFIED => s.upn.clone(),
        NAMEID_TRANSIENT => new_id(),
        _ => match settings.persistent_id {
            PersistentId::ImmutableId => s.immutable_id.clone(),
            PersistentId::Pairwise => pairwise.name_id(&s.immutable_id, sp),
        },
    }
}

/// The attributes of a SAML assertion: those the application's settings choose (all by
/// default), in this order, named as they say, each present even when empty.
pub(super) fn saml_attributes(s: &Session, settings: &SamlSettings) -> Vec<SamlAttribute> {
    settings
        .claims()
        .into_iter()
        .map(|c| SamlAttribute {
            name: c.name(settings.attribute_names),
            friendly: c.plain(),
            values: match c {
                Claim::Upn => vec![s.upn.clone()],
                Claim::Mail => s.mail.iter().cloned().collect(),
                Claim::DisplayName => s.display_name.iter().cloned().collect(),
                Claim::Groups => groups(s),
                Claim::ImmutableId => vec![s.immutable_id.clone()],
            },
        })
        .collect()
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
        saml_attributes(s, &SamlSettings::default())
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
        let claim = saml_attributes(&s, &SamlSettings::default())
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
    fn the_name_id_is_pairwise_or_the_immutable_id_the_upn_the_mail_or_transient_by_format() {
        let with_mail = session_of(record(Some("carla@mail.test"), None));
        let without = session_of(record(None, None));
        let id = with_mail.immutable_id.clone();
        let key = PairwiseKey::from_bytes([3; 32]);
        let def = SamlSettings::default();
        let n =
            |f: &str, s: &Session, sp: &str, set: &SamlSettings| saml_name_id(f, s, sp, set, &key);
        // Persistent: pairwise by default, stable for one SP, different for another.
        let a = n(NAMEID_PERSISTENT, &with_mail, "https://a.example", &def);
        assert_eq!(a, key.name_id(&id, "https://a.example"));
        assert_ne!(a, id);
        assert_eq!(
            a,
            n(NAMEID_PERSISTENT, &with_mail, "https://a.example", &def)
        );
        assert_ne!(
            a,
            n(NAMEID_PERSISTENT, &with_mail, "https://b.example", &def)
        );
        // The immutable id when the application asks for it.
        let m365 = SamlSettings {
            persistent_id: PersistentId::ImmutableId,
            ..SamlSettings::default()
        };
        assert_eq!(
            n(
                NAMEID_PERSISTENT,
                &with_mail,
                "urn:federation:MicrosoftOnline",
                &m365
            ),
            id
        );
        assert_eq!(
            n(NAMEID_UNSPECIFIED, &with_mail, "x", &def),
            "Carla@Corp.Test"
        );
        assert_eq!(n(NAMEID_EMAIL, &with_mail, "x", &def), "carla@mail.test");
        // No mail: the UPN stands in for it.
        assert_eq!(n(NAMEID_EMAIL, &without, "x", &def), "Carla@Corp.Test");
        // Transient: new every time, never the id.
        let t1 = n(NAMEID_TRANSIENT, &with_mail, "x", &def);
        let t2 = n(NAMEID_TRANSIENT, &with_mail, "x", &def);
        assert_ne!(t1, t2);
        assert!(t1 != id && t1 != a);
    }

    #[test]
    fn the_settings_choose_the_attributes_and_their_names() {
        let s = session_of(record(Some("carla@mail.test"), Some("Carla Diaz")));
        let set = SamlSettings {
            attribute_names: crate::apps::AttributeNames::Oid,
            attributes: Some(vec![Claim::Mail, Claim::DisplayName]),
            ..SamlSettings::default()
        };
        let got: Vec<_> = saml_attributes(&s, &set)
            .into_iter()
            .map(|a| (a.name, a.friendly, a.values))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "urn:oid:0.9.2342.19200300.100.1.3",
                    "mail",
                    vec!["carla@mail.test".to_owned()]
                ),
                (
                    "urn:oid:2.16.840.1.113730.3.1.241",
                    "displayName",
                    vec!["Carla Diaz".to_owned()]
                ),
            ]
        );
    }
}
