//! `causeway audit`: reads the endpoint's audit log (sign-ins, admin changes, agent and
//! sync events) back, filtered by time, user, application and kind.

use std::time::SystemTime;

use anyhow::{Context, Result};
use causeway_federation::audit::{self, Event, Kind};

use crate::data_dir::DataArgs;

/// What `--kind` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum KindArg {
    /// Passwords checked at the sign-in page and tokens issued.
    Signin,
    /// Changes made with `causeway users|apps|certs|sync approve`.
    Admin,
    /// Agents connecting, going away, enrolling, refused.
    Agent,
    /// Sync hosts' runs and hash-sync batches.
    Sync,
}

impl KindArg {
    fn kind(self) -> Kind {
        match self {
            KindArg::Signin => Kind::Signin,
            KindArg::Admin => Kind::Admin,
            KindArg::Agent => Kind::Agent,
            KindArg::Sync => Kind::Sync,
        }
    }
}

/// Show the audit log: every sign-in (user, client address, application, method, agent,
/// outcome), every admin change and every agent and sync event, oldest first. Nothing in
/// it is a secret: no password, hash, key or token is ever written there.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  causeway audit --since -2h                      # the last two hours
  causeway audit --user alice@corp.example.com    # one user's sign-ins (any case)
  causeway audit --app urn:federation:MicrosoftOnline --kind signin --since 2026-12-01T00:00:00Z
  causeway audit --json | jq .                    # the JSON lines as stored

The log is <data dir>/audit/audit.jsonl, rotated by size ([audit] max_file_mib = 64,
keep_files = 10 in the serve configuration); this command reads the rotated files too.")]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Only events at or after this time: RFC 3339 (2026-12-02T08:00:00Z) or a time ago
    /// (-2h, 30m, 7d).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only events before this time (same forms as --since).
    #[arg(long, allow_hyphen_values = true)]
    until: Option<String>,
    /// Only events about this user (UPN, compared without case).
    #[arg(long)]
    user: Option<String>,
    /// Only events about this application (SAML entity id, WS-Fed realm, OIDC client id).
    #[arg(long)]
    app: Option<String>,
    /// Only events of this kind.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Print the stored JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// `--since`/`--until`: RFC 3339, or a time ago such as `-2h` or `30m`.
fn parse_when(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Some(t) = audit::parse_time(s) {
        return Ok(t);
    }
    let ago = causeway_config::parse_duration(s.strip_prefix('-').unwrap_or(s)).map_err(|_| {
        format!("{s:?} is neither an RFC 3339 time (2026-12-02T08:00:00Z) nor a time ago (-2h, 30m, 7d)")
    })?;
    Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))
}

struct Filter {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    user: Option<String>,
    app: Option<String>,
    kind: Option<Kind>,
}

impl Filter {
    fn keeps(&self, e: &Event) -> bool {
        let t = audit::parse_time(&e.time);
        if let (Some(s), Some(t)) = (self.since, t) {
            if t < s {
                return false;
            }
        }
        if let (Some(u), Some(t)) = (self.until, t) {
            if t >= u {
                return false;
            }
        }
        if let Some(u) = &self.user {
            let about =
                |v: &Option<String>| v.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(u));
            if !about(&e.user) && !about(&e.target) {
                return false;
            }
        }
        if let Some(a) = &self.app {
            if e.app.as_deref() != Some(a) && e.target.as_deref() != Some(a) {
                return false;
            }
        }
        self.kind.is_none_or(|k| e.kind == k)
    }
}

/// One event as a line for people: time, kind, action, outcome, then the fields it has.
fn text_line(e: &Event) -> String {
    let mut line = format!(
        "{} {:<6} {:<20} {}",
        e.time,
        e.kind.as_str(),
        e.action,
        e.outcome
    );
    for (k, v) in [
        ("user", &e.user),
        ("client", &e.client),
        ("app", &e.app),
        ("method", &e.method),
        ("agent", &e.agent),
        ("actor", &e.actor),
        ("target", &e.target),
    ] {
        if let Some(v) = v {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    if let Some(d) = &e.detail {
        line.push_str(&format!(" ({d})"));
    }
    line
}

pub(crate) fn run(a: AuditArgs) -> Result<()> {
    let now = SystemTime::now();
    let when = |s: &Option<String>, flag: &str| {
        s.as_deref()
            .map(|s| parse_when(s, now))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let filter = Filter {
        since: when(&a.since, "since")?,
        until: when(&a.until, "until")?,
        user: a.user.clone(),
        app: a.app.clone(),
        kind: a.kind.map(KindArg::kind),
    };
    let dir = a.data.locate()?.data.audit();
    if !dir.is_dir() {
        eprintln!(
            "causeway audit: no audit log in {} yet (the endpoint starts it on its first start)",
            dir.display()
        );
        return Ok(());
    }
    let mut shown = 0usize;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    audit::read(&dir, |e| {
        if failed.is_some() || !filter.keeps(&e) {
            return;
        }
        let line = if a.json { e.to_json() } else { text_line(&e) };
        use std::io::Write;
        if let Err(err) = writeln!(out, "{line}") {
            failed = Some(err);
        }
        shown += 1;
    })
    .context("cannot read the audit log")?;
    if let Some(e) = failed {
        // A closed pipe (`| head`) is how a reader says it has enough.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("cannot write to standard output");
        }
    }
    drop(out);
    if shown == 0 {
        eprintln!("causeway audit: no event matches");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_or_ago() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_when("-2h", now), Ok(now - Duration::from_secs(7200)));
        assert_eq!(parse_when("30m", now), Ok(now - Duration::from_secs(1800)));
        assert_eq!(
            parse_when("1970-01-12T13:46:40Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        );
        let e = parse_when("yesterday", now).expect_err("refused");
        assert!(e.contains("neither an RFC 3339 time"), "{e}");
    }

    #[test]
    fn filters_match_user_without_case_and_app_and_kind() {
        let mut e = Event::password_check(
            "Alice@Corp.Example",
            None,
            Some("https://sp.example"),
            "pass_through",
            None,
            "success",
        );
        e.time = "2026-12-02T08:00:00.000Z".into();
        let f = |user: Option<&str>, app: Option<&str>, kind: Option<Kind>| Filter {
            since: None,
            until: None,
            user: user.map(str::to_owned),
            app: app.map(str::to_owned),
            kind,
        };
        assert!(f(Some("alice@corp.example"), None, None).keeps(&e));
        assert!(!f(Some("bob@corp.example"), None, None).keeps(&e));
        assert!(f(None, Some("https://sp.example"), Some(Kind::Signin)).keeps(&e));
        assert!(!f(None, Some("https://other.example"), None).keeps(&e));
        assert!(!f(None, None, Some(Kind::Admin)).keeps(&e));
        let at = audit::parse_time("2026-12-02T08:00:00Z");
        let window = Filter {
            since: at,
            until: at.map(|t| t + Duration::from_secs(1)),
            ..f(None, None, None)
        };
        assert!(window.keeps(&e), "since is inclusive");
        let after = Filter {
            until: at,
            ..f(None, None, None)
        };
        assert!(!after.keeps(&e), "until is exclusive");
    }
}
