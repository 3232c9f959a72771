//! One configuration file being validated: its path and text, so that every error can be
//! located in it and every relative path taken from its folder (a configuration can then be
//! moved together with the files it names).

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::ConfigError;

/// A configuration file's path and text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl<'a> Source<'a> {
    /// The text of the file at `path`.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self { path, text }
    }

    /// The TOML text read into `T` (whose types reject unknown keys where they should),
    /// with syntax and type errors located.
    pub fn toml<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(self.text).map_err(|e| ConfigError::from_toml(self.path, self.text, &e))
    }

    /// An error at the start of `span` (a value's span from `toml::Spanned`).
    pub fn at(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError::at(self.path, self.text, span.start, message)
    }

    /// An error about the file as a whole.
    pub fn whole(&self, message: String) -> ConfigError {
        ConfigError::whole_file(self.path, message)
    }

    /// A path from the file: absolute as written, relative to the file's folder otherwise.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_taken_from_the_files_folder_and_errors_located() {
        let s = Source::new(Path::new("/etc/causeway/x.toml"), "a = 1\nb = \"x\"\n");
        assert_eq!(s.resolve("ca.pem"), PathBuf::from("/etc/causeway/ca.pem"));
        assert_eq!(s.resolve("/abs/ca.pem"), PathBuf::from("/abs/ca.pem"));
        assert_eq!(
            s.at(6..7, "m".into()).to_string(),
            "/etc/causeway/x.toml:2:1: m"
        );
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct T {
            a: u32,
            b: u32,
        }
        let e = s.toml::<T>().map(|_| ()).expect_err("b is a string");
        assert_eq!(e.line, Some(2));
    }
}
