//! `Debug` of [`Request`]: every variant by hand, so that the enrollment token and the
//! verifiers of a hash batch never show (only their presence or count).

use std::fmt;

use super::Request;

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Enroll { host_name, .. } => f
                .debug_struct("Enroll")
                .field("token", &"[redacted]")
                .field("host_name", host_name)
                .finish_non_exhaustive(),
            Request::Hello {
                version,
                software_version,
            } => f
                .debug_struct("Hello")
                .field("version", version)
                .field("software_version", software_version)
                .finish(),
            Request::Lease { connector } => f.debug_struct("Lease").field("c", connector).finish(),
            Request::Release { connector } => {
                f.debug_struct("Release").field("c", connector).finish()
            }
            Request::StartRun {
                connector,
                kind,
                soft_match,
            } => f
                .debug_struct("StartRun")
                .field("connector", connector)
                .field("kind", kind)
                .field("soft_match", soft_match)
                .finish(),
            Request::Batch { run, seq, changes } => f
                .debug_struct("Batch")
                .field("run", run)
                .field("seq", seq)
                .field("changes", &changes.len())
                .finish(),
            Request::FinishRun { run, report } => f
                .debug_struct("FinishRun")
                .field("run", run)
                .field("status", &report.status)
                .finish_non_exhaustive(),
            Request::Renew { csr_pem } => f
                .debug_struct("Renew")
                .field("csr_pem_len", &csr_pem.len())
                .finish(),
            Request::Runs { connector, limit } => f
                .debug_struct("Runs")
                .field("connector", connector)
                .field("limit", limit)
                .finish(),
            // The count only: a verifier is offline-guessable hash material.
            Request::HashBatch { connector, changes } => f
                .debug_struct("HashBatch")
                .field("connector", connector)
                .field("changes", &changes.len())
                .finish(),
        }
    }
}
