//! Secret values: zeroized on drop, redacted in every formatter, readable only through
//! [`Secret::expose_secret`] so that every read of a secret can be found with `grep`.

use std::fmt;

use zeroize::Zeroize;

/// What every formatter prints in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// A value that must never be logged, printed, serialised or left in memory after use.
///
/// The value lives on the heap so that moving a `Secret` never leaves stray copies of the
/// secret bytes behind on the stack; it is zeroized when the `Secret` is dropped.
/// `Secret` deliberately implements neither `Serialize`, `Clone` nor `PartialEq`:
/// copy it only by exposing it on purpose, and compare secrets with `subtle`.
pub struct Secret<T: Zeroize>(Box<T>);

impl<T: Zeroize> Secret<T> {
    /// Takes ownership of a secret value.
    pub fn new(value: T) -> Self {
        Self(Box::new(value))
    }

    /// Reads the secret. Every call site is a place where the secret leaves its box:
    /// keep them few, short-lived and reviewed.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }

    /// Mutable access, for building a secret in place. Crate-private on purpose.
    pub(crate) fn expose_secret_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new(String::from("hunter2-unique-7f3a"));
        for shown in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{s:#?}"),
            format!("{s:>40}"),
        ] {
            assert!(!shown.contains("hunter2"), "leaked: {shown}");
            assert!(shown.contains(REDACTED));
        }
        assert_eq!(s.expose_secret(), "hunter2-unique-7f3a");
    }

    #[test]
    fn bytes_are_redacted_too() {
        let s = Secret::new([0xAAu8; 16]);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert!(!format!("{s:?}").contains("170"));
    }
}
