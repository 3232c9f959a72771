//! What Active Directory's answer to a simple bind means.
//!
//! AD puts the reason for a failed bind (LDAP result 49) only in the diagnostic message, as
//! a Win32 error code after `data`, e.g.
//! `80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data 52e, v1db1`.
//! Windows and Samba print different DSID and `v` values; the `data` code is the stable part.

use causeway_credential::SignInOutcome;

/// LDAP result codes the agent distinguishes (RFC 4511 §4.1.9).
pub mod rc {
    /// The bind succeeded.
    pub const SUCCESS: u32 = 0;
    /// The server requires TLS for this bind (Samba: `BindSimple: Transport encryption required.`).
    pub const STRONGER_AUTH_REQUIRED: u32 = 8;
    /// Wrong credentials; the reason is in the diagnostic message.
    pub const INVALID_CREDENTIALS: u32 = 49;
    /// The server will not perform the bind (OpenLDAP: DN with an empty password).
    pub const UNWILLING_TO_PERFORM: u32 = 53;
}

/// The reason codes AD gives for a failed bind (`data <hex>` in the diagnostic message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdBindReason {
    /// `525`: no such user (Windows; Samba answers `52e` instead).
    UserNotFound,
    /// `52e`: wrong password, or (Samba) unknown user or empty password.
    InvalidCredentials,
    /// `530`: not permitted to log on at this time.
    LogonHours,
    /// `531`: not permitted to log on at this workstation.
    Workstation,
    /// `532`: password expired.
    PasswordExpired,
    /// `533`: account disabled.
    AccountDisabled,
    /// `568`: too many security ids in the token.
    TooManySids,
    /// `701`: account expired.
    AccountExpired,
    /// `773`: user must reset the password.
    PasswordMustChange,
    /// `775`: account locked out.
    AccountLocked,
    /// Any other code, kept for the operator's log.
    Other(u32),
}

impl AdBindReason {
    /// Maps a Win32 error code from the `data` field.
    pub fn from_code(code: u32) -> Self {
        match code {
            0x525 => Self::UserNotFound,
            0x52e => Self::InvalidCredentials,
            0x530 => Self::LogonHours,
            0x531 => Self::Workstation,
            0x532 => Self::PasswordExpired,
            0x533 => Self::AccountDisabled,
            0x568 => Self::TooManySids,
            0x701 => Self::AccountExpired,
            0x773 => Self::PasswordMustChange,
            0x775 => Self::AccountLocked,
            other => Self::Other(other),
        }
    }

    /// The Win32 error code, as AD prints it (lower-case hex).
    pub fn code(self) -> u32 {
        match self {
            Self::UserNotFound => 0x525,
            Self::InvalidCredentials => 0x52e,
            Self::LogonHours => 0x530,
            Self::Workstation => 0x531,
            Self::PasswordExpired => 0x532,
            Self::AccountDisabled => 0x533,
            Self::TooManySids => 0x568,
            Self::AccountExpired => 0x701,
            Self::PasswordMustChange => 0x773,
            Self::AccountLocked => 0x775,
            Self::Other(c) => c,
        }
    }

    /// What the reason means for the sign-in.
    pub fn outcome(self) -> SignInOutcome {
        match self {
            Self::UserNotFound => SignInOutcome::UnknownUser,
            Self::InvalidCredentials => SignInOutcome::InvalidCredentials,
            Self::LogonHours | Self::Workstation | Self::TooManySids => {
                SignInOutcome::LogonNotPermitted
            }
            Self::PasswordExpired => SignInOutcome::PasswordExpired,
            Self::AccountDisabled => SignInOutcome::AccountDisabled,
            Self::AccountExpired => SignInOutcome::AccountExpired,
            Self::PasswordMustChange => SignInOutcome::PasswordMustChange,
            Self::AccountLocked => SignInOutcome::AccountLocked,
            // Result 49 with a code we do not know is still the directory refusing these
            // credentials, not an outage.
            Self::Other(_) => SignInOutcome::InvalidCredentials,
        }
    }
}

/// Longest diagnostic message looked at; AD's are under 100 bytes.
const MAX_DIAGNOSTIC_SCAN: usize = 512;

/// Finds the `data <hex>` code in an AD bind diagnostic message. Looks at no more than the
/// first 512 bytes, and accepts 1 to 8 hex digits followed by a non-hex character or the end.
pub fn parse_bind_diagnostic(message: &str) -> Option<AdBindReason> {
    let scan = &message.as_bytes()[..message.len().min(MAX_DIAGNOSTIC_SCAN)];
    let mut i = 0;
    while let Some(pos) = find(&scan[i..], b"data ") {
        let start = i + pos + 5;
        let digits = scan[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if (1..=8).contains(&digits) {
            let text = std::str::from_utf8(&scan[start..start + digits]).ok()?;
            return u32::from_str_radix(text, 16)
                .ok()
                .map(AdBindReason::from_code);
        }
        i = start;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Maps the LDAP result of a simple bind (result code and diagnostic message) to the sign-in
/// outcome. Everything that is not a verdict on the credentials is
/// [`SignInOutcome::DirectoryUnavailable`].
pub fn bind_outcome(result_code: u32, diagnostic: &str) -> SignInOutcome {
    match result_code {
        rc::SUCCESS => SignInOutcome::Success,
        rc::INVALID_CREDENTIALS => parse_bind_diagnostic(diagnostic)
            .map_or(SignInOutcome::InvalidCredentials, AdBindReason::outcome),
        // OpenLDAP's answer to a DN with an empty password: a refusal of the credentials.
        rc::UNWILLING_TO_PERFORM => SignInOutcome::InvalidCredentials,
        // strongerAuthRequired, busy, unavailable, server down, protocol errors, ...: the
        // agent's setup or the directory is at fault, not the user.
        _ => SignInOutcome::DirectoryUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samba(code: &str) -> String {
        format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1")
    }

    #[test]
    fn samba_and_windows_messages() {
        let cases = [
            ("52e", SignInOutcome::InvalidCredentials),
            ("525", SignInOutcome::UnknownUser),
            ("530", SignInOutcome::LogonNotPermitted),
            ("531", SignInOutcome::LogonNotPermitted),
            ("532", SignInOutcome::PasswordExpired),
            ("533", SignInOutcome::AccountDisabled),
            ("701", SignInOutcome::AccountExpired),
            ("773", SignInOutcome::PasswordMustChange),
            ("775", SignInOutcome::AccountLocked),
        ];
        for (code, want) in cases {
            assert_eq!(bind_outcome(49, &samba(code)), want, "data {code}");
            let reason = parse_bind_diagnostic(&samba(code)).expect("parsed");
            assert_eq!(format!("{:x}", reason.code()), code);
        }
        // A Windows Server 2019 message has other DSID/v values.
        let win = "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 775, v4563";
        assert_eq!(bind_outcome(49, win), SignInOutcome::AccountLocked);
    }

    #[test]
    fn infrastructure_errors_are_never_wrong_passwords() {
        for rc in [1, 2, 8, 51, 52, 80, 81, 91] {
            assert_eq!(
                bind_outcome(rc, "data 52e"),
                SignInOutcome::DirectoryUnavailable,
                "rc {rc}"
            );
        }
        assert_eq!(bind_outcome(0, ""), SignInOutcome::Success);
        assert_eq!(bind_outcome(49, ""), SignInOutcome::InvalidCredentials);
        assert_eq!(
            bind_outcome(53, "unauthenticated bind (DN with no password) disallowed"),
            SignInOutcome::InvalidCredentials
        );
    }

    #[test]
    fn odd_messages_do_not_confuse_the_parser() {
        assert_eq!(parse_bind_diagnostic("no code here"), None);
        assert_eq!(
            parse_bind_diagnostic("data , data zz, data 775"),
            Some(AdBindReason::AccountLocked)
        );
        assert_eq!(parse_bind_diagnostic("data 123456789"), None);
        assert_eq!(
            parse_bind_diagnostic("data 1234"),
            Some(AdBindReason::Other(0x1234))
        );
        let long = format!("{}data 775", "x".repeat(600));
        assert_eq!(
            parse_bind_diagnostic(&long),
            None,
            "only the first 512 bytes are scanned"
        );
        assert_eq!(
            parse_bind_diagnostic("é data 773"),
            Some(AdBindReason::PasswordMustChange)
        );
        assert_eq!(parse_bind_diagnostic("data"), None);
    }
}
