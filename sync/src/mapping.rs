//! What a connector's objects are mapped to, whichever directory they come from: the
//! object kinds, the fields, a [`Mapping`] (which source attribute each field is read
//! from, for one kind of connector) and the result, [`Mapped`]. The directory-specific
//! readers are `ad::map` (which also builds each kind's default mapping and dispatches)
//! and `openldap::map`; both stand on this module, and this module on neither.

use std::collections::BTreeMap;
use std::fmt;

use crate::ad::entry::Guid;

/// The directory a connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    /// Active Directory (Windows or Samba): DirSync, `uSNChanged`, change notification.
    ActiveDirectory,
    /// OpenLDAP: RFC 4533 content sync with `entryUUID` anchors.
    OpenLdap,
}

/// What kind of directory object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A person's account (`user`, not `computer`).
    User,
    /// A group.
    Group,
    /// A mail contact.
    Contact,
    /// A computer account (a device).
    Device,
    /// An organisational unit (for scoping and display).
    OrgUnit,
}

impl Kind {
    /// The kind an AD `objectClass` list describes, if sync imports it (OpenLDAP's
    /// classes: [`crate::openldap::map::kind_of`]).
    pub fn of(object_classes: &[Vec<u8>]) -> Option<Self> {
        let has = |c: &str| {
            object_classes
                .iter()
                .any(|v| v.eq_ignore_ascii_case(c.as_bytes()))
        };
        if has("computer") {
            Some(Self::Device)
        } else if has("user") {
            Some(Self::User)
        } else if has("group") {
            Some(Self::Group)
        } else if has("contact") {
            Some(Self::Contact)
        } else if has("organizationalUnit") {
            Some(Self::OrgUnit)
        } else {
            None
        }
    }

    /// Its name in records, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Contact => "contact",
            Self::Device => "device",
            Self::OrgUnit => "ou",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields sync maps, each from one source attribute (overridable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// The sign-in name.
    Upn,
    /// The primary mail address.
    Mail,
    /// All mail addresses (`SMTP:` primary, `smtp:` secondary).
    ProxyAddresses,
    /// The display name.
    DisplayName,
    /// The given name.
    GivenName,
    /// The surname.
    Surname,
    /// The department.
    Department,
    /// The employee id.
    EmployeeId,
}

impl Field {
    /// Every field, in a fixed order.
    pub const ALL: [Field; 8] = [
        Field::Upn,
        Field::Mail,
        Field::ProxyAddresses,
        Field::DisplayName,
        Field::GivenName,
        Field::Surname,
        Field::Department,
        Field::EmployeeId,
    ];

    /// The name used in the configuration's `[connector.attributes]` table.
    pub fn config_name(self) -> &'static str {
        match self {
            Self::Upn => "upn",
            Self::Mail => "mail",
            Self::ProxyAddresses => "proxy_addresses",
            Self::DisplayName => "display_name",
            Self::GivenName => "given_name",
            Self::Surname => "surname",
            Self::Department => "department",
            Self::EmployeeId => "employee_id",
        }
    }

    /// The AD attribute it comes from by default.
    pub fn default_source(self) -> &'static str {
        match self {
            Self::Upn => "userPrincipalName",
            Self::Mail => "mail",
            Self::ProxyAddresses => "proxyAddresses",
            Self::DisplayName => "displayName",
            Self::GivenName => "givenName",
            Self::Surname => "sn",
            Self::Department => "department",
            Self::EmployeeId => "employeeID",
        }
    }

    /// The field a configuration name designates.
    pub fn from_config_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.config_name() == s)
    }
}

/// Which source attribute each field comes from, for one kind of connector (its defaults,
/// the object kinds it knows and how it reads account state follow the kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub(crate) kind: ConnectorKind,
    pub(crate) sources: BTreeMap<Field, String>,
    /// Where a field is read when its source has no value (OpenLDAP: the display name
    /// falls back on `cn`). Overriding the field drops its fallback: the override is what
    /// the operator asked for.
    pub(crate) fallbacks: BTreeMap<Field, String>,
    /// The domain's `maxPwdAge` in seconds (AD), read at each import: a user whose
    /// password is older is exported with `password_expired`. `None`: passwords never
    /// expire, or the policy is not known.
    pub(crate) max_password_age: Option<i64>,
}

impl Mapping {
    /// This mapping with the domain's maximum password age (seconds; `None`: never).
    pub fn with_max_password_age(mut self, secs: Option<i64>) -> Self {
        self.max_password_age = secs;
        self
    }

    /// The kind of connector whose objects this maps.
    pub fn kind(&self) -> ConnectorKind {
        self.kind
    }

    /// The defaults with `field` taken from `attribute` instead.
    pub fn with(mut self, field: Field, attribute: &str) -> Self {
        self.sources.insert(field, attribute.to_ascii_lowercase());
        self.fallbacks.remove(&field);
        self
    }

    /// The (lower-case) source attribute of a field.
    pub fn source(&self, field: Field) -> &str {
        self.sources
            .get(&field)
            .map_or_else(|| field.default_source(), String::as_str)
    }

    /// The (lower-case) attribute a field is read from when its source has no value.
    pub fn fallback(&self, field: Field) -> Option<&str> {
        self.fallbacks.get(&field).map(String::as_str)
    }
}

/// A directory object as sync exports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Its kind.
    pub kind: Kind,
    /// `ms-DS-ConsistencyGuid` when set, else `objectGUID` (OpenLDAP: `entryUUID`): it
    /// never changes on rename or move.
    pub anchor: Guid,
    /// `objectGUID`, which other objects' references (`<GUID=…>`) name (OpenLDAP:
    /// `entryUUID`; its references are plain DNs).
    pub guid: Guid,
    /// The DN (for scoping, display and error messages).
    pub dn: String,
    /// The mapped fields that have a value.
    pub fields: BTreeMap<Field, Vec<String>>,
    /// Accounts (users, devices): not disabled in AD (OpenLDAP: not locked by ppolicy, not
    /// past `shadowExpire`).
    pub enabled: bool,
    /// When the account expires (Unix seconds), if it does.
    pub account_expires: Option<i64>,
    /// The user must change the password at next sign-in (`pwdLastSet` = 0; OpenLDAP:
    /// ppolicy's `pwdReset` = TRUE).
    pub must_change_password: bool,
    /// The password is older than the domain's `maxPwdAge` (and the account's password
    /// may expire). Fine-grained password policies (PSOs) are not read.
    pub password_expired: bool,
    /// The manager's DN.
    pub manager: Option<String>,
    /// Members' DNs (groups).
    pub members: Vec<String>,
}

/// Why an object could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError {
    /// The attribute at fault.
    pub attribute: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attribute {}: {}", self.attribute, self.message)
    }
}

impl std::error::Error for MapError {}
