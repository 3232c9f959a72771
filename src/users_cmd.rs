//! `causeway users …`: cloud-only accounts in the endpoint's directory store (break-glass
//! and test accounts), stored with the same salted-PBKDF2 verifier as synced hashes.

use std::io::{BufRead, IsTerminal as _, Write as _};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use causeway_credential::{Password, PhsVerifier};
use causeway_store::{
    History as _, NewUser, Source, SqliteStore, UserRecord, Users as _, Verifiers as _,
};

use crate::data_dir::DataArgs;
use crate::password_policy::PasswordPolicy;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Create a cloud-only user. The password is asked for without echo on a terminal, or
    /// read from standard input with --password-stdin, never from the command line (it
    /// would land in the shell history and the process list). It must meet
    /// [password_policy] (12 characters, not a common password, no part of the UPN or name).
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The user principal name, name@domain.
        #[arg(long)]
        upn: String,
        /// Read the password from the first line of standard input (for scripts; on a
        /// terminal it is asked for with echo off).
        #[arg(long)]
        password_stdin: bool,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Mail address.
        #[arg(long)]
        mail: Option<String>,
    },
    /// List users (with --deleted, the recycle bin too): a header row, then one user a
    /// line; times in RFC 3339.
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Include users in the recycle bin.
        #[arg(long)]
        deleted: bool,
        /// One JSON array of users instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Set a cloud-only user's password (asked for without echo on a terminal, or read with
    /// --password-stdin); it must meet [password_policy]. A user synchronised from AD
    /// keeps AD's password: changing it here would need password writeback.
    SetPassword {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
        /// Read the password from the first line of standard input (for scripts; on a
        /// terminal it is asked for with echo off).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Block a user's sign-in.
    Disable {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Allow a disabled user to sign in again.
    Enable {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Protect a cloud-only user from soft match: a user synchronised from AD with the
    /// same UPN or mail is then an error of the sync run, never a takeover of this account.
    Protect {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Lift `users protect`: soft match (where a connector enables it) may take the
    /// account over again.
    Unprotect {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Move a user to the recycle bin (restorable with `users restore`).
    Delete {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Bring a user back from the recycle bin, with the same immutable id.
    Restore {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Show one user: its state and, for a synchronised user, its password hash sync.
    Show {
        #[command(flatten)]
        data: DataArgs,
        /// The UPN.
        upn: String,
    },
    /// Show every recorded change of a user: when, who, what, and the state after it.
    History {
        #[command(flatten)]
        data: DataArgs,
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
        data: DataArgs,
        /// The user principal name, name@domain.
        upn: String,
        /// Read the password from standard input (its first line, without the line end; on
        /// a terminal it is asked for with echo off); never from the command line, never
        /// printed.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Check as if the sign-in came from this client address (per-source throttling
        /// and familiar places apply to it) [default: no address].
        #[arg(long)]
        source: Option<std::net::IpAddr>,
    },
}

fn open(data: &DataArgs) -> Result<SqliteStore> {
    data.locate()?.data.store()
}

fn actor() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .map_or_else(|_| "cli".into(), |u| format!("cli:{u}"))
}

fn rfc3339(t: SystemTime) -> String {
    causeway_saml::saml2::fmt_time(t)
}

fn state(u: &UserRecord) -> &'static str {
    if u.deleted_at.is_some() {
        "deleted"
    } else if u.disabled {
        "disabled"
    } else {
        "enabled"
    }
}

fn source(u: &UserRecord) -> String {
    format!("{:?}", u.source).to_lowercase()
}

const HEADER: [&str; 7] = [
    "UPN",
    "IMMUTABLE ID",
    "SOURCE",
    "STATE",
    "PROTECTED",
    "UPDATED",
    "DISPLAY NAME",
];

fn row(cells: [&str; 7]) -> String {
    format!(
        "{:<40} {:<26} {:<6} {:<9} {:<9} {:<20} {}",
        cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
    )
    .trim_end()
    .to_owned()
}

fn line(u: &UserRecord) -> String {
    row([
        &u.upn,
        u.id.as_str(),
        &source(u),
        state(u),
        if u.protected { "yes" } else { "no" },
        &rfc3339(u.updated_at),
        u.display_name.as_deref().unwrap_or(""),
    ])
}

fn json(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "upn": u.upn,
        "immutable_id": u.id.as_str(),
        "source": source(u),
        "state": state(u),
        "protected": u.protected,
        "display_name": u.display_name,
        "mail": u.mail,
        "has_password": u.has_verifier,
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
        "deleted_at": u.deleted_at.map(rfc3339),
        "last_hash_sync": u.password.last_hash_sync.map(rfc3339),
    })
}

/// `last hash sync: …` with the flags it delivered, for `users show`.
fn hash_sync_line(u: &UserRecord, now: SystemTime) -> String {
    let secs = rfc3339;
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

/// A new password: from standard input's first line with `--password-stdin`, else asked
/// for twice on the terminal without echo. Never from the command line.
fn new_password(password_stdin: bool, upn: &str) -> Result<Password> {
    let terminal = std::io::stdin().is_terminal();
    if password_stdin && !terminal {
        return read_password_line();
    }
    // On a terminal, --password-stdin asks too: a typed password is never echoed.
    if !terminal {
        bail!("standard input is not a terminal: pass --password-stdin to read the password from it (e.g. printf '%s\\n' \"$PW\" | causeway users set-password {upn} --password-stdin)");
    }
    let first = prompt_hidden(&format!("New password for {upn}: "))?;
    let again = prompt_hidden("Again: ")?;
    if first.as_str() != again.as_str() {
        bail!("the two passwords differ; nothing was changed");
    }
    if first.is_empty() {
        bail!("no password typed; nothing was changed");
    }
    Password::new(first.to_string()).context("the password was refused")
}

/// Restores the terminal's echo when dropped (also on an error or a panic).
struct EchoOff(nix::sys::termios::Termios);

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

/// One line typed on the terminal with echo off, the prompt on standard error.
fn prompt_hidden(prompt: &str) -> Result<zeroize::Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let saved = tcgetattr(std::io::stdin()).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    let guard = EchoOff(saved);
    tcsetattr(std::io::stdin(), SetArg::TCSAFLUSH, &quiet).context("turning echo off")?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut text)
        .context("reading the password from the terminal")?;
    drop(guard);
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

/// Checks `password` against the policy for `upn`; a refusal changes nothing.
fn check_policy(
    policy: &PasswordPolicy,
    password: &Password,
    upn: &str,
    name: Option<&str>,
) -> Result<()> {
    policy
        .check(password.expose_secret(), upn, name)
        .map_err(|m| anyhow::anyhow!("{m}; nothing was changed"))
}

/// The first line of standard input without its line end (one `\n`, and a `\r` before
/// it): exactly what was typed, nothing else trimmed; on a terminal, asked for with echo
/// off.
fn read_password_line() -> Result<Password> {
    if std::io::stdin().is_terminal() {
        let typed = prompt_hidden("Password: ")?;
        if typed.is_empty() {
            bail!("no password typed");
        }
        return Password::new(typed.to_string()).context("the password was refused");
    }
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

impl UsersCommand {
    /// What the audit log calls this command and the user it changes; `None` for the
    /// commands that only read.
    fn audited(&self) -> Option<(&'static str, String, DataArgs)> {
        let (action, data, upn) = match self {
            UsersCommand::Add { data, upn, .. } => ("user.add", data, upn),
            UsersCommand::SetPassword { data, upn, .. } => ("user.set_password", data, upn),
            UsersCommand::Disable { data, upn } => ("user.disable", data, upn),
            UsersCommand::Enable { data, upn } => ("user.enable", data, upn),
            UsersCommand::Protect { data, upn } => ("user.protect", data, upn),
            UsersCommand::Unprotect { data, upn } => ("user.unprotect", data, upn),
            UsersCommand::Delete { data, upn } => ("user.delete", data, upn),
            UsersCommand::Restore { data, upn } => ("user.restore", data, upn),
            _ => return None,
        };
        Some((action, upn.clone(), data.clone()))
    }
}

/// Runs `cmd`; a change is recorded in the audit log with how it ended.
pub(crate) async fn run(cmd: UsersCommand) -> Result<()> {
    let audited = cmd.audited();
    let result = run_command(cmd).await;
    if let Some((action, upn, data)) = audited {
        data.audit_admin(action, &upn, &result);
    }
    result
}

async fn run_command(cmd: UsersCommand) -> Result<()> {
    let now = SystemTime::now();
    match cmd {
        UsersCommand::Add {
            data,
            upn,
            password_stdin,
            display_name,
            mail,
        } => {
            let found = data.locate()?;
            let store = found.data.store()?;
            causeway_store::check_upn(&upn)?;
            let password = new_password(password_stdin, &upn)?;
            check_policy(
                &found.config.password_policy,
                &password,
                &upn,
                display_name.as_deref(),
            )?;
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
        UsersCommand::List {
            data,
            deleted,
            json: as_json,
        } => {
            let users = open(&data)?.list_users(deleted).await?;
            if as_json {
                let all: Vec<_> = users.iter().map(json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if users.is_empty() {
                println!("no users");
            } else {
                println!("{}", row(HEADER));
                for u in users {
                    println!("{}", line(&u));
                }
            }
        }
        UsersCommand::SetPassword {
            data,
            upn,
            password_stdin,
        } => {
            let found = data.locate()?;
            let store = found.data.store()?;
            let Some(u) = store.user_by_upn(&upn).await? else {
                bail!("no user {upn}");
            };
            if u.source != Source::Cloud {
                bail!("{} is synchronised from AD: its password is AD's. Change it there (it reaches the endpoint by pass-through or hash sync); setting it here would need password writeback, which Causeway does not do", u.upn);
            }
            let password = new_password(password_stdin, &u.upn)?;
            check_policy(
                &found.config.password_policy,
                &password,
                &u.upn,
                u.display_name.as_deref(),
            )?;
            let verifier = PhsVerifier::derive(&password);
            let u = store.set_verifier(&u.upn, &verifier, &actor(), now).await?;
            println!("password of {} set", u.upn);
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
            println!(
                "{:<6} {:<20} {:<14} {:<12} STATE AFTER",
                "SEQ", "AT", "ACTOR", "ACTION"
            );
            for e in h {
                println!(
                    "#{:<5} {:<20} {:<14} {:<12} {}",
                    e.seq,
                    rfc3339(e.at),
                    e.actor,
                    e.action,
                    e.snapshot
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
            let dir = data.locate()?.data.data_dir;
            let (report, success) =
                crate::admin_socket::test_signin(&dir, &upn, source, &password).await?;
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
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        let data = || DataArgs {
            config: None,
            data_dir: Some(dir.path().join("data")),
        };
        // The endpoint makes the store; the commands only open it.
        let store =
            SqliteStore::open(&dir.path().join("data").join("directory.sqlite")).expect("open");
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
