//! Refresh tokens (OIDC Core §12, RFC 6749 §6), kept in their own SQLite file in the
//! endpoint's data directory so they survive a restart. Each is used once: redeeming one
//! returns its successor (rotation), and presenting a used one again revokes its whole
//! family — every token descended from the same code redemption — because then either
//! the client or a thief holds a copy (RFC 9700 §4.14.2). Only SHA-256 hashes of tokens
//! are stored.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use causeway_store::sqlite_file::{open, Migration, Schema};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::oidc_state::User;
use crate::lock;
use crate::session::token_hash;

/// The file, in the data directory.
pub(super) const FILE: &str = "oidc.sqlite";
/// How long a family of refresh tokens lives from the sign-in's code redemption (an
/// absolute bound: rotation does not extend it).
pub(super) const FAMILY_TTL: Duration = Duration::from_secs(14 * 86_400);
/// Most live refresh tokens a client may hold for one user (older families go first).
const MAX_FAMILIES_PER_USER: i64 = 20;

static SCHEMA: Schema = Schema {
    migrations: &[Migration {
        action: "create the refresh-token table",
        sql: "CREATE TABLE refresh_tokens (
                hash BLOB PRIMARY KEY,
                family BLOB NOT NULL,
                client_id TEXT NOT NULL,
                sub TEXT NOT NULL,
                grant_json TEXT NOT NULL,
                created INTEGER NOT NULL,
                expires INTEGER NOT NULL,
                used INTEGER NOT NULL DEFAULT 0
              );
              CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
              CREATE INDEX refresh_tokens_owner ON refresh_tokens(client_id, sub);",
    }],
};

/// What a refresh token stands for: the sign-in it came from.
#[derive(Debug, Clone)]
pub(super) struct RefreshGrant {
    pub(super) family: [u8; 16],
    pub(super) client_id: String,
    pub(super) sub: String,
    pub(super) scopes: Vec<String>,
    pub(super) user: User,
    pub(super) auth_time: SystemTime,
    pub(super) sid: String,
    pub(super) expires: SystemTime,
}

/// Why a refresh token cannot be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefreshRefused {
    /// Unknown, expired or revoked.
    Unknown,
    /// Issued to another client.
    OtherClient,
    /// Used before: its family is revoked now. Carries nothing: the caller revokes the
    /// access tokens of `(client, sub)` it already knows.
    Reused,
    /// The scopes asked for are not among those granted (the token stays usable).
    Scope,
    /// The file cannot be read or written.
    Storage,
}

fn secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn at(s: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// The refresh-token store.
pub(super) struct RefreshStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for RefreshStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshStore").finish_non_exhaustive()
    }
}

impl RefreshStore {
    /// Opens (or creates) `path`.
    pub(super) fn open(path: &Path) -> Result<Self, String> {
        let (conn, _) = open(path, &SCHEMA).map_err(|e| {
            format!(
                "cannot open the refresh-token store {}: {e:?}",
                path.display()
            )
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Stores a new refresh token for `g` (a new family, or the next of `g.family`).
    pub(super) fn issue(
        &self,
        g: &RefreshGrant,
        now: SystemTime,
    ) -> Result<String, RefreshRefused> {
        let token = causeway_oidc::random_token();
        let grant = json!({
            "scopes": g.scopes,
            "upn": g.user.upn,
            "mail": g.user.mail,
            "display_name": g.user.display_name,
            "groups": g.user.groups,
            "auth_time": secs(g.auth_time),
            "sid": g.sid,
        });
        let conn = lock(&self.conn);
        let run = || -> rusqlite::Result<()> {
            conn.execute(
                "DELETE FROM refresh_tokens WHERE expires <= ?1",
                params![secs(now)],
            )?;
            conn.execute(
                "INSERT INTO refresh_tokens (hash, family, client_id, sub, grant_json, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![&token_hash(&token)[..], &g.family[..], g.client_id, g.sub, grant.to_string(), secs(now), secs(g.expires)],
            )?;
            // A bound per (client, user): the oldest families beyond it go.
            conn.execute(
                "DELETE FROM refresh_tokens WHERE client_id = ?1 AND sub = ?2 AND family IN (
                   SELECT family FROM refresh_tokens WHERE client_id = ?1 AND sub = ?2
                   GROUP BY family ORDER BY MAX(created) DESC LIMIT -1 OFFSET ?3)",
                params![g.client_id, g.sub, MAX_FAMILIES_PER_USER],
            )?;
            Ok(())
        };
        run().map_err(|_| RefreshRefused::Storage)?;
        Ok(token)
    }

    /// Takes a refresh token for `client_id`: its grant, once. A used token revokes its
    /// family and answers [`RefreshRefused::Reused`] with the family's owner.
    pub(super) fn take(
        &self,
        token: &str,
        client_id: &str,
        now: SystemTime,
        scopes_fit: impl Fn(&[String]) -> bool,
    ) -> Result<RefreshGrant, (RefreshRefused, Option<String>)> {
        let conn = lock(&self.conn);
        let row = conn
            .query_row(
                "SELECT family, client_id, sub, grant_json, expires, used FROM refresh_tokens WHERE hash = ?1",
                params![&token_hash(token)[..]],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|_| (RefreshRefused::Storage, None))?;
        let Some((family, owner, sub, grant, expires, used)) = row else {
            return Err((RefreshRefused::Unknown, None));
        };
        if owner != client_id {
            return Err((RefreshRefused::OtherClient, None));
        }
        if at(expires) <= now {
            return Err((RefreshRefused::Unknown, None));
        }
        if used != 0 {
            let _ = conn.execute(
                "DELETE FROM refresh_tokens WHERE family = ?1",
                params![family],
            );
            return Err((RefreshRefused::Reused, Some(sub)));
        }
        let g: Value = serde_json::from_str(&grant).map_err(|_| (RefreshRefused::Storage, None))?;
        let strs = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        // Checked before the token is spent: a request the client got wrong does not
        // cost the user the sign-in.
        if !scopes_fit(&strs(&g["scopes"])) {
            return Err((RefreshRefused::Scope, None));
        }
        conn.execute(
            "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1",
            params![&token_hash(token)[..]],
        )
        .map_err(|_| (RefreshRefused::Storage, None))?;
        let opt = |v: &Value| v.as_str().map(str::to_owned);
        Ok(RefreshGrant {
            family: family
                .try_into()
                .map_err(|_| (RefreshRefused::Storage, None))?,
            client_id: owner,
            sub,
            scopes: strs(&g["scopes"]),
            user: User {
                upn: g["upn"].as_str().unwrap_or_default().to_owned(),
                mail: opt(&g["mail"]),
                display_name: opt(&g["display_name"]),
                groups: strs(&g["groups"]),
            },
            auth_time: at(g["auth_time"].as_i64().unwrap_or(0)),
            sid: g["sid"].as_str().unwrap_or_default().to_owned(),
            expires: at(expires),
        })
    }

    /// Revokes the family of a refresh token `client_id` holds (RFC 7009); whether it did.
    pub(super) fn revoke(&self, token: &str, client_id: &str) -> bool {
        let conn = lock(&self.conn);
        conn.execute(
            "DELETE FROM refresh_tokens WHERE family IN (SELECT family FROM refresh_tokens WHERE hash = ?1 AND client_id = ?2)",
            params![&token_hash(token)[..], client_id],
        )
        .is_ok_and(|n| n > 0)
    }

    /// Whether a refresh token is live and held by `client_id` (introspection), with
    /// its owner's `sub`, scopes and expiry.
    pub(super) fn live(
        &self,
        token: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Option<(String, Vec<String>, SystemTime)> {
        let conn = lock(&self.conn);
        conn.query_row(
            "SELECT sub, grant_json, expires FROM refresh_tokens WHERE hash = ?1 AND client_id = ?2 AND used = 0 AND expires > ?3",
            params![&token_hash(token)[..], client_id, secs(now)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
        )
        .optional()
        .ok()
        .flatten()
        .map(|(sub, g, exp)| {
            let scopes = serde_json::from_str::<Value>(&g)
                .ok()
                .and_then(|v| v["scopes"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()))
                .unwrap_or_default();
            (sub, scopes, at(exp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(now: SystemTime) -> RefreshGrant {
        RefreshGrant {
            family: [1; 16],
            client_id: "app".into(),
            sub: "s".into(),
            scopes: vec!["openid".into(), "offline_access".into()],
            user: User {
                upn: "u@x.test".into(),
                mail: Some("u@x.test".into()),
                display_name: None,
                groups: vec!["G".into()],
            },
            auth_time: now,
            sid: "sid".into(),
            expires: now + FAMILY_TTL,
        }
    }

    fn store(name: &str) -> (RefreshStore, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("causeway-refresh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        (RefreshStore::open(&dir.join(FILE)).expect("open"), dir)
    }

    #[test]
    fn a_refresh_token_rotates_and_a_reused_one_revokes_its_family_even_after_a_restart() {
        let (s, dir) = store("rotate");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let t1 = s.issue(&grant(now), now).expect("issue");
        let g = s.take(&t1, "app", now, |_| true).expect("take");
        assert_eq!(g.user.groups, vec!["G"]);
        assert_eq!(g.scopes, vec!["openid", "offline_access"]);
        let t2 = s.issue(&g, now).expect("next");
        drop(s);
        // The file keeps them across a restart.
        let s = RefreshStore::open(&dir.join(FILE)).expect("reopen");
        assert_eq!(
            s.take(&t2, "other", now, |_| true)
                .map(|_| ())
                .map_err(|e| e.0),
            Err(RefreshRefused::OtherClient)
        );
        assert_eq!(
            s.take(&t1, "app", now, |_| true)
                .map(|_| ())
                .map_err(|e| e.0),
            Err(RefreshRefused::Reused)
        );
        // The family is gone: its live member too.
        assert_eq!(
            s.take(&t2, "app", now, |_| true)
                .map(|_| ())
                .map_err(|e| e.0),
            Err(RefreshRefused::Unknown)
        );
        let stored = std::fs::read(dir.join(FILE)).expect("read");
        assert!(
            !stored.windows(t2.len()).any(|w| w == t2.as_bytes()),
            "only hashes are stored"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_refresh_asking_for_more_scopes_is_refused_and_leaves_the_token_usable() {
        let (s, dir) = store("scope");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let t = s.issue(&grant(now), now).expect("issue");
        let wider = |g: &[String]| g.iter().any(|x| x == "email");
        assert_eq!(
            s.take(&t, "app", now, wider).map(|_| ()).map_err(|e| e.0),
            Err(RefreshRefused::Scope)
        );
        assert!(
            s.take(&t, "app", now, |_| true).is_ok(),
            "not spent by the refusal"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn expired_and_revoked_refresh_tokens_are_refused() {
        let (s, dir) = store("expire");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let t = s.issue(&grant(now), now).expect("issue");
        assert_eq!(
            s.take(&t, "app", now + FAMILY_TTL, |_| true)
                .map(|_| ())
                .map_err(|e| e.0),
            Err(RefreshRefused::Unknown)
        );
        let t = s.issue(&grant(now), now).expect("issue");
        assert!(s.live(&t, "app", now).is_some());
        assert!(!s.revoke(&t, "other"));
        assert!(s.revoke(&t, "app"));
        assert!(s.live(&t, "app", now).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
