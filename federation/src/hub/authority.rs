//! The hub's [`AgentAuthority`] over Causeway's CA (`causeway-certs`) and agent registry
//! (`causeway-store`).

use std::time::{Duration, SystemTime};

use causeway_certs::{AgentId, Ca};
use causeway_credential::AgentPublicKey;
use causeway_store::{AgentRegistration, AgentStatus, HostRole, SqliteAgents, TokenPurpose};
use tracing::warn;

use super::listener::{AgentAuthority, Enrollment, Refusal};
use super::AgentPeer;

/// Enrollment, lookups and renewal, backed by the CA on disk and the SQLite registry that
/// the `causeway certs` commands share from other processes. It holds the SQLite registry
/// itself, not `dyn Agents`: [`AgentAuthority`] is synchronous and runs on the blocking
/// pool, so it calls the registry's blocking methods directly.
pub struct CertsAuthority {
    ca: Ca,
    registry: SqliteAgents,
    require_approval: bool,
    validity: Duration,
    /// How long sync hosts' certificates last (`[sync] certificate_validity`).
    sync_validity: Duration,
}

impl std::fmt::Debug for CertsAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertsAuthority")
            .field("require_approval", &self.require_approval)
            .finish_non_exhaustive()
    }
}

impl CertsAuthority {
    /// An authority issuing agent certificates valid for `validity`; with
    /// `require_approval`, new agents wait for `causeway certs approve`.
    pub fn new(ca: Ca, registry: SqliteAgents, require_approval: bool, validity: Duration) -> Self {
        Self {
            ca,
            registry,
            require_approval,
            validity,
            sync_validity: validity,
        }
    }

    /// The same, issuing sync hosts' certificates valid for `validity` instead.
    pub fn with_sync_validity(mut self, validity: Duration) -> Self {
        self.sync_validity = validity;
        self
    }

    /// How long the sync hosts' certificates it issues are valid.
    pub(crate) fn sync_validity(&self) -> Duration {
        self.sync_validity
    }

    /// The CA.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The registry.
    pub fn registry(&self) -> &SqliteAgents {
        &self.registry
    }

    /// Whether new hosts wait for `causeway certs approve`.
    pub(crate) fn require_approval(&self) -> bool {
        self.require_approval
    }

    pub(crate) fn status(&self, id: &AgentId) -> Result<(), Refusal> {
        match self.registry.agent(id) {
            Ok(Some(r)) => match r.status {
                AgentStatus::Approved => Ok(()),
                AgentStatus::Pending => Err(Refusal::NotApproved),
                // Revoked, and any state a later version adds: refuse.
                _ => Err(Refusal::Revoked),
            },
            Ok(None) => Err(Refusal::Unknown),
            Err(e) => {
                // Fail closed, but loudly: a registry outage is an operator problem.
                warn!(error = %e, "agent registry unreadable; refusing");
                Err(Refusal::Unknown)
            }
        }
    }
}

/// What an unauthenticated enrolling client may be told about a failure.
pub(crate) fn public_error(e: causeway_certs::CertsError) -> String {
    use causeway_certs::CertsError as E;
    match e {
        E::Token(_) | E::Csr(_) | E::InvalidHostName(_) => e.to_string(),
        other => {
            warn!(error = %other, "enrollment failed inside the endpoint");
            "enrollment failed on the endpoint; its log says why".into()
        }
    }
}

impl AgentAuthority for CertsAuthority {
    fn authorize(&self, cert_fingerprint: &str) -> Result<AgentPeer, Refusal> {
        let rec = match self.registry.lookup_by_fingerprint(cert_fingerprint) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Refusal::Unknown),
            Err(e) => {
                warn!(error = %e, "agent registry unreadable; refusing");
                return Err(Refusal::Unknown);
            }
        };
        // A sync host's certificate is Causeway's CA's too, so the handshake accepted it:
        // it must still not take sign-ins (it has no HPKE key, and was never meant to).
        if rec.role != HostRole::Agent {
            return Err(Refusal::WrongRole);
        }
        self.status(&rec.id)?;
        let key = AgentPublicKey::from_bytes(&rec.hpke_public_key).map_err(|_| Refusal::Unknown)?;
        Ok(AgentPeer {
            agent_id: rec.id.as_str().to_owned(),
            hpke_public_key: key,
        })
    }

    fn still_allowed(&self, agent_id: &str) -> Result<(), Refusal> {
        let id = AgentId::parse(agent_id).map_err(|_| Refusal::Unknown)?;
        self.status(&id)
    }

    fn enroll(
        &self,
        token: &str,
        host_name: &str,
        hpke_public_key: [u8; 32],
        csr_pem: &str,
    ) -> Result<Enrollment, String> {
        let now = SystemTime::now();
        AgentPublicKey::from_bytes(&hpke_public_key).map_err(|e| e.to_string())?;
        // The caller is not authenticated yet: it learns what is wrong with its own request
        // (token, CSR, host name), never our paths or database errors (those are logged).
        // Check the request fully before spending the token, so that a broken CSR does not
        // burn a one-time token.
        self.ca.check_agent_csr(csr_pem).map_err(public_error)?;
        self.registry
            .consume_token(token, TokenPurpose::Agent, now)
            .map_err(public_error)?;
        let id = AgentId::generate().map_err(public_error)?;
        let cert = self
            .ca
            .sign_agent_csr(csr_pem, &id, now, self.validity)
            .map_err(public_error)?;
        let rec = self
            .registry
            .register_agent(
                AgentRegistration {
                    agent_id: id.clone(),
                    host_name: host_name.to_owned(),
                    role: HostRole::Agent,
                    hpke_public_key,
                    cert_fingerprint: cert.fingerprint().to_owned(),
                    cert_not_after: cert.not_after(),
                },
                self.require_approval,
                now,
            )
            .map_err(public_error)?;
        Ok(Enrollment {
            agent_id: id.as_str().to_owned(),
            cert_pem: cert.pem().to_owned(),
            ca_pem: self.ca.cert_pem().to_owned(),
            approved: rec.status == AgentStatus::Approved,
        })
    }

    fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<String, String> {
        let id = AgentId::parse(agent_id).map_err(|e| e.to_string())?;
        self.status(&id)
            .map_err(|r| format!("agent may not renew: {r:?}"))?;
        let cert = self
            .ca
            .sign_agent_csr(csr_pem, &id, SystemTime::now(), self.validity)
            .map_err(|e| e.to_string())?;
        self.registry
            .record_renewal(&id, cert.fingerprint(), cert.not_after())
            .map_err(|e| e.to_string())?;
        Ok(cert.pem().to_owned())
    }

    fn touch(&self, agent_id: &str) {
        if let Ok(id) = AgentId::parse(agent_id) {
            if let Err(e) = self.registry.touch(&id, SystemTime::now()) {
                warn!(error = %e, "cannot record agent activity");
            }
        }
    }
}
