//! The decisions of the sign-in form, apart from the handler that acts on them: reading
//! the posted form, what a refused flow or a failed sign-in tells the user. Pure: no I/O.
//! It must never show a password, nor say more than the user may know (the operator
//! reads the rest in the log).

use std::time::Duration;

use causeway_credential::SignInOutcome;
use hyper::StatusCode;
use zeroize::Zeroizing;

use super::http::form_fields;
use crate::session::FlowError;
use causeway_store::UserRecord;

/// Longest user name read, in characters.
pub(super) const MAX_USERNAME: usize = 256;

/// The posted sign-in form. Its `Debug` leaves the password out.
pub(super) struct LoginForm {
    /// The sealed flow state.
    pub(super) flow: String,
    /// The form's anti-forgery token.
    pub(super) csrf: String,
    /// The user name as typed (not trimmed yet).
    pub(super) username: Option<String>,
    /// The password, as sent (decoded, not checked for UTF-8 yet).
    pub(super) password: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

/// Why a posted sign-in form is not read at all. The `Display` is what the page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum FormRefused {
    /// A field of the form came twice (which one counts would be a guess).
    #[error("The form was sent with a field twice.")]
    Repeated,
    /// No flow state or no anti-forgery token.
    #[error("The sign-in form is incomplete. Go back to the application and sign in again.")]
    Incomplete,
}

/// Reads the sign-in form: `flow`, `csrf`, `username`, `password`, each at most once;
/// other fields are ignored. The password stays in zeroizing buffers throughout.
pub(super) fn parse_login_form(body: &[u8]) -> Result<LoginForm, FormRefused> {
    let mut flow = None;
    let mut csrf = None;
    let mut username = None;
    let mut password: Option<Zeroizing<Vec<u8>>> = None;
    for (k, v) in form_fields(body) {
        let slot = match k.as_slice() {
            b"flow" => &mut flow,
            b"csrf" => &mut csrf,
            b"username" => &mut username,
            b"password" => {
                if password.is_some() {
                    return Err(FormRefused::Repeated);
                }
                password = Some(v);
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(FormRefused::Repeated);
        }
        *slot = Some(String::from_utf8_lossy(&v).into_owned());
    }
    let (Some(flow), Some(csrf)) = (flow, csrf) else {
        return Err(FormRefused::Incomplete);
    };
    Ok(LoginForm {
        flow,
        csrf,
        username,
        password,
    })
}

/// What the form says when the user name (trimmed) is longer than [`MAX_USERNAME`].
pub(super) fn username_too_long(username: &str) -> Option<&'static str> {
    (username.chars().count() > MAX_USERNAME).then_some("The user name is too long.")
}

/// What the form says when the user name or a usable password is missing.
pub(super) fn missing_credentials(username: &str) -> &'static str {
    if username.is_empty() {
        "Enter your user name (name@domain) and your password."
    } else {
        "Enter your password."
    }
}

/// The page for sign-in state that cannot be used: status, title and text.
pub(super) fn flow_refusal(e: FlowError) -> (StatusCode, &'static str, &'static str) {
    match e {
        FlowError::Expired => (
            StatusCode::BAD_REQUEST,
            "This sign-in page has expired",
            "It is older than 15 minutes. Go back to the application and sign in again.",
        ),
        FlowError::Used => (
            StatusCode::BAD_REQUEST,
            "This sign-in page was already used",
            "It was already used to sign in, and a sign-in page can be used once. Go back to the application and sign in again.",
        ),
        FlowError::Malformed | FlowError::Tampered => (
            StatusCode::BAD_REQUEST,
            "This sign-in link is not valid",
            "It was damaged or altered on the way, or it was not issued by this sign-in service. Go back to the application and sign in again.",
        ),
        // A form posted from elsewhere is refused as forbidden, not as a bad request.
        FlowError::Forged => (
            StatusCode::FORBIDDEN,
            "This sign-in form cannot be used",
            "It was not issued to this browser, or it was replaced by a newer one. Go back to the application and sign in again.",
        ),
    }
}

/// What follows the directory's verdict on the password and the store's record.
#[derive(Debug)]
pub(super) enum AfterPassword {
    /// Signed in as this user.
    SignIn(UserRecord),
    /// The password is right, but the user is disabled in the store.
    Disabled,
    /// The password is right, but the user is not in the store (not synchronised yet).
    NotSynchronised,
    /// The sign-in failed for this reason.
    Failed(SignInOutcome),
}

/// Decides from the sign-in outcome and the user's record (looked up only on success).
pub(super) fn after_password(outcome: SignInOutcome, user: Option<UserRecord>) -> AfterPassword {
    match (outcome, user) {
        (SignInOutcome::Success, Some(u)) if !u.disabled => AfterPassword::SignIn(u),
        (SignInOutcome::Success, Some(_)) => AfterPassword::Disabled,
        (SignInOutcome::Success, None) => AfterPassword::NotSynchronised,
        (o, _) => AfterPassword::Failed(o),
    }
}

/// What the form says to a user whose password was right but who cannot sign in.
pub(super) const NOT_SYNCHRONISED: &str = "Your password is correct, but your account has not been set up for sign-in here yet (it is not synchronised). Contact your help desk.";

/// What the form says to a locked-out user with `remaining` of the lockout left: whole
/// minutes, rounded up, at least one.
pub(super) fn locked_message(remaining: Duration) -> String {
    let mins = remaining.as_secs().div_ceil(60).max(1);
    format!(
        "Your account is locked because of too many failed sign-in attempts. Try again in {mins} minute{}.",
        if mins == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use causeway_store::{ImmutableId, Source};

    fn user(disabled: bool) -> UserRecord {
        let now = SystemTime::now();
        UserRecord {
            id: ImmutableId::random(),
            upn: "carla@corp.test".into(),
            display_name: None,
            mail: None,
            source: Source::Ad,
            disabled,
            has_verifier: false,
            protected: false,
            deleted_at: None,
            created_at: now,
            updated_at: now,
            password: Default::default(),
        }
    }

    #[test]
    fn the_form_yields_its_four_fields_decoded_and_ignores_others() {
        let f =
            parse_login_form(b"x=1&flow=F%2B&csrf=C&username=+carla%40corp.test&password=p%26w+")
                .expect("read");
        assert_eq!((f.flow.as_str(), f.csrf.as_str()), ("F+", "C"));
        assert_eq!(f.username.as_deref(), Some(" carla@corp.test"));
        assert_eq!(f.password.as_deref().map(Vec::as_slice), Some(&b"p&w "[..]));
        let f = parse_login_form(b"flow=F&csrf=").expect("an empty token is still a token");
        assert!(f.username.is_none() && f.password.is_none());
    }

    #[test]
    fn a_repeated_field_or_a_form_without_flow_or_token_is_refused_for_what_it_is() {
        for body in [
            &b"flow=a&flow=b&csrf=c"[..],
            b"flow=a&csrf=c&csrf=c",
            b"flow=a&csrf=c&username=u&username=u",
            b"flow=a&csrf=c&password=p&password=",
            // A repeat counts even before the required fields have all come.
            b"password=&password=",
        ] {
            assert_eq!(
                parse_login_form(body).err(),
                Some(FormRefused::Repeated),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [
            &b""[..],
            b"flow=a",
            b"csrf=c&username=u&password=p",
            b"flow",
        ] {
            assert_eq!(parse_login_form(body).err(), Some(FormRefused::Incomplete));
        }
        assert_eq!(
            FormRefused::Repeated.to_string(),
            "The form was sent with a field twice."
        );
    }

    #[test]
    fn the_form_prints_without_its_password() {
        let f = parse_login_form(b"flow=F&csrf=C&username=u&password=hunter2secret").expect("read");
        let shown = format!("{f:?}");
        assert!(
            !shown.contains("hunter2secret") && !shown.contains("104, 117"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn user_name_and_password_checks_say_what_is_missing() {
        assert_eq!(username_too_long(&"é".repeat(MAX_USERNAME)), None);
        assert_eq!(
            username_too_long(&"é".repeat(MAX_USERNAME + 1)),
            Some("The user name is too long.")
        );
        assert_eq!(
            missing_credentials(""),
            "Enter your user name (name@domain) and your password."
        );
        assert_eq!(missing_credentials("carla"), "Enter your password.");
    }

    #[test]
    fn a_forged_form_is_forbidden_and_other_unusable_state_a_bad_request_with_its_own_title() {
        let t = |e| {
            let (s, title, _) = flow_refusal(e);
            (s.as_u16(), title)
        };
        assert_eq!(
            t(FlowError::Forged),
            (403, "This sign-in form cannot be used")
        );
        assert_eq!(
            t(FlowError::Expired),
            (400, "This sign-in page has expired")
        );
        assert_eq!(
            t(FlowError::Used),
            (400, "This sign-in page was already used")
        );
        assert_eq!(
            t(FlowError::Malformed),
            (400, "This sign-in link is not valid")
        );
        assert_eq!(t(FlowError::Tampered), t(FlowError::Malformed));
    }

    #[test]
    fn only_a_success_with_an_enabled_record_signs_in() {
        assert!(matches!(
            after_password(SignInOutcome::Success, Some(user(false))),
            AfterPassword::SignIn(u) if u.upn == "carla@corp.test"
        ));
        assert!(matches!(
            after_password(SignInOutcome::Success, Some(user(true))),
            AfterPassword::Disabled
        ));
        assert!(matches!(
            after_password(SignInOutcome::Success, None),
            AfterPassword::NotSynchronised
        ));
        // A failure stays a failure even with a record at hand.
        for o in [
            SignInOutcome::InvalidCredentials,
            SignInOutcome::AccountLocked,
            SignInOutcome::AccountDisabled,
        ] {
            assert!(matches!(
                after_password(o, Some(user(false))),
                AfterPassword::Failed(got) if got == o
            ));
        }
    }

    #[test]
    fn the_lockout_message_counts_whole_minutes_rounded_up_and_at_least_one() {
        let m = |s| locked_message(Duration::from_secs(s));
        let tail = |n: &str| {
            format!("Your account is locked because of too many failed sign-in attempts. Try again in {n}.")
        };
        assert_eq!(m(0), tail("1 minute"));
        assert_eq!(m(1), tail("1 minute"));
        assert_eq!(m(60), tail("1 minute"));
        assert_eq!(m(61), tail("2 minutes"));
        assert_eq!(m(30 * 60), tail("30 minutes"));
    }
}
