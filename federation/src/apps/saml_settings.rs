//! One SAML application's settings, kept beside its metadata (`saml-<hash>.toml`, which
//! `causeway apps add` writes): the NameID it gets, which attributes under which names,
//! which parts are signed, whether assertions are encrypted. Errors name the file and
//! line. It must never turn on encryption for an SP whose metadata has no key for it.

use std::path::Path;

use causeway_saml::saml2::{
    ServiceProvider, SignParts, ATTRNAME_BASIC, ATTRNAME_URI, NAMEID_EMAIL, NAMEID_PERSISTENT,
    NAMEID_TRANSIENT, NAMEID_UNSPECIFIED,
};

use super::AppsError;

/// A NameID format an application may be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameIdFormat {
    /// Stable and opaque (pairwise by default, see [`PersistentId`]).
    Persistent,
    /// A fresh random value for every assertion.
    Transient,
    /// The mail address (the UPN when there is none).
    Email,
    /// The UPN.
    Unspecified,
}

impl NameIdFormat {
    /// Its SAML URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Persistent => NAMEID_PERSISTENT,
            Self::Transient => NAMEID_TRANSIENT,
            Self::Email => NAMEID_EMAIL,
            Self::Unspecified => NAMEID_UNSPECIFIED,
        }
    }

    /// The format of a SAML URI, if it is one we issue.
    pub fn from_uri(u: &str) -> Option<Self> {
        [
            Self::Persistent,
            Self::Transient,
            Self::Email,
            Self::Unspecified,
        ]
        .into_iter()
        .find(|f| f.uri() == u)
    }
}

/// What a persistent NameID is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistentId {
    /// Different for every application (so two applications cannot join their records
    /// on it), stable for one: derived from the immutable id, the application's entity
    /// id and a secret of this endpoint.
    #[default]
    Pairwise,
    /// The immutable id itself (what Microsoft 365 matches as ImmutableID).
    ImmutableId,
}

/// How attribute names are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributeNames {
    /// Claim URIs (`http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn`), as
    /// Microsoft's and most SaaS applications expect.
    #[default]
    Uri,
    /// `urn:oid:` names (eduPerson / inetOrgPerson), as Shibboleth and SimpleSAMLphp
    /// expect; an attribute without an OID keeps its URI.
    Oid,
    /// Plain names (`upn`, `mail`, …) with the basic NameFormat.
    Plain,
}

impl AttributeNames {
    /// The NameFormat of attributes named this way.
    pub fn name_format(self) -> &'static str {
        match self {
            Self::Uri | Self::Oid => ATTRNAME_URI,
            Self::Plain => ATTRNAME_BASIC,
        }
    }
}

/// An attribute an assertion may carry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Claim {
    /// The user principal name.
    #[serde(rename = "upn")]
    Upn,
    /// The mail address.
    #[serde(rename = "mail")]
    Mail,
    /// The display name.
    #[serde(rename = "displayName")]
    DisplayName,
    /// The group names.
    #[serde(rename = "groups")]
    Groups,
    /// The immutable id.
    #[serde(rename = "immutableID")]
    ImmutableId,
}

impl Claim {
    /// Every attribute, in the order assertions carry them.
    pub const ALL: [Self; 5] = [
        Self::Upn,
        Self::Mail,
        Self::DisplayName,
        Self::Groups,
        Self::ImmutableId,
    ];

    /// Its plain name (also its FriendlyName).
    pub fn plain(self) -> &'static str {
        match self {
            Self::Upn => "upn",
            Self::Mail => "mail",
            Self::DisplayName => "displayName",
            Self::Groups => "groups",
            Self::ImmutableId => "immutableID",
        }
    }

    /// Its name when attributes are named `names`.
    pub fn name(self, names: AttributeNames) -> &'static str {
        let uri = match self {
            Self::Upn => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
            Self::Mail => "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            Self::DisplayName => "http://schemas.microsoft.com/identity/claims/displayname",
            Self::Groups => "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
            Self::ImmutableId => {
                "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID"
            }
        };
        match (names, self) {
            (AttributeNames::Uri, _) => uri,
            (AttributeNames::Plain, c) => c.plain(),
            // eduPersonPrincipalName, mail, displayName, isMemberOf.
            (AttributeNames::Oid, Self::Upn) => "urn:oid:1.3.6.1.4.1.5923.1.1.1.6",
            (AttributeNames::Oid, Self::Mail) => "urn:oid:0.9.2342.19200300.100.1.3",
            (AttributeNames::Oid, Self::DisplayName) => "urn:oid:2.16.840.1.113730.3.1.241",
            (AttributeNames::Oid, Self::Groups) => "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
            // No standard OID: the URI, which is still a URI-format name.
            (AttributeNames::Oid, Self::ImmutableId) => uri,
        }
    }
}

/// Which parts of a Response are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sign {
    /// The Response and the Assertion.
    #[default]
    Both,
    /// Only the Response.
    Response,
    /// Only the Assertion.
    Assertion,
}

impl Sign {
    /// As the SAML crate names it.
    pub fn parts(self) -> SignParts {
        match self {
            Self::Both => SignParts::Both,
            Self::Response => SignParts::Response,
            Self::Assertion => SignParts::Assertion,
        }
    }
}

/// One SAML application's settings; every field has a default, so an SP registered
/// without any (or before they existed) behaves as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSettings {
    /// A name shown to users (sign-in page, "continuing to …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The NameID format it always gets; a request that names another one (other than
    /// unspecified) is answered InvalidNameIDPolicy. None: as the request or the
    /// metadata asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_id_format: Option<NameIdFormat>,
    /// What a persistent NameID is.
    #[serde(default)]
    pub persistent_id: PersistentId,
    /// How attribute names are written.
    #[serde(default)]
    pub attribute_names: AttributeNames,
    /// Which attributes it gets (None: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<Claim>>,
    /// Which parts are signed.
    #[serde(default)]
    pub sign: Sign,
    /// Encrypt assertions to the key in its metadata.
    #[serde(default)]
    pub encrypt_assertions: bool,
}

impl SamlSettings {
    /// The attributes it gets, in assertion order.
    pub fn claims(&self) -> Vec<Claim> {
        match &self.attributes {
            None => Claim::ALL.to_vec(),
            Some(list) => Claim::ALL
                .into_iter()
                .filter(|c| list.contains(c))
                .collect(),
        }
    }

    /// Checks the settings against the SP they are for. The error is the problem and
    /// the setting it is about.
    pub fn validate(&self, sp: &ServiceProvider) -> Result<(), (String, &'static str)> {
        if let Some(n) = &self.name {
            if n.is_empty() || n.chars().count() > 200 || n.chars().any(char::is_control) {
                return Err((
                    "the name must be 1 to 200 characters without control characters".into(),
                    "name",
                ));
            }
        }
        if self.sign == Sign::Response && sp.want_assertions_signed {
            return Err((
                format!(
                    "{} says WantAssertionsSigned in its metadata, so its Assertions must be signed (sign = \"both\" or \"assertion\")",
                    sp.entity_id
                ),
                "sign",
            ));
        }
        if self.encrypt_assertions && sp.encryption_key().is_none() {
            return Err((
                format!(
                    "{} has no encryption key (an RSA KeyDescriptor use=\"encryption\") in its metadata, so its assertions cannot be encrypted",
                    sp.entity_id
                ),
                "encrypt_assertions",
            ));
        }
        Ok(())
    }

    /// Reads the settings file `path` of `sp`, if there is one; errors name its line.
    pub fn load(path: &Path, sp: &ServiceProvider) -> Result<Option<Self>, AppsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AppsError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let bad = |problem: String| AppsError::Invalid {
            path: path.to_owned(),
            problem,
        };
        // toml's message names the line and column.
        let s: Self = toml::from_str(&text).map_err(|e| bad(e.to_string().trim().to_owned()))?;
        s.validate(sp).map_err(|(problem, key)| {
            bad(match line_of(&text, key) {
                Some(n) => format!("line {n}: {key}: {problem}"),
                None => format!("{key}: {problem}"),
            })
        })?;
        Ok(Some(s))
    }
}

/// The 1-based line where `key` is set in a flat TOML document.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// Whether an application URL keeps the assertion off the network in the clear:
/// https://, or http:// to this host (127.0.0.0/8, ::1, localhost).
pub fn is_https_or_loopback(u: &str) -> bool {
    let Some(rest) = u
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &u[7..])
    else {
        return true;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example/meta">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs" index="1"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"#;

    /// A scratch directory, removed on drop.
    struct Scratch(std::path::PathBuf);
    impl Scratch {
        fn new() -> Self {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random");
            let p =
                std::env::temp_dir().join(format!("causeway-settings-{}", u64::from_le_bytes(b)));
            std::fs::create_dir_all(&p).expect("mkdir");
            Self(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sp() -> ServiceProvider {
        ServiceProvider::from_metadata(SP).expect("metadata")
    }

    #[test]
    fn settings_round_trip_and_bad_ones_are_refused_with_their_line() {
        let dir = Scratch::new();
        let path = dir.path().join("saml-x.toml");
        let s = SamlSettings {
            name: Some("Wiki".into()),
            name_id_format: Some(NameIdFormat::Transient),
            persistent_id: PersistentId::ImmutableId,
            attribute_names: AttributeNames::Oid,
            attributes: Some(vec![Claim::Mail, Claim::Upn]),
            sign: Sign::Assertion,
            encrypt_assertions: false,
        };
        std::fs::write(&path, toml::to_string(&s).expect("toml")).expect("write");
        assert_eq!(
            SamlSettings::load(&path, &sp()).expect("loads"),
            Some(s.clone())
        );
        // Assertion order, whatever order the file lists them in.
        assert_eq!(s.claims(), vec![Claim::Upn, Claim::Mail]);
        assert_eq!(SamlSettings::default().claims(), Claim::ALL.to_vec());
        assert_eq!(
            SamlSettings::load(&dir.path().join("none.toml"), &sp()).expect("none"),
            None
        );

        std::fs::write(&path, "name = \"Wiki\"\n\nsign = \"everything\"\n").expect("write");
        let e = SamlSettings::load(&path, &sp())
            .expect_err("bad value")
            .to_string();
        assert!(e.contains("line 3") && e.contains("saml-x.toml"), "{e}");
        std::fs::write(&path, "nameid = \"persistent\"\n").expect("write");
        let e = SamlSettings::load(&path, &sp())
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("line 1") && e.contains("nameid"), "{e}");
        // An SP that wants signed Assertions cannot be set to get only a signed Response.
        let wants = ServiceProvider::from_metadata(&SP.replace(
            "<md:SPSSODescriptor ",
            "<md:SPSSODescriptor WantAssertionsSigned=\"true\" ",
        ))
        .expect("metadata");
        std::fs::write(&path, "sign = \"response\"\n").expect("write");
        SamlSettings::load(&path, &sp()).expect("fine for an SP that does not ask");
        let e = SamlSettings::load(&path, &wants)
            .expect_err("wants signed assertions")
            .to_string();
        assert!(
            e.contains("line 1: sign") && e.contains("WantAssertionsSigned"),
            "{e}"
        );
        // Encryption needs a key in the metadata: refused, naming the line.
        std::fs::write(&path, "name = \"Wiki\"\nencrypt_assertions = true\n").expect("write");
        let e = SamlSettings::load(&path, &sp())
            .expect_err("no key")
            .to_string();
        assert!(
            e.contains("line 2: encrypt_assertions") && e.contains("no encryption key"),
            "{e}"
        );
    }

    #[test]
    fn attribute_names_follow_the_chosen_scheme() {
        assert_eq!(
            Claim::Mail.name(AttributeNames::Uri),
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
        );
        assert_eq!(
            Claim::Mail.name(AttributeNames::Oid),
            "urn:oid:0.9.2342.19200300.100.1.3"
        );
        assert_eq!(Claim::Mail.name(AttributeNames::Plain), "mail");
        assert_eq!(AttributeNames::Plain.name_format(), ATTRNAME_BASIC);
        assert_eq!(AttributeNames::Oid.name_format(), ATTRNAME_URI);
        for f in [
            NAMEID_PERSISTENT,
            NAMEID_TRANSIENT,
            NAMEID_EMAIL,
            NAMEID_UNSPECIFIED,
        ] {
            assert_eq!(NameIdFormat::from_uri(f).map(NameIdFormat::uri), Some(f));
        }
        assert_eq!(
            NameIdFormat::from_uri("urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"),
            None
        );
    }

    #[test]
    fn plain_http_is_accepted_on_loopback_only() {
        for ok in [
            "https://sp.example/acs",
            "http://127.0.0.1:8080/acs",
            "http://localhost/acs",
            "HTTP://[::1]:9/acs",
            "http://127.8.0.1/acs",
            "http://u@127.0.0.1/acs",
        ] {
            assert!(is_https_or_loopback(ok), "{ok}");
        }
        for bad in [
            "http://sp.example/acs",
            "http://127.0.0.1.evil.example/acs",
            "http://10.0.0.1/acs",
            "http://127.0.0.1@evil.example/acs",
            "http://[::2]/acs",
        ] {
            assert!(!is_https_or_loopback(bad), "{bad}");
        }
    }
}
