//! The directory: the endpoint's users (cloud-only, and synchronised from AD) with their
//! password-hash-sync verifiers, and a row of history for every change (who, when, from
//! where, what), so that any object can be shown as it was at any moment. Deleted users
//! go to a recycle bin first.
//!
//! Every change and its history row are one transaction: a failed operation leaves the
//! store exactly as it was. The capabilities are async traits ([`Users`], [`Verifiers`],
//! [`History`]; [`DirectoryStore`] is all three) so that a networked backend fits;
//! SQLite ([`crate::SqliteStore`]) is the embedded default.

use std::time::SystemTime;

use async_trait::async_trait;
use causeway_credential::{Password, PhsVerifier, SignInOutcome};

use crate::ids::ImmutableId;

/// Where a user comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Created on the endpoint (`causeway users add`): break-glass and test accounts.
    Cloud,
    /// Synchronised from Active Directory.
    Ad,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Cloud => "cloud",
            Source::Ad => "ad",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "cloud" => Some(Source::Cloud),
            "ad" => Some(Source::Ad),
            _ => None,
        }
    }
}

/// A user as stored (never with its verifier: ask [`Verifiers::verifier_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Immutable id.
    pub id: ImmutableId,
    /// User principal name, as given (compared case-insensitively).
    pub upn: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Mail address.
    pub mail: Option<String>,
    /// Where the user comes from.
    pub source: Source,
    /// Whether sign-in is blocked.
    pub disabled: bool,
    /// Whether a password-hash-sync verifier is stored.
    pub has_verifier: bool,
    /// Whether an administrator protected this cloud-only account from soft match (a
    /// synchronised user with its UPN or mail never takes it over).
    pub protected: bool,
    /// When the user went to the recycle bin, if it did.
    pub deleted_at: Option<SystemTime>,
    /// Created.
    pub created_at: SystemTime,
    /// Last changed.
    pub updated_at: SystemTime,
    /// What password hash sync last said about the password (all unset for cloud-only
    /// users and users hash sync has not reached).
    pub password: PasswordState,
}

/// A synced user's password state as password hash sync last delivered it: the flags that
/// change what a sign-in with the right password may do, and when it arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasswordState {
    /// The password must be changed at next logon (AD: pwdLastSet = 0).
    pub must_change: bool,
    /// The account is disabled in the source (besides [`UserRecord::disabled`], which
    /// object export sets).
    pub disabled: bool,
    /// When the account expires in the source, if it does.
    pub account_expires: Option<SystemTime>,
    /// When hash sync last changed the verifier or these flags (`causeway users show`).
    pub last_hash_sync: Option<SystemTime>,
}

/// What a new cloud-only user has.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// `name@domain`.
    pub upn: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Mail address.
    pub mail: Option<String>,
}

/// A user as synchronised from Active Directory.
#[derive(Debug, Clone)]
pub struct AdUser {
    /// Immutable id (base64 of `ms-DS-ConsistencyGuid`, else `objectGUID`).
    pub id: ImmutableId,
    /// User principal name.
    pub upn: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Mail address.
    pub mail: Option<String>,
    /// Whether the account is disabled in AD.
    pub disabled: bool,
}

/// One change in a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Order of changes across the store.
    pub seq: i64,
    /// When.
    pub at: SystemTime,
    /// Who (an operator name, `cli`, `sync`, ...).
    pub actor: String,
    /// What was done: `create`, `disable`, `enable`, `delete`, `restore`, `set-password`,
    /// `protect`, `unprotect`; for synchronised objects `create`, `update`, `delete`,
    /// `restore` and `soft-match` (actor `sync:<connector>`).
    pub action: String,
    /// The user as it was after the change, as JSON (no verifier, only whether it changed).
    pub snapshot: String,
}

/// Why a store operation failed. Never carries a password or verifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file is unusable (permissions, I/O, SQLite).
    #[error("directory store {path}: cannot {action}: {detail}")]
    Database {
        /// The file.
        path: String,
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The store file is readable by other users.
    #[error("directory store {path} is accessible to other users (mode {mode:o}); run: chmod 600 {path}")]
    InsecureFile {
        /// The file.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// The UPN is not `name@domain`, or too long, or has spaces or control characters.
    #[error("{0:?} is not a user principal name (name@domain, at most 256 characters, no spaces)")]
    InvalidUpn(String),
    /// A text attribute is too long or has control characters.
    #[error("{field} is longer than 256 characters or contains control characters")]
    InvalidAttribute {
        /// Which attribute.
        field: &'static str,
    },
    /// A user with this UPN exists (case-insensitively).
    #[error("a user {0} already exists")]
    Duplicate(String),
    /// No such user.
    #[error("no user {0}")]
    NotFound(String),
    /// The operation does not apply to the user's state (e.g. restoring a live user).
    #[error("{0}")]
    WrongState(String),
}

/// Users: cloud-only accounts made on the endpoint and objects synchronised from AD.
/// Implementations are safe to share between tasks; every change writes its history row
/// in the same transaction (see [`History`]).
#[async_trait]
pub trait Users: Send + Sync {
    /// Creates a cloud-only user with a verifier.
    async fn add_cloud_user(
        &self,
        new: &NewUser,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// Creates or updates a user synchronised from AD, matched by its immutable id (so a
    /// rename keeps the identity), with its verifier when password hash sync supplied one
    /// (`None` keeps the stored one). An id that belongs to a cloud-only user is refused.
    async fn upsert_ad_user(
        &self,
        user: &AdUser,
        verifier: Option<&PhsVerifier>,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// A live (not deleted) user by UPN, case-insensitively.
    async fn user_by_upn(&self, upn: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by immutable id, live or in the recycle bin.
    async fn user_by_id(&self, id: &ImmutableId) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, deleted ones too when asked.
    async fn list_users(&self, include_deleted: bool) -> Result<Vec<UserRecord>, StoreError>;
    /// Blocks or unblocks sign-in.
    async fn set_disabled(
        &self,
        upn: &str,
        disabled: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// Moves a user to the recycle bin.
    async fn delete_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// Brings a user back from the recycle bin.
    async fn restore_user(
        &self,
        upn: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// Protects a live cloud-only user from soft match, or lifts the protection. Refused
    /// ([`StoreError::WrongState`]) for a user synchronised from AD: it has an anchor
    /// already, so there is nothing to protect it from.
    async fn set_protected(
        &self,
        upn: &str,
        protected: bool,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
}

/// Password-hash-sync verifiers: written by `causeway users` and sync, read at sign-in.
#[async_trait]
pub trait Verifiers: Send + Sync {
    /// Replaces a live user's verifier.
    async fn set_verifier(
        &self,
        upn: &str,
        verifier: &PhsVerifier,
        actor: &str,
        now: SystemTime,
    ) -> Result<UserRecord, StoreError>;
    /// A live user and their verifier, if they have one: one read, so a sign-in sees the
    /// record and the verifier of the same moment.
    async fn verifier_of(
        &self,
        upn: &str,
    ) -> Result<Option<(UserRecord, Option<PhsVerifier>)>, StoreError>;
}

/// Per-user history: one row per change, written with the change.
#[async_trait]
pub trait History: Send + Sync {
    /// A user's history, oldest first (deleted users, and earlier users of the same UPN,
    /// included).
    async fn history(&self, upn: &str) -> Result<Vec<HistoryEntry>, StoreError>;
}

/// The directory as the endpoint uses it: users, their verifiers and their history.
/// Every type with the three capabilities has it.
pub trait DirectoryStore: Users + Verifiers + History {}

impl<T: Users + Verifiers + History + ?Sized> DirectoryStore for T {}

/// Checks a password against the store's verifier (password hash sync and cloud-only
/// users). A wrong password never learns whether the account exists or is disabled: the
/// verifier is checked first, and an unknown user costs the same PBKDF2 work.
pub async fn verify_password(
    store: &dyn Verifiers,
    upn: &str,
    password: &Password,
) -> SignInOutcome {
    match store.verifier_of(upn).await {
        Err(e) => {
            tracing::warn!(error = %e, "directory store unreadable");
            SignInOutcome::DirectoryUnavailable
        }
        Ok(found) => verify_found(found, password),
    }
}

/// [`verify_password`] on what [`Verifiers::verifier_of`] returned (read earlier, so
/// that the caller can do the same reads for every name before deciding anything).
pub fn verify_found(
    found: Option<(UserRecord, Option<PhsVerifier>)>,
    password: &Password,
) -> SignInOutcome {
    verify_found_at(found, password, SystemTime::now())
}

/// [`verify_found`] at `now` (an account's expiry is judged against it).
pub fn verify_found_at(
    found: Option<(UserRecord, Option<PhsVerifier>)>,
    password: &Password,
    now: SystemTime,
) -> SignInOutcome {
    match found {
        None | Some((_, None)) => {
            // Spend what a real check spends, so timing does not tell names apart.
            spend_like_a_check(password);
            SignInOutcome::UnknownUser
        }
        Some((user, Some(v))) => {
            if !v.verify(password) {
                SignInOutcome::InvalidCredentials
            } else {
                right_password_outcome(&user, now)
            }
        }
    }
}

/// What a right password gets, in the order AD answers a bind with it: disabled (533)
/// before expired (701) before must-change (773). A wrong password never gets here: it
/// stays `InvalidCredentials` whatever the flags, as AD answers 52e first.
pub fn right_password_outcome(user: &UserRecord, now: SystemTime) -> SignInOutcome {
    let p = &user.password;
    if user.disabled || p.disabled {
        SignInOutcome::AccountDisabled
    } else if p.account_expires.is_some_and(|t| now >= t) {
        SignInOutcome::AccountExpired
    } else if p.must_change {
        SignInOutcome::PasswordMustChange
    } else {
        SignInOutcome::Success
    }
}

/// Spends the work of one verifier check, for answers that must not be faster than a
/// real check (unknown names, foreign domains, answers from smart lockout's memory): the
/// stored form is parsed each time, as a real user's verifier is when it is read.
pub fn spend_like_a_check(password: &Password) {
    let _ = PhsVerifier::parse(dummy_verifier()).map(|v| v.verify(password));
}

/// For a name the store has no row for, the work reading a real user costs: a record
/// built from a row's worth of fields and a verifier parsed from its stored form. The
/// verifier is returned, so that the check spends a PBKDF2 on it as a real one would.
pub fn read_like_a_row() -> Option<PhsVerifier> {
    let record = UserRecord {
        id: ImmutableId::from_guid_bytes([0x5a; 16]),
        upn: String::from("nobody.at.all@timing.causeway.invalid"),
        display_name: Some(String::from("Nobody At All")),
        mail: Some(String::from("nobody.at.all@timing.causeway.invalid")),
        source: Source::Cloud,
        disabled: false,
        has_verifier: true,
        protected: false,
        deleted_at: None,
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
        password: PasswordState::default(),
    };
    std::hint::black_box(&record);
    PhsVerifier::parse(dummy_verifier()).ok()
}

/// The check for a name without a verifier, on the stand-in [`read_like_a_row`] gave:
/// one PBKDF2, and the answer a name that does not exist gets.
pub fn verify_stand_in(stand_in: Option<&PhsVerifier>, password: &Password) -> SignInOutcome {
    match stand_in {
        Some(v) => {
            let _ = std::hint::black_box(v.verify(password));
        }
        None => spend_like_a_check(password),
    }
    SignInOutcome::UnknownUser
}

fn dummy_verifier() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let p = Password::new("causeway-timing-equaliser".into()).expect("valid");
        PhsVerifier::derive(&p).expose_encoded()
    })
}

/// Checks the shape of a UPN: `name@domain`, at most 256 characters, no whitespace or
/// control characters.
pub fn check_upn(upn: &str) -> Result<(), StoreError> {
    let ok = upn.chars().count() <= 256
        && !upn.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(upn.split_once('@'), Some((n, d)) if !n.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidUpn(upn.chars().take(300).collect()))
    }
}

/// Where smart lockout's state is kept across restarts (see the endpoint's `hub::lockout`).
/// Rows are opaque text; implementations write each call durably before returning.
/// Synchronous: its one caller writes from a thread of its own, off the runtime.
pub trait LockoutStore: Send + Sync {
    /// The `limit` most recently written rows, as `(account, state)`.
    fn load_lockout(&self, limit: usize) -> Result<Vec<(String, String)>, StoreError>;
    /// Replaces an account's row (`None` deletes it).
    fn save_lockout(
        &self,
        account: &str,
        state: Option<&str>,
        now: SystemTime,
    ) -> Result<(), StoreError>;
    /// Deletes rows last written before `older_than`, then all but the `keep` most
    /// recently written; returns how many went.
    fn prune_lockout(&self, keep: usize, older_than: SystemTime) -> Result<usize, StoreError>;
}
