//! The `[server]` caps and timeouts, the anonymous sign-in budget and the lockout policy:
//! the settings whose checks involve more than one key or a range, kept apart from the
//! file's shape in `mod.rs`.

use std::time::Duration;

use causeway_config::ConfigError;
use causeway_federation::hub::lockout::LockoutPolicy;
use toml::Spanned;

use super::{ConnectionSettings, Raw, RawServer, RawThrottle};
/// Reads an optional duration setting, or its default.
type DurationField<'a> =
    &'a dyn Fn(&Option<Spanned<String>>, Duration) -> Result<Duration, ConfigError>;

/// Validates `[server]`'s timeouts and caps.
pub(super) fn connection_settings(
    raw: &RawServer,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    dur: DurationField<'_>,
) -> Result<ConnectionSettings, ConfigError> {
    let d = ConnectionSettings::default();
    let within = |v: &Option<Spanned<String>>,
                  default: Duration,
                  name: &str,
                  max: (Duration, &str)|
     -> Result<Duration, ConfigError> {
        let t = dur(v, default)?;
        if t < Duration::from_secs(1) || t > max.0 {
            let s = v.as_ref().map_or(0..0, Spanned::span);
            return Err(at(
                s,
                format!("server.{name} must be between 1s and {}", max.1),
            ));
        }
        Ok(t)
    };
    let count =
        |v: &Option<Spanned<i64>>, name: &str, max: i64| -> Result<Option<usize>, ConfigError> {
            match v {
                None => Ok(None),
                Some(n) if (1..=max).contains(n.get_ref()) => {
                    Ok(Some(usize::try_from(*n.get_ref()).unwrap_or(usize::MAX)))
                }
                Some(n) => Err(at(
                    n.span(),
                    format!("server.{name} must be between 1 and {max}"),
                )),
            }
        };
    let s = ConnectionSettings {
        handshake_timeout: within(
            &raw.handshake_timeout,
            d.handshake_timeout,
            "handshake_timeout",
            (Duration::from_secs(300), "5m"),
        )?,
        header_read_timeout: within(
            &raw.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
            (Duration::from_secs(300), "5m"),
        )?,
        idle_timeout: within(
            &raw.idle_timeout,
            d.idle_timeout,
            "idle_timeout",
            (Duration::from_secs(3600), "1h"),
        )?,
        max_connections: count(&raw.max_connections, "max_connections", 1_000_000)?,
        max_connections_per_source: count(
            &raw.max_connections_per_source,
            "max_connections_per_source",
            1_000_000,
        )?
        .unwrap_or(d.max_connections_per_source),
        max_agent_channels: count(&raw.max_agent_channels, "max_agent_channels", 100_000)?,
    };
    if let (Some(max), Some(per)) = (s.max_connections, &raw.max_connections_per_source) {
        if s.max_connections_per_source > max {
            return Err(at(
                per.span(),
                format!("server.max_connections_per_source cannot exceed server.max_connections ({max})"),
            ));
        }
    }
    Ok(s)
}

/// Reads an optional duration setting, or gives the default.
type DurationSetting<'a> =
    dyn Fn(&Option<Spanned<String>>, Duration) -> Result<Duration, ConfigError> + 'a;

/// Sign-in requests without a session per source: 50 a second, in bursts of 200.
pub(crate) const DEFAULT_ANONYMOUS_BUDGET: (u32, u32) = (50, 200);

/// `[throttle]`'s budget for sign-in work without a session (0 per second: off).
pub(super) fn anonymous_budget(
    t: &RawThrottle,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
) -> Result<(u32, u32), ConfigError> {
    let (d_rate, d_burst) = DEFAULT_ANONYMOUS_BUDGET;
    let rate = t
        .anonymous_per_source_per_second
        .as_ref()
        .map_or(d_rate, |v| *v.get_ref());
    // Unless given, the burst is four seconds' worth (at least 20).
    let burst = t.anonymous_burst.as_ref().map_or(
        if rate == d_rate {
            d_burst
        } else {
            rate.saturating_mul(4).max(20)
        },
        |v| *v.get_ref(),
    );
    if rate > 1_000_000 {
        let span = t
            .anonymous_per_source_per_second
            .as_ref()
            .map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "throttle.anonymous_per_source_per_second must be at most 1000000 (0 turns it off)"
                .into(),
        ));
    }
    if rate > 0 && burst == 0 {
        let span = t.anonymous_burst.as_ref().map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "throttle.anonymous_burst must be at least 1".into(),
        ));
    }
    Ok((rate, burst))
}

/// `[lockout]` and `[throttle]` over the defaults, checked together (the error points at
/// the first setting given, or the section when only defaults are involved).
pub(super) fn lockout_policy(
    raw: &Raw,
    at: &dyn Fn(std::ops::Range<usize>, String) -> ConfigError,
    dur: &DurationSetting<'_>,
) -> Result<LockoutPolicy, ConfigError> {
    let (l, t) = (&raw.lockout, &raw.throttle);
    let d = LockoutPolicy::default();
    let threshold = l.threshold.as_ref().map_or(d.threshold, |v| *v.get_ref());
    let p = LockoutPolicy {
        threshold,
        // Unless given, one guess above the threshold for familiar places.
        directory_threshold: l
            .directory_threshold
            .as_ref()
            .map_or(threshold.saturating_add(1), |v| *v.get_ref()),
        window: dur(&l.window, d.window)?,
        lock_for: dur(&l.lock_for, d.lock_for)?,
        max_lock: dur(&l.max_lock, d.max_lock)?,
        familiar_locations: l
            .familiar_locations
            .as_ref()
            .map_or(d.familiar_locations, |v| *v.get_ref()),
        per_source_failures_per_minute: t
            .per_source_failures_per_minute
            .as_ref()
            .map_or(d.per_source_failures_per_minute, |v| *v.get_ref()),
        ..d
    };
    if let Err(m) = p.validate() {
        let span = [
            l.threshold.as_ref().map(Spanned::span),
            l.directory_threshold.as_ref().map(Spanned::span),
            l.window.as_ref().map(Spanned::span),
            l.lock_for.as_ref().map(Spanned::span),
            l.max_lock.as_ref().map(Spanned::span),
            t.per_source_failures_per_minute.as_ref().map(Spanned::span),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(0..0);
        return Err(at(span, m));
    }
    if p.familiar_locations == 0 || p.familiar_locations > 1024 {
        let span = l.familiar_locations.as_ref().map_or(0..0, Spanned::span);
        return Err(at(
            span,
            "lockout.familiar_locations must be between 1 and 1024".into(),
        ));
    }
    Ok(p)
}
