//! An OpenLDAP entry's attributes to what the endpoint stores: the kind from the standard
//! object classes (`inetOrgPerson`, `groupOfNames`, …), the fields from the standard
//! attribute names, and the account state from ppolicy's lock and `shadowExpire`.
//!
//! OpenLDAP has no UPN: `upn` comes from `mail` unless `[connector.attributes] upn = "…"`
//! names another attribute (e.g. `eduPersonPrincipalName`). The anchor is the entry's
//! `entryUUID`, which the connector space already keys the entry by.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::ad::entry::{Guid, Values};
use crate::mapping::{Field, Kind, MapError, Mapped, Mapping};

/// Seconds in one of `shadowExpire`'s days.
const DAY: i64 = 86_400;

/// What the mapping reads besides the mapped fields' sources. `entryUUID`,
/// `pwdAccountLockedTime` and `pwdReset` are operational: a search for `*` leaves them out,
/// so they are asked for by name.
pub(crate) const ALWAYS_READ: [&str; 9] = [
    "objectClass",
    "entryUUID",
    "pwdAccountLockedTime",
    "pwdReset",
    "shadowExpire",
    "manager",
    "member",
    "uniqueMember",
    "cn",
];

/// The default source of each field, and the display name's fallback on `cn` (most
/// `inetOrgPerson` entries have no `displayName`; every one has a `cn`).
pub(crate) fn default_sources() -> (BTreeMap<Field, String>, BTreeMap<Field, String>) {
    let sources = Field::ALL
        .into_iter()
        .map(|f| {
            let a = match f {
                Field::Upn | Field::Mail => "mail",
                // No standard attribute: read where a schema (e.g. Samba 4's) defines one.
                Field::ProxyAddresses => "proxyaddresses",
                Field::DisplayName => "displayname",
                Field::GivenName => "givenname",
                Field::Surname => "sn",
                Field::Department => "departmentnumber",
                Field::EmployeeId => "employeenumber",
            };
            (f, a.to_owned())
        })
        .collect();
    let fallbacks = BTreeMap::from([(Field::DisplayName, "cn".to_owned())]);
    (sources, fallbacks)
}

/// The kind an OpenLDAP `objectClass` list describes, if sync imports it. A person class
/// wins over the others; `posixAccount` without one is a (Unix) user too. A `device` that
/// is also a `pwdPolicy` is a ppolicy policy entry (slapd keeps them so), not a device.
pub fn kind_of(object_classes: &[Vec<u8>]) -> Option<Kind> {
    let has = |c: &str| {
        object_classes
            .iter()
            .any(|v| v.eq_ignore_ascii_case(c.as_bytes()))
    };
    if [
        "inetOrgPerson",
        "organizationalPerson",
        "person",
        "posixAccount",
    ]
    .into_iter()
    .any(has)
    {
        Some(Kind::User)
    } else if has("groupOfNames") || has("groupOfUniqueNames") {
        Some(Kind::Group)
    } else if has("organizationalUnit") {
        Some(Kind::OrgUnit)
    } else if has("device") && !has("pwdPolicy") {
        Some(Kind::Device)
    } else {
        None
    }
}

/// A `uniqueMember` value without its optional unique identifier (`DN#'0101'B`, RFC 4517
/// Name and Optional UID), so that it resolves by DN like a `member` value.
fn without_uid(v: &str) -> &str {
    match v.rfind("#'") {
        Some(i)
            if v.len() >= i + 4
                && v.ends_with("'B")
                && v[i + 2..v.len() - 2]
                    .bytes()
                    .all(|b| b == b'0' || b == b'1') =>
        {
            &v[..i]
        }
        _ => v,
    }
}

/// Maps an entry's whole attribute set (lower-case names) at `now`. `guid` is its
/// `entryUUID`. `None`: not a kind sync imports (e.g. an `organizationalRole`).
pub(crate) fn map(
    guid: Guid,
    dn: &str,
    attrs: &BTreeMap<String, Values>,
    mapping: &Mapping,
    now: SystemTime,
) -> Result<Option<Mapped>, MapError> {
    let values = |a: &str| attrs.get(a).map_or(&[][..], |v| v.values.as_slice());
    let Some(kind) = kind_of(values("objectclass")) else {
        return Ok(None);
    };
    let text = |attribute: &'static str, v: &[u8]| -> Result<String, MapError> {
        String::from_utf8(v.to_vec()).map_err(|_| MapError {
            attribute,
            message: "a value that is not UTF-8".into(),
        })
    };
    let one = |attribute: &'static str| -> Result<Option<String>, MapError> {
        match values(&attribute.to_ascii_lowercase()) {
            [] => Ok(None),
            [v] => text(attribute, v).map(Some),
            many => Err(MapError {
                attribute,
                message: format!("{} values where the schema allows one", many.len()),
            }),
        }
    };
    let mut fields = BTreeMap::new();
    for f in Field::ALL {
        let mut source = mapping.source(f);
        let mut vals = values(source);
        if vals.is_empty() {
            if let Some(fb) = mapping.fallback(f) {
                source = fb;
                vals = values(fb);
            }
        }
        if vals.is_empty() {
            continue;
        }
        let mut out = Vec::with_capacity(vals.len());
        for v in vals {
            out.push(text(f.config_name(), v).map_err(|e| MapError {
                message: format!("{} (mapped from {source})", e.message),
                ..e
            })?);
        }
        if f != Field::ProxyAddresses {
            out.truncate(1);
        }
        fields.insert(f, out);
    }
    // shadowExpire counts days since 1970-01-01; the account expires as that day begins
    // (pam_unix: expired when today >= shadowExpire). -1 (and any negative) is "never".
    let account_expires = match one("shadowExpire")? {
        None => None,
        Some(t) => match t.trim().parse::<i64>() {
            Ok(d) if d < 0 => None,
            Ok(d) => Some(d.checked_mul(DAY).ok_or_else(|| MapError {
                attribute: "shadowExpire",
                message: format!("{d} days is past any date"),
            })?),
            Err(_) => {
                return Err(MapError {
                    attribute: "shadowExpire",
                    message: "not a whole number of days".into(),
                })
            }
        },
    };
    let now_secs = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    // ppolicy keeps a lock (after too many failures, or an administrator's
    // 000001010000Z) in pwdAccountLockedTime until it is cleared.
    let locked = !values("pwdaccountlockedtime").is_empty();
    let expired = account_expires.is_some_and(|t| now_secs >= t);
    let must_change_password = kind == Kind::User
        && one("pwdReset")?.is_some_and(|v| v.trim().eq_ignore_ascii_case("TRUE"));
    let dns = |a: &'static str| -> Result<Vec<String>, MapError> {
        values(&a.to_ascii_lowercase())
            .iter()
            .map(|v| text(a, v))
            .collect()
    };
    let members = if kind == Kind::Group {
        let mut m = dns("member")?;
        for u in dns("uniqueMember")? {
            m.push(without_uid(&u).to_owned());
        }
        m
    } else {
        Vec::new()
    };
    Ok(Some(Mapped {
        kind,
        anchor: guid,
        guid,
        dn: dn.to_owned(),
        fields,
        enabled: !locked && !expired,
        account_expires,
        must_change_password,
        password_expired: false,
        manager: dns("manager")?.into_iter().next(),
        members,
    }))
}

#[cfg(test)]
mod tests;
