//! The [`Password`] type: a user's clear-text password while it is being checked.

use std::fmt;

use zeroize::Zeroize;

use crate::secret::{Secret, REDACTED};

/// Longest password accepted, in UTF-16 code units: Active Directory's own limit for
/// `unicodePwd` is 256 characters, so nothing longer can ever be valid on-premises, and
/// the bound caps what hashing one attempt can cost.
pub const MAX_PASSWORD_UTF16_UNITS: usize = 256;

/// A clear-text password. Never empty, never longer than [`MAX_PASSWORD_UTF16_UNITS`],
/// never containing NUL; zeroized on drop and redacted when formatted.
///
/// Refusing empty passwords at construction matters: a Windows domain controller treats a
/// simple bind with a DN and an empty password as an *unauthenticated bind that succeeds*
/// (RFC 4513 §5.1.2), so an empty password must never reach a bind.
pub struct Password(Secret<String>);

/// Why a string was refused as a password. Never carries the password itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is empty.
    #[error("the password is empty")]
    Empty,
    /// The password is longer than Active Directory allows.
    #[error("the password is longer than {max} UTF-16 code units")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The password contains a NUL character.
    #[error("the password contains a NUL character")]
    ContainsNul,
    /// The password bytes are not valid UTF-8.
    #[error("the password is not valid UTF-8")]
    NotUtf8,
}

impl Password {
    /// Accepts a password, or says why it cannot be one. The string is zeroized either way.
    pub fn new(mut value: String) -> Result<Self, PasswordError> {
        if let Err(e) = validate(&value) {
            value.zeroize();
            return Err(e);
        }
        Ok(Self(Secret::new(value)))
    }

    /// Accepts a password given as UTF-8 bytes (as it arrives in a form or an envelope).
    /// The input buffer is zeroized either way.
    pub fn from_utf8(mut bytes: Vec<u8>) -> Result<Self, PasswordError> {
        match String::from_utf8(bytes) {
            Ok(s) => Self::new(s),
            Err(e) => {
                bytes = e.into_bytes();
                bytes.zeroize();
                Err(PasswordError::NotUtf8)
            }
        }
    }

    /// Reads the password. Call only where the clear text is really needed (a bind, a hash).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// The password as UTF-16LE bytes (the encoding NTLM, the NT hash and `unicodePwd` use),
    /// in a buffer that is zeroized when dropped.
    pub fn to_utf16le(&self) -> Secret<Vec<u8>> {
        let s = self.expose_secret();
        let mut out = Vec::with_capacity(s.len() * 2);
        for unit in s.encode_utf16() {
            out.extend_from_slice(&unit.to_le_bytes());
        }
        Secret::new(out)
    }
}

fn validate(s: &str) -> Result<(), PasswordError> {
    if s.is_empty() {
        return Err(PasswordError::Empty);
    }
    // Cheap bound first: a UTF-16 unit is at least one UTF-8 byte... and at most 3 bytes
    // for units in the BMP, 4 bytes for a surrogate pair (2 units).
    if s.len() > MAX_PASSWORD_UTF16_UNITS * 3 || s.encode_utf16().count() > MAX_PASSWORD_UTF16_UNITS
    {
        return Err(PasswordError::TooLong {
            max: MAX_PASSWORD_UTF16_UNITS,
        });
    }
    if s.contains('\0') {
        return Err(PasswordError::ContainsNul);
    }
    Ok(())
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password({REDACTED})")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_password() {
        let p = Password::new("Correct-Horse-9d41".into()).expect("valid");
        for shown in [
            format!("{p:?}"),
            format!("{p}"),
            format!("{p:#?}"),
            format!("{:?}", Some(&p)),
        ] {
            assert!(!shown.contains("Correct-Horse"), "leaked: {shown}");
            assert!(shown.contains(REDACTED));
        }
    }

    #[test]
    fn refuses_empty_long_and_nul() {
        assert_eq!(
            Password::new(String::new()).err(),
            Some(PasswordError::Empty)
        );
        assert_eq!(
            Password::new("x".repeat(257)).err(),
            Some(PasswordError::TooLong { max: 256 })
        );
        assert!(Password::new("x".repeat(256)).is_ok());
        // 256 astral characters are 512 UTF-16 units.
        assert!(matches!(
            Password::new("😀".repeat(129)),
            Err(PasswordError::TooLong { .. })
        ));
        assert_eq!(
            Password::new("a\0b".into()).err(),
            Some(PasswordError::ContainsNul)
        );
        assert_eq!(
            Password::from_utf8(vec![0xff, 0xfe]).err(),
            Some(PasswordError::NotUtf8)
        );
    }

    #[test]
    fn utf16le_encoding() {
        let p = Password::new("aé😀".into()).expect("valid");
        assert_eq!(
            p.to_utf16le().expose_secret().as_slice(),
            &[0x61, 0x00, 0xe9, 0x00, 0x3d, 0xd8, 0x00, 0xde]
        );
    }
}
