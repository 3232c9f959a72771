//! Reading a configuration file and locating what is wrong in it (file, line, column).

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path.display(), self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.path.display(), self.message),
            _ => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A problem with the file as a whole.
    pub fn whole_file(path: &Path, message: String) -> Self {
        Self {
            path: path.to_owned(),
            line: None,
            column: None,
            message,
        }
    }

    /// A problem at byte `offset` of `text` (line and column counted in characters).
    pub fn at(path: &Path, text: &str, offset: usize, message: String) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            path: path.to_owned(),
            line: Some(line),
            column: Some(column),
            message,
        }
    }

    /// A TOML syntax or type error, located where the parser found it.
    pub fn from_toml(path: &Path, text: &str, e: &toml::de::Error) -> Self {
        match e.span() {
            Some(span) => Self::at(path, text, span.start, e.message().to_owned()),
            None => Self::whole_file(path, e.message().to_owned()),
        }
    }
}

/// Reads a configuration file of at most `max` bytes (checked before reading it, so a
/// wrong path to a huge file costs nothing).
pub fn read_config(path: &Path, max: usize) -> Result<String, ConfigError> {
    let err = |message: String| ConfigError::whole_file(path, message);
    let meta =
        std::fs::metadata(path).map_err(|e| err(format!("cannot read the configuration: {e}")))?;
    if meta.len() > max as u64 {
        return Err(err(format!(
            "file is {} bytes; a configuration is at most {max}",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the configuration: {e}")))
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "a = 1\nname = \"é\" x\n";
        let e = ConfigError::at(
            Path::new("c.toml"),
            text,
            text.find('x').expect("x"),
            "m".into(),
        );
        assert_eq!((e.line, e.column), (Some(2), Some(12)));
        assert_eq!(e.to_string(), "c.toml:2:12: m");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_as_a_whole() {
        let path = std::env::temp_dir().join(format!("causeway-config-{}", std::process::id()));
        std::fs::write(&path, "x".repeat(11)).expect("write");
        let e = read_config(&path, 10).expect_err("too big");
        assert_eq!((e.line, e.column), (None, None));
        assert!(
            e.message
                .contains("11 bytes; a configuration is at most 10"),
            "{e}"
        );
        assert_eq!(read_config(&path, 11).expect("fits"), "x".repeat(11));
        let _ = std::fs::remove_file(&path);
    }
}
