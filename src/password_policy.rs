//! The password policy for cloud-only users (`[password_policy]`): a minimum length, a
//! built-in list of the most common passwords (also with digits and symbols around them or
//! letters swapped for look-alikes), and no part of the user's UPN or name, as NIST SP
//! 800-63B and AD's complexity rule ask. It never says what the password was.

use std::ops::Range;

use causeway_config::ConfigError;
use serde::Deserialize;
use toml::Spanned;

/// The most common passwords and the words they are built on, lower case (from public
/// breach-frequency lists); bounded and embedded, so the check needs no file.
#[rustfmt::skip]
const COMMON: &[&str] = &[
    "123456", "password", "12345678", "qwerty", "123456789", "12345", "1234", "111111",
    "1234567", "dragon", "123123", "baseball", "abc123", "football", "monkey", "letmein",
    "696969", "shadow", "master", "666666", "qwertyuiop", "123321", "mustang", "1234567890",
    "michael", "654321", "superman", "1qaz2wsx", "7777777", "121212", "000000", "qazwsx",
    "123qwe", "killer", "trustno1", "jordan", "jennifer", "zxcvbnm", "asdfgh", "hunter",
    "buster", "soccer", "harley", "batman", "andrew", "tigger", "sunshine", "iloveyou",
    "fuckyou", "2000", "charlie", "robert", "thomas", "hockey", "ranger", "daniel", "starwars",
    "klaster", "112233", "george", "computer", "michelle", "jessica", "pepper", "1111",
    "zxcvbn", "555555", "11111111", "131313", "freedom", "777777", "pass", "maggie", "159753",
    "aaaaaa", "ginger", "princess", "joshua", "cheese", "amanda", "summer", "love", "ashley",
    "nicole", "chelsea", "biteme", "matthew", "access", "yankees", "987654321", "dallas",
    "austin", "thunder", "taylor", "matrix", "mobilemail", "mom", "monitor", "monitoring",
    "montana", "moon", "moscow", "welcome", "admin", "administrator", "login", "passw0rd",
    "p@ssw0rd", "changeme", "secret", "default", "guest", "root", "test", "qwerty123",
    "qwertyui", "asdfghjkl", "azerty", "solo", "whatever", "winter", "spring", "autumn", "fall",
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "monday", "friday", "company", "office", "microsoft",
    "google", "hello", "hellothere", "liverpool", "arsenal", "samsung", "apple", "banana",
    "orange", "purple", "secure", "security", "internet", "service", "support", "helpdesk",
    "passpass", "letmeinplease", "lovely", "flower", "family", "friends", "forever", "baby",
    "angel", "beautiful", "blink", "blessed", "cookie", "chocolate", "corvette", "ferrari",
    "porsche", "mercedes", "yamaha", "pokemon", "minecraft", "naruto", "zaq1zaq1", "q1w2e3r4",
    "q1w2e3r4t5", "1q2w3e4r", "1q2w3e4r5t", "qwer1234", "abcd1234", "abcdef", "abcdefg",
    "abcdefgh", "alexander", "william", "jackson", "jasmine", "hannah", "sophie", "causeway",
];

/// A password longer than this is never compared against names (bounded work).
const MAX_CHECKED: usize = 1024;

/// `[password_policy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPasswordPolicy {
    min_length: Option<Spanned<i64>>,
    reject_common: Option<bool>,
    reject_name_parts: Option<bool>,
}

/// The policy a new password of a cloud-only user must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PasswordPolicy {
    /// Fewest characters (Unicode scalar values) [default: 12].
    pub(crate) min_length: usize,
    /// Refuse the built-in list of common passwords [default: true].
    pub(crate) reject_common: bool,
    /// Refuse a password containing a part of the UPN or display name of three characters
    /// or more [default: true].
    pub(crate) reject_name_parts: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            reject_common: true,
            reject_name_parts: true,
        }
    }
}

impl PasswordPolicy {
    /// Validates `[password_policy]` (`at` makes a line-numbered error).
    pub(crate) fn from_raw(
        raw: &RawPasswordPolicy,
        at: &dyn Fn(Range<usize>, String) -> ConfigError,
    ) -> Result<Self, ConfigError> {
        let d = Self::default();
        let min_length = match &raw.min_length {
            None => d.min_length,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v @ 8..=256) => v,
                _ => {
                    return Err(at(
                        n.span(),
                        "password_policy.min_length must be between 8 and 256".into(),
                    ))
                }
            },
        };
        Ok(Self {
            min_length,
            reject_common: raw.reject_common.unwrap_or(d.reject_common),
            reject_name_parts: raw.reject_name_parts.unwrap_or(d.reject_name_parts),
        })
    }

    /// Checks `password` for the user `upn` (display name `name`); the error names the rule
    /// broken, never the password.
    pub(crate) fn check(
        &self,
        password: &str,
        upn: &str,
        name: Option<&str>,
    ) -> Result<(), String> {
        let len = password.chars().count();
        if len < self.min_length {
            return Err(format!(
                "the password is too short: {len} characters, at least {} needed ([password_policy] min_length)",
                self.min_length
            ));
        }
        let lower = password.to_lowercase();
        if self.reject_common && is_common(&lower) {
            return Err("the password is one of the most common passwords, or one with digits or symbols added; choose a passphrase of unrelated words".into());
        }
        if self.reject_name_parts && password.len() <= MAX_CHECKED {
            if let Some(part) = name_parts(upn, name).find(|p| lower.contains(p.as_str())) {
                return Err(format!(
                    "the password contains a part of the user's UPN or display name ({} characters of it); choose one unrelated to the account",
                    part.chars().count()
                ));
            }
        }
        Ok(())
    }
}

/// Look-alike characters, as people swap them into common words.
fn unleet(c: char) -> char {
    match c {
        '@' | '4' => 'a',
        '3' => 'e',
        '1' | '!' | '|' => 'i',
        '0' => 'o',
        '$' | '5' => 's',
        '7' | '+' => 't',
        _ => c,
    }
}

fn is_common(lower: &str) -> bool {
    if COMMON.contains(&lower) {
        return true;
    }
    let distinct: std::collections::BTreeSet<char> = lower.chars().take(MAX_CHECKED).collect();
    if distinct.len() < 4 {
        return true;
    }
    // The word with digits and symbols around it ("Password2024!"), and with look-alikes
    // swapped back ("P@ssw0rd").
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let unleeted: String = lower.chars().map(unleet).collect();
    let unleeted_core = unleeted.trim_matches(|c: char| !c.is_alphabetic());
    [core, unleeted.as_str(), unleeted_core]
        .iter()
        .any(|w| w.is_empty() || COMMON.contains(w) || repeats_common(w))
}

/// A common word said twice or more ("passwordpassword").
fn repeats_common(w: &str) -> bool {
    COMMON
        .iter()
        .filter(|c| c.len() >= 4 && w.len().is_multiple_of(c.len()) && w.len() > c.len())
        .any(|c| {
            w.as_bytes()
                .chunks(c.len())
                .all(|chunk| chunk == c.as_bytes())
        })
}

/// The parts of a UPN (its name, and that name's pieces) and display name of three
/// characters or more, lower case, as AD's complexity rule splits them.
fn name_parts<'a>(upn: &'a str, name: Option<&'a str>) -> impl Iterator<Item = String> + 'a {
    let local = upn.split('@').next().unwrap_or("");
    let domain = upn.split('@').nth(1).and_then(|d| d.split('.').next());
    std::iter::once(local)
        .chain(local.split(|c: char| !c.is_alphanumeric()))
        .chain(domain)
        .chain(name.unwrap_or("").split(|c: char| !c.is_alphanumeric()))
        .filter(|p| p.chars().count() >= 3)
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str) -> Result<(), String> {
        PasswordPolicy::default().check(pw, "alice.smith@corp.example", Some("Alice Smith"))
    }

    #[test]
    fn short_passwords_are_refused_with_the_length_and_not_the_password() {
        let e = check("x").expect_err("one letter");
        assert!(e.contains("1 characters, at least 12"), "{e}");
        let e = check("Tr0ub4dor&3").expect_err("11 characters");
        assert!(!e.contains("Tr0ub4dor"), "{e}");
    }

    #[test]
    fn common_passwords_are_refused_also_decorated() {
        for pw in [
            "password1234",
            "Password2024!",
            "P@ssw0rd2024",
            "qwertyuiop12",
            "123456789012",
            "aaaaaaaaaaaa",
            "welcome12345",
            "passwordpassword",
        ] {
            assert!(check(pw).is_err(), "{pw} was accepted");
        }
    }

    #[test]
    fn name_parts_are_refused() {
        for pw in ["Smith-Harbor-41", "ALICE-blue-harbor", "corp-river-stone-9"] {
            let e = check(pw).expect_err(pw);
            assert!(e.contains("UPN or display name"), "{e}");
        }
    }

    #[test]
    fn a_passphrase_is_accepted() {
        check("Blue-Harbor-41-Quiet").expect("a good password");
        check("correct horse battery staple").expect("a passphrase");
    }

    #[test]
    fn the_policy_comes_from_the_config_with_defaults() {
        let raw: RawPasswordPolicy =
            toml::from_str("min_length = 16\nreject_common = false\n").expect("toml");
        let at = |_: Range<usize>, m: String| ConfigError::at(std::path::Path::new("x"), "", 0, m);
        let p = PasswordPolicy::from_raw(&raw, &at).expect("valid");
        assert_eq!(
            p,
            PasswordPolicy {
                min_length: 16,
                reject_common: false,
                reject_name_parts: true
            }
        );
        let raw: RawPasswordPolicy = toml::from_str("min_length = 3\n").expect("toml");
        assert!(PasswordPolicy::from_raw(&raw, &at).is_err());
    }
}
