//! [`SyncAuthority`] over the CA and the registry the agents use: sync hosts are
//! registry rows of role `sync`, enrolled with `sync` tokens, approved and revoked by
//! the same `causeway certs` commands.

use std::time::SystemTime;

use causeway_certs::AgentId;
use causeway_store::{AgentRegistration, AgentStatus, HostRole, TokenPurpose};
use tracing::warn;

use super::{HostRefused, SyncAuthority};
use crate::hub::authority::{public_error, CertsAuthority};
use crate::hub::listener::{Enrollment, Refusal};

/// A sync host has no HPKE key (nothing is sealed to it); the registry's column holds
/// zeros, which no agent lookup accepts since the role is checked first.
const NO_HPKE_KEY: [u8; 32] = [0; 32];

impl SyncAuthority for CertsAuthority {
    fn authorize_sync(&self, cert_fingerprint: &str) -> Result<String, HostRefused> {
        let refused = |why, host_id| HostRefused { why, host_id };
        let rec = match self.registry().lookup_by_fingerprint(cert_fingerprint) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(refused(Refusal::Unknown, None)),
            Err(e) => {
                warn!(error = %e, "agent registry unreadable; refusing a sync host");
                return Err(refused(Refusal::Unknown, None));
            }
        };
        if rec.role != HostRole::Sync {
            return Err(refused(Refusal::WrongRole, None));
        }
        match self.status(&rec.id) {
            Ok(()) => Ok(rec.id.as_str().to_owned()),
            Err(why) => Err(refused(why, Some(rec.id.as_str().to_owned()))),
        }
    }

    fn sync_still_allowed(&self, host_id: &str) -> Result<(), Refusal> {
        let id = AgentId::parse(host_id).map_err(|_| Refusal::Unknown)?;
        self.status(&id)
    }

    fn enroll_sync(
        &self,
        token: &str,
        host_name: &str,
        csr_pem: &str,
    ) -> Result<Enrollment, String> {
        let now = SystemTime::now();
        // As for agents: the whole request is checked before the one-time token is spent.
        self.ca().check_agent_csr(csr_pem).map_err(public_error)?;
        // The message's own check allows 256 bytes; the registry 255 characters.
        if host_name.chars().count() > causeway_store::MAX_HOST_NAME_LEN {
            return Err("host_name is longer than 255 characters".into());
        }
        self.registry()
            .consume_token(token, TokenPurpose::Sync, now)
            .map_err(public_error)?;
        let id = AgentId::generate().map_err(public_error)?;
        let cert = self
            .ca()
            .sign_agent_csr(csr_pem, &id, now, self.validity())
            .map_err(public_error)?;
        let rec = self
            .registry()
            .register_agent(
                AgentRegistration {
                    agent_id: id.clone(),
                    host_name: host_name.to_owned(),
                    role: HostRole::Sync,
                    hpke_public_key: NO_HPKE_KEY,
                    cert_fingerprint: cert.fingerprint().to_owned(),
                    cert_not_after: cert.not_after(),
                },
                self.require_approval(),
                now,
            )
            .map_err(public_error)?;
        Ok(Enrollment {
            agent_id: id.as_str().to_owned(),
            cert_pem: cert.pem().to_owned(),
            ca_pem: self.ca().cert_pem().to_owned(),
            approved: rec.status == AgentStatus::Approved,
        })
    }

    fn touch_sync(&self, host_id: &str) {
        if let Ok(id) = AgentId::parse(host_id) {
            if let Err(e) = self.registry().touch(&id, SystemTime::now()) {
                warn!(error = %e, "cannot record sync host activity");
            }
        }
    }
}
