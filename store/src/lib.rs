//! Causeway's state behind async traits split by capability — [`Users`], [`Verifiers`],
//! [`History`], [`Agents`], [`Synced`] — plus smart lockout's [`LockoutStore`], keyed by
//! id newtypes; SQLite ([`SqliteStore`], [`SqliteAgents`]) by default. Every backend passes
//! [`conformance`]. It must never store or log a password, nor a token's secret part.
#![forbid(unsafe_code)]

mod agents;
#[cfg(feature = "conformance")]
#[doc(hidden)]
pub mod conformance;
mod directory;
mod ids;
mod sqlite;
mod synced;

pub use agents::{
    AgentRecord, AgentRegistration, AgentStatus, Agents, HostRole, TokenPurpose, MAX_HOST_NAME_LEN,
    MAX_TOKEN_LEN, MAX_TOKEN_TTL, MIN_TOKEN_TTL,
};
pub use directory::{
    check_upn, read_like_a_row, right_password_outcome, spend_like_a_check, verify_found,
    verify_found_at, verify_password, verify_stand_in, AdUser, DirectoryStore, History,
    HistoryEntry, LockoutStore, NewUser, PasswordState, Source, StoreError, UserRecord, Users,
    Verifiers,
};
pub use ids::{AgentId, ImmutableId};
pub use sqlite::{SqliteAgents, SqliteStore};
pub use synced::{
    BatchResult, Counts, HashCounts, LeaseState, MatchPolicy, Object, ObjectChange, ObjectError,
    ObjectKind, RunKind, RunRecord, RunReport, RunStatus, Synced, SyncedRecord, VerifierChange,
    DEFAULT_LEASE,
};

/// The one SQLite opener (private file, WAL, busy timeout, ordered migrations), for every
/// SQLite file Causeway keeps: the endpoint's stores here, and the sync host's connector
/// space.
pub mod sqlite_file {
    pub use crate::sqlite::open::{open, FileStep, Migration, OpenError, Schema};
}

#[cfg(test)]
mod tests {
    /// The endpoint shares these across tasks and the blocking pool.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<crate::SqliteStore>();
        both::<crate::SqliteAgents>();
        both::<crate::StoreError>();
    }
}
