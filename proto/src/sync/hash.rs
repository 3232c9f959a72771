//! Password hash sync on the ingestion channel: a batch of verifier changes for synced
//! users. What travels is the salted PBKDF2 verifier ([`PhsVerifier`], derived on the sync
//! host) and the flags that change what a sign-in with the right password may do. The
//! field's type is the verifier itself: there is no way to put an NT hash in a message.

use causeway_credential::PhsVerifier;
use serde::{Deserialize, Serialize};

use super::{check_anchor, check_name, MessageError, ObjectError};

/// Most verifier changes in one batch (each costs the endpoint a parse, not a PBKDF2).
pub const MAX_HASH_BATCH: usize = 1_000;
/// The latest time a change may carry (9999-12-31T23:59:59Z, AD's "never" is `None`),
/// so that no time a peer sends overflows a clock at the endpoint.
pub const MAX_TIME: u64 = 253_402_300_799;

/// One user's password state as the source has it, keyed by its anchor (the immutable id
/// object export used for it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifierChange {
    /// The user's anchor (base64 of 16 bytes).
    pub anchor: String,
    /// A new verifier (a fresh salt per change); `None`: the password did not change, only
    /// the flags did, and the stored verifier stays. Its `Debug` shows no key or salt.
    #[serde(default, with = "verifier_text")]
    pub verifier: Option<PhsVerifier>,
    /// The user must change the password at next logon (AD: pwdLastSet = 0).
    pub must_change: bool,
    /// The account is disabled in the source.
    pub disabled: bool,
    /// When the account expires (seconds since the Unix epoch), if it does.
    pub account_expires: Option<u64>,
    /// When the password was last set in the source (seconds since the Unix epoch), if
    /// known.
    pub changed_at: Option<u64>,
}

/// What the endpoint did with a hash batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashCounts {
    /// Users whose verifier was replaced.
    pub verifiers: u64,
    /// Users whose flags alone changed.
    pub flags: u64,
    /// Users already as given.
    pub unchanged: u64,
    /// Users that could not be applied (unknown anchor, not a synced user).
    pub errors: u64,
}

impl HashCounts {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &HashCounts) {
        self.verifiers += o.verifiers;
        self.flags += o.flags;
        self.unchanged += o.unchanged;
        self.errors += o.errors;
    }
}

/// The bounds of a hash batch's fields.
pub(super) fn check(connector: &str, changes: &[VerifierChange]) -> Result<(), MessageError> {
    check_name("connector", connector)?;
    if changes.len() > MAX_HASH_BATCH {
        return Err(MessageError::OutOfBounds(format!(
            "a hash batch holds {} changes (at most {MAX_HASH_BATCH})",
            changes.len()
        )));
    }
    for c in changes {
        check_anchor(&c.anchor)?;
        if [c.account_expires, c.changed_at]
            .into_iter()
            .flatten()
            .any(|t| t > MAX_TIME)
        {
            return Err(MessageError::OutOfBounds(format!(
                "a time of user {} is past {MAX_TIME} (year 9999)",
                c.anchor
            )));
        }
    }
    Ok(())
}

/// An [`ObjectError`] for one change of a hash batch.
pub fn hash_error(anchor: &str, error: String) -> ObjectError {
    ObjectError {
        anchor: Some(anchor.to_owned()),
        dn: None,
        error,
    }
}

/// Serde for the verifier: its text form, parsed strictly (bounded by
/// [`causeway_credential::phs_limits::MAX_ENCODED_LEN`]) on the way in.
mod verifier_text {
    use causeway_credential::PhsVerifier;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<PhsVerifier>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.expose_encoded()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PhsVerifier>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) => PhsVerifier::parse(&t)
                .map(Some)
                // The parse error never quotes the input.
                .map_err(|e| D::Error::custom(format!("verifier: {e}"))),
        }
    }
}
