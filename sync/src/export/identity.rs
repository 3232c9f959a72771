//! The sync host's identity in its state directory: the id the endpoint gave it, its TLS
//! client key (0600, made here and never sent anywhere), its certificate, and the CA it
//! pinned at enrollment. The id is written last: its presence means "registered".

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use causeway_config::files::{self, FileError};
use causeway_credential::Secret;

const DIR: &str = "identity";
const ID: &str = "sync.id";
const TLS_KEY: &str = "tls.key";
const TLS_CERT: &str = "tls.pem";
const CA: &str = "ca.pem";
/// A renewed pair is written under these names first, then moved into place; one left
/// behind by a crash is finished by the next [`Identity::load`].
const NEXT_KEY: &str = "tls.key.next";
const NEXT_CERT: &str = "tls.pem.next";

/// What `causeway sync register` obtained.
pub struct Identity {
    /// The host's id (its certificate's subject).
    pub host_id: String,
    /// Its TLS client key (PEM).
    pub tls_key_pem: Secret<String>,
    /// Its client certificate (PEM).
    pub cert_pem: String,
    /// The endpoint's CA, pinned at enrollment (PEM).
    pub ca_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host_id", &self.host_id)
            .finish_non_exhaustive()
    }
}

/// Why the identity cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file holds something else.
    #[error("{0}: not what `causeway sync register` wrote")]
    Invalid(PathBuf),
    /// Never registered.
    #[error("{0} holds no registered sync host; run `causeway sync register -c FILE --token TOKEN` first (make the token on the endpoint with `causeway certs token --for sync`)")]
    NotRegistered(PathBuf),
}

fn text(path: &Path, private: bool) -> Result<String, IdentityError> {
    let bytes = if private {
        files::read_private(path)?
    } else {
        std::fs::read(path).map_err(|error| FileError::Io {
            path: path.to_owned(),
            error,
        })?
    };
    String::from_utf8(bytes).map_err(|_| IdentityError::Invalid(path.to_owned()))
}

fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    std::fs::rename(from, to).map_err(|error| {
        IdentityError::File(FileError::Io {
            path: to.to_owned(),
            error,
        })
    })
}

/// Moves a renewed pair into place. The certificate is written after the key, so its
/// presence means the pair is complete (the key may already have been moved); a key
/// alone is a renewal that never finished and is dropped.
fn finish_renewal(dir: &Path) -> Result<(), IdentityError> {
    let (key, cert) = (dir.join(NEXT_KEY), dir.join(NEXT_CERT));
    if cert.exists() {
        if key.exists() {
            rename(&key, &dir.join(TLS_KEY))?;
        }
        rename(&cert, &dir.join(TLS_CERT))?;
    } else if key.exists() {
        let _ = std::fs::remove_file(&key);
    }
    Ok(())
}

impl Identity {
    /// The identity directory inside `state_dir`.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join(DIR)
    }

    /// Whether `state_dir` holds a registered identity.
    pub fn exists(state_dir: &Path) -> bool {
        Self::dir(state_dir).join(ID).exists()
    }

    /// Saves into `state_dir/identity` (created 0700): the key 0600, the id last.
    pub fn save(&self, state_dir: &Path) -> Result<(), IdentityError> {
        let dir = Self::dir(state_dir);
        files::create_private_dir(&dir)?;
        // A new registration: a renewal an earlier identity left unfinished is not its.
        for stale in [NEXT_CERT, NEXT_KEY] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        files::write_atomic(
            &dir.join(TLS_KEY),
            self.tls_key_pem.expose_secret().as_bytes(),
            0o600,
        )?;
        files::write_atomic(&dir.join(TLS_CERT), self.cert_pem.as_bytes(), 0o644)?;
        files::write_atomic(&dir.join(CA), self.ca_pem.as_bytes(), 0o644)?;
        files::write_atomic(
            &dir.join(ID),
            format!("{}\n", self.host_id).as_bytes(),
            0o644,
        )?;
        Ok(())
    }

    /// The certificate's validity window (not-before, not-after).
    pub fn validity(&self) -> Result<(SystemTime, SystemTime), IdentityError> {
        causeway_certs::validity_of_pem(&self.cert_pem)
            .ok_or_else(|| IdentityError::Invalid(PathBuf::from(TLS_CERT)))
    }

    /// Whether 70 % of the certificate's life has passed at `now` (as agents renew),
    /// leaving the rest to retry; an unreadable certificate is due.
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        self.validity()
            .map_or(true, |(nb, na)| causeway_certs::renewal_due(nb, na, now))
    }

    /// This identity with a renewed key and certificate, saved into `state_dir/identity`
    /// before it is returned: the key (0600) first, then the certificate, each written
    /// beside the current one and then moved into place, so that a crash in between
    /// leaves either the old pair or (finished by the next [`Identity::load`]) the new
    /// one, never a key with another key's certificate.
    pub fn renewed(
        &self,
        state_dir: &Path,
        tls_key_pem: Secret<String>,
        cert_pem: String,
    ) -> Result<Self, IdentityError> {
        let dir = Self::dir(state_dir);
        files::write_atomic(
            &dir.join(NEXT_KEY),
            tls_key_pem.expose_secret().as_bytes(),
            0o600,
        )?;
        files::write_atomic(&dir.join(NEXT_CERT), cert_pem.as_bytes(), 0o644)?;
        finish_renewal(&dir)?;
        Ok(Self {
            host_id: self.host_id.clone(),
            tls_key_pem,
            cert_pem,
            ca_pem: self.ca_pem.clone(),
        })
    }

    /// Loads from `state_dir/identity`; the key must not be readable by others.
    pub fn load(state_dir: &Path) -> Result<Self, IdentityError> {
        let dir = Self::dir(state_dir);
        if !dir.join(ID).exists() {
            return Err(IdentityError::NotRegistered(state_dir.to_owned()));
        }
        finish_renewal(&dir)?;
        let host_id = text(&dir.join(ID), false)?.trim().to_owned();
        if causeway_certs::AgentId::parse(&host_id).is_err() {
            return Err(IdentityError::Invalid(dir.join(ID)));
        }
        Ok(Self {
            host_id,
            tls_key_pem: Secret::new(text(&dir.join(TLS_KEY), true)?),
            cert_pem: text(&dir.join(TLS_CERT), false)?,
            ca_pem: text(&dir.join(CA), false)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_identity_loads_back_with_a_private_key_and_debug_hides_it() {
        let d = causeway_testkit::TempDir::new("sync-identity");
        assert!(matches!(
            Identity::load(d.path()),
            Err(IdentityError::NotRegistered(_))
        ));
        let id = Identity {
            host_id: causeway_certs::AgentId::generate()
                .expect("ok")
                .as_str()
                .to_owned(),
            tls_key_pem: Secret::new("-----BEGIN PRIVATE KEY-----\nkey-material\n".into()),
            cert_pem: "cert".into(),
            ca_pem: "ca".into(),
        };
        id.save(d.path()).expect("ok");
        let key = Identity::dir(d.path()).join(TLS_KEY);
        assert_eq!(
            std::fs::metadata(&key).expect("ok").permissions().mode() & 0o777,
            0o600
        );
        let back = Identity::load(d.path()).expect("ok");
        assert_eq!(back.host_id, id.host_id);
        assert!(!format!("{back:?}").contains("key-material"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("ok");
        let e = Identity::load(d.path()).expect_err("refused");
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    /// An identity whose certificate the CA signed at `issued` for `validity`.
    fn signed(d: &Path, issued: SystemTime, validity: std::time::Duration) -> Identity {
        let ca = causeway_certs::Ca::load_or_create(&d.join("ca"), issued).expect("ca");
        let (key, csr) = causeway_certs::new_key_and_csr("sync-1").expect("csr");
        let id = causeway_certs::AgentId::generate().expect("id");
        let cert = ca
            .sign_agent_csr(&csr, &id, issued, validity)
            .expect("cert");
        Identity {
            host_id: id.as_str().to_owned(),
            tls_key_pem: key,
            cert_pem: cert.pem().to_owned(),
            ca_pem: ca.cert_pem().to_owned(),
        }
    }

    #[test]
    fn renewal_is_due_at_70_percent_of_the_certificates_life() {
        use std::time::{Duration, UNIX_EPOCH};
        let d = causeway_testkit::TempDir::new("sync-renewal-due");
        let issued = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let id = signed(d.path(), issued, Duration::from_secs(10 * 3600));
        let (nb, na) = id.validity().expect("readable");
        assert_eq!(na, issued + Duration::from_secs(10 * 3600));
        let mark = nb + (na.duration_since(nb).expect("ordered")) * 7 / 10;
        assert!(!id.renewal_due(issued));
        assert!(!id.renewal_due(mark - Duration::from_secs(1)));
        assert!(id.renewal_due(mark));
        let broken = Identity {
            cert_pem: "not a certificate".into(),
            ..id
        };
        assert!(broken.renewal_due(issued));
    }

    #[test]
    fn a_renewed_identity_is_saved_key_first_and_loads_back() {
        use std::time::Duration;
        let d = causeway_testkit::TempDir::new("sync-renewed");
        let now = SystemTime::now();
        let id = signed(d.path(), now, Duration::from_secs(3600));
        id.save(d.path()).expect("saved");
        let (key, _) = causeway_certs::new_key_and_csr("sync-1").expect("key");
        let new = id
            .renewed(d.path(), key, "renewed-cert".into())
            .expect("saved");
        let back = Identity::load(d.path()).expect("loads");
        assert_eq!(back.host_id, id.host_id);
        assert_eq!(back.cert_pem, "renewed-cert");
        assert_eq!(back.ca_pem, id.ca_pem);
        assert_eq!(
            back.tls_key_pem.expose_secret(),
            new.tls_key_pem.expose_secret()
        );
        assert_ne!(
            back.tls_key_pem.expose_secret(),
            id.tls_key_pem.expose_secret()
        );
        let key = Identity::dir(d.path()).join(TLS_KEY);
        assert_eq!(
            std::fs::metadata(&key).expect("ok").permissions().mode() & 0o777,
            0o600
        );
        assert!(!Identity::dir(d.path()).join(NEXT_KEY).exists());
    }

    #[test]
    fn a_renewal_cut_short_by_a_crash_leaves_a_matching_pair() {
        use std::time::Duration;
        let d = causeway_testkit::TempDir::new("sync-renew-crash");
        let id = signed(d.path(), SystemTime::now(), Duration::from_secs(3600));
        id.save(d.path()).expect("saved");
        let dir = Identity::dir(d.path());
        let write = |name: &str, text: &str, mode| {
            files::write_atomic(&dir.join(name), text.as_bytes(), mode).expect("write")
        };
        // Crashed after the new key: the old pair stays, the stray key goes.
        write(NEXT_KEY, "new-key", 0o600);
        let back = Identity::load(d.path()).expect("loads");
        assert_eq!(back.cert_pem, id.cert_pem);
        assert_eq!(
            back.tls_key_pem.expose_secret(),
            id.tls_key_pem.expose_secret()
        );
        assert!(!dir.join(NEXT_KEY).exists());
        // Crashed after both were written, or after the key was moved: the new pair.
        write(NEXT_KEY, "new-key", 0o600);
        write(NEXT_CERT, "new-cert", 0o644);
        let back = Identity::load(d.path()).expect("loads");
        assert_eq!(
            (
                back.tls_key_pem.expose_secret().as_str(),
                back.cert_pem.as_str()
            ),
            ("new-key", "new-cert")
        );
        write(TLS_KEY, "newer-key", 0o600);
        write(NEXT_CERT, "newer-cert", 0o644);
        let back = Identity::load(d.path()).expect("loads");
        assert_eq!(
            (
                back.tls_key_pem.expose_secret().as_str(),
                back.cert_pem.as_str()
            ),
            ("newer-key", "newer-cert")
        );
    }
}
