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

/// What a renewing host may be told: what is wrong with its CSR, else a pointer to the
/// endpoint's log (paths and database errors are not for the peer).
fn renewal_error(e: causeway_certs::CertsError) -> String {
    match e {
        causeway_certs::CertsError::Csr(_) => e.to_string(),
        other => {
            warn!(error = %other, "sync host renewal failed inside the endpoint");
            "renewal failed on the endpoint; its log says why".into()
        }
    }
}

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
            .sign_agent_csr(csr_pem, &id, now, self.sync_validity())
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

    fn renew_sync(&self, host_id: &str, csr_pem: &str) -> Result<String, String> {
        let id = AgentId::parse(host_id).map_err(|_| "this host's id is malformed".to_owned())?;
        if let Err(why) = self.status(&id) {
            return Err(format!(
                "this sync host may not renew: {}",
                super::refusal_reason(why, Some(host_id))
            ));
        }
        let cert = self
            .ca()
            .sign_agent_csr(csr_pem, &id, SystemTime::now(), self.sync_validity())
            .map_err(renewal_error)?;
        // The registry refuses a host revoked since the check above, and keeps the
        // current certificate as the previous one, valid until it expires.
        self.registry()
            .record_renewal(&id, cert.fingerprint(), cert.not_after())
            .map_err(|e| match e {
                causeway_certs::CertsError::AgentRevoked(_) => {
                    super::refusal_reason(Refusal::Revoked, Some(host_id))
                }
                other => renewal_error(other),
            })?;
        Ok(cert.pem().to_owned())
    }

    fn touch_sync(&self, host_id: &str) {
        if let Ok(id) = AgentId::parse(host_id) {
            if let Err(e) = self.registry().touch(&id, SystemTime::now()) {
                warn!(error = %e, "cannot record sync host activity");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::Duration;

    use causeway_certs::{Ca, IssuedCert};
    use causeway_store::SqliteAgents;

    use super::*;

    /// A fresh directory 0700 under the system's temp dir, removed on drop.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("OS random generator");
        let d = std::env::temp_dir().join(format!("causeway-renew-{}", u64::from_le_bytes(r)));
        std::fs::create_dir(&d).expect("temp dir");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        Dir(d)
    }

    fn csr() -> String {
        causeway_certs::new_key_and_csr("sync-1").expect("csr").1
    }

    /// An authority over a real CA and registry with one approved sync host.
    fn authority(d: &Dir) -> (CertsAuthority, AgentId, IssuedCert) {
        let now = SystemTime::now();
        let ca = Ca::load_or_create(&d.0.join("ca"), now).expect("ca");
        let registry = SqliteAgents::open(&d.0.join("registry.sqlite")).expect("registry");
        let id = AgentId::generate().expect("id");
        let cert = ca
            .sign_agent_csr(&csr(), &id, now, Duration::from_secs(3600))
            .expect("cert");
        registry
            .register_agent(
                AgentRegistration {
                    agent_id: id.clone(),
                    host_name: "sync-1".into(),
                    role: HostRole::Sync,
                    hpke_public_key: NO_HPKE_KEY,
                    cert_fingerprint: cert.fingerprint().to_owned(),
                    cert_not_after: cert.not_after(),
                },
                false,
                now,
            )
            .expect("registered");
        let a = CertsAuthority::new(ca, registry, false, Duration::from_secs(3600))
            .with_sync_validity(Duration::from_secs(2 * 3600));
        (a, id, cert)
    }

    #[test]
    fn a_renewal_is_recorded_and_the_previous_certificate_stays_accepted() {
        let d = dir();
        let (a, id, old) = authority(&d);
        let pem = a.renew_sync(id.as_str(), &csr()).expect("renewed");
        let der = causeway_certs::pinned::pem_der(&pem).expect("a certificate");
        let new_fp = causeway_certs::fingerprint_of_der(&der);
        assert_ne!(new_fp, old.fingerprint());
        // Signed for the sync hosts' validity (plus the CA's 5-minute backdating).
        let (nb, na) = causeway_certs::validity_of_pem(&pem).expect("readable");
        assert_eq!(
            na.duration_since(nb).expect("ordered"),
            Duration::from_secs(2 * 3600 + 300)
        );
        let rec = a.registry().agent(&id).expect("ok").expect("registered");
        assert_eq!(rec.cert_fingerprint, new_fp);
        assert_eq!(
            rec.previous_cert_fingerprint.as_deref(),
            Some(old.fingerprint())
        );
        assert_eq!(a.authorize_sync(&new_fp).as_deref(), Ok(id.as_str()));
        assert_eq!(
            a.authorize_sync(old.fingerprint()).as_deref(),
            Ok(id.as_str())
        );
    }

    #[test]
    fn a_revoked_or_unknown_host_or_a_bad_csr_cannot_renew() {
        let d = dir();
        let (a, id, old) = authority(&d);
        let e = a.renew_sync(id.as_str(), "not a csr").expect_err("refused");
        assert!(e.contains("certificate signing request"), "{e}");
        a.registry().revoke(&id).expect("revoked");
        let e = a.renew_sync(id.as_str(), &csr()).expect_err("refused");
        assert!(e.contains("revoked"), "{e}");
        let rec = a.registry().agent(&id).expect("ok").expect("registered");
        assert_eq!(rec.cert_fingerprint, old.fingerprint());
        let unknown = AgentId::generate().expect("id");
        let e = a.renew_sync(unknown.as_str(), &csr()).expect_err("refused");
        assert!(e.contains("not registered"), "{e}");
    }
}
