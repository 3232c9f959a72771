//! Where a command finds the endpoint's data directory: `--data-dir`, else `server.data_dir`
//! of the configuration (`--config` / `CAUSEWAY_CONFIG`), else `./causeway-data`. Only
//! `serve` and `demo` create it; every admin command refuses a missing one and says where it
//! looked, so that running one in the wrong place never makes an empty store or a new CA.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use causeway_certs::Ca;
use causeway_store::{SqliteAgents, SqliteStore};

use crate::serve_config::ServeConfig;

/// Where the endpoint keeps its state unless told otherwise.
pub(crate) const DEFAULT_DATA_DIR: &str = "causeway-data";

/// `--config` and `--data-dir`, as every admin command takes them.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct DataArgs {
    /// The endpoint's configuration file (as given to `causeway serve --config`): its
    /// server.data_dir, and its settings where the command needs them ([signing], [users]).
    #[arg(long, env = "CAUSEWAY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The endpoint's data directory [default: server.data_dir of --config, else
    /// ./causeway-data]. It must exist: `causeway serve` creates it.
    #[arg(long, env = "CAUSEWAY_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// A data directory that exists, with the configuration it was found through.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// The directory.
    pub(crate) data: DataDir,
    /// The configuration (defaults when no file was given).
    pub(crate) config: ServeConfig,
}

impl DataArgs {
    /// The data directory these arguments name, and why (for messages), with the config.
    fn resolve(&self) -> Result<(PathBuf, String, ServeConfig)> {
        let config = match &self.config {
            Some(p) => ServeConfig::load(p).map_err(|e| anyhow::anyhow!("{e}"))?,
            None => ServeConfig::default(),
        };
        let (dir, why) = match (&self.data_dir, &config.data_dir, &self.config) {
            (Some(d), _, _) => (
                d.clone(),
                "given by --data-dir or CAUSEWAY_DATA_DIR".to_owned(),
            ),
            (None, Some(d), Some(c)) => (d.clone(), format!("server.data_dir of {}", c.display())),
            (None, None, Some(c)) => (
                PathBuf::from(DEFAULT_DATA_DIR),
                format!("the default: {} sets no server.data_dir", c.display()),
            ),
            (None, _, None) => (
                PathBuf::from(DEFAULT_DATA_DIR),
                "the default: no --config, CAUSEWAY_CONFIG or --data-dir given".to_owned(),
            ),
        };
        Ok((dir, why, config))
    }

    /// The existing data directory; an error naming where it looked when there is none.
    pub(crate) fn locate(&self) -> Result<Located> {
        let (dir, why, config) = self.resolve()?;
        let shown = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(Located {
                data: DataDir { data_dir: dir },
                config,
            }),
            Ok(_) => bail!(
                "{} ({why}) is not a directory: pass the endpoint's --config FILE or --data-dir DIR",
                shown.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "no data directory at {} ({why}); nothing was created. Pass the endpoint's --config FILE or --data-dir DIR, or start `causeway serve` there first (only serve and demo create one)",
                shown.display()
            ),
            Err(e) => Err(e).with_context(|| format!("cannot read {} ({why})", shown.display())),
        }
    }
}

impl DataArgs {
    /// Records an administrator's change (`action` on `target`) and how it ended in the
    /// endpoint's audit log, where that data directory exists. Best effort: a command that
    /// did its work is not failed because its audit line could not be written (it warns).
    /// The error text of a refusal is recorded; admin commands' errors carry no secret.
    pub(crate) fn audit_admin(&self, action: &str, target: &str, result: &Result<()>) {
        use causeway_federation::audit::{AuditLog, Event};
        let Ok(found) = self.locate() else {
            return;
        };
        let event = match result {
            Ok(()) => Event::admin(action, target, "ok"),
            Err(e) => Event::admin(action, target, "failed").with_detail(format!("{e:#}")),
        };
        let written = AuditLog::open(&found.data.audit(), found.config.audit)
            .and_then(|log| log.append(&[event]));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}

/// The endpoint's data directory (CA, registry, keys, apps, directory store).
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    /// The directory.
    pub(crate) data_dir: PathBuf,
}

impl DataDir {
    fn ca_dir(&self) -> PathBuf {
        self.data_dir.join("ca")
    }

    /// Creates the data directory (0700) if it is missing (`serve` and `demo` only).
    pub(crate) fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| format!("cannot create {}", self.data_dir.display()))
    }

    /// The token-signing keys.
    pub(crate) fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("token-signing")
    }

    /// Registered applications.
    pub(crate) fn apps_dir(&self) -> PathBuf {
        self.data_dir.join("apps")
    }

    /// The audit log (`causeway audit` reads it).
    pub(crate) fn audit(&self) -> PathBuf {
        self.data_dir.join("audit")
    }

    /// The directory store's file.
    pub(crate) fn directory_path(&self) -> PathBuf {
        self.data_dir.join("directory.sqlite")
    }

    /// The CA and registry, created when missing (`serve`).
    pub(crate) fn open(&self) -> Result<(Ca, SqliteAgents)> {
        self.ensure()?;
        let ca = Ca::load_or_create(&self.ca_dir(), SystemTime::now())?;
        let reg = SqliteAgents::open(&ca.registry_path())?;
        Ok((ca, reg))
    }

    /// The CA and registry of an endpoint that has run here; never creates a CA.
    pub(crate) fn open_existing(&self) -> Result<(Ca, SqliteAgents)> {
        let ca_dir = self.ca_dir();
        require(&ca_dir, "CA")?;
        let ca = Ca::load(&ca_dir, SystemTime::now())?;
        let reg = SqliteAgents::open(&ca.registry_path())?;
        Ok((ca, reg))
    }

    /// The directory store of an endpoint that has run here; never creates one.
    pub(crate) fn store(&self) -> Result<SqliteStore> {
        let path = self.directory_path();
        require(&path, "directory store")?;
        Ok(SqliteStore::open(&path)?)
    }
}

fn require(path: &Path, what: &str) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    bail!(
        "no {what} at {}: this data directory has no endpoint state yet; start `causeway serve` with it once, or pass the endpoint's --config FILE or --data-dir DIR",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<&Path>, data_dir: Option<&Path>) -> DataArgs {
        DataArgs {
            config: config.map(Path::to_owned),
            data_dir: data_dir.map(Path::to_owned),
        }
    }

    #[test]
    fn the_config_names_the_data_dir_and_the_flag_overrides_it() {
        let t = causeway_testkit::TempDir::new("datadir-config");
        let named = t.path().join("named");
        std::fs::create_dir(&named).expect("dir");
        let cfg = t.path().join("causeway.toml");
        std::fs::write(&cfg, "[server]\ndata_dir = \"named\"\n").expect("config");
        let found = args(Some(&cfg), None).locate().expect("found");
        assert_eq!(found.data.data_dir, named);
        let other = t.path().join("other");
        std::fs::create_dir(&other).expect("dir");
        let found = args(Some(&cfg), Some(&other)).locate().expect("found");
        assert_eq!(found.data.data_dir, other);
    }

    #[test]
    fn a_missing_data_dir_is_refused_naming_where_it_looked_and_not_created() {
        let t = causeway_testkit::TempDir::new("datadir-missing");
        let cfg = t.path().join("causeway.toml");
        std::fs::write(&cfg, "[server]\ndata_dir = \"absent\"\n").expect("config");
        let e = args(Some(&cfg), None).locate().expect_err("missing");
        let m = format!("{e:#}");
        assert!(
            m.contains(&t.path().join("absent").display().to_string()),
            "{m}"
        );
        assert!(m.contains("server.data_dir of"), "{m}");
        assert!(!t.path().join("absent").exists());
    }

    #[test]
    fn an_existing_dir_without_endpoint_state_gets_no_store_or_ca() {
        let t = causeway_testkit::TempDir::new("datadir-empty");
        let data = DataDir {
            data_dir: t.path().to_owned(),
        };
        let e = data.store().expect_err("no store yet");
        assert!(format!("{e:#}").contains("no directory store"), "{e:#}");
        let e = data.open_existing().expect_err("no CA yet");
        assert!(format!("{e:#}").contains("no CA"), "{e:#}");
        assert_eq!(std::fs::read_dir(t.path()).expect("list").count(), 0);
    }
}
