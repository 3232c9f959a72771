//! Private state files on the on-premises hosts (keys, certificates, ids): written
//! atomically with their mode set at creation, and read only when no other user can read
//! them. The agent's and the sync host's state directories both use these.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        error: std::io::Error,
    },
    /// A private file is readable by others.
    #[error("{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |error| FileError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writes `data` to `path` atomically (temporary file created with `mode`, fsync,
/// rename), so that a crash leaves the old file or the new one, never half of either.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), FileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))
}

/// Reads a private file, refusing it when group or others can read it.
pub fn read_private(path: &Path) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::LoosePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map_err(io(path))
}

/// Creates `dir` (and its parents) with mode 0700 if it is missing.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_have_their_mode_and_loose_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("causeway-files-{}", std::process::id()));
        create_private_dir(&dir).expect("ok");
        let p = dir.join("key");
        write_atomic(&p, b"secret", 0o600).expect("ok");
        assert_eq!(
            fs::metadata(&p).expect("ok").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private(&p).expect("ok"), b"secret");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("ok");
        let e = read_private(&p).expect_err("refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains("secret"));
        fs::remove_dir_all(&dir).expect("ok");
    }
}
