//! Small shared helpers: randomness, Unix time, fingerprints, private files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::CertsError;
use crate::id::{AgentId, HEX_LEN};

/// The validity window (not-before, not-after) of the first certificate in `pem`, or
/// `None` if it holds no parsable X.509 certificate: how a client that keeps only its
/// PEM learns when to renew.
pub fn validity_of_pem(pem: &str) -> Option<(SystemTime, SystemTime)> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = cert.validity();
    Some((
        from_unix_secs(v.not_before.timestamp()),
        from_unix_secs(v.not_after.timestamp()),
    ))
}

/// SHA-256 over `der`, lowercase hex: how Causeway names certificates (the hub, the
/// registry and `causeway certs list` all use this form).
pub fn fingerprint_of_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// This host's name (the kernel's, without its newline), or `causeway-agent` if it cannot
/// be read: the name an agent enrolls and renews under, and the endpoint's default replica
/// id. Here rather than in the agent so that the endpoint need not depend on the agent.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "causeway-agent".into())
}

/// Whether `s` looks like [`fingerprint_of_der`]'s output.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl AgentId {
    /// A new random id (8 bytes from the operating system's generator).
    pub fn generate() -> Result<Self, CertsError> {
        let bytes: [u8; HEX_LEN / 2] = random_bytes()?;
        Ok(Self::from_random(bytes))
    }
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], CertsError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CertsError::Random(e.to_string()))?;
    Ok(b)
}

/// Seconds since the Unix epoch (negative before it), rounded down: how Causeway's SQLite
/// files store times.
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Round towards minus infinity.
            if d.subsec_nanos() > 0 {
                -s - 1
            } else {
                -s
            }
        }
    }
}

/// The inverse of [`unix_secs`].
pub fn from_unix_secs(s: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs())
    }
}

/// Creates `dir` (mode 0700) if needed and refuses one that others may write to.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), CertsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CertsError::io("create the directory", dir, e))?;
    let meta = fs::metadata(dir).map_err(|e| CertsError::io("inspect", dir, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CertsError::InsecureDirectory {
            path: dir.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Refuses a file whose permissions give group or others any access.
pub(crate) fn check_private(file: &File, path: &Path) -> Result<(), CertsError> {
    let meta = file
        .metadata()
        .map_err(|e| CertsError::io("inspect", path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CertsError::InsecureFile {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads at most `max` bytes of `path`; larger files are refused. With `private`, the file
/// must not be accessible to group or others (checked on the open handle, not the name).
pub(crate) fn read_bounded(path: &Path, max: usize, private: bool) -> Result<Vec<u8>, CertsError> {
    let file = File::open(path).map_err(|e| CertsError::io("open", path, e))?;
    if private {
        check_private(&file, path)?;
    }
    let mut buf = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| CertsError::io("read", path, e))?;
    if buf.len() > max {
        return Err(CertsError::io(
            "read",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the file is larger than {max} bytes"),
            ),
        ));
    }
    Ok(buf)
}

/// Writes `data` to a new temporary file beside `final_name` in `dir`, created with `mode`
/// (so it is never readable by others, not even for a moment) and flushed to disk.
/// Returns its path; the caller links or renames it into place.
pub(crate) fn write_temp(
    dir: &Path,
    final_name: &str,
    data: &[u8],
    mode: u32,
) -> Result<PathBuf, CertsError> {
    let tag: [u8; 6] = random_bytes()?;
    let path = dir.join(format!(
        ".{final_name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(tag)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)?;
        // The mode given at creation is filtered by the umask; make it exact.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&path);
        return Err(CertsError::io("write", path, e));
    }
    Ok(path)
}

/// Flushes a directory so that renames and links in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CertsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CertsError::io("flush", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validity_of_an_issued_certificate_is_read_back_from_its_pem() {
        let d = causeway_testkit::TempDir::new("validity");
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ca = crate::Ca::load_or_create(&d.path().join("ca"), now).expect("ca");
        let csr = crate::new_key_and_csr("h").expect("csr").1;
        let id = AgentId::generate().expect("id");
        let cert = ca
            .sign_agent_csr(&csr, &id, now, Duration::from_secs(3600))
            .expect("cert");
        assert_eq!(
            validity_of_pem(cert.pem()),
            Some((cert.not_before(), cert.not_after()))
        );
        assert_eq!(cert.not_after(), now + Duration::from_secs(3600));
        assert_eq!(validity_of_pem("not a certificate"), None);
        assert_eq!(
            validity_of_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            None
        );
    }

    #[test]
    fn unix_seconds_round_trip() {
        for s in [0i64, 1, 1_700_000_000, -1, -86_400] {
            assert_eq!(unix_secs(from_unix_secs(s)), s);
        }
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1500)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
    }

    #[test]
    fn host_name_is_the_kernels_without_its_newline() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("Linux");
        let name = host_name();
        assert_eq!(name, kernel.trim());
        assert!(!name.is_empty() && !name.contains('\n'), "{name:?}");
    }

    #[test]
    fn fingerprint_is_lowercase_sha256_hex() {
        assert_eq!(
            fingerprint_of_der(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_fingerprint(&fingerprint_of_der(b"")));
        assert!(!is_fingerprint(
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
        ));
    }

    #[test]
    fn temp_files_get_the_exact_mode() {
        let d = causeway_testkit::TempDir::new("util");
        let p = write_temp(d.path(), "k", b"secret", 0o600).expect("write");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_bounded(&p, 6, true).expect("read"), b"secret");
        assert!(read_bounded(&p, 5, true).is_err());
    }
}
