//! `causeway sync`'s configuration file (TOML): where the endpoint is, the safety settings
//! of a run, and one `[[connector]]` per directory (several AD forests and OpenLDAP servers
//! in one file). Read into a raw form that rejects unknown keys, then validated with errors
//! that name the file, line and column. Bind passwords are never in the file: each
//! connector names a file (private to the sync account) or an environment variable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_config::Transport;
use causeway_config::{parse_duration, parse_https, parse_ldap, read_config, ConfigError, Source};
use causeway_credential::Secret;
use serde::Deserialize;
use toml::Spanned;

use crate::ad::map::{Field, Mapping};
use crate::filter::Filter;

const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Entra Connect's default: a run that would delete more than 500 objects stops.
pub const DEFAULT_DELETE_THRESHOLD: u32 = 500;
/// How often a connector polls for changes when no change notification wakes it.
pub const DEFAULT_POLL: Duration = Duration::from_secs(5 * 60);
/// Changes per batch sent to the endpoint unless `batch_size` says otherwise.
pub const DEFAULT_BATCH: usize = 500;
/// How often password hashes are synchronised.
pub const DEFAULT_HASH_POLL: Duration = Duration::from_secs(2 * 60);
/// The longest `hash_interval` accepted.
pub const MAX_HASH_POLL: Duration = Duration::from_secs(60 * 60);
/// The longest bind password file read.
const MAX_PASSWORD_FILE: u64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    sync: RawSync,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    connector: Vec<Spanned<RawConnector>>,
    #[serde(default)]
    danger: RawDanger,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    state_dir: Spanned<String>,
    endpoints: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    staging: bool,
    #[serde(default)]
    poll_interval: Option<Spanned<String>>,
    #[serde(default)]
    hash_interval: Option<Spanned<String>>,
    #[serde(default)]
    batch_size: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    #[serde(default)]
    delete_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    delete_threshold_percent: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDanger {
    #[serde(default)]
    allow_plain_ldap: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: Spanned<String>,
    kind: Spanned<String>,
    servers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    bind_dn: Spanned<String>,
    #[serde(default)]
    bind_password_file: Option<Spanned<String>>,
    #[serde(default)]
    bind_password_env: Option<Spanned<String>>,
    base_dn: Spanned<String>,
    #[serde(default)]
    include_ous: Vec<Spanned<String>>,
    #[serde(default)]
    exclude_ous: Vec<Spanned<String>>,
    #[serde(default)]
    filter: Option<Spanned<String>>,
    #[serde(default)]
    member_of: Option<Spanned<String>>,
    #[serde(default)]
    change_notification: Option<bool>,
    #[serde(default)]
    soft_match: bool,
    #[serde(default)]
    write_consistency_guid: bool,
    #[serde(default)]
    password_hash_sync: bool,
    #[serde(default)]
    drsuapi_port: Option<u16>,
    #[serde(default)]
    drsr_auth: Option<Spanned<String>>,
    #[serde(default)]
    kdc: Option<Spanned<String>>,
    #[serde(default)]
    delta: Option<Spanned<String>>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    attributes: BTreeMap<Spanned<String>, Spanned<String>>,
}

pub use crate::mapping::ConnectorKind;

/// How an OpenLDAP connector finds what changed since its last import (`delta = …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenLdapDelta {
    /// Content sync when the server advertises it, else the `modifyTimestamp` fallback.
    #[default]
    Auto,
    /// RFC 4533 content sync only: a server without `syncprov` is an error.
    ContentSync,
    /// Searches by `modifyTimestamp` (and a comparison of entryUUIDs for deletions), even
    /// where content sync is offered.
    ModifyTimestamp,
}

/// One LDAP server of a connector, tried in order (failover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `ldaps://host:port` or `ldap://host:port`.
    pub url: String,
    /// How the connection is secured.
    pub transport: Transport,
}

/// How AD hash sync authenticates to the DC's DRSUAPI endpoint (always sealed, at
/// packet privacy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrsrAuth {
    /// NTLMv2 (`drsr_auth = "ntlm"`, the default).
    Ntlm,
    /// Kerberos (`drsr_auth = "kerberos"`): a ticket for `host/<the DC's DNS name>` from
    /// `kdc` (`host:port`), or from the DC itself on port 88.
    Kerberos {
        /// The KDC, when not the DC.
        kdc: Option<(String, u16)>,
    },
}

/// Where a connector's bind password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// A file readable by the sync account only (mode 0600 or stricter).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// One validated connector.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Its name: unique in the file, used in run records, metrics and errors.
    pub name: String,
    /// Which directory.
    pub kind: ConnectorKind,
    /// The servers, in failover order.
    pub servers: Vec<Server>,
    /// The CA certificates the servers' TLS certificates chain to (none only when every
    /// server is plain LDAP).
    pub ca_file: Option<PathBuf>,
    /// The bind account's DN.
    pub bind_dn: String,
    /// Where its password is read from.
    pub password: PasswordSource,
    /// The naming context to import (for AD, the domain's DN).
    pub base_dn: String,
    /// Only objects under one of these (if any are given).
    pub include_ous: Vec<String>,
    /// Never objects under one of these.
    pub exclude_ous: Vec<String>,
    /// An extra LDAP filter every in-scope object must match (evaluated by sync on the
    /// object's whole attribute set, so an edit that leaves the filter is a deletion).
    pub filter: Option<Filter>,
    /// Only members (direct or nested) of this group.
    pub member_of: Option<String>,
    /// Wake on AD's change notifications (AD only; on by default there).
    pub change_notification: bool,
    /// Match a new object to an existing cloud-only account by UPN or primary SMTP address.
    pub soft_match: bool,
    /// Write `objectGUID` into `ms-DS-ConsistencyGuid` when the latter is empty.
    pub write_consistency_guid: bool,
    /// Password hash sync (`password_hash_sync = true`, off by default): read the users'
    /// NT hashes (OpenLDAP: `sambaNTPassword`) every `hash_interval` and push only their
    /// verifiers.
    pub password_hash_sync: bool,
    /// AD hash sync: the DC's fixed DRSUAPI port (NTDS `TCP/IP Port`), for a firewall that
    /// opens only that one; `None` (the default) asks the endpoint mapper on port 135.
    pub drsuapi_port: Option<u16>,
    /// AD hash sync: how the bind account authenticates to DRSUAPI (`drsr_auth`).
    pub drsr_auth: DrsrAuth,
    /// How an OpenLDAP connector reads deltas (AD: always [`OpenLdapDelta::Auto`], unused).
    pub delta: OpenLdapDelta,
    /// How long one LDAP operation may take.
    pub timeout: Duration,
    /// Which source attribute each mapped field comes from: the kind's defaults
    /// ([`Mapping::for_kind`]) with `[connector.attributes]` over them.
    pub mapping: Mapping,
}

/// The deletion guard of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteThreshold {
    /// A run that would delete more objects than this stops (0: no count limit).
    pub count: u32,
    /// …or more than this percentage of the connector's objects (0: no percentage limit).
    pub percent: u32,
}

/// A validated `causeway sync` configuration.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Where the enrollment keys, the connector space and the watermarks live.
    pub state_dir: PathBuf,
    /// The endpoint's replicas, `host:port`, tried in order.
    pub endpoints: Vec<(String, u16)>,
    /// Import and compute, never export (a warm standby).
    pub staging: bool,
    /// How often connectors poll for changes.
    pub poll_interval: Duration,
    /// How often password hashes are synchronised.
    pub hash_interval: Duration,
    /// The deletion guard.
    pub delete_threshold: DeleteThreshold,
    /// Changes per batch sent to the endpoint (each applied atomically).
    pub batch_size: usize,
    /// The connectors.
    pub connectors: Vec<Connector>,
}

impl SyncConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config(path, MAX_CONFIG_BYTES)?;
        Self::parse(&text, path)
    }

    /// Validates `text`, read from `path` (relative paths in it are taken from the file's
    /// folder, so a configuration can be moved with its files).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let src = Source::new(path, text);
        let at = |span: std::ops::Range<usize>, message: String| src.at(span, message);
        let raw: Raw = src.toml()?;
        let resolve = |p: &str| src.resolve(p);
        let duration = |v: &Option<Spanned<String>>, default: Duration, name: &str| {
            let Some(v) = v else { return Ok(default) };
            let d = parse_duration(v.get_ref()).map_err(|m| at(v.span(), m))?;
            if d < Duration::from_secs(1) {
                return Err(at(v.span(), format!("{name} must be at least 1s")));
            }
            Ok(d)
        };

        let s = &raw.sync;
        if s.endpoints.get_ref().is_empty() {
            return Err(at(
                s.endpoints.span(),
                "endpoints must name at least one https://host[:port]".into(),
            ));
        }
        let endpoints = s
            .endpoints
            .get_ref()
            .iter()
            .map(|e| parse_https(e.get_ref(), "sync jobs").map_err(|m| at(e.span(), m)))
            .collect::<Result<Vec<_>, _>>()?;

        let batch_size = match &s.batch_size {
            None => DEFAULT_BATCH,
            Some(v) if (1..=causeway_proto::sync::MAX_BATCH as u32).contains(v.get_ref()) => {
                *v.get_ref() as usize
            }
            Some(v) => {
                return Err(at(
                    v.span(),
                    format!(
                        "batch_size must be 1 to {}, got {}",
                        causeway_proto::sync::MAX_BATCH,
                        v.get_ref()
                    ),
                ))
            }
        };

        let threshold = DeleteThreshold {
            count: raw
                .safety
                .delete_threshold
                .as_ref()
                .map_or(DEFAULT_DELETE_THRESHOLD, |v| *v.get_ref()),
            percent: match &raw.safety.delete_threshold_percent {
                None => 0,
                Some(v) if *v.get_ref() <= 100 => *v.get_ref(),
                Some(v) => {
                    return Err(at(
                        v.span(),
                        format!(
                            "delete_threshold_percent is a percentage (0 to 100), got {}",
                            v.get_ref()
                        ),
                    ))
                }
            },
        };

        if raw.connector.is_empty() {
            return Err(src.whole("no [[connector]]: name at least one directory to import".into()));
        }
        let mut names = BTreeSet::new();
        let mut connectors = Vec::with_capacity(raw.connector.len());
        for c in &raw.connector {
            let span = c.span();
            let c = c.get_ref();
            let name = c.name.get_ref();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(at(
                    c.name.span(),
                    format!("connector name {name:?} must be 1 to 64 letters, digits, '-' or '_'"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(at(
                    c.name.span(),
                    format!("two connectors are named {name:?}"),
                ));
            }
            let kind = match c.kind.get_ref().as_str() {
                "ad" => ConnectorKind::ActiveDirectory,
                "openldap" => ConnectorKind::OpenLdap,
                k => {
                    return Err(at(
                        c.kind.span(),
                        format!("kind {k:?}: use \"ad\" or \"openldap\""),
                    ))
                }
            };
            if c.servers.get_ref().is_empty() {
                return Err(at(
                    c.servers.span(),
                    "servers must name at least one ldaps:// or ldap:// server".into(),
                ));
            }
            let mut servers = Vec::new();
            for u in c.servers.get_ref() {
                let (transport, url) = parse_ldap(u.get_ref()).map_err(|m| at(u.span(), m))?;
                if transport == Transport::Plain && !raw.danger.allow_plain_ldap {
                    return Err(at(
                        u.span(),
                        "ldap+plain:// sends the bind password in clear; set [danger] allow_plain_ldap = true to allow it".into(),
                    ));
                }
                servers.push(Server { url, transport });
            }
            if c.ca_file.is_none() && servers.iter().any(|s| s.transport != Transport::Plain) {
                return Err(at(
                    c.servers.span(),
                    format!("connector {name:?}: ca_file must name the PEM file of the CA that issued these servers' certificates"),
                ));
            }
            let password = match (&c.bind_password_file, &c.bind_password_env) {
                (Some(f), None) => PasswordSource::File(resolve(f.get_ref())),
                (None, Some(e)) => {
                    let v = e.get_ref();
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(at(
                            e.span(),
                            format!("bind_password_env {v:?} is not an environment variable name"),
                        ));
                    }
                    PasswordSource::Env(v.clone())
                }
                (Some(_), Some(e)) => {
                    return Err(at(
                        e.span(),
                        "give bind_password_file or bind_password_env, not both".into(),
                    ))
                }
                (None, None) => {
                    return Err(at(
                        span,
                        format!("connector {name:?} needs bind_password_file or bind_password_env (the password is never written in this file)"),
                    ))
                }
            };
            let dn = |v: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
                check_dn(v.get_ref()).map_err(|m| at(v.span(), format!("{what}: {m}")))
            };
            let base_dn = dn(&c.base_dn, "base_dn")?;
            let under_base = |v: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
                let d = dn(v, what)?;
                if !is_under(&d, &base_dn) {
                    return Err(at(
                        v.span(),
                        format!("{what} {d:?} is not under base_dn {base_dn:?}"),
                    ));
                }
                Ok(d)
            };
            let include_ous = c
                .include_ous
                .iter()
                .map(|v| under_base(v, "include_ous"))
                .collect::<Result<Vec<_>, _>>()?;
            let exclude_ous = c
                .exclude_ous
                .iter()
                .map(|v| under_base(v, "exclude_ous"))
                .collect::<Result<Vec<_>, _>>()?;
            let filter = match &c.filter {
                None => None,
                Some(f) => Some(Filter::parse(f.get_ref()).map_err(|e| {
                    // Point into the string: past its opening quote, at the offending byte.
                    let at_byte = f.span().start + 1 + e.offset;
                    at(
                        at_byte..at_byte,
                        format!(
                            "filter is not an LDAP filter such as (department=Sales): {}",
                            e.message
                        ),
                    )
                })?),
            };
            let member_of = c
                .member_of
                .as_ref()
                .map(|v| dn(v, "member_of"))
                .transpose()?;
            if kind == ConnectorKind::OpenLdap && c.write_consistency_guid {
                return Err(at(
                    span,
                    "write_consistency_guid is an Active Directory setting; OpenLDAP anchors on entryUUID".into(),
                ));
            }
            let drsr_auth = match c.drsr_auth.as_ref() {
                Some(v) if kind != ConnectorKind::ActiveDirectory => {
                    return Err(at(
                        v.span(),
                        "drsr_auth is an Active Directory setting (hash sync over MS-DRSR)".into(),
                    ))
                }
                None => DrsrAuth::Ntlm,
                Some(v) => match v.get_ref().as_str() {
                    "ntlm" => DrsrAuth::Ntlm,
                    "kerberos" => DrsrAuth::Kerberos { kdc: None },
                    a => {
                        return Err(at(
                            v.span(),
                            format!("drsr_auth {a:?}: use \"ntlm\" or \"kerberos\""),
                        ))
                    }
                },
            };
            let drsr_auth = match (drsr_auth, c.kdc.as_ref()) {
                (a, None) => a,
                (DrsrAuth::Kerberos { .. }, Some(k)) => DrsrAuth::Kerberos {
                    kdc: Some(
                        causeway_config::split_host_port(k.get_ref(), 88)
                            .map_err(|m| at(k.span(), format!("kdc: {m}")))?,
                    ),
                },
                (DrsrAuth::Ntlm, Some(k)) => {
                    return Err(at(
                        k.span(),
                        "kdc is only used with drsr_auth = \"kerberos\"".into(),
                    ))
                }
            };
            let delta = match c.delta.as_ref() {
                None => OpenLdapDelta::Auto,
                Some(v) if kind != ConnectorKind::OpenLdap => {
                    return Err(at(
                        v.span(),
                        "delta is an OpenLDAP setting; Active Directory connectors use DirSync"
                            .into(),
                    ))
                }
                Some(v) => match v.get_ref().as_str() {
                    "auto" => OpenLdapDelta::Auto,
                    "content_sync" => OpenLdapDelta::ContentSync,
                    "modify_timestamp" => OpenLdapDelta::ModifyTimestamp,
                    d => {
                        return Err(at(
                            v.span(),
                            format!(
                            "delta {d:?}: use \"auto\", \"content_sync\" or \"modify_timestamp\""
                        ),
                        ))
                    }
                },
            };
            let mut mapping = Mapping::for_kind(kind);
            for (field, attr) in &c.attributes {
                let f = Field::from_config_name(field.get_ref()).ok_or_else(|| {
                    at(
                        field.span(),
                        format!(
                            "{:?} is not a mapped field; use one of {}",
                            field.get_ref(),
                            Field::ALL.map(Field::config_name).join(", ")
                        ),
                    )
                })?;
                let a = attr.get_ref();
                let mut chars = a.chars();
                if a.len() > 64
                    || !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                    || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(at(
                        attr.span(),
                        format!("{a:?} is not an LDAP attribute name"),
                    ));
                }
                mapping = mapping.with(f, a);
            }
            connectors.push(Connector {
                name: name.clone(),
                kind,
                servers,
                ca_file: c.ca_file.as_ref().map(|f| resolve(f.get_ref())),
                bind_dn: dn(&c.bind_dn, "bind_dn")?,
                password,
                base_dn,
                include_ous,
                exclude_ous,
                filter,
                member_of,
                change_notification: c
                    .change_notification
                    .unwrap_or(kind == ConnectorKind::ActiveDirectory),
                soft_match: c.soft_match,
                write_consistency_guid: c.write_consistency_guid,
                password_hash_sync: c.password_hash_sync,
                drsuapi_port: c.drsuapi_port,
                drsr_auth,
                delta,
                timeout: duration(&c.timeout, Duration::from_secs(30), "timeout")?,
                mapping,
            });
        }

        Ok(Self {
            state_dir: resolve(s.state_dir.get_ref()),
            endpoints,
            batch_size,
            staging: s.staging,
            poll_interval: duration(&s.poll_interval, DEFAULT_POLL, "poll_interval")?,
            hash_interval: match &s.hash_interval {
                // Entra's is 2 minutes; past an hour a changed password is not "synced".
                Some(v)
                    if duration(&s.hash_interval, DEFAULT_HASH_POLL, "hash_interval")?
                        > MAX_HASH_POLL =>
                {
                    return Err(at(v.span(), "hash_interval must be at most 1h".into()))
                }
                _ => duration(&s.hash_interval, DEFAULT_HASH_POLL, "hash_interval")?,
            },
            delete_threshold: threshold,
            connectors,
        })
    }
}

impl Connector {
    /// Every attribute an import of this connector asks for: the mapping's and those its
    /// filter reads (a filter on an attribute the copy does not hold could never match).
    pub fn import_attributes(&self) -> Vec<String> {
        let mut a = self.mapping.attributes();
        if let Some(f) = &self.filter {
            for name in f.attributes() {
                if !a.iter().any(|x| x.eq_ignore_ascii_case(&name)) {
                    a.push(name);
                }
            }
        }
        a.sort_by_key(|s| s.to_ascii_lowercase());
        a
    }

    /// Reads the bind password from its file or variable. The file must be private to the
    /// sync account; the message names the file or variable, never the value.
    pub fn bind_password(&self) -> Result<Secret<String>, String> {
        let text = match &self.password {
            PasswordSource::Env(v) => std::env::var(v).map_err(|_| {
                format!(
                    "connector {}: environment variable {v} is not set",
                    self.name
                )
            })?,
            PasswordSource::File(p) => read_private_text(p)
                .map_err(|m| format!("connector {}: {}: {m}", self.name, p.display()))?,
        };
        let s = Secret::new(text);
        let trimmed = s.expose_secret().trim_end_matches(['\r', '\n']).to_owned();
        if trimmed.is_empty() {
            return Err(format!(
                "connector {}: the bind password is empty",
                self.name
            ));
        }
        Ok(Secret::new(trimmed))
    }
}

fn read_private_text(p: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:03o} lets others read the password; chmod 600 it"
        ));
    }
    if meta.len() > MAX_PASSWORD_FILE {
        return Err(format!(
            "{} bytes; a password file is at most {MAX_PASSWORD_FILE}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "the password is not UTF-8".into())
}

/// A DN as written in the file: `attr=value` parts separated by commas, no empty part.
/// Spaces after commas are dropped so that `OU=Staff, DC=corp` and `OU=Staff,DC=corp` are
/// one scope.
fn check_dn(d: &str) -> Result<String, String> {
    if d.len() > 1024 {
        return Err("a DN of over 1024 bytes".into());
    }
    let parts: Vec<&str> = split_rdns(d).into_iter().map(str::trim).collect();
    if parts.is_empty() || parts.iter().any(|p| !p.contains('=') || p.starts_with('=')) {
        return Err(format!(
            "{d:?} is not a DN such as OU=Staff,DC=corp,DC=example"
        ));
    }
    Ok(parts.join(","))
}

/// The RDNs of a DN, splitting on commas that are not escaped with a backslash.
fn split_rdns(d: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in d.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&d[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !d.is_empty() {
        out.push(&d[start..]);
    }
    out
}

/// Whether `dn` is `base` or under it (attribute names and values compared without case,
/// as AD does).
pub fn is_under(dn: &str, base: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        split_rdns(s)
            .into_iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect()
    };
    let (d, b) = (norm(dn), norm(base));
    d.len() >= b.len() && d[d.len() - b.len()..] == b[..]
}

#[cfg(test)]
mod tests;
