//! The capability traits on [`SqliteStore`]: each async call clones what it borrows and
//! runs the blocking SQL of [`super::Db`] on tokio's blocking pool.

use std::time::SystemTime;

use async_trait::async_trait;
use causeway_credential::PhsVerifier;

use super::SqliteStore;
use crate::directory::{AdUser, HistoryEntry, NewUser, StoreError, UserRecord};
use crate::directory::{History, LockoutStore, Users, Verifiers};
use crate::ids::ImmutableId;
use crate::sqlite::open::blocking;

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
