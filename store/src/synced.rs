//! What `causeway sync` writes at the endpoint through the ingestion API: synchronised
//! objects of every kind (users, groups with their members, contacts, devices, OUs), the
//! per-connector lease that lets exactly one sync host export, and the record of every
//! run. The message types are the protocol crate's ([`causeway_proto::sync`]): the store
//! keeps what the wire carries, so the two cannot drift apart.
//!
//! A batch is applied in one transaction with its history rows, and only while its host
//! holds the connector's lease: a failed batch leaves the store exactly as it was, and a
//! host that lost its lease changes nothing. Applying is idempotent (an object already as
//! given is counted `unchanged` and writes no history), so a batch resent after a crash
//! duplicates nothing.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
pub use causeway_proto::sync::{
    Counts, HashCounts, Object, ObjectChange, ObjectError, ObjectKind, RunKind, RunRecord,
    RunReport, RunStatus, VerifierChange,
};

use crate::directory::StoreError;

/// Who holds a connector's lease after a lease call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// Whether the caller holds it now.
    pub granted: bool,
    /// The holder (a sync host's id), if the lease is held.
    pub holder: Option<String>,
    /// When the holder's lease lapses unless renewed.
    pub expires_at: Option<SystemTime>,
}

/// What a run may do when it matches objects, from its connector's config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchPolicy {
    /// A new user whose UPN or primary SMTP address is an existing cloud-only user's (not
    /// protected) takes that account over: it keeps its history and sessions' NameID
    /// changes to the anchor. Without it, such a user is an error naming both.
    pub soft_match: bool,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchResult {
    /// Counts (`quarantined` stays 0: quarantine is the planner's).
    pub counts: Counts,
    /// Objects not applied, with why; the batch's other objects were.
    pub errors: Vec<ObjectError>,
}

/// A synchronised object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedRecord {
    /// The object, as last applied.
    pub object: Object,
    /// The connector it came from.
    pub connector: String,
    /// When it went to the recycle bin, if it did.
    pub deleted_at: Option<SystemTime>,
    /// Created.
    pub created_at: SystemTime,
    /// Last changed.
    pub updated_at: SystemTime,
}

/// The ingestion capability. Every call is one transaction.
#[async_trait]
pub trait Synced: Send + Sync {
    /// Takes or renews `connector`'s lease for `holder` until `now + ttl`. It is granted
    /// when nobody holds it, `holder` already does, or the holder's lease has lapsed;
    /// otherwise the answer names the holder and `granted` is false.
    async fn lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError>;
    /// Gives `connector`'s lease up if `holder` holds it (a clean shutdown).
    async fn release(
        &self,
        connector: &str,
        holder: &str,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError>;
    /// Records a new run (status `running`) and returns its number. Refused
    /// ([`StoreError::WrongState`]) unless `holder` holds `connector`'s lease.
    async fn start_run(
        &self,
        connector: &str,
        holder: &str,
        kind: RunKind,
        policy: MatchPolicy,
        now: SystemTime,
    ) -> Result<u64, StoreError>;
    /// Applies `changes` for run `run` in one transaction with their history rows (actor
    /// `sync:<connector>`), adding their counts to the run's. Refused, with nothing
    /// applied, unless the run is `running` and `holder` still holds its connector's
    /// lease. An object that cannot be applied (a UPN another object holds, an anchor of
    /// another kind or connector, a user without a valid UPN) is reported in the result
    /// and the rest are applied. Users are also the sign-in users ([`crate::Users`]):
    /// upn, display_name, mail and `enabled` from the attributes.
    async fn apply_batch(
        &self,
        run: u64,
        holder: &str,
        changes: &[ObjectChange],
        now: SystemTime,
    ) -> Result<BatchResult, StoreError>;
    /// Records the end of run `run` (only its host may, once, with a status other than
    /// `running`; its lease need not be current, so a host that lost it can still record
    /// the failure) and returns the record. Of the report's counts only `quarantined` and
    /// `errors` are added to the run's: `added`, `updated`, `deleted` and `unchanged` stay
    /// those of the batches the store applied. The report's errors are appended to the
    /// batches' (each once, at most [`causeway_proto::sync::MAX_ERRORS`]).
    async fn finish_run(
        &self,
        run: u64,
        holder: &str,
        report: &RunReport,
        now: SystemTime,
    ) -> Result<RunRecord, StoreError>;
    /// The latest `limit` runs, newest first, of one connector or all.
    async fn runs(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;
    /// A synchronised object by anchor, live or in the recycle bin.
    async fn synced_object(&self, anchor: &str) -> Result<Option<SyncedRecord>, StoreError>;
    /// Password hash sync: applies `changes` to `connector`'s live synced users (matched by
    /// anchor) in one transaction, each changed user with a history row (`set-password`
    /// when its verifier was replaced, else `password-flags`; never the verifier itself),
    /// and stamps each user's last hash sync. Refused, with nothing applied, unless
    /// `holder` holds the connector's lease. An anchor that is no live user of this
    /// connector is reported in the result and the rest are applied.
    async fn apply_verifiers(
        &self,
        connector: &str,
        holder: &str,
        changes: &[VerifierChange],
        now: SystemTime,
    ) -> Result<(HashCounts, Vec<ObjectError>), StoreError>;
    /// The newest last-hash-sync time of `connector`'s users, and how many of its live
    /// users have a verifier (for `sync status` and metrics).
    async fn hash_sync_state(
        &self,
        connector: &str,
    ) -> Result<(Option<SystemTime>, u64), StoreError>;
    /// How many live objects of each kind are held (for metrics and `sync status`).
    async fn synced_counts(&self) -> Result<Vec<(ObjectKind, u64)>, StoreError>;
    /// The names of the live groups user `anchor` is a member of, directly or through
    /// nested groups (cycles end), sorted: the `groups` claim. A group's name is its
    /// `name` attribute, else `display_name`, else the first RDN value of its DN.
    async fn groups_of(&self, anchor: &str) -> Result<Vec<String>, StoreError>;
}

/// How long a lease lasts unless renewed, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
