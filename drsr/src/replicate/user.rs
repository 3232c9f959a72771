//! One replicated object → a [`ReplicatedUser`], or nothing (see the module header of
//! [`super`] for which objects count as users).

use super::{ReplicateError, ReplicatedUser, SAM_USER_OBJECT};
use crate::msg::{EncryptedValue, GetNcReply, KnownAttr, ReplObject};

/// The users of one reply, and how many objects were skipped.
pub(super) fn users_of(reply: GetNcReply) -> Result<(Vec<ReplicatedUser>, usize), ReplicateError> {
    let known = reply.prefix.known();
    let mut users = Vec::new();
    let mut skipped = 0;
    for obj in reply.objects {
        match user_of(obj, &known)? {
            Some(u) => users.push(u),
            None => skipped += 1,
        }
    }
    Ok((users, skipped))
}

fn rid_of(sid: &[u8]) -> Option<u32> {
    // revision 1, n sub-authorities, 6-byte authority, n × 4 bytes.
    let n = usize::from(*sid.get(1)?);
    if sid.first() != Some(&1) || n == 0 || sid.len() != 8 + 4 * n {
        return None;
    }
    let last = &sid[sid.len() - 4..];
    Some(u32::from_le_bytes([last[0], last[1], last[2], last[3]]))
}

/// Turns one object into a user, or `None` if it is not a user with a SID.
fn user_of(
    obj: ReplObject,
    known: &[(u32, KnownAttr)],
) -> Result<Option<ReplicatedUser>, ReplicateError> {
    let ReplObject { name, attrs, .. } = obj;
    let mut u = ReplicatedUser {
        guid: name.guid,
        sid: name.sid,
        rid: 0,
        dn: name.dn,
        sam: None,
        upn: None,
        pwd_last_set: None,
        user_account_control: None,
        account_expires: None,
        unicode_pwd: None,
        nt_pwd_history: None,
        deleted: false,
    };
    let mut account_type = None;
    let mut object_sid = None;
    let mut relevant = false;
    for a in attrs {
        let Some(attr) = known.iter().find(|(id, _)| *id == a.attid).map(|(_, k)| *k) else {
            continue;
        };
        let Some(v) = a.values.into_iter().next() else {
            continue;
        };
        let bad = |v: &[u8], dn: &str| ReplicateError::BadValue {
            attr,
            len: v.len(),
            dn: dn.to_owned(),
        };
        let i64_of =
            |v: &[u8], dn: &str| v.try_into().map(i64::from_le_bytes).map_err(|_| bad(v, dn));
        let u32_of =
            |v: &[u8], dn: &str| v.try_into().map(u32::from_le_bytes).map_err(|_| bad(v, dn));
        let str_of = |v: &[u8], dn: &str| {
            if !v.len().is_multiple_of(2) {
                return Err(bad(v, dn));
            }
            let units: Vec<u16> = v
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| bad(v, dn))
        };
        match attr {
            KnownAttr::UnicodePwd => {
                relevant = true;
                u.unicode_pwd = Some(EncryptedValue::new(v));
            }
            KnownAttr::NtPwdHistory => {
                relevant = true;
                u.nt_pwd_history = Some(EncryptedValue::new(v));
            }
            KnownAttr::PwdLastSet => {
                relevant = true;
                u.pwd_last_set = Some(i64_of(&v, &u.dn)?);
            }
            KnownAttr::AccountExpires => {
                relevant = true;
                u.account_expires = Some(i64_of(&v, &u.dn)?);
            }
            KnownAttr::UserAccountControl => {
                relevant = true;
                u.user_account_control = Some(u32_of(&v, &u.dn)?);
            }
            KnownAttr::IsDeleted => {
                relevant = true;
                u.deleted = u32_of(&v, &u.dn)? != 0;
            }
            KnownAttr::SamAccountType => account_type = Some(u32_of(&v, &u.dn)?),
            KnownAttr::ObjectSid => object_sid = Some(v),
            KnownAttr::SamAccountName => u.sam = Some(str_of(&v, &u.dn)?),
            KnownAttr::UserPrincipalName => u.upn = Some(str_of(&v, &u.dn)?),
        }
    }
    if u.sid.is_empty() {
        if let Some(sid) = object_sid {
            u.sid = sid;
        }
    }
    let Some(rid) = rid_of(&u.sid) else {
        return Ok(None);
    };
    u.rid = rid;
    let is_user = match account_type {
        Some(t) => t == SAM_USER_OBJECT,
        None => relevant,
    };
    Ok(is_user.then_some(u))
}
