//! From an AD object's attributes to what the endpoint stores: which kind of object it is,
//! its anchor, and the mapped fields (UPN, mail, names, department, account state…), with
//! per-attribute overrides from the configuration. The types are [`crate::mapping`]'s (and
//! re-exported here); a [`Mapping`] carries its connector's kind, and an OpenLDAP
//! connector's objects are mapped by [`crate::openldap::map`] instead.
//!
//! The input is an object's *whole* current attribute set (a DirSync delta carries only
//! what changed; the connector merges it into the object it already holds first). DNs that
//! point at other objects (`manager`, `member`) are kept as DNs here: resolving them to
//! anchors needs the other objects, which the connector holds.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::entry::{Guid, Values};
pub use crate::mapping::{ConnectorKind, Field, Kind, MapError, Mapped, Mapping};

/// `userAccountControl`'s ACCOUNTDISABLE bit.
const UAC_ACCOUNTDISABLE: u64 = 0x2;
/// `userAccountControl`'s DONT_EXPIRE_PASSWORD bit.
const UAC_DONT_EXPIRE_PASSWORD: u64 = 0x1_0000;
/// `msDS-User-Account-Control-Computed`'s UF_PASSWORD_EXPIRED bit.
const UAC_PASSWORD_EXPIRED: u64 = 0x80_0000;
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

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
            max_password_age: None,
        }
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
            "isCriticalSystemObject",
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
    let pwd_last_set = number("pwdLastSet")?;
    let must_change_password = matches!(kind, Kind::User) && pwd_last_set == Some(0);
    let password_expired = matches!(kind, Kind::User)
        && uac & UAC_DONT_EXPIRE_PASSWORD == 0
        && match (pwd_last_set, mapping.max_password_age) {
            (Some(ft), Some(max)) if ft > 0 => {
                let set = ft / 10_000_000 - FILETIME_UNIX_OFFSET;
                let now = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                set.saturating_add(max) <= now
            }
            _ => false,
        };
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
        password_expired,
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
