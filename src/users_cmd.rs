//! `causeway users …`: cloud-only accounts in the endpoint's directory store (break-glass
//! and test accounts), stored with the same salted-PBKDF2 verifier as synced hashes.

use std::io::BufRead;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use causeway_credential::{Password, PhsVerifier};
use causeway_store::{History as _, NewUser, SqliteStore, UserRecord, Users as _};

use crate::endpoint::DataDir;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a cloud-only user. The password is read from standard input, never from the
    /// command line (it would land in the shell history and the process list).
    Add {
        #[command(flatten)]
        data: DataDir,
        /// The user principal name, name@domain.
        #[arg(long)]
        upn: String,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Mail address.
        #[arg(long)]
        mail: Option<String>,
    },
    /// List users (with --deleted, the recycle bin too).
    List {
        #[command(flatten)]
        data: DataDir,
        /// Include users in the recycle bin.
        #[arg(long)]
        deleted: bool,
    },
    /// Block a user's sign-in.
    Disable {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Allow a disabled user to sign in again.
    Enable {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Protect a cloud-only user from soft match: a user synchronised from AD with the
    /// same UPN or mail is then an error of the sync run, never a takeover of this account.
    Protect {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Lift `users protect`: soft match (where a connector enables it) may take the
    /// account over again.
    Unprotect {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Move a user to the recycle bin (restorable with `users restore`).
    Delete {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Bring a user back from the recycle bin, with the same immutable id.
    Restore {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Show one user: its state and, for a synchronised user, its password hash sync.
    Show {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Show every recorded change of a user: when, who, what, and the state after it.
    History {
        #[command(flatten)]
        data: DataDir,
        /// The UPN.
        upn: String,
    },
    /// Run the sign-in the endpoint would run for a user, and print its outcome, the path
    /// it took (pass-through, hash sync or none) and why; no session is created.
    ///
    /// It asks the running `causeway serve` of this data directory over its admin socket
    /// (<data dir>/admin.sock, for the directory's owner only): only that process has the
    /// connected agents, so only it can run a pass-through check, and its smart lockout and
    /// throttling apply as to any sign-in (a wrong password here counts towards lockout).
    /// Exit status 0 when the sign-in succeeds, 1 otherwise; the outcome is on stdout
    /// either way (first line `outcome: <code>`).
    TestSignin {
        #[command(flatten)]
        data: DataDir,
        /// The user principal name, name@domain.
        upn: String,
        /// Read the password from standard input (its first line, without the line end);
        /// it is never taken from the command line and never printed.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Check as if the sign-in came from this client address (per-source throttling
        /// and familiar places apply to it) [default: no address].
        #[arg(long)]
        source: Option<std::net::IpAddr>,
    },
}

fn open(data: &DataDir) -> Result<SqliteStore> {
    data.ensure()?;
    Ok(SqliteStore::open(&data.directory_path())?)
}

fn actor() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map_or_else(|_| "cli".into(), |u| format!("cli:{u}"))
}

fn line(u: &UserRecord) -> String {
    format!(
        "{:<40} {:<26} {:<6} {:<9}{} {}",
        u.upn,
        u.id.as_str(),
        format!("{:?}", u.source).to_lowercase(),
        if u.deleted_at.is_some() {
            "deleted"
        } else if u.disabled {
            "disabled"
        } else {
            "enabled"
        },
        if u.protected { " protected" } else { "" },
        u.display_name.as_deref().unwrap_or("")
    )
}

/// `last hash sync: …` with the flags it delivered, for `users show`.
fn hash_sync_line(u: &UserRecord, now: SystemTime) -> String {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let p = &u.password;
    match p.last_hash_sync {
        None => format!(
            "last hash sync: never{}",
            if u.has_verifier {
                " (verifier set on the endpoint)"
            } else {
                ""
            }
        ),
        Some(t) => format!(
            "last hash sync: {} ({} s ago){}{}{}",
            secs(t),
            now.duration_since(t).map_or(0, |d| d.as_secs()),
            if p.must_change {
                "; must change password at next logon"
            } else {
                ""
            },
            if p.disabled {
                "; disabled in the source"
            } else {
                ""
            },
            p.account_expires
                .map(|e| format!("; account expires {}", secs(e)))
                .unwrap_or_default(),
        ),
    }
}

fn read_password() -> Result<Password> {
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut text)
        .context("reading the password from standard input")?;
    let trimmed = text.trim_end_matches(['\n', '\r']).to_owned();
    use zeroize::Zeroize;
    text.zeroize();
    if trimmed.is_empty() {
        bail!("no password on standard input (e.g. printf '%s\\n' \"$PW\" | causeway users add --upn … --password-stdin)");
    }
    Password::new(trimmed).context("the password was refused")
}

/// The first line of standard input without its line end (one `\n`, and a `\r` before
/// it): exactly what was typed, nothing else trimmed.
fn read_password_line() -> Result<Password> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut text)
        .context("reading the password from standard input")?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        bail!("no password on standard input (e.g. printf '%s\\n' \"$PW\" | causeway users test-signin UPN --password-stdin)");
    }
    Password::new(line.to_owned()).context("the password was refused")
}

pub(crate) async fn run(cmd: UsersCommand) -> Result<()> {
    let now = SystemTime::now();
    match cmd {
        UsersCommand::Add {
            data,
            upn,
            password_stdin: _,
            display_name,
            mail,
        } => {
            let store = open(&data)?;
            let password = read_password()?;
            let verifier = PhsVerifier::derive(&password);
            let u = store
                .add_cloud_user(
                    &NewUser {
                        upn,
                        display_name,
                        mail,
                    },
                    &verifier,
                    &actor(),
                    now,
                )
                .await?;
            println!("created {} (immutable id {})", u.upn, u.id);
        }
        UsersCommand::List { data, deleted } => {
            let users = open(&data)?.list_users(deleted).await?;
            if users.is_empty() {
                println!("no users");
            }
            for u in users {
                println!("{}", line(&u));
            }
        }
        UsersCommand::Disable { data, upn } => println!(
            "{}",
            line(&open(&data)?.set_disabled(&upn, true, &actor(), now).await?)
        ),
        UsersCommand::Enable { data, upn } => println!(
            "{}",
            line(
                &open(&data)?
                    .set_disabled(&upn, false, &actor(), now)
                    .await?
            )
        ),
        UsersCommand::Protect { data, upn } => println!(
            "{}",
            line(
                &open(&data)?
                    .set_protected(&upn, true, &actor(), now)
                    .await?
            )
        ),
        UsersCommand::Unprotect { data, upn } => println!(
            "{}",
            line(
                &open(&data)?
                    .set_protected(&upn, false, &actor(), now)
                    .await?
            )
        ),
        UsersCommand::Delete { data, upn } => {
            println!(
                "{}",
                line(&open(&data)?.delete_user(&upn, &actor(), now).await?)
            )
        }
        UsersCommand::Restore { data, upn } => {
            println!(
                "{}",
                line(&open(&data)?.restore_user(&upn, &actor(), now).await?)
            )
        }
        UsersCommand::Show { data, upn } => {
            let Some(u) = open(&data)?.user_by_upn(&upn).await? else {
                bail!("no user {upn}");
            };
            println!("{}", line(&u));
            println!("{}", hash_sync_line(&u, now));
        }
        UsersCommand::History { data, upn } => {
            let h = open(&data)?.history(&upn).await?;
            if h.is_empty() {
                bail!("no history for {upn}");
            }
            for e in h {
                let secs =
                    e.at.duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                println!(
                    "#{:<5} {secs} {:<14} {:<12} {}",
                    e.seq, e.actor, e.action, e.snapshot
                );
            }
        }
        UsersCommand::TestSignin {
            data,
            upn,
            password_stdin: _,
            source,
        } => {
            let password = read_password_line()?;
            let (report, success) =
                crate::admin_socket::test_signin(&data.data_dir, &upn, source, &password).await?;
            print!("{report}");
            if !success {
                bail!("the sign-in of {upn} did not succeed");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use causeway_store::{AdUser, ImmutableId};

    use super::*;

    /// `users protect` and `users unprotect` set the flag through the command, with a
    /// history row each by the CLI's actor; a synchronised user is refused with why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn protect_and_unprotect_set_the_flag_and_refuse_a_synced_user() {
        let dir = causeway_testkit::TempDir::new("users-protect");
        let data = || DataDir {
            data_dir: dir.path().join("data"),
        };
        let store = open(&data()).expect("open");
        let v = PhsVerifier::derive(&Password::new("Glass-Pw-1".into()).expect("valid"));
        let glass = NewUser {
            upn: "glass@corp.example".into(),
            display_name: None,
            mail: None,
        };
        store
            .add_cloud_user(&glass, &v, "test", SystemTime::now())
            .await
            .expect("add");
        let synced = AdUser {
            id: ImmutableId::from_guid_bytes([3; 16]),
            upn: "synced@corp.example".into(),
            display_name: None,
            mail: None,
            disabled: false,
        };
        store
            .upsert_ad_user(&synced, None, "sync", SystemTime::now())
            .await
            .expect("sync");
        let protected = |upn: &'static str| {
            let store = store.clone();
            async move {
                let u = store.user_by_upn(upn).await.expect("read").expect("user");
                u.protected
            }
        };
        let upn = || "glass@corp.example".to_owned();
        run(UsersCommand::Protect {
            data: data(),
            upn: upn(),
        })
        .await
        .expect("protect");
        assert!(protected("glass@corp.example").await);
        run(UsersCommand::Unprotect {
            data: data(),
            upn: upn(),
        })
        .await
        .expect("unprotect");
        assert!(!protected("glass@corp.example").await);
        let actions: Vec<String> = store
            .history("glass@corp.example")
            .await
            .expect("history")
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["create", "protect", "unprotect"]);
        let e = run(UsersCommand::Protect {
            data: data(),
            upn: "synced@corp.example".into(),
        })
        .await
        .expect_err("a synced user has nothing to be protected from");
        assert!(e.to_string().contains("cloud-only"), "{e}");
        assert!(!protected("synced@corp.example").await);
    }
}
