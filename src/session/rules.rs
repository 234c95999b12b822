//! Session rules: pure functions of (session, now, limits). No I/O, no clock of their own.
//!
//! These decide whether a session may be used or refreshed and, when not, why. The Redis store's rotation
//! script repeats the refresh condition atomically (`refresh_status`'s `Active | NearExpiry` case) and the
//! store conformance suite checks both agree at every boundary.

use super::{Session, SessionState, LOGIN_TIMEOUT_HOURS};
use crate::config::Config;
use crate::errors::SessionEnd;

/// What the rules need besides the session and the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_refresh_count: u32,
    /// The seed's "approaching expiry" margin (default 300 s).
    pub near_expiry_margin: u64,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Limits {
            max_refresh_count: config.tokens.max_refresh_count,
            near_expiry_margin: config.session.near_expiry_margin_seconds,
        }
    }
}

/// Why a session is or is not usable. Precedence, highest first: `Revoked`, `UpstreamRejected`, `Expired`,
/// `RefreshLimitExceeded` (refresh only), `NearExpiry`, `Active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Active,
    /// Usable, but the IB session ends within the margin.
    NearExpiry,
    /// `now >= sid_expiry`.
    Expired,
    /// `refresh_count` has reached `max_refresh_count`.
    RefreshLimitExceeded,
    Revoked,
    UpstreamRejected,
}

impl SessionStatus {
    pub fn is_usable(self) -> bool {
        matches!(self, SessionStatus::Active | SessionStatus::NearExpiry)
    }

    /// Why an unusable session is over; `None` while it is usable.
    pub fn end(self) -> Option<SessionEnd> {
        match self {
            SessionStatus::Active | SessionStatus::NearExpiry => None,
            SessionStatus::Expired => Some(SessionEnd::Expired),
            SessionStatus::RefreshLimitExceeded => Some(SessionEnd::RefreshLimit),
            SessionStatus::Revoked => Some(SessionEnd::Revoked),
            SessionStatus::UpstreamRejected => Some(SessionEnd::UpstreamRejected),
        }
    }
}

/// The state and time checks every use shares.
fn base_status(session: &Session, now: u64) -> Option<SessionStatus> {
    match session.state {
        SessionState::Revoked => Some(SessionStatus::Revoked),
        SessionState::UpstreamRejected => Some(SessionStatus::UpstreamRejected),
        SessionState::Active if now >= session.sid_expiry => Some(SessionStatus::Expired),
        SessionState::Active => None,
    }
}

fn time_status(session: &Session, now: u64, limits: &Limits) -> SessionStatus {
    if now.saturating_add(limits.near_expiry_margin) >= session.sid_expiry {
        SessionStatus::NearExpiry
    } else {
        SessionStatus::Active
    }
}

/// May a request carrying a valid, unexpired access token of this session go through?
/// (The refresh limit does not apply: it only stops the next refresh.)
pub fn access_status(session: &Session, now: u64, limits: &Limits) -> SessionStatus {
    base_status(session, now).unwrap_or_else(|| time_status(session, now, limits))
}

/// May this session be refreshed now?
///
/// Redis decides a rotation inside one Lua script, so it has its own copy of this rule
/// (`src/store/lua/rotate.lua`). Both run the cases of `REFRESH_RULE` in tests/store_conformance.rs: change the
/// rule here, there and in the table together.
pub fn refresh_status(session: &Session, now: u64, limits: &Limits) -> SessionStatus {
    if let Some(status) = base_status(session, now) {
        return status;
    }
    if session.refresh_count >= limits.max_refresh_count {
        return SessionStatus::RefreshLimitExceeded;
    }
    time_status(session, now, limits)
}

/// `sid_created_at`: IB's `loginTime` when present and plausible, else `now`. Plausible: not in the future,
/// and not older than IB's longest timeout (a login that has just completed cannot have begun before that).
pub fn sid_created_at(login_time: Option<u64>, now: u64) -> u64 {
    let oldest = now.saturating_sub(u64::from(*LOGIN_TIMEOUT_HOURS.end()) * 3_600);
    match login_time {
        Some(t) if t >= oldest && t <= now => t,
        _ => now,
    }
}

/// `logintimeoutperiod` clamped to IB's 1-120 h; the configured default only when IB gave none.
pub fn login_timeout_hours(from_ib: Option<u32>, default_hours: u32) -> u32 {
    let hours = from_ib.unwrap_or(default_hours);
    hours.clamp(*LOGIN_TIMEOUT_HOURS.start(), *LOGIN_TIMEOUT_HOURS.end())
}

/// `sid_expiry = sid_created_at + logintimeoutperiod hours`.
pub fn sid_expiry(sid_created_at: u64, from_ib: Option<u32>, default_hours: u32) -> u64 {
    sid_created_at + u64::from(login_timeout_hours(from_ib, default_hours)) * 3_600
}

/// An access token never outlives its session: `min(now + access_ttl, sid_expiry)`.
pub fn access_token_expiry(session: &Session, now: u64, access_ttl: u64) -> u64 {
    now.saturating_add(access_ttl).min(session.sid_expiry)
}

/// A refresh token lives `refresh_ttl` but never past its session.
pub fn refresh_token_expiry(session: &Session, now: u64, refresh_ttl: u64) -> u64 {
    now.saturating_add(refresh_ttl).min(session.sid_expiry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{IbSid, IbUser, SessionGrant, SessionId};

    const T0: u64 = 1_700_000_000;
    const LIMITS: Limits = Limits { max_refresh_count: 3, near_expiry_margin: 300 };

    fn grant(login_time: Option<u64>, hours: Option<u32>) -> SessionGrant {
        SessionGrant {
            sid: IbSid::new("sid-1"),
            platform_url: "https://acme.intelligencebank.com".into(),
            api_v3_url: "https://lbv3us1.intelligencebank.com".into(),
            ib_client_id: "cid".into(),
            user: IbUser { uuid: "u1".into(), first_name: "A".into(), last_name: "B".into(), email: None, login_time },
            login_timeout_hours: hours,
            oauth_client_id: "client".into(),
            scope: "profile".into(),
            resource: None,
        }
    }

    /// A session created at T0 that lasts one hour.
    fn session() -> Session {
        Session::start(SessionId::generate(), grant(Some(T0), Some(1)), T0, 120)
    }

    #[test]
    fn sid_expiry_counts_logintimeoutperiod_hours_from_login_time() {
        let s = Session::start(SessionId::generate(), grant(Some(T0 - 60), Some(8)), T0, 120);
        assert_eq!(s.sid_created_at, T0 - 60);
        assert_eq!(s.sid_expiry, T0 - 60 + 8 * 3_600);
    }

    #[test]
    fn login_time_in_the_future_is_not_trusted() {
        assert_eq!(sid_created_at(Some(T0 + 1), T0), T0);
        assert_eq!(sid_created_at(Some(T0), T0), T0);
        assert_eq!(sid_created_at(None, T0), T0);
        assert_eq!(sid_created_at(Some(0), T0), T0);
        let oldest = T0 - 120 * 3_600;
        assert_eq!(sid_created_at(Some(oldest), T0), oldest);
        assert_eq!(sid_created_at(Some(oldest - 1), T0), T0);
    }

    #[test]
    fn logintimeoutperiod_is_clamped_to_ib_range_and_default_used_only_when_absent() {
        assert_eq!(login_timeout_hours(Some(0), 24), 1);
        assert_eq!(login_timeout_hours(Some(500), 24), 120);
        assert_eq!(login_timeout_hours(Some(7), 24), 7);
        assert_eq!(login_timeout_hours(None, 24), 24);
    }

    #[test]
    fn access_is_active_until_the_margin_then_near_expiry() {
        let s = session();
        let margin_start = s.sid_expiry - LIMITS.near_expiry_margin;
        assert_eq!(access_status(&s, margin_start - 1, &LIMITS), SessionStatus::Active);
        assert_eq!(access_status(&s, margin_start, &LIMITS), SessionStatus::NearExpiry);
        assert_eq!(access_status(&s, margin_start + 1, &LIMITS), SessionStatus::NearExpiry);
    }

    #[test]
    fn session_expires_exactly_at_sid_expiry() {
        let s = session();
        assert_eq!(access_status(&s, s.sid_expiry - 1, &LIMITS), SessionStatus::NearExpiry);
        assert_eq!(access_status(&s, s.sid_expiry, &LIMITS), SessionStatus::Expired);
        assert_eq!(access_status(&s, s.sid_expiry + 1, &LIMITS), SessionStatus::Expired);
        assert_eq!(refresh_status(&s, s.sid_expiry - 1, &LIMITS), SessionStatus::NearExpiry);
        assert_eq!(refresh_status(&s, s.sid_expiry, &LIMITS), SessionStatus::Expired);
    }

    #[test]
    fn refresh_after_limit_is_rejected_with_refresh_limit_exceeded() {
        let mut s = session();
        s.refresh_count = LIMITS.max_refresh_count - 1;
        assert_eq!(refresh_status(&s, T0, &LIMITS), SessionStatus::Active);
        s.refresh_count = LIMITS.max_refresh_count;
        assert_eq!(refresh_status(&s, T0, &LIMITS), SessionStatus::RefreshLimitExceeded);
        s.refresh_count = LIMITS.max_refresh_count + 1;
        assert_eq!(refresh_status(&s, T0, &LIMITS), SessionStatus::RefreshLimitExceeded);
    }

    #[test]
    fn refresh_limit_does_not_stop_a_valid_access_token() {
        let mut s = session();
        s.refresh_count = LIMITS.max_refresh_count;
        assert_eq!(access_status(&s, T0, &LIMITS), SessionStatus::Active);
    }

    #[test]
    fn expiry_outranks_the_refresh_limit() {
        let mut s = session();
        s.refresh_count = LIMITS.max_refresh_count;
        assert_eq!(refresh_status(&s, s.sid_expiry, &LIMITS), SessionStatus::Expired);
    }

    #[test]
    fn revoked_and_upstream_rejected_outrank_time() {
        let mut s = session();
        s.state = SessionState::Revoked;
        assert_eq!(access_status(&s, T0, &LIMITS), SessionStatus::Revoked);
        assert_eq!(refresh_status(&s, s.sid_expiry + 1, &LIMITS), SessionStatus::Revoked);
        s.state = SessionState::UpstreamRejected;
        assert_eq!(access_status(&s, s.sid_expiry + 1, &LIMITS), SessionStatus::UpstreamRejected);
        assert!(!refresh_status(&s, T0, &LIMITS).is_usable());
    }

    #[test]
    fn access_token_never_outlives_its_session() {
        let s = session();
        assert_eq!(access_token_expiry(&s, T0, 600), T0 + 600);
        assert_eq!(access_token_expiry(&s, s.sid_expiry - 10, 600), s.sid_expiry);
        assert_eq!(refresh_token_expiry(&s, T0, 10 * 3_600), s.sid_expiry);
    }

    #[test]
    fn usable_statuses() {
        assert!(SessionStatus::Active.is_usable());
        assert!(SessionStatus::NearExpiry.is_usable());
        for s in [
            SessionStatus::Expired,
            SessionStatus::RefreshLimitExceeded,
            SessionStatus::Revoked,
            SessionStatus::UpstreamRejected,
        ] {
            assert!(!s.is_usable());
        }
    }
}
