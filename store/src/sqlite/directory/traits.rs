//! The capability traits on [`SqliteStore`]: each async call clones what it borrows and
//! runs the blocking SQL of [`super::Db`] on tokio's blocking pool.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use causeway_credential::PhsVerifier;

use super::SqliteStore;
use crate::directory::{AdUser, HistoryEntry, NewUser, StoreError, UserRecord};
use crate::directory::{History, LockoutStore, Users, Verifiers};
use crate::ids::ImmutableId;
use crate::sqlite::open::blocking;
use crate::synced::{
    BatchResult, HashCounts, LeaseState, MatchPolicy, ObjectChange, ObjectError, ObjectKind,
    RunKind, RunRecord, RunReport, Synced, SyncedRecord, VerifierChange,
};

#[async_trait]
impl Users for SqliteStore {
    async fn add_cloud_user(
        &self,
        new: &NewUser,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, new, v, actor) = (
            self.db().clone(),
            new.clone(),
            verifier.clone(),
            actor.to_owned(),
        );
        blocking(move || db.add_cloud_user(&new, &v, &actor, now)).await
    }

    async fn upsert_ad_user(
        &self,
        user: &AdUser,
        verifier: Option<&PhsVerifier>,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, user, v, actor) = (
            self.db().clone(),
            user.clone(),
            verifier.cloned(),
            actor.to_owned(),
        );
        blocking(move || db.upsert_ad_user(&user, v.as_ref(), &actor, now)).await
    }

    async fn user_by_upn(&self, upn: &str) -> Result<Option<UserRecord>, StoreError> {
        let (db, upn) = (self.db().clone(), upn.to_owned());
        blocking(move || db.user_by_upn(&upn)).await
    }

    async fn user_by_id(&self, id: &ImmutableId) -> Result<Option<UserRecord>, StoreError> {
        let (db, id) = (self.db().clone(), id.clone());
        blocking(move || db.user_by_id(&id)).await
    }

    async fn list_users(&self, include_deleted: bool) -> Result<Vec<UserRecord>, StoreError> {
        let db = self.db().clone();
        blocking(move || db.list_users(include_deleted)).await
    }

    async fn set_disabled(
        &self,
        upn: &str,
        disabled: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, upn, actor) = (self.db().clone(), upn.to_owned(), actor.to_owned());
        blocking(move || db.set_disabled(&upn, disabled, &actor, now)).await
    }

    async fn delete_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, upn, actor) = (self.db().clone(), upn.to_owned(), actor.to_owned());
        blocking(move || db.delete_user(&upn, &actor, now)).await
    }

    async fn restore_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, upn, actor) = (self.db().clone(), upn.to_owned(), actor.to_owned());
        blocking(move || db.restore_user(&upn, &actor, now)).await
    }

    async fn set_protected(
        &self,
        upn: &str,
        protected: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, upn, actor) = (self.db().clone(), upn.to_owned(), actor.to_owned());
        blocking(move || db.set_protected(&upn, protected, &actor, now)).await
    }
}

#[async_trait]
impl Verifiers for SqliteStore {
    async fn set_verifier(
        &self,
        upn: &str,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError> {
        let (db, upn, v, actor) = (
            self.db().clone(),
            upn.to_owned(),
            verifier.clone(),
            actor.to_owned(),
        );
        blocking(move || db.set_verifier(&upn, &v, &actor, now)).await
    }

    async fn verifier_of(
        &self,
        upn: &str,
    ) -> Result<Option<(UserRecord, Option<PhsVerifier>)>, StoreError> {
        let (db, upn) = (self.db().clone(), upn.to_owned());
        blocking(move || db.verifier_of(&upn)).await
    }
}

#[async_trait]
impl History for SqliteStore {
    async fn history(&self, upn: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let (db, upn) = (self.db().clone(), upn.to_owned());
        blocking(move || db.history(&upn)).await
    }
}

impl LockoutStore for SqliteStore {
    fn load_lockout(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        self.db().load_lockout(limit)
    }

    fn save_lockout(
        &self,
        account: &str,
        state: Option<&str>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.db().save_lockout(account, state, now)
    }

    fn prune_lockout(&self, keep: usize, older_than: SystemTime) -> Result<usize, StoreError> {
        self.db().prune_lockout(keep, older_than)
    }
}

#[async_trait]
impl Synced for SqliteStore {
    async fn lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        let (db, connector, holder) = (self.db().clone(), connector.to_owned(), holder.to_owned());
        blocking(move || db.lease(&connector, &holder, ttl, now)).await
    }

    async fn release(
        &self,
        connector: &str,
        holder: &str,
        now: SystemTime,
    ) -> Result<LeaseState, StoreError> {
        let (db, connector, holder) = (self.db().clone(), connector.to_owned(), holder.to_owned());
        blocking(move || db.release(&connector, &holder, now)).await
    }

    async fn start_run(
        &self,
        connector: &str,
        holder: &str,
        kind: RunKind,
        policy: MatchPolicy,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let (db, connector, holder) = (self.db().clone(), connector.to_owned(), holder.to_owned());
        blocking(move || db.start_run(&connector, &holder, kind, policy, now)).await
    }

    async fn apply_batch(
        &self,
        run: u64,
        holder: &str,
        changes: &[ObjectChange],
        now: SystemTime,
    ) -> Result<BatchResult, StoreError> {
        let (db, holder, changes) = (self.db().clone(), holder.to_owned(), changes.to_vec());
        blocking(move || db.apply_batch(run, &holder, &changes, now)).await
    }

    async fn finish_run(
        &self,
        run: u64,
        holder: &str,
        report: &RunReport,
        now: SystemTime,
    ) -> Result<RunRecord, StoreError> {
        let (db, holder, report) = (self.db().clone(), holder.to_owned(), report.clone());
        blocking(move || db.finish_run(run, &holder, &report, now)).await
    }

    async fn runs(
        &self,
        connector: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (db, connector) = (self.db().clone(), connector.map(str::to_owned));
        blocking(move || db.runs(connector.as_deref(), limit)).await
    }

    async fn apply_verifiers(
        &self,
        connector: &str,
        holder: &str,
        changes: &[VerifierChange],
        now: SystemTime,
    ) -> Result<(HashCounts, Vec<ObjectError>), StoreError> {
        let (db, connector, holder, changes) = (
            self.db().clone(),
            connector.to_owned(),
            holder.to_owned(),
            changes.to_vec(),
        );
        blocking(move || db.apply_verifiers(&connector, &holder, &changes, now)).await
    }

    async fn hash_sync_state(
        &self,
        connector: &str,
    ) -> Result<(Option<SystemTime>, u64), StoreError> {
        let (db, connector) = (self.db().clone(), connector.to_owned());
        blocking(move || db.hash_sync_state(&connector)).await
    }

    async fn synced_object(&self, anchor: &str) -> Result<Option<SyncedRecord>, StoreError> {
        let (db, anchor) = (self.db().clone(), anchor.to_owned());
        blocking(move || db.synced_object(&anchor)).await
    }

    async fn synced_counts(&self) -> Result<Vec<(ObjectKind, u64)>, StoreError> {
        let db = self.db().clone();
        blocking(move || db.synced_counts()).await
    }

    async fn groups_of(&self, anchor: &str) -> Result<Vec<String>, StoreError> {
        let (db, anchor) = (self.db().clone(), anchor.to_owned());
        blocking(move || db.groups_of(&anchor)).await
    }
}
