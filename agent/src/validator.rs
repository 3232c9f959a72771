//! Checks an opened credential against Active Directory: an LDAP simple bind over LDAPS or
//! StartTLS to a pool of domain controllers, with failover. Connections are pooled per DC
//! and re-bound for each check; a DC that fails is skipped for a cool-down and retried.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_credential::{EnvelopeOpener, OpenedCredential, RequestId, SignInOutcome};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tracing::{debug, warn};

use crate::ad::bind_outcome;
use crate::channel::CheckHandler;

/// How a DC is reached (shared with sync's connectors).
pub use causeway_config::Transport;

/// One domain controller.
#[derive(Debug, Clone)]
pub struct DcTarget {
    /// `ldaps://host:port` or `ldap://host:port`.
    pub url: String,
    /// How to secure it.
    pub transport: Transport,
}

/// How a typed sign-in name becomes a bind name.
#[derive(Debug)]
pub enum LoginResolution {
    /// Bind with the name as typed (a UPN, or `DOMAIN\user`): AD resolves it itself.
    AsTyped,
    /// Search `(attribute=name)` under `base` as the service account; bind with the DN found.
    Attribute {
        /// The attribute users sign in with, e.g. `mail`.
        attribute: String,
        /// Where to search.
        base: String,
        /// The service account's DN.
        service_dn: String,
        /// Its password.
        service_password: causeway_credential::Secret<String>,
    },
}

/// The validator's settings.
#[derive(Debug)]
pub struct DirectorySettings {
    /// Domain controllers, in order of preference.
    pub dcs: Vec<DcTarget>,
    /// TLS client settings (trusting the DCs' CA).
    pub tls: Arc<rustls::ClientConfig>,
    /// Most time one bind (or search) may take.
    pub op_timeout: Duration,
    /// Idle connections kept per DC.
    pub pool_per_dc: usize,
    /// How long a failed DC is skipped.
    pub cool_down: Duration,
    /// How sign-in names are resolved.
    pub login: LoginResolution,
}

struct Dc {
    target: DcTarget,
    idle: Mutex<Vec<Ldap>>,
    down_until: Mutex<Option<Instant>>,
}

/// Opens sealed credentials and checks them against AD.
pub struct Validator {
    opener: EnvelopeOpener,
    settings: DirectorySettings,
    dcs: Vec<Dc>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field(
                "dcs",
                &self.dcs.iter().map(|d| &d.target.url).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why an operation against one DC did not produce an LDAP answer.
#[derive(Debug, thiserror::Error)]
enum DcError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer in time")]
    Timeout,
    #[error("LDAP failure: {0}")]
    Ldap(String),
}

impl Validator {
    /// A validator opening envelopes with `opener` and binding to `settings.dcs`.
    pub fn new(opener: EnvelopeOpener, settings: DirectorySettings) -> Self {
        let dcs = settings
            .dcs
            .iter()
            .map(|t| Dc {
                target: t.clone(),
                idle: Mutex::new(Vec::new()),
                down_until: Mutex::new(None),
            })
            .collect();
        Self {
            opener,
            settings,
            dcs,
        }
    }

    /// The envelope opener (its public key is what the hub seals to).
    pub fn opener(&self) -> &EnvelopeOpener {
        &self.opener
    }

    /// Binds `name` with `password` against the first DC that answers, before `deadline`.
    pub async fn bind(&self, name: &str, password: &str, deadline: Instant) -> SignInOutcome {
        for dc in self.ordered() {
            if Instant::now() >= deadline {
                break;
            }
            match self.bind_on(dc, name, password, deadline).await {
                Ok((rc, text)) => return bind_outcome(rc, &text),
                Err(e @ DcError::Connect(_)) => {
                    warn!(dc = %dc.target.url, error = %e, "domain controller unreachable; trying the next one");
                    *lock(&dc.down_until) = Some(Instant::now() + self.settings.cool_down);
                }
                Err(e) => {
                    // The bind may have reached AD (and counted a wrong password there):
                    // sending it to another DC could make AD count it twice, so stop here.
                    warn!(dc = %dc.target.url, error = %e, "bind sent but not answered; not retrying it elsewhere");
                    *lock(&dc.down_until) = Some(Instant::now() + self.settings.cool_down);
                    return SignInOutcome::DirectoryUnavailable;
                }
            }
        }
        SignInOutcome::DirectoryUnavailable
    }

    /// DCs in preference order, healthy ones first, those cooling down last (still tried:
    /// a cool-down must never make a reachable directory look unavailable).
    fn ordered(&self) -> Vec<&Dc> {
        let now = Instant::now();
        let (mut up, down): (Vec<&Dc>, Vec<&Dc>) = self
            .dcs
            .iter()
            .partition(|d| lock(&d.down_until).is_none_or(|t| t <= now));
        up.extend(down);
        up
    }

    async fn connect(&self, dc: &Dc, deadline: Instant) -> Result<Ldap, DcError> {
        let pooled = lock(&dc.idle).pop();
        if let Some(mut l) = pooled {
            // A pooled connection the DC has closed (idle timeout) fails at once and would
            // wrongly bench a healthy DC: check it cheaply first.
            if !l.is_closed() {
                return Ok(l);
            }
        }
        let timeout = self
            .settings
            .op_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let settings = LdapConnSettings::new()
            .set_config(self.settings.tls.clone())
            .set_conn_timeout(timeout)
            .set_starttls(dc.target.transport == Transport::StartTls);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &dc.target.url)
            .await
            .map_err(|e| DcError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    async fn bind_on(
        &self,
        dc: &Dc,
        name: &str,
        password: &str,
        deadline: Instant,
    ) -> Result<(u32, String), DcError> {
        let mut ldap = self.connect(dc, deadline).await?;
        let budget = self
            .settings
            .op_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let res = tokio::time::timeout(budget, ldap.simple_bind(name, password))
            .await
            .map_err(|_| DcError::Timeout)?
            .map_err(|e| DcError::Ldap(e.to_string()))?;
        // rc 80+ (other, server down, ...) may leave the connection unusable: do not reuse.
        if res.rc < 80 {
            let mut idle = lock(&dc.idle);
            if idle.len() < self.settings.pool_per_dc {
                idle.push(ldap);
            }
        }
        Ok((res.rc, res.text))
    }

    /// Resolves a typed name to a bind name. `Err` carries the outcome to answer with.
    async fn resolve(&self, typed: &str, deadline: Instant) -> Result<String, SignInOutcome> {
        let LoginResolution::Attribute {
            attribute,
            base,
            service_dn,
            service_password,
        } = &self.settings.login
        else {
            return Ok(typed.to_owned());
        };
        let filter = format!("({attribute}={})", ldap3::ldap_escape(typed));
        for dc in self.ordered() {
            let Ok(mut ldap) = self.connect(dc, deadline).await else {
                *lock(&dc.down_until) = Some(Instant::now() + self.settings.cool_down);
                continue;
            };
            let budget = self
                .settings
                .op_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let result = tokio::time::timeout(budget, async {
                let b = ldap
                    .simple_bind(service_dn, service_password.expose_secret())
                    .await?;
                if b.rc != 0 {
                    return Ok(Err(b.rc));
                }
                // At most 2 entries: one is the answer, two means the name is ambiguous.
                let ldap3::SearchResult(entries, res) = ldap
                    .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
                    .search(base, Scope::Subtree, &filter, vec!["1.1"])
                    .await?;
                const SIZE_LIMIT_EXCEEDED: u32 = 4;
                if res.rc == SIZE_LIMIT_EXCEEDED {
                    return Ok(Ok(Found::Many));
                }
                let (mut entries, _) = ldap3::SearchResult(entries, res).success()?;
                Ok::<_, ldap3::LdapError>(Ok(match entries.len() {
                    0 => Found::None,
                    1 => Found::One(entries.remove(0)),
                    _ => Found::Many,
                }))
            })
            .await;
            match result {
                Ok(Ok(Ok(entries))) => {
                    // The service bind made this connection the service account's: it can
                    // go back to the pool (every check re-binds before use).
                    let mut idle = lock(&dc.idle);
                    if idle.len() < self.settings.pool_per_dc {
                        idle.push(ldap);
                    }
                    drop(idle);
                    return match entries {
                        Found::One(e) => Ok(SearchEntry::construct(e).dn),
                        Found::None => Err(SignInOutcome::UnknownUser),
                        Found::Many => {
                            warn!(attribute, "sign-in name matches several accounts; refusing");
                            Err(SignInOutcome::UnknownUser)
                        }
                    };
                }
                Ok(Ok(Err(rc))) => {
                    warn!(dc = %dc.target.url, rc, "service account bind refused; check its DN and password");
                    return Err(SignInOutcome::DirectoryUnavailable);
                }
                _ => {
                    warn!(dc = %dc.target.url, "name search failed; trying the next domain controller");
                    *lock(&dc.down_until) = Some(Instant::now() + self.settings.cool_down);
                }
            }
        }
        Err(SignInOutcome::DirectoryUnavailable)
    }
}

/// What a name search found.
enum Found {
    One(ldap3::ResultEntry),
    None,
    Many,
}

impl CheckHandler for Validator {
    fn opener(&self) -> &EnvelopeOpener {
        &self.opener
    }

    async fn check(
        &self,
        _request_id: RequestId,
        credential: OpenedCredential,
        deadline: Instant,
    ) -> SignInOutcome {
        let name = match self.resolve(&credential.context.user_name, deadline).await {
            Ok(n) => n,
            Err(o) => return o,
        };
        // The password lives only until the end of this call (zeroized on drop).
        self.bind(&name, credential.password.expose_secret(), deadline)
            .await
    }
}
