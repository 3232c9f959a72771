//! [`SignInOutcome`]: the one vocabulary the agent, the hub, the endpoint and the logs use
//! for the result of checking a credential.

use std::fmt;

/// The result of checking a credential.
///
/// Two rules every component keeps:
/// - an infrastructure failure is [`SignInOutcome::DirectoryUnavailable`], never
///   [`SignInOutcome::InvalidCredentials`] (a directory outage must not count towards
///   lockout nor tell users their password is wrong);
/// - a user who got the password wrong learns nothing about whether the account exists:
///   [`SignInOutcome::UnknownUser`] shows them the same words as a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignInOutcome {
    /// The password is right and the account may sign in.
    Success,
    /// Wrong password (or an account that cannot be told apart from one).
    InvalidCredentials,
    /// No such account. Shown to the user exactly like a wrong password.
    UnknownUser,
    /// The account is disabled.
    AccountDisabled,
    /// The account is locked out (by the directory, or by the hub's smart lockout).
    AccountLocked,
    /// The account itself has expired (`accountExpires`).
    AccountExpired,
    /// The password has expired.
    PasswordExpired,
    /// The password must be changed before the next sign-in.
    PasswordMustChange,
    /// Sign-in is not allowed now or from here (logon hours, workstation restrictions).
    LogonNotPermitted,
    /// The directory could not be asked (no agent, no domain controller, TLS or network
    /// failure, misconfiguration). Says nothing about the password.
    DirectoryUnavailable,
    /// Too many attempts, or too much load: refused without checking.
    Throttled,
}

impl SignInOutcome {
    /// Every outcome, in a stable order (for metrics labels and tests).
    pub const ALL: [SignInOutcome; 11] = [
        Self::Success,
        Self::InvalidCredentials,
        Self::UnknownUser,
        Self::AccountDisabled,
        Self::AccountLocked,
        Self::AccountExpired,
        Self::PasswordExpired,
        Self::PasswordMustChange,
        Self::LogonNotPermitted,
        Self::DirectoryUnavailable,
        Self::Throttled,
    ];

    /// A stable machine-readable code, for the agent protocol, metrics labels and logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InvalidCredentials => "invalid_credentials",
            Self::UnknownUser => "unknown_user",
            Self::AccountDisabled => "account_disabled",
            Self::AccountLocked => "account_locked",
            Self::AccountExpired => "account_expired",
            Self::PasswordExpired => "password_expired",
            Self::PasswordMustChange => "password_must_change",
            Self::LogonNotPermitted => "logon_not_permitted",
            Self::DirectoryUnavailable => "directory_unavailable",
            Self::Throttled => "throttled",
        }
    }

    /// Parses a [`SignInOutcome::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.code() == code)
    }

    /// The outcome's one-byte code in the agent protocol (stable across versions).
    pub fn wire_code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::InvalidCredentials => 1,
            Self::UnknownUser => 2,
            Self::AccountDisabled => 3,
            Self::AccountLocked => 4,
            Self::AccountExpired => 5,
            Self::PasswordExpired => 6,
            Self::PasswordMustChange => 7,
            Self::LogonNotPermitted => 8,
            Self::DirectoryUnavailable => 9,
            Self::Throttled => 10,
        }
    }

    /// Parses a [`SignInOutcome::wire_code`].
    pub fn from_wire_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.wire_code() == code)
    }

    /// Whether the user is signed in.
    pub fn is_success(self) -> bool {
        self == Self::Success
    }

    /// Whether this outcome proves the password was wrong (and so counts towards lockout).
    /// Only a real answer from the directory does; unknown users count too, so that
    /// guessing against names that do not exist costs the same as against names that do.
    pub fn is_bad_password(self) -> bool {
        matches!(self, Self::InvalidCredentials | Self::UnknownUser)
    }

    /// What the person signing in should read: plain words, no jargon, and for a wrong
    /// password or unknown account the very same sentence.
    pub fn user_message(self) -> &'static str {
        match self {
            Self::Success => "You are signed in.",
            Self::InvalidCredentials | Self::UnknownUser => {
                "The user name or password is incorrect. Check them and try again."
            }
            Self::AccountDisabled => {
                "Your account is disabled. Contact your help desk to have it enabled."
            }
            Self::AccountLocked => {
                "Your account is locked because of too many failed sign-in attempts. Wait and try again later, or contact your help desk."
            }
            Self::AccountExpired => {
                "Your account has expired. Contact your help desk to have it extended."
            }
            Self::PasswordExpired => "Your password has expired. Change it, then sign in again.",
            Self::PasswordMustChange => {
                "You must change your password before you can sign in. Change it, then sign in again."
            }
            Self::LogonNotPermitted => {
                "Your account is not allowed to sign in at this time or from this place. Contact your help desk."
            }
            Self::DirectoryUnavailable => {
                "We cannot check your password right now because the directory is unreachable. This is not a problem with your password; try again in a few minutes."
            }
            Self::Throttled => {
                "Too many sign-in attempts. Wait a few minutes before you try again."
            }
        }
    }

    /// What an operator should read in a log line: precise, and safe to log (it carries no
    /// user input and no secret).
    pub fn operator_text(self) -> &'static str {
        match self {
            Self::Success => "credential accepted",
            Self::InvalidCredentials => "wrong password (directory answered invalid credentials)",
            Self::UnknownUser => "no account with this sign-in name",
            Self::AccountDisabled => "right password, account disabled (AD data 533)",
            Self::AccountLocked => "account locked out (AD data 775, or smart lockout at the hub)",
            Self::AccountExpired => "right password, account expired (AD data 701)",
            Self::PasswordExpired => "right password, password expired (AD data 532)",
            Self::PasswordMustChange => "right password, must change at next logon (AD data 773)",
            Self::LogonNotPermitted => {
                "right password, logon hours or workstation restriction (AD data 530/531)"
            }
            Self::DirectoryUnavailable => {
                "directory not reachable or not usable (no agent, DC down, TLS or config error)"
            }
            Self::Throttled => "refused without checking: rate limit, lockout window or capacity",
        }
    }
}

impl fmt::Display for SignInOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for o in SignInOutcome::ALL {
            assert_eq!(SignInOutcome::from_code(o.code()), Some(o));
            assert_eq!(SignInOutcome::from_wire_code(o.wire_code()), Some(o));
            assert!(seen.insert(o.code()));
            assert!(!o.user_message().is_empty() && !o.operator_text().is_empty());
        }
        assert_eq!(SignInOutcome::from_code("nope"), None);
    }

    #[test]
    fn unknown_user_looks_like_a_wrong_password() {
        assert_eq!(
            SignInOutcome::UnknownUser.user_message(),
            SignInOutcome::InvalidCredentials.user_message()
        );
    }

    #[test]
    fn every_other_outcome_has_its_own_words() {
        let msgs: std::collections::HashSet<_> = SignInOutcome::ALL
            .iter()
            .map(|o| o.user_message())
            .collect();
        assert_eq!(msgs.len(), SignInOutcome::ALL.len() - 1);
    }

    #[test]
    fn outage_is_never_a_bad_password() {
        assert!(!SignInOutcome::DirectoryUnavailable.is_bad_password());
        assert!(!SignInOutcome::Throttled.is_bad_password());
        assert!(!SignInOutcome::DirectoryUnavailable
            .user_message()
            .contains("incorrect"));
    }
}
