//! OpenLDAP as a password hash source: `sambaNTPassword` (Samba's LDAP schema, 32 hex
//! digits) read through the connector's RFC 4533 content-sync pass with a cookie of its
//! own, so a delta reads only the users changed since the last hash pass. The flags come
//! from Samba's and ppolicy's attributes: `sambaAcctFlags` `D` or an administrator's
//! permanent ppolicy lock (`pwdAccountLockedTime: 000001010000Z`) is disabled; `pwdReset`
//! or `sambaPwdLastSet: 0` is must-change; `sambaKickoffTime`, `shadowExpire` or
//! ppolicy's `pwdEndTime` is the account's expiry (the earliest wins).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_credential::NtHash;

use super::{unix_to_filetime, HashRecord};
use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, EntryError, Values};
use crate::config::Connector;
use crate::connect::connect;
use crate::openldap::{self, PassError};
use crate::run::RunError;

/// What a hash pass asks for: the hash, the times and the flags, nothing else.
pub const HASH_ATTRIBUTES: [&str; 10] = [
    "objectClass",
    "entryUUID",
    "sambaNTPassword",
    "sambaPwdLastSet",
    "sambaAcctFlags",
    "sambaKickoffTime",
    "shadowExpire",
    "pwdReset",
    "pwdAccountLockedTime",
    "pwdEndTime",
];

/// ppolicy's value for a lock only an administrator lifts.
const PERMANENT_LOCK: &str = "000001010000Z";

/// What one read gave: a record (or why not) per changed user, and the cookie to store
/// once they are all acknowledged.
#[derive(Debug)]
pub struct Read {
    /// The users read.
    pub records: Vec<Result<HashRecord, EntryError>>,
    /// The server's cookie after the pass.
    pub cookie: Cookie,
}

/// Reads the users changed since `cookie` (all of them when it is empty).
pub async fn read(c: &Connector, cookie: &Cookie) -> Result<Read, RunError> {
    let mut session = connect(c).await.map_err(RunError::Connect)?;
    if !session.root.supports(openldap::SYNC_REQUEST_OID) {
        let _ = session.ldap.unbind().await;
        return Err(RunError::ContentSync(PassError::NoContentSync));
    }
    let attrs: Vec<String> = HASH_ATTRIBUTES.iter().map(|s| (*s).to_owned()).collect();
    // No held set: a hash pass infers no deletions (object export does that).
    let held = BTreeMap::new();
    let mut from = cookie.clone();
    let pass = loop {
        match openldap::pass(
            &mut session.ldap,
            &c.base_dn,
            &attrs,
            &from,
            &held,
            c.timeout,
        )
        .await
        {
            Ok(p) => break p,
            // e-syncRefreshRequired: the cookie is too old; read everything, once.
            Err(PassError::Refused { rc: 4096, .. }) if !from.is_empty() => {
                from = Cookie::default();
            }
            Err(e) => {
                let _ = session.ldap.unbind().await;
                return Err(RunError::ContentSync(e));
            }
        }
    };
    let _ = session.ldap.unbind().await;
    let records = pass
        .entries
        .into_iter()
        .filter_map(|e| match e {
            Ok(e) => record(e).transpose(),
            Err(e) => Some(Err(e)),
        })
        .collect();
    Ok(Read {
        records,
        cookie: pass.cookie,
    })
}

fn err(e: &Entry, attribute: &str, message: &str) -> EntryError {
    EntryError {
        dn: e.dn.clone(),
        attribute: Some(attribute.to_owned()),
        message: message.to_owned(),
    }
}

/// The one value of `name`, as text.
fn one<'a>(attrs: &'a BTreeMap<String, Values>, name: &str) -> Option<&'a [u8]> {
    attrs
        .get(name)
        .and_then(|v| v.values.first())
        .map(Vec::as_slice)
}

fn number(e: &Entry, name: &str) -> Result<Option<i64>, EntryError> {
    match one(&e.attrs, name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
            .map(Some)
            .ok_or_else(|| err(e, name, "not a whole number")),
    }
}

/// `YYYYMMDDHHMMSSZ` (RFC 4517 GeneralizedTime, UTC, fractions ignored) as Unix seconds.
pub fn generalized_time(v: &str) -> Option<i64> {
    let d = v.as_bytes();
    if d.len() < 15 || !d[..14].iter().all(u8::is_ascii_digit) || !v.ends_with('Z') {
        return None;
    }
    let n = |a: usize, b: usize| v[a..b].parse::<i64>().ok();
    let (y, mo, day) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, s) = (n(8, 10)?, n(10, 12)?, n(12, 14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

fn at(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The record of one content-sync entry; `None` for a deletion. An entry without Samba's
/// attributes (no `sambaSamAccount`, or not a person at all) is a record without a
/// password: the pass keeps only exported users, and remembering those without one keeps
/// the next pass a delta.
pub fn record(e: Entry) -> Result<Option<HashRecord>, EntryError> {
    if e.deleted {
        return Ok(None);
    }
    let nt = match one(&e.attrs, "sambantpassword") {
        None => None,
        // The parse error names no digit of the value.
        Some(v) => Some(
            std::str::from_utf8(v)
                .ok()
                .and_then(|t| NtHash::from_hex(t.trim()).ok())
                .ok_or_else(|| err(&e, "sambaNTPassword", "not 32 hexadecimal digits"))?,
        ),
    };
    let last_set = number(&e, "sambapwdlastset")?;
    let pwd_reset = one(&e.attrs, "pwdreset").is_some_and(|v| v.eq_ignore_ascii_case(b"TRUE"));
    let flags = one(&e.attrs, "sambaacctflags").unwrap_or_default();
    let locked =
        one(&e.attrs, "pwdaccountlockedtime").is_some_and(|v| v == PERMANENT_LOCK.as_bytes());
    let disabled = (flags.starts_with(b"[") && flags.contains(&b'D')) || locked;
    let mut expires: Vec<i64> = Vec::new();
    if let Some(k) = number(&e, "sambakickofftime")? {
        expires.push(k);
    }
    if let Some(d) = number(&e, "shadowexpire")?.filter(|d| *d >= 0) {
        expires.push(d.saturating_mul(86_400));
    }
    if let Some(v) = one(&e.attrs, "pwdendtime") {
        let t = std::str::from_utf8(v)
            .ok()
            .and_then(generalized_time)
            .ok_or_else(|| err(&e, "pwdEndTime", "not a GeneralizedTime"))?;
        expires.push(t);
    }
    Ok(Some(HashRecord {
        anchor: e.guid,
        dn: e.dn.clone(),
        nt,
        // sambaPwdLastSet is Unix seconds; 0 means "must change", as pwdLastSet's 0 does.
        pwd_last_set: last_set.map(|s| if s == 0 { 0 } else { unix_to_filetime(s) }),
        must_change: pwd_reset,
        disabled,
        account_expires: expires.into_iter().min().map(at),
    }))
}
