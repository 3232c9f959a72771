//! The Entra-compatible password-hash-sync verifier.
//!
//! Recipe (the one Microsoft Entra Connect uses, and the one independent tools reproduce):
//! `PBKDF2-HMAC-SHA256(UTF-16LE(UPPERCASE(HEX(NT hash))), salt = 10 random bytes,
//! iterations = 1000, dkLen = 32)`, written as `v1;PPH1_MD4,<salt hex>,<iterations>,<key hex>;`.
//! The raw NT hash never needs to leave the premises: only this verifier does.

use std::fmt;
use std::str::FromStr;

use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::nt::NtHash;
use crate::password::Password;
use crate::secret::REDACTED;

/// Iterations used for new verifiers: Entra Connect's value.
pub const DEFAULT_ITERATIONS: u32 = 1000;
/// Fewest iterations a verifier may declare (the published known answers use 100).
pub const MIN_ITERATIONS: u32 = 100;
/// Most iterations a verifier may declare. Bounds the CPU one verification can be made to
/// cost by a hostile or corrupt stored value (100× Entra's default).
pub const MAX_ITERATIONS: u32 = 100_000;
/// Salt length in bytes.
pub const SALT_LEN: usize = 10;
/// Derived key length in bytes.
pub const KEY_LEN: usize = 32;
/// Longest text [`PhsVerifier::parse`] looks at; anything longer is refused unread.
pub const MAX_ENCODED_LEN: usize = 128;

const PREFIX: &str = "v1;PPH1_MD4,";

/// A salted PBKDF2 verifier of a password's NT hash.
///
/// It is hash material (offline-guessable), so it is zeroized on drop, its `Debug` shows
/// only the iteration count, and its text form is produced by the greppable
/// [`PhsVerifier::expose_encoded`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PhsVerifier {
    salt: [u8; SALT_LEN],
    iterations: u32,
    key: [u8; KEY_LEN],
}

/// Why a verifier string was refused. Never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierParseError {
    /// Longer than any valid verifier.
    #[error("verifier is {len} bytes long; a valid one is at most {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Does not start with the version and algorithm tag.
    #[error(
        "verifier must start with \"v1;PPH1_MD4,\" (the only supported version and algorithm)"
    )]
    UnsupportedFormat,
    /// Does not end with `;`.
    #[error("verifier must end with \";\"")]
    MissingTerminator,
    /// Not exactly salt, iterations and key between the tag and the terminator.
    #[error("verifier must have 3 comma-separated fields after the tag (salt, iterations, key), found {found}")]
    FieldCount {
        /// How many fields were found.
        found: usize,
    },
    /// A field holds something other than hexadecimal digits.
    #[error("verifier {field} is not hexadecimal")]
    NotHex {
        /// Which field.
        field: &'static str,
    },
    /// A field has the wrong length.
    #[error("verifier {field} must be {expected} bytes, found {found_hex_digits} hex digits")]
    Length {
        /// Which field.
        field: &'static str,
        /// The length it must have, in bytes.
        expected: usize,
        /// The number of hex digits it had.
        found_hex_digits: usize,
    },
    /// The iteration count is not a plain decimal number.
    #[error("verifier iteration count must be a decimal number without sign or leading zeros")]
    IterationsNotDecimal,
    /// The iteration count is outside the accepted range.
    #[error("verifier iteration count {found} is outside {min}..={max}")]
    IterationsOutOfRange {
        /// The count given.
        found: u64,
        /// The lowest accepted.
        min: u32,
        /// The highest accepted.
        max: u32,
    },
}

impl PhsVerifier {
    /// A new verifier for `password`, with a fresh random salt and [`DEFAULT_ITERATIONS`].
    pub fn derive(password: &Password) -> Self {
        Self::derive_from_nt_hash(&NtHash::from_password(password))
    }

    /// A new verifier from an NT hash (as replicated from AD), with a fresh random salt.
    pub fn derive_from_nt_hash(nt: &NtHash) -> Self {
        let mut salt = [0u8; SALT_LEN];
        crate::random::fill(&mut salt);
        Self::derive_with_salt(nt, salt, DEFAULT_ITERATIONS)
            .unwrap_or_else(|_| unreachable!("DEFAULT_ITERATIONS is within bounds"))
    }

    /// A verifier with a chosen salt and iteration count (known-answer tests, re-derivation).
    pub fn derive_with_salt(
        nt: &NtHash,
        salt: [u8; SALT_LEN],
        iterations: u32,
    ) -> Result<Self, VerifierParseError> {
        check_iterations(u64::from(iterations))?;
        let key = derive_key(nt, &salt, iterations);
        Ok(Self {
            salt,
            iterations,
            key,
        })
    }

    /// Parses `v1;PPH1_MD4,<salt hex>,<iterations>,<key hex>;` strictly. Hex digits may be
    /// either case; [`PhsVerifier::expose_encoded`] writes lower case.
    pub fn parse(s: &str) -> Result<Self, VerifierParseError> {
        if s.len() > MAX_ENCODED_LEN {
            return Err(VerifierParseError::TooLong {
                len: s.len(),
                max: MAX_ENCODED_LEN,
            });
        }
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or(VerifierParseError::UnsupportedFormat)?;
        let body = rest
            .strip_suffix(';')
            .ok_or(VerifierParseError::MissingTerminator)?;
        let fields: Vec<&str> = body.split(',').collect();
        let [salt_hex, iter_text, key_hex] = fields[..] else {
            return Err(VerifierParseError::FieldCount {
                found: fields.len(),
            });
        };
        let salt = decode_fixed::<SALT_LEN>(salt_hex, "salt")?;
        let iterations = parse_iterations(iter_text)?;
        let key = decode_fixed::<KEY_LEN>(key_hex, "key")?;
        Ok(Self {
            salt,
            iterations,
            key,
        })
    }

    /// The verifier's text form, for the directory store and the sync wire. Greppable on
    /// purpose: this string is hash material and must not be logged.
    pub fn expose_encoded(&self) -> String {
        format!(
            "{PREFIX}{},{},{};",
            hex::encode(self.salt),
            self.iterations,
            hex::encode(self.key)
        )
    }

    /// Checks a password in constant time (with respect to the stored key).
    pub fn verify(&self, password: &Password) -> bool {
        self.verify_nt_hash(&NtHash::from_password(password))
    }

    /// Checks an NT hash in constant time (with respect to the stored key).
    pub fn verify_nt_hash(&self, nt: &NtHash) -> bool {
        let mut candidate = derive_key(nt, &self.salt, self.iterations);
        let ok = candidate.ct_eq(&self.key).into();
        candidate.zeroize();
        ok
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

impl FromStr for PhsVerifier {
    type Err = VerifierParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for PhsVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhsVerifier")
            .field("format", &"v1;PPH1_MD4")
            .field("iterations", &self.iterations)
            .field("salt", &REDACTED)
            .field("key", &REDACTED)
            .finish()
    }
}

fn derive_key(nt: &NtHash, salt: &[u8; SALT_LEN], iterations: u32) -> [u8; KEY_LEN] {
    let input = nt.upper_hex_utf16le();
    let mut key = [0u8; KEY_LEN];
    pbkdf2_sha256(input.expose_secret(), salt, iterations, &mut key);
    key
}

/// PBKDF2-HMAC-SHA256 as the verifier computes it: the same compiled code, so that a
/// benchmark's raw baseline measures exactly the primitive the verifier spends its time
/// in (an instantiation in another crate was seen to compile to code ~40 % slower).
pub fn pbkdf2_sha256(input: &[u8], salt: &[u8], iterations: u32, out: &mut [u8; KEY_LEN]) {
    pbkdf2::pbkdf2_hmac::<Sha256>(input, salt, iterations, out);
}

fn decode_fixed<const N: usize>(
    text: &str,
    field: &'static str,
) -> Result<[u8; N], VerifierParseError> {
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VerifierParseError::NotHex { field });
    }
    if text.len() != N * 2 {
        return Err(VerifierParseError::Length {
            field,
            expected: N,
            found_hex_digits: text.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| VerifierParseError::NotHex { field })?;
    Ok(out)
}

fn parse_iterations(text: &str) -> Result<u32, VerifierParseError> {
    // Digits only: no sign, no spaces, no leading zeros; 7 digits is already past the bound.
    let plain = !text.is_empty()
        && text.len() <= 7
        && text.bytes().all(|b| b.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    if !plain {
        return Err(VerifierParseError::IterationsNotDecimal);
    }
    let n: u64 = text
        .parse()
        .map_err(|_| VerifierParseError::IterationsNotDecimal)?;
    check_iterations(n)?;
    u32::try_from(n).map_err(|_| VerifierParseError::IterationsNotDecimal)
}

fn check_iterations(n: u64) -> Result<(), VerifierParseError> {
    if n < u64::from(MIN_ITERATIONS) || n > u64::from(MAX_ITERATIONS) {
        return Err(VerifierParseError::IterationsOutOfRange {
            found: n,
            min: MIN_ITERATIONS,
            max: MAX_ITERATIONS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!("../testdata/phs.txt");

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("valid password")
    }

    fn vectors() -> Vec<(&'static str, &'static str)> {
        VECTORS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_once('\t').expect("password<TAB>verifier"))
            .collect()
    }

    #[test]
    fn every_known_answer_verifies_and_rederives_identically() {
        let v = vectors();
        assert_eq!(v.len(), 4, "testdata/phs.txt should hold 4 vectors");
        for (password, encoded) in v {
            let parsed = PhsVerifier::parse(encoded).expect("vector parses");
            assert!(parsed.verify(&pw(password)), "{password} must verify");
            assert!(!parsed.verify(&pw(&format!("{password}x"))));
            let again = PhsVerifier::derive_with_salt(
                &NtHash::from_password(&pw(password)),
                parsed.salt,
                parsed.iterations,
            )
            .expect("in range");
            assert_eq!(again.expose_encoded(), encoded);
            assert_eq!(parsed.expose_encoded(), encoded);
        }
    }

    /// PBKDF2-HMAC-SHA256 itself: RFC 7914 §11, plus two values computed independently
    /// with CPython's `hashlib.pbkdf2_hmac`.
    #[test]
    fn pbkdf2_hmac_sha256_known_answers() {
        let cases: &[(&[u8], &[u8], u32, &str)] = &[
            (b"passwd", b"salt", 1, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"),
            (b"Password", b"NaCl", 80000, "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d"),
            (b"password", b"salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
            (b"password", b"salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        ];
        for (p, s, c, want) in cases {
            let mut out = vec![0u8; want.len() / 2];
            pbkdf2::pbkdf2_hmac::<Sha256>(p, s, *c, &mut out);
            assert_eq!(hex::encode(&out), *want);
        }
    }

    #[test]
    fn derive_uses_fresh_salt_and_default_iterations() {
        let a = PhsVerifier::derive(&pw("Blue-Harbor-41"));
        let b = PhsVerifier::derive(&pw("Blue-Harbor-41"));
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.iterations(), DEFAULT_ITERATIONS);
        assert!(a.verify(&pw("Blue-Harbor-41")) && b.verify(&pw("Blue-Harbor-41")));
        assert!(!a.verify(&pw("blue-harbor-41")));
        let re = PhsVerifier::parse(&a.expose_encoded()).expect("round trip");
        assert!(re.verify(&pw("Blue-Harbor-41")));
    }

    #[test]
    fn debug_hides_salt_and_key() {
        let v = PhsVerifier::parse(vectors()[0].1).expect("parses");
        let shown = format!("{v:?}");
        assert!(!shown.contains("724b754c"), "{shown}");
        assert!(!shown.contains("367ff0ac"), "{shown}");
        assert!(shown.contains("iterations: 100"));
    }

    #[test]
    fn malformed_input_gets_a_precise_error() {
        let good = "v1;PPH1_MD4,724b754c4b6d30526f36,100,367ff0ac2a1cb334bb26609c8bfc8ae5f619d1eaf07568df040f407504a20241;";
        let key = "367ff0ac2a1cb334bb26609c8bfc8ae5f619d1eaf07568df040f407504a20241";
        use VerifierParseError as E;
        let cases: Vec<(String, E)> = vec![
            ("x".repeat(129), E::TooLong { len: 129, max: 128 }),
            (String::new(), E::UnsupportedFormat),
            (good.replace("v1;", "v2;"), E::UnsupportedFormat),
            (good.replace("PPH1_MD4", "PPH1_SHA"), E::UnsupportedFormat),
            (good.trim_end_matches(';').to_string(), E::MissingTerminator),
            (good.replace(",100,", ",100,1,"), E::FieldCount { found: 4 }),
            (good.replace(",100,", ","), E::FieldCount { found: 2 }),
            (
                good.replace("724b754c4b6d30526f36", "724b754c4b6d30526f"),
                E::Length {
                    field: "salt",
                    expected: 10,
                    found_hex_digits: 18,
                },
            ),
            (
                good.replace("724b754c4b6d30526f36", "724b754c4b6d30526fzz"),
                E::NotHex { field: "salt" },
            ),
            (
                good.replace(key, &key[..62]),
                E::Length {
                    field: "key",
                    expected: 32,
                    found_hex_digits: 62,
                },
            ),
            (
                good.replace(key, &format!("{}g", &key[..63])),
                E::NotHex { field: "key" },
            ),
            (good.replace(",100,", ",+100,"), E::IterationsNotDecimal),
            (good.replace(",100,", ",0100,"), E::IterationsNotDecimal),
            (good.replace(",100,", ", 100,"), E::IterationsNotDecimal),
            (good.replace(",100,", ",,"), E::IterationsNotDecimal),
            (good.replace(",100,", ",99999999,"), E::IterationsNotDecimal),
            (
                good.replace(",100,", ",0,"),
                E::IterationsOutOfRange {
                    found: 0,
                    min: 100,
                    max: 100_000,
                },
            ),
            (
                good.replace(",100,", ",99,"),
                E::IterationsOutOfRange {
                    found: 99,
                    min: 100,
                    max: 100_000,
                },
            ),
            (
                good.replace(",100,", ",100001,"),
                E::IterationsOutOfRange {
                    found: 100_001,
                    min: 100,
                    max: 100_000,
                },
            ),
            (good.replace(",100,", ",１００,"), E::IterationsNotDecimal),
        ];
        for (input, want) in cases {
            assert_eq!(
                PhsVerifier::parse(&input).err(),
                Some(want.clone()),
                "input {input:?}"
            );
            // The message names the problem, never the input's hash material.
            assert!(!want.to_string().contains("367ff0ac"));
        }
        assert!(PhsVerifier::parse(good).is_ok());
        assert!(
            PhsVerifier::parse(&good.to_uppercase().replace("V1;PPH1_MD4", "v1;PPH1_MD4")).is_ok()
        );
    }

    #[test]
    fn derive_with_salt_refuses_absurd_iterations() {
        let nt = NtHash::from_password(&pw("password"));
        assert!(PhsVerifier::derive_with_salt(&nt, [0; 10], 1).is_err());
        assert!(PhsVerifier::derive_with_salt(&nt, [0; 10], u32::MAX).is_err());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn parse_never_panics(s in "\\PC{0,160}") {
                let _ = PhsVerifier::parse(&s);
            }

            #[test]
            fn parse_never_panics_near_valid(salt in "[0-9a-fA-Fg ]{0,24}", it in "[0-9+ -]{0,8}", key in "[0-9a-f]{0,70}") {
                let _ = PhsVerifier::parse(&format!("v1;PPH1_MD4,{salt},{it},{key};"));
            }

            #[test]
            fn encode_parse_round_trip(salt in any::<[u8; 10]>(), key in any::<[u8; 32]>(), it in MIN_ITERATIONS..=MAX_ITERATIONS) {
                let v = PhsVerifier { salt, iterations: it, key };
                let back = PhsVerifier::parse(&v.expose_encoded()).expect("own output parses");
                prop_assert_eq!(back.salt, salt);
                prop_assert_eq!(back.key, key);
                prop_assert_eq!(back.iterations, it);
            }
        }
    }
}
