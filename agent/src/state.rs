//! What `causeway agent register` leaves on disk and `causeway agent run` reads back: the
//! agent's id, its HPKE key, its TLS key and certificate, and the pinned CA. Private keys
//! are written 0600, atomically, and refused when others can read them.

use std::fs;
use std::path::{Path, PathBuf};

use causeway_credential::{AgentKeyPair, Secret};

/// The agent's identity on disk.
pub struct AgentState {
    /// The id the endpoint gave the agent.
    pub agent_id: String,
    /// Credentials are sealed to this key.
    pub hpke: AgentKeyPair,
    /// TLS client key (PEM).
    pub tls_key_pem: Secret<String>,
    /// TLS client certificate (PEM).
    pub tls_cert_pem: String,
    /// The endpoint's CA (PEM), pinned at enrollment.
    pub ca_pem: String,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// A problem with the state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        error: std::io::Error,
    },
    /// A key file is readable by others.
    #[error("{path} is readable by other users (mode {mode:o}); run: chmod 600 {path}")]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A file holds something else than expected.
    #[error("{path}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The agent was never registered.
    #[error("{dir} holds no registered agent; run `causeway agent register --endpoint URL --token TOKEN` first")]
    NotRegistered {
        /// The state directory.
        dir: PathBuf,
    },
}

pub(crate) const ID: &str = "agent.id";
pub(crate) const HPKE: &str = "hpke.key";
pub(crate) const TLS_KEY: &str = "tls.key";
pub(crate) const TLS_CERT: &str = "tls.pem";
pub(crate) const CA: &str = "ca.pem";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |error| StateError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Writes `data` to `path` atomically with `mode` (see [`causeway_config::files`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    causeway_config::files::write_atomic(path, data, mode).map_err(StateError::from)
}

/// Reads a private file, refusing it when group or others can read it.
pub fn read_private(path: &Path) -> Result<Vec<u8>, StateError> {
    causeway_config::files::read_private(path).map_err(StateError::from)
}

impl From<causeway_config::files::FileError> for StateError {
    fn from(e: causeway_config::files::FileError) -> Self {
        use causeway_config::files::FileError as F;
        match e {
            F::Io { path, error } => StateError::Io { path, error },
            F::LoosePermissions { path, mode } => StateError::LoosePermissions { path, mode },
            other => StateError::Invalid {
                path: PathBuf::new(),
                what: other.to_string(),
            },
        }
    }
}

impl AgentState {
    /// Saves the state into `dir` (created 0700 if missing).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let hpke = self.hpke.secret().expose_secret_bytes();
        write_atomic(&dir.join(HPKE), hpke.expose_secret(), 0o600)?;
        write_atomic(
            &dir.join(TLS_KEY),
            self.tls_key_pem.expose_secret().as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(TLS_CERT), self.tls_cert_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(CA), self.ca_pem.as_bytes(), 0o644)?;
        // The id last: its presence means "registered".
        write_atomic(
            &dir.join(ID),
            format!("{}\n", self.agent_id).as_bytes(),
            0o644,
        )
    }

    /// Loads the state from `dir`.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let id_path = dir.join(ID);
        if !id_path.exists() {
            return Err(StateError::NotRegistered {
                dir: dir.to_owned(),
            });
        }
        let agent_id = fs::read_to_string(&id_path)
            .map_err(io(&id_path))?
            .trim()
            .to_owned();
        if agent_id.is_empty()
            || agent_id.len() > 128
            || !agent_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StateError::Invalid {
                path: id_path,
                what: "not an agent id".into(),
            });
        }
        let hpke_path = dir.join(HPKE);
        let raw = Secret::new(read_private(&hpke_path)?);
        let bytes: [u8; 32] =
            raw.expose_secret()
                .as_slice()
                .try_into()
                .map_err(|_| StateError::Invalid {
                    path: hpke_path.clone(),
                    what: "an HPKE key is 32 bytes".into(),
                })?;
        let hpke = AgentKeyPair::from_secret_bytes(&Secret::new(bytes)).map_err(|e| {
            StateError::Invalid {
                path: hpke_path,
                what: e.to_string(),
            }
        })?;
        let key_path = dir.join(TLS_KEY);
        let tls_key_pem =
            Secret::new(String::from_utf8(read_private(&key_path)?).map_err(|_| {
                StateError::Invalid {
                    path: key_path,
                    what: "not PEM text".into(),
                }
            })?);
        let cert_path = dir.join(TLS_CERT);
        let ca_path = dir.join(CA);
        Ok(Self {
            agent_id,
            hpke,
            tls_key_pem,
            tls_cert_pem: fs::read_to_string(&cert_path).map_err(io(&cert_path))?,
            ca_pem: fs::read_to_string(&ca_path).map_err(io(&ca_path))?,
        })
    }

    /// Replaces the certificate (and key) after a renewal.
    pub fn save_renewed(
        dir: &Path,
        key_pem: &Secret<String>,
        cert_pem: &str,
    ) -> Result<(), StateError> {
        write_atomic(
            &dir.join(TLS_KEY),
            key_pem.expose_secret().as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(TLS_CERT), cert_pem.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("causeway-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_load_and_permissions() {
        let dir = tmpdir("rt");
        let st = AgentState {
            agent_id: "agt-0123456789abcdef".into(),
            hpke: AgentKeyPair::generate(),
            tls_key_pem: Secret::new(
                "-----BEGIN PRIVATE KEY-----\nX\n-----END PRIVATE KEY-----\n".into(),
            ),
            tls_cert_pem: "cert".into(),
            ca_pem: "ca".into(),
        };
        st.save(&dir).expect("save");
        for f in [HPKE, TLS_KEY] {
            assert_eq!(
                fs::metadata(dir.join(f))
                    .expect("meta")
                    .permissions()
                    .mode()
                    & 0o777,
                0o600,
                "{f}"
            );
        }
        assert_eq!(
            fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
        let back = AgentState::load(&dir).expect("load");
        assert_eq!(back.hpke.public(), st.hpke.public());
        assert_eq!(back.agent_id, st.agent_id);
        assert!(!format!("{back:?}").contains("PRIVATE"));

        fs::set_permissions(dir.join(TLS_KEY), fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = AgentState::load(&dir).expect_err("loose key");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unregistered_dir_says_what_to_do() {
        let e = AgentState::load(&tmpdir("none")).expect_err("empty");
        assert!(e.to_string().contains("causeway agent register"), "{e}");
    }
}
