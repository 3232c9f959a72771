//! A 32-byte secret key kept in one file of the data directory: read when it is there
//! (refused when others may read it, it is no regular file, or it has the wrong size),
//! made when it is not (mode 0600, published whole by a hard link so that a process
//! racing to make it reads the one that won). The sign-in state key, the pairwise NameID
//! key and the OpenID Connect pairwise key all live this way.

use std::path::Path;

use zeroize::Zeroizing;

/// Most bytes a key file holds.
pub(crate) const KEY_LEN: usize = 32;

/// Reads the key at `path`, or makes it there. `what` names it in errors ("the sign-in
/// state key"); `if_wrong_size` tells the operator what to do about a file of the wrong
/// size (what replacing it costs).
pub(crate) fn load_or_create(
    path: &Path,
    what: &str,
    if_wrong_size: &str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(k) = read(path, what, if_wrong_size)? {
        return Ok(k);
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut *key).expect("OS random generator");
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy());
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).expect("OS random generator");
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&*key)?;
            f.sync_all()
        });
    let fail = |e: std::io::Error| format!("cannot create {what} {}: {e}", path.display());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    // A hard link publishes the whole file or nothing; if another process made one
    // first, its key is the one everybody uses.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path, what, if_wrong_size)?
            .ok_or_else(|| format!("{what} {} vanished", path.display())),
        Err(e) => Err(fail(e)),
    }
}

fn read(
    path: &Path,
    what: &str,
    if_wrong_size: &str,
) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {what} {}: {e}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_file() || mode & 0o077 != 0 {
        return Err(format!(
            "{what} {} must be a regular file only its owner can read (mode {mode:o}): run chmod 600 on it",
            path.display()
        ));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?,
    );
    let k: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "{what} {} holds {} bytes, not {KEY_LEN}: {if_wrong_size}",
            path.display(),
            bytes.len()
        )
    })?;
    Ok(Some(Zeroizing::new(k)))
}
