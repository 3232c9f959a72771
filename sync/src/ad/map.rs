//! From an AD object's attributes to what the endpoint stores: which kind of object it is,
//! its anchor, and the mapped fields (UPN, mail, names, department, account state…), with
//! per-attribute overrides from the configuration. A [`Mapping`] carries its connector's
//! kind: an OpenLDAP connector's objects are mapped by [`crate::openldap::map`] instead.
//!
//! The input is an object's *whole* current attribute set (a DirSync delta carries only
//! what changed; the connector merges it into the object it already holds first). DNs that
//! point at other objects (`manager`, `member`) are kept as DNs here: resolving them to
//! anchors needs the other objects, which the connector holds.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use super::entry::{Guid, Values};
use crate::config::ConnectorKind;

/// `userAccountControl`'s ACCOUNTDISABLE bit.
const UAC_ACCOUNTDISABLE: u64 = 0x2;
/// `msDS-User-Account-Control-Computed`'s UF_PASSWORD_EXPIRED bit.
const UAC_PASSWORD_EXPIRED: u64 = 0x80_0000;
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

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
    kind: ConnectorKind,
    sources: BTreeMap<Field, String>,
    /// Where a field is read when its source has no value (OpenLDAP: the display name
    /// falls back on `cn`). Overriding the field drops its fallback: the override is what
    /// the operator asked for.
    fallbacks: BTreeMap<Field, String>,
}

/// Active Directory's mapping.
impl Default for Mapping {
    fn default() -> Self {
        Self::for_kind(ConnectorKind::ActiveDirectory)
    }
}

impl Mapping {
    /// The default mapping of a kind of connector.
    pub fn for_kind(kind: ConnectorKind) -> Self {
        let (sources, fallbacks) = match kind {
            ConnectorKind::ActiveDirectory => (
                Field::ALL
                    .into_iter()
                    .map(|f| (f, f.default_source().to_ascii_lowercase()))
                    .collect(),
                BTreeMap::new(),
            ),
            ConnectorKind::OpenLdap => crate::openldap::map::default_sources(),
        };
        Self {
            kind,
            sources,
            fallbacks,
        }
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

    /// Every source attribute a search must ask for, with what the mapping always needs.
    pub fn attributes(&self) -> Vec<String> {
        if self.kind == ConnectorKind::OpenLdap {
            let mut a: Vec<String> = crate::openldap::map::ALWAYS_READ
                .into_iter()
                .map(str::to_owned)
                .collect();
            a.extend(self.sources.values().cloned());
            a.extend(self.fallbacks.values().cloned());
            a.sort_by_key(|s| s.to_ascii_lowercase());
            a.dedup_by(|x, y| x.eq_ignore_ascii_case(y));
            return a;
        }
        let mut a: Vec<String> = [
            "objectGUID",
            "mS-DS-ConsistencyGuid",
            "objectSid",
            "objectClass",
            "isDeleted",
            "userAccountControl",
            "accountExpires",
            "pwdLastSet",
            "manager",
            "member",
            "sAMAccountName",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        a.extend(self.sources.values().cloned());
        a.sort_by_key(|s| s.to_ascii_lowercase());
        a.dedup_by(|x, y| x.eq_ignore_ascii_case(y));
        a
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

/// Maps an object's whole attribute set (lower-case names). `None`: not a kind sync
/// imports (e.g. a `foreignSecurityPrincipal` or a container).
///
/// The clock is read here, once per object, for OpenLDAP's `shadowExpire` (an account
/// past it is exported disabled); [`map_at`] takes it from the caller.
pub fn map(
    guid: Guid,
    dn: &str,
    attrs: &BTreeMap<String, Values>,
    mapping: &Mapping,
) -> Result<Option<Mapped>, MapError> {
    map_at(guid, dn, attrs, mapping, SystemTime::now())
}

/// [`map`] at `now`.
pub fn map_at(
    guid: Guid,
    dn: &str,
    attrs: &BTreeMap<String, Values>,
    mapping: &Mapping,
    now: SystemTime,
) -> Result<Option<Mapped>, MapError> {
    if mapping.kind() == ConnectorKind::OpenLdap {
        return crate::openldap::map::map(guid, dn, attrs, mapping, now);
    }
    let values = |a: &str| attrs.get(a).map_or(&[][..], |v| v.values.as_slice());
    let Some(kind) = Kind::of(values("objectclass")) else {
        return Ok(None);
    };
    let text = |attribute: &'static str, v: &[u8]| -> Result<String, MapError> {
        String::from_utf8(v.to_vec()).map_err(|_| MapError {
            attribute,
            message: "a value that is not UTF-8".into(),
        })
    };
    let number = |attribute: &'static str| -> Result<Option<i64>, MapError> {
        match values(&attribute.to_ascii_lowercase()) {
            [] => Ok(None),
            [v] => text(attribute, v)?
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| MapError {
                    attribute,
                    message: "not a whole number".into(),
                }),
            many => Err(MapError {
                attribute,
                message: format!("{} values where AD keeps one", many.len()),
            }),
        }
    };
    let anchor = match values("ms-ds-consistencyguid") {
        [] => guid,
        [v] => Guid::from_bytes(v).map_err(|message| MapError {
            attribute: "mS-DS-ConsistencyGuid",
            message,
        })?,
        many => {
            return Err(MapError {
                attribute: "mS-DS-ConsistencyGuid",
                message: format!("{} values where AD keeps one", many.len()),
            })
        }
    };
    let mut fields = BTreeMap::new();
    for f in Field::ALL {
        let vals = values(mapping.source(f));
        if vals.is_empty() {
            continue;
        }
        let mut out = Vec::with_capacity(vals.len());
        for v in vals {
            out.push(text(f.config_name(), v).map_err(|e| MapError {
                message: format!("{} (mapped from {})", e.message, mapping.source(f)),
                ..e
            })?);
        }
        if f != Field::ProxyAddresses {
            out.truncate(1);
        }
        fields.insert(f, out);
    }
    let uac = number("userAccountControl")?.unwrap_or(0) as u64;
    let account_expires = match number("accountExpires")? {
        None | Some(0) | Some(i64::MAX) => None,
        Some(ft) if ft < 0 => {
            return Err(MapError {
                attribute: "accountExpires",
                message: format!("{ft} is before 1601"),
            })
        }
        Some(ft) => Some(ft / 10_000_000 - FILETIME_UNIX_OFFSET),
    };
    let must_change_password = matches!(kind, Kind::User) && number("pwdLastSet")? == Some(0);
    let dns = |a: &'static str| -> Result<Vec<String>, MapError> {
        values(&a.to_ascii_lowercase())
            .iter()
            .map(|v| text(a, v))
            .collect()
    };
    Ok(Some(Mapped {
        kind,
        anchor,
        guid,
        dn: dn.to_owned(),
        fields,
        enabled: uac & UAC_ACCOUNTDISABLE == 0,
        account_expires,
        must_change_password,
        manager: dns("manager")?.into_iter().next(),
        members: if kind == Kind::Group {
            dns("member")?
        } else {
            Vec::new()
        },
    }))
}

/// Whether `msDS-User-Account-Control-Computed` says the password has expired. A computed
/// attribute: DirSync never returns it, so it is read with a base search when needed.
pub fn password_expired(computed_uac: u64) -> bool {
    computed_uac & UAC_PASSWORD_EXPIRED != 0
}

/// The primary SMTP address among `proxyAddresses` (the one prefixed `SMTP:` in capitals).
pub fn primary_smtp(proxy_addresses: &[String]) -> Option<&str> {
    proxy_addresses.iter().find_map(|p| p.strip_prefix("SMTP:"))
}

#[cfg(test)]
mod tests;
