//! The NT hash (the "NTLM hash"): MD4 over the UTF-16LE password. It is a password
//! equivalent (pass-the-hash), so it is a secret in every way a password is.

use std::fmt;

use md4::{Digest, Md4};
use subtle::ConstantTimeEq;

use crate::password::Password;
use crate::secret::{Secret, REDACTED};

/// A 16-byte NT hash. Zeroized on drop, redacted when formatted, compared in constant time.
pub struct NtHash(Secret<[u8; 16]>);

/// Why a hexadecimal NT hash was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtHashError {
    /// Not 32 hexadecimal digits long.
    #[error("an NT hash is 32 hexadecimal digits, got {found} characters")]
    Length {
        /// How many characters were given.
        found: usize,
    },
    /// A character is not a hexadecimal digit.
    #[error("an NT hash may contain only hexadecimal digits")]
    NotHex,
}

impl NtHash {
    /// MD4 over the UTF-16LE encoding of `password`.
    pub fn from_password(password: &Password) -> Self {
        let utf16 = password.to_utf16le();
        Self::from_bytes(md4(utf16.expose_secret()))
    }

    /// Wraps 16 raw hash bytes (as replicated from a directory).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Secret::new(bytes))
    }

    /// Parses 32 hexadecimal digits, either case (OpenLDAP's `sambaNTPassword` is upper case).
    pub fn from_hex(hex_digits: &str) -> Result<Self, NtHashError> {
        if hex_digits.len() != 32 {
            return Err(NtHashError::Length {
                found: hex_digits.chars().count(),
            });
        }
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| NtHashError::NotHex)?;
        Ok(Self::from_bytes(bytes))
    }

    /// Reads the raw hash bytes.
    pub fn expose_secret(&self) -> &[u8; 16] {
        self.0.expose_secret()
    }

    /// The hash as 32 upper-case hexadecimal digits encoded as UTF-16LE: the exact input the
    /// Entra password-hash-sync verifier feeds to PBKDF2. Zeroized on drop.
    pub(crate) fn upper_hex_utf16le(&self) -> Secret<[u8; 64]> {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = Secret::new([0u8; 64]);
        let buf = out.expose_secret_mut();
        for (i, b) in self.expose_secret().iter().enumerate() {
            buf[i * 4] = DIGITS[usize::from(b >> 4)];
            buf[i * 4 + 2] = DIGITS[usize::from(b & 0x0f)];
        }
        out
    }
}

impl ConstantTimeEq for NtHash {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.expose_secret().ct_eq(other.expose_secret())
    }
}

impl fmt::Debug for NtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NtHash({REDACTED})")
    }
}

/// MD4 (RFC 1320). Kept private: MD4 is broken and exists here only because the NT hash is
/// defined with it.
pub(crate) fn md4(data: &[u8]) -> [u8; 16] {
    Md4::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The complete test suite of RFC 1320, appendix A.5.
    #[test]
    fn rfc1320_test_suite() {
        let suite: &[(&str, &str)] = &[
            ("", "31d6cfe0d16ae931b73c59d7e0c089c0"),
            ("a", "bde52cb31de33e46245e05fbdbd6fb24"),
            ("abc", "a448017aaf21d8525fc10ae87aa6729d"),
            ("message digest", "d9130a8164549fe818874806e1c7014b"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "d79e1c308aa5bbcdeea8ed63df412da9",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "043f8582f241db351ce627e153e7f0e4",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "e33b4ddc9c38f2199c3e7b164fcc0536",
            ),
        ];
        for (input, want) in suite {
            assert_eq!(hex::encode(md4(input.as_bytes())), *want, "MD4({input:?})");
        }
    }

    #[test]
    fn known_nt_hashes() {
        let cases = [
            ("password", "8846f7eaee8fb117ad06bdd830b7586c"),
            // The lab's alice, cross-checked against the hash Samba AD replicates (DRSUAPI).
            ("Blue-Harbor-41", "9172d29a2718fb749f12dec01e082c92"),
        ];
        for (pw, want) in cases {
            let h = NtHash::from_password(&Password::new(pw.into()).expect("valid"));
            assert_eq!(hex::encode(h.expose_secret()), want);
            let parsed = NtHash::from_hex(&want.to_uppercase()).expect("hex");
            assert!(bool::from(parsed.ct_eq(&h)));
        }
    }

    #[test]
    fn hex_input_is_checked() {
        assert_eq!(
            NtHash::from_hex("abc").err(),
            Some(NtHashError::Length { found: 3 })
        );
        assert_eq!(
            NtHash::from_hex(&"g".repeat(32)).err(),
            Some(NtHashError::NotHex)
        );
        assert_eq!(
            NtHash::from_hex(&"é".repeat(16)).err(),
            Some(NtHashError::NotHex)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let h = NtHash::from_hex("8846f7eaee8fb117ad06bdd830b7586c").expect("hex");
        assert_eq!(format!("{h:?}"), "NtHash([redacted])");
    }

    #[test]
    fn upper_hex_utf16le_layout() {
        let h = NtHash::from_hex("8846f7eaee8fb117ad06bdd830b7586c").expect("hex");
        let want: Vec<u8> = "8846F7EAEE8FB117AD06BDD830B7586C"
            .bytes()
            .flat_map(|b| [b, 0])
            .collect();
        assert_eq!(
            h.upper_hex_utf16le().expose_secret().as_slice(),
            want.as_slice()
        );
    }
}
