//! The query string of a WS-Federation passive request (`/wsfed?wa=…`), read into what
//! it asks for (fuzzed: `fuzz/fuzz_targets/wsfed_query.rs`). It must never cost more than
//! one pass over a bounded query, nor accept a parameter twice.

/// Largest query string read at all.
pub const MAX_QUERY: usize = 16 * 1024;
/// Largest `wctx` accepted: it travels inside the sealed flow state, in a URL.
pub const MAX_WCTX: usize = 2048;
/// How much of an unsupported `wa` an error repeats.
const SHOWN_ACTION: usize = 40;

/// What a WS-Federation passive request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFedRequest {
    /// `wa=wsignin1.0`: a token for the realm, posted to `wreply` or its default.
    SignIn {
        /// `wtrealm`, the relying party.
        wtrealm: String,
        /// `wreply`, if given (it must then be registered for the realm).
        wreply: Option<String>,
        /// `wctx`, echoed back unchanged (its length is checked by [`check_wctx`]).
        wctx: Option<String>,
    },
    /// `wa=wsignout1.0` or `wa=wsignoutcleanup1.0`.
    SignOut {
        /// `wreply`: where to go afterwards, if it is a registered reply URL.
        wreply: Option<String>,
    },
}

/// Why a WS-Federation query was refused. Each is the requester's fault; the `Display`
/// is the sentence the error page shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsFedQueryError {
    /// The query is longer than [`MAX_QUERY`].
    #[error("The request is too large.")]
    TooLarge,
    /// One of `wa`, `wtrealm`, `wreply`, `wctx` appears twice: which one counts would be
    /// a guess, and two readers could guess differently.
    #[error("The parameter {0} appears more than once.")]
    Repeated(&'static str),
    /// No `wa`.
    #[error("wa is missing.")]
    MissingAction,
    /// A `wa` other than sign-in and sign-out (its first characters).
    #[error("wa={0:?} is not supported (wsignin1.0 and wsignout1.0 are).")]
    UnsupportedAction(String),
    /// A sign-in without `wtrealm`.
    #[error("wtrealm is missing: which application is this sign-in for?")]
    MissingRealm,
    /// A `wctx` longer than [`MAX_WCTX`] bytes.
    #[error("wctx is {0} bytes long; at most {MAX_WCTX} are accepted.")]
    WctxTooLong(usize),
}

/// Reads a `/wsfed` query string. Parameters other than `wa`, `wtrealm`, `wreply` and
/// `wctx` (such as `whr`, the home realm: there is one here) are ignored, repeated or not.
/// The length of `wctx` is checked apart, by [`check_wctx`], once the realm and reply URL
/// are known to be registered, so that an unregistered realm is what such a request is
/// told first.
pub fn parse_query(q: &str) -> Result<WsFedRequest, WsFedQueryError> {
    if q.len() > MAX_QUERY {
        return Err(WsFedQueryError::TooLarge);
    }
    let mut wa = None;
    let mut wtrealm = None;
    let mut wreply = None;
    let mut wctx = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let (name, slot) = match &*k {
            "wa" => ("wa", &mut wa),
            "wtrealm" => ("wtrealm", &mut wtrealm),
            "wreply" => ("wreply", &mut wreply),
            "wctx" => ("wctx", &mut wctx),
            _ => continue,
        };
        if slot.is_some() {
            return Err(WsFedQueryError::Repeated(name));
        }
        *slot = Some(v.into_owned());
    }
    match wa.as_deref() {
        Some("wsignin1.0") => Ok(WsFedRequest::SignIn {
            wtrealm: wtrealm.ok_or(WsFedQueryError::MissingRealm)?,
            wreply,
            wctx,
        }),
        Some("wsignout1.0" | "wsignoutcleanup1.0") => Ok(WsFedRequest::SignOut { wreply }),
        Some(other) => Err(WsFedQueryError::UnsupportedAction(
            other.chars().take(SHOWN_ACTION).collect(),
        )),
        None => Err(WsFedQueryError::MissingAction),
    }
}

/// Refuses a `wctx` longer than [`MAX_WCTX`] bytes.
pub fn check_wctx(wctx: Option<&str>) -> Result<(), WsFedQueryError> {
    match wctx.map(str::len).filter(|n| *n > MAX_WCTX) {
        Some(n) => Err(WsFedQueryError::WctxTooLong(n)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in(realm: &str, reply: Option<&str>, ctx: Option<&str>) -> WsFedRequest {
        WsFedRequest::SignIn {
            wtrealm: realm.into(),
            wreply: reply.map(Into::into),
            wctx: ctx.map(Into::into),
        }
    }

    #[test]
    fn a_sign_in_yields_its_decoded_realm_reply_and_context() {
        assert_eq!(
            parse_query(
                "wa=wsignin1.0&wtrealm=urn%3Afederation%3AMicrosoftOnline\
                 &wreply=https%3A%2F%2Frp.test%2Fa%3Fb%3Dc&wctx=x+y%26z"
            ),
            Ok(sign_in(
                "urn:federation:MicrosoftOnline",
                Some("https://rp.test/a?b=c"),
                Some("x y&z")
            ))
        );
        // The optional parameters stay absent (an empty value is a value).
        assert_eq!(
            parse_query("wtrealm=r&wa=wsignin1.0"),
            Ok(sign_in("r", None, None))
        );
        assert_eq!(
            parse_query("wa=wsignin1.0&wtrealm=r&wctx="),
            Ok(sign_in("r", None, Some("")))
        );
    }

    #[test]
    fn both_sign_out_actions_yield_a_sign_out_with_its_reply() {
        for wa in ["wsignout1.0", "wsignoutcleanup1.0"] {
            assert_eq!(
                parse_query(&format!(
                    "wa={wa}&wreply=https%3A%2F%2Frp.test%2F&wtrealm=r"
                )),
                Ok(WsFedRequest::SignOut {
                    wreply: Some("https://rp.test/".into())
                }),
                "{wa}"
            );
        }
        assert_eq!(
            parse_query("wa=wsignout1.0"),
            Ok(WsFedRequest::SignOut { wreply: None })
        );
    }

    #[test]
    fn each_of_the_four_parameters_twice_is_refused_by_name_and_other_parameters_are_ignored() {
        for (q, name) in [
            ("wa=wsignin1.0&wa=wsignout1.0&wtrealm=r", "wa"),
            ("wa=wsignin1.0&wtrealm=r&wtrealm=s", "wtrealm"),
            ("wa=wsignin1.0&wtrealm=r&wreply=a&wreply=a", "wreply"),
            ("wa=wsignin1.0&wtrealm=r&wctx=&wctx=", "wctx"),
            // Refused even when the action would not use it.
            ("wa=wsignout1.0&wctx=a&wctx=b", "wctx"),
        ] {
            assert_eq!(parse_query(q), Err(WsFedQueryError::Repeated(name)), "{q}");
        }
        assert_eq!(
            WsFedQueryError::Repeated("wtrealm").to_string(),
            "The parameter wtrealm appears more than once."
        );
        // Names are case-sensitive, and whr (home realm) is not read.
        assert_eq!(
            parse_query("wa=wsignin1.0&wtrealm=r&WTREALM=s&whr=a&whr=b&x"),
            Ok(sign_in("r", None, None))
        );
    }

    #[test]
    fn a_missing_or_unknown_action_and_a_sign_in_without_realm_are_refused_precisely() {
        assert_eq!(parse_query(""), Err(WsFedQueryError::MissingAction));
        assert_eq!(
            parse_query("wtrealm=r"),
            Err(WsFedQueryError::MissingAction)
        );
        assert_eq!(
            parse_query("wa=wsignin1.0&wreply=x"),
            Err(WsFedQueryError::MissingRealm)
        );
        assert_eq!(
            parse_query("wa=WSIGNIN1.0&wtrealm=r"),
            Err(WsFedQueryError::UnsupportedAction("WSIGNIN1.0".into()))
        );
        // A long action is shown by its first 40 characters only.
        let long = "é".repeat(100);
        let Err(WsFedQueryError::UnsupportedAction(shown)) =
            parse_query(&format!("wa={long}&wtrealm=r"))
        else {
            panic!("refused as unsupported");
        };
        assert_eq!(shown, "é".repeat(40));
        assert_eq!(
            WsFedQueryError::UnsupportedAction("wattr1.0".into()).to_string(),
            "wa=\"wattr1.0\" is not supported (wsignin1.0 and wsignout1.0 are)."
        );
        assert_eq!(
            WsFedQueryError::MissingRealm.to_string(),
            "wtrealm is missing: which application is this sign-in for?"
        );
    }

    #[test]
    fn a_query_past_its_bound_is_refused_before_it_is_read_and_one_at_it_is_read() {
        let pad = |n: usize| format!("wa=wsignout1.0&p={}", "a".repeat(n - 17));
        assert_eq!(pad(MAX_QUERY).len(), MAX_QUERY);
        assert_eq!(
            parse_query(&pad(MAX_QUERY)),
            Ok(WsFedRequest::SignOut { wreply: None })
        );
        assert_eq!(
            parse_query(&pad(MAX_QUERY + 1)),
            Err(WsFedQueryError::TooLarge)
        );
        assert_eq!(
            WsFedQueryError::TooLarge.to_string(),
            "The request is too large."
        );
    }

    #[test]
    fn wctx_is_accepted_up_to_its_bound_in_bytes() {
        assert_eq!(check_wctx(None), Ok(()));
        assert_eq!(check_wctx(Some(&"a".repeat(MAX_WCTX))), Ok(()));
        assert_eq!(
            check_wctx(Some(&"a".repeat(MAX_WCTX + 1))),
            Err(WsFedQueryError::WctxTooLong(MAX_WCTX + 1))
        );
        // Bytes, not characters: 1,025 two-byte characters are 2,050 bytes.
        assert_eq!(
            check_wctx(Some(&"é".repeat(1025))),
            Err(WsFedQueryError::WctxTooLong(2050))
        );
        assert_eq!(
            WsFedQueryError::WctxTooLong(2050).to_string(),
            "wctx is 2050 bytes long; at most 2048 are accepted."
        );
    }
}
