//! Active Directory as a password hash source: directory replication ([MS-DRSR]
//! `IDL_DRSGetNCChanges`, the mechanism Entra Connect uses) through `causeway-drsr`, as
//! the connector's bind account, which needs the two rights *Replicating Directory
//! Changes* and *Replicating Directory Changes All* on the domain root.
//!
//! The first pass replicates the domain naming context with the partial attribute set
//! (`unicodePwd`, `pwdLastSet`, `userAccountControl`, `accountExpires`, …); its watermark
//! (invocation id, highwater USN vector, up-to-dateness vector) is kept as the connector's
//! hash cookie, and later passes replicate only what changed since. A change replicates
//! only the attributes that changed, so each changed user is then read whole with
//! `EXOP_REPL_OBJ` (its secrets included) and its record is complete: a new
//! `userAccountControl` alone must not read as "no password, no expiry". Each encrypted
//! `unicodePwd` is decrypted with the association's session key into an [`NtHash`] at
//! once; nothing else keeps it.
//!
//! [MS-DRSR]: https://learn.microsoft.com/openspecs/windows_protocols/ms-drsr

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use causeway_credential::Password;
use causeway_drsr::replicate::{Options, ReplicateError, ReplicatedUser, Session, Watermark};
use causeway_drsr::rpc::{self, Association, Credentials, Limits, RpcError, Target};
use causeway_drsr::secret::{self, SecretError, SessionKey};

use super::HashRecord;
use crate::ad::dirsync::Cookie;
use crate::ad::entry::Guid;
use crate::config::{Connector, DrsrAuth};
use crate::connect::{connect, ConnectError};

/// `userAccountControl`'s ACCOUNTDISABLE bit.
const ACCOUNTDISABLE: u32 = 0x2;
/// Seconds between 1601-01-01 (FILETIME's epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET: u64 = 11_644_473_600;
/// More changed users than this in one incremental pass are read by a full pass instead
/// of one `EXOP_REPL_OBJ` each.
pub const MAX_REFRESHES: usize = 1000;

/// Why a hash read from AD failed. Never carries a password, a key or a hash.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdHashError {
    /// The LDAP side (finding the DC and the account's name) failed.
    #[error("{0}")]
    Ldap(#[from] ConnectError),
    /// The connector's settings cannot name a replication target or account.
    #[error("connector {connector}: {message}")]
    Config {
        /// The connector.
        connector: String,
        /// What is missing.
        message: String,
    },
    /// The DC's DRSUAPI endpoint could not be reached or refused the association.
    #[error("DRSUAPI at {server}: {source}")]
    Rpc {
        /// The DC.
        server: String,
        /// What failed.
        #[source]
        source: RpcError,
    },
    /// Replication failed (rights, a malformed reply, a DC that does not progress).
    #[error("replication from {server}: {source}")]
    Replicate {
        /// The DC.
        server: String,
        /// What failed.
        #[source]
        source: ReplicateError,
    },
    /// The DC ended the pass without saying where the next one starts.
    #[error("replication from {server} ended without a watermark")]
    Incomplete {
        /// The DC.
        server: String,
    },
    /// The stored watermark is unreadable (then the next pass is a full one).
    #[error("connector {connector}: the stored replication watermark is unreadable: {message}")]
    Watermark {
        /// The connector.
        connector: String,
        /// Why.
        message: String,
    },
}

/// A user whose password could not be decrypted (the record is left out; the rest go on).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{dn}: {message}")]
pub struct RecordError {
    /// The user's DN.
    pub dn: String,
    /// Why.
    pub message: String,
}

/// What one read gave: a record (or why not) per user read, and the cookie to store once
/// they are all acknowledged.
#[derive(Debug)]
pub struct Read {
    /// The users read (tombstones are left to object export).
    pub records: Vec<Result<HashRecord, RecordError>>,
    /// The watermark after the pass, as the connector's hash cookie.
    pub cookie: Cookie,
    /// Whether this was a full replication.
    pub full: bool,
}

/// How to reach the DC's DRSUAPI as a connector's bind account, learned over LDAP (the
/// DC that answers, its DNS name, the account's NTLM name). Shared with `sync check` and
/// `sync object`, which take the same steps one at a time.
pub(crate) struct Plan {
    /// The DC's host as the LDAP URL names it (for errors).
    pub(crate) host: String,
    /// The DC's address and name; `port` is `None` (the endpoint mapper says).
    pub(crate) target: Target,
    /// The bind account's NTLM credentials.
    pub(crate) creds: Credentials,
    /// The connector's timeouts.
    pub(crate) limits: Limits,
    /// The domain's DNS name (`lab.causeway.test`).
    pub(crate) domain_dns: String,
    /// The DC's DNS host name from its root DSE.
    pub(crate) dc_name: Option<String>,
}

impl Plan {
    /// `DOMAIN\user` as NTLM names the account (for messages).
    pub(crate) fn who(&self) -> String {
        match &self.creds {
            Credentials::Ntlm { domain, user, .. } => format!("{domain}\\{user}"),
            Credentials::Kerberos { realm, user, .. } => format!("{user}@{realm}"),
            _ => String::new(),
        }
    }
}

/// Learns over LDAP how to replicate from `c`'s directory as its bind account.
pub(crate) async fn plan(c: &Connector) -> Result<Plan, AdHashError> {
    let config = |message: String| AdHashError::Config {
        connector: c.name.clone(),
        message,
    };
    // LDAP first: it says which DC answers (its DNS name names the DSA to replicate
    // from) and, when the bind account is a DN, what its sAMAccountName is.
    let mut session = connect(c).await?;
    let server = session.server.url.clone();
    let dc_name = session.root.dns_host_name.clone();
    let account = account_name(c, &mut session.ldap).await;
    let _ = session.ldap.unbind().await;
    let (domain, user) = account.map_err(config)?;
    let host = server_host(&server)
        .ok_or_else(|| config(format!("cannot read a host out of {server}")))?;
    let ip = resolve(&host).await.map_err(config)?;
    let domain_dns = dns_domain(&c.base_dn)
        .ok_or_else(|| config(format!("base_dn {} is not a domain's DN (DC=…)", c.base_dn)))?;
    let password = c.bind_password().map_err(config)?;
    // `bind_password` has already trimmed the file's line end.
    let password = Password::new(password.expose_secret().clone())
        .map_err(|e| config(format!("the bind password cannot be used: {e}")))?;
    let target = Target {
        host: ip,
        port: c.drsuapi_port,
        server_name: dc_name.clone().unwrap_or_else(|| host.clone()),
    };
    let creds = match &c.drsr_auth {
        DrsrAuth::Ntlm => Credentials::Ntlm {
            domain,
            user,
            password,
        },
        DrsrAuth::Kerberos { kdc } => {
            // A UPN-form account keeps its own realm; otherwise the domain's.
            let (user, realm) = match user.split_once('@') {
                Some((u, r)) => (u.to_owned(), r.to_ascii_uppercase()),
                None => (user, domain_dns.to_ascii_uppercase()),
            };
            let kdc = match kdc {
                Some((h, p)) => std::net::SocketAddr::new(resolve(h).await.map_err(config)?, *p),
                None => std::net::SocketAddr::new(ip, 88),
            };
            if dc_name.is_none() {
                return Err(config(
                    "Kerberos needs the DC's DNS name (its root DSE gave none) for the \
                     host/ service principal; use drsr_auth = \"ntlm\""
                        .into(),
                ));
            }
            Credentials::Kerberos {
                realm,
                user,
                password,
                kdc,
            }
        }
    };
    let limits = Limits {
        connect_timeout: c.timeout.min(Duration::from_secs(30)),
        call_timeout: c.timeout,
        ..Limits::default()
    };
    Ok(Plan {
        host,
        target,
        creds,
        limits,
        domain_dns,
        dc_name,
    })
}

/// Reads the users changed since `cookie` (all of them when it is empty), as `c`'s bind
/// account, from the DC that answers LDAP first.
pub async fn read(c: &Connector, cookie: &Cookie) -> Result<Read, AdHashError> {
    let Plan {
        host,
        target,
        creds,
        limits,
        domain_dns,
        dc_name,
    } = plan(c).await?;
    let rpc_err = |source| AdHashError::Rpc {
        server: host.clone(),
        source,
    };
    let assoc = Association::connect(&target, &rpc::DRSUAPI, &creds, &limits)
        .await
        .map_err(rpc_err)?;
    let key = SessionKey::new(assoc.session_key().expose_secret().to_vec());
    let repl_err = |source| AdHashError::Replicate {
        server: host.clone(),
        source,
    };
    let options = Options {
        dc_host_name: dc_name,
        ..Options::default()
    };
    let mut drs = Session::open(assoc, &domain_dns, options)
        .await
        .map_err(repl_err)?;

    let from: Option<Watermark> = if cookie.as_bytes().is_empty() {
        None
    } else {
        match serde_json::from_slice(cookie.as_bytes()) {
            Ok(w) => Some(w),
            // Not fatal: a full pass rewrites it. Said in the log by the caller's report.
            Err(e) => {
                tracing::warn!(connector = %c.name, error = %e, "stored replication watermark unreadable; replicating in full");
                None
            }
        }
    };
    let (mut users, mut watermark) = one_pass(&mut drs, from.as_ref(), &host).await?;
    let mut full = from.is_none();
    if !full && users.len() > MAX_REFRESHES {
        // So many changes that one full pass on this session is cheaper than a call each.
        (users, watermark) = one_pass(&mut drs, None, &host).await?;
        full = true;
    } else if !full {
        // A change carries only what changed: read each changed user whole.
        let mut whole = Vec::with_capacity(users.len());
        for u in users {
            if let Some(w) = drs.refresh_one(u.guid).await.map_err(repl_err)? {
                whole.push(w);
            }
        }
        users = whole;
    }
    let _ = drs.close().await;
    let records = users.into_iter().map(|u| record(&key, u)).collect();
    let cookie = serde_json::to_vec(&watermark)
        .map_err(|e| e.to_string())
        .and_then(|b| Cookie::new(b).map_err(|e| e.to_string()))
        .map_err(|message| AdHashError::Watermark {
            connector: c.name.clone(),
            message,
        })?;
    Ok(Read {
        records,
        cookie,
        full,
    })
}

/// One replication pass, full (`from` is `None`) or incremental: the live users it read
/// (tombstones are left to object export) and the watermark the DC ended it with.
async fn one_pass(
    drs: &mut Session<Association>,
    from: Option<&Watermark>,
    host: &str,
) -> Result<(Vec<ReplicatedUser>, Watermark), AdHashError> {
    let repl_err = |source| AdHashError::Replicate {
        server: host.to_owned(),
        source,
    };
    let mut users = Vec::new();
    let mut pass = match from {
        Some(w) => drs.incremental(w),
        None => drs.full(),
    };
    while let Some(page) = pass.next_page().await.map_err(repl_err)? {
        users.extend(page.users.into_iter().filter(|u| !u.deleted));
        if page.last {
            break;
        }
    }
    match pass.watermark().cloned() {
        Some(w) => Ok((users, w)),
        None => Err(AdHashError::Incomplete {
            server: host.to_owned(),
        }),
    }
}

/// One replicated user as a record: its `unicodePwd` decrypted (absent: no password),
/// its flags from `userAccountControl`, `pwdLastSet` and `accountExpires`.
pub fn record(key: &SessionKey, u: ReplicatedUser) -> Result<HashRecord, RecordError> {
    let anchor = Guid::from_bytes(&u.guid).map_err(|m| RecordError {
        dn: u.dn.clone(),
        message: m,
    })?;
    let nt = match &u.unicode_pwd {
        Some(v) => Some(
            secret::decrypt_nt_hash(key, u.rid, v).map_err(|e: SecretError| RecordError {
                dn: u.dn.clone(),
                message: format!("unicodePwd: {e}"),
            })?,
        ),
        None => None,
    };
    Ok(HashRecord {
        anchor,
        dn: u.dn,
        nt,
        pwd_last_set: u.pwd_last_set,
        must_change: false,
        disabled: u
            .user_account_control
            .is_some_and(|uac| uac & ACCOUNTDISABLE != 0),
        account_expires: u.account_expires.and_then(filetime_to_system_time),
    })
}

/// `accountExpires` as a time; 0 and `i64::MAX` mean never.
fn filetime_to_system_time(ft: i64) -> Option<SystemTime> {
    if ft <= 0 || ft == i64::MAX {
        return None;
    }
    let secs = u64::try_from(ft / 10_000_000).ok()?;
    let unix = secs.checked_sub(FILETIME_UNIX_OFFSET)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(unix))
}

/// The NTLM account of the bind account: `DOMAIN\user` and `user@domain` as written;
/// a DN is looked up for its `sAMAccountName` (NTLM cannot take a DN).
async fn account_name(c: &Connector, ldap: &mut ldap3::Ldap) -> Result<(String, String), String> {
    let b = c.bind_dn.trim();
    if let Some((d, u)) = b.split_once('\\') {
        return Ok((d.to_owned(), u.to_owned()));
    }
    if b.contains('@') && !b.contains('=') {
        // A UPN with no domain: the DC cracks it (Samba and Windows both do).
        return Ok((String::new(), b.to_owned()));
    }
    let search = tokio::time::timeout(
        c.timeout,
        ldap.search(
            b,
            ldap3::Scope::Base,
            "(objectClass=*)",
            vec!["sAMAccountName"],
        ),
    )
    .await
    .map_err(|_| format!("reading the sAMAccountName of {b} timed out"))?
    .and_then(|r| r.success())
    .map_err(|e| format!("reading the sAMAccountName of {b}: {e}"))?;
    let sam = search
        .0
        .into_iter()
        .next()
        .map(ldap3::SearchEntry::construct)
        .and_then(|e| {
            e.attrs
                .get("sAMAccountName")
                .and_then(|v| v.first().cloned())
        })
        .ok_or_else(|| {
            format!("{b} has no sAMAccountName; write bind_dn as DOMAIN\\name or name@domain")
        })?;
    let domain = dns_domain(&c.base_dn).unwrap_or_default();
    Ok((domain, sam))
}

/// The host of `ldaps://host:port` / `ldap://host:port` (IPv6 in brackets).
fn server_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h.to_owned());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty()).then(|| host.to_owned())
}

async fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    tokio::net::lookup_host((host, 135))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// `DC=lab,DC=causeway,DC=test` → `lab.causeway.test` (only the trailing DC= parts).
fn dns_domain(base_dn: &str) -> Option<String> {
    let labels: Vec<&str> = base_dn
        .split(',')
        .map(str::trim)
        .filter_map(|rdn| {
            let (k, v) = rdn.split_once('=')?;
            k.trim().eq_ignore_ascii_case("DC").then(|| v.trim())
        })
        .collect();
    (!labels.is_empty()).then(|| labels.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_domains_and_times() {
        assert_eq!(
            server_host("ldaps://127.0.0.2:636").as_deref(),
            Some("127.0.0.2")
        );
        assert_eq!(
            server_host("ldap://dc1.lab.test").as_deref(),
            Some("dc1.lab.test")
        );
        assert_eq!(server_host("ldaps://[::1]:636").as_deref(), Some("::1"));
        assert_eq!(server_host("nonsense"), None);
        assert_eq!(
            dns_domain("OU=Staff,DC=lab,DC=causeway,DC=test").as_deref(),
            Some("lab.causeway.test")
        );
        assert_eq!(dns_domain("o=example"), None);
        assert_eq!(filetime_to_system_time(0), None);
        assert_eq!(filetime_to_system_time(i64::MAX), None);
        // 2009-01-01T00:00:00Z
        let t = filetime_to_system_time(128_752_416_000_000_000).expect("a time");
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .ok(),
            Some(1_230_768_000)
        );
    }
}
