//! Rate limits in fixed one-minute windows aligned to the clock: per session (default 600/min, IB's
//! documented per-user quota, so the gateway answers 429 before IB would) and per client IP for traffic
//! without a valid session; and client registrations (RFC 7591) per client IP per hour.
//!
//! Local backend: pingora-limits counters in this process (N instances admit up to N times the limit).
//! Redis backend: the per-session count is taken in the same store round trip as the session look-up
//! (`TokenStore::get_session_metered`), so it is exact across instances.
//! Approximate backend: counted here ([`SharedCounts`]) and added to the same Redis counters every
//! `sync_interval_ms` by a background task, which learns the other instances' counts in the same step: no round
//! trip per request, and an overshoot bounded by what the other instances admit in one interval.

use parking_lot::Mutex;
use pingora_limits::rate::Rate;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{RateLimitBackend, RateLimitConfig};
use crate::errors::{ApiError, LimitScope};

pub const WINDOW_SECONDS: u64 = 60;

/// Slots per hash row of the count-min sketch: enough that many concurrent sessions do not inflate counts.
const SESSION_SLOTS: usize = 1 << 16;

/// The window a time falls in, and the seconds until it ends.
pub fn window(now: u64) -> (u64, u64) {
    (now / WINDOW_SECONDS, WINDOW_SECONDS - now % WINDOW_SECONDS)
}

/// What a limit said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub limit: u32,
    pub remaining: u32,
    pub reset: u64,
}

impl Verdict {
    fn of(scope: LimitScope, limit: u32, count: u64, reset: u64) -> Result<Verdict, ApiError> {
        if count > u64::from(limit) {
            return Err(ApiError::RateLimited { limit, retry_after: reset, scope });
        }
        Ok(Verdict { limit, remaining: limit - count as u32, reset })
    }

    /// The `RateLimit-*` headers (numbers written straight into header values: this is on every proxied
    /// response).
    pub fn headers(&self) -> [(&'static str, http::HeaderValue); 3] {
        [
            ("RateLimit-Limit", http::HeaderValue::from(self.limit)),
            ("RateLimit-Remaining", http::HeaderValue::from(self.remaining)),
            ("RateLimit-Reset", http::HeaderValue::from(self.reset)),
        ]
    }
}

/// The limits and their counters. A reload makes new limits over the same counters
/// ([`RateLimits::reconfigured`]): no count is lost.
pub struct RateLimits {
    config: RateLimitConfig,
    sessions: Arc<Rate>,
    ips: Arc<Rate>,
    shared: Arc<SharedCounts>,
    /// Registrations per client IP, over an hour (this instance's count).
    registrations: Arc<Rate>,
}

/// The window of the registration limit.
const REGISTRATION_WINDOW: Duration = Duration::from_secs(3_600);

/// One session's count in the current window, as this instance knows it.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// The deployment's count as of this instance's last sync (its own requests included, up to then).
    synced: u64,
    /// This instance's requests since then, not yet added to the store.
    pending: u64,
    /// In the queue of the next sync.
    queued: bool,
}

/// Per-session counts of the approximate backend: exact for this instance's requests, and the other instances'
/// as of the last sync. The count a verdict uses is never above the deployment's true count (so no session is
/// refused early); it is below it by what the others admitted since the last sync.
///
/// Bounded by one window's sessions: the first count of a new window drops the tallies of earlier ones (their
/// counters expire in the store), whether or not a sync has run since. A sync costs what was counted since the
/// last one, not the window's sessions: a session enters the sync queue with its first request after a sync.
#[derive(Debug, Default)]
pub struct SharedCounts {
    tallies: Mutex<Tallies>,
}

#[derive(Debug, Default)]
struct Tallies {
    /// The newest window counted; tallies of earlier windows are gone.
    window: u64,
    by_session: HashMap<Arc<str>, Tally>,
    /// Sessions with requests not yet sent, each once.
    queued: Vec<Arc<str>>,
}

impl Tallies {
    /// Moves on to `window` if it is newer, dropping the tallies of the windows before it.
    fn advance(&mut self, window: u64) {
        if window > self.window {
            self.window = window;
            self.by_session.clear();
            self.queued.clear();
        }
    }

    /// Puts a session with pending requests in the sync queue, unless it is there already.
    fn queue(&mut self, session_id: &str) {
        let Some((id, tally)) = self.by_session.get_key_value(session_id) else { return };
        if !tally.queued && tally.pending > 0 {
            let id = id.clone();
            self.by_session.get_mut(session_id).expect("present").queued = true;
            self.queued.push(id);
        }
    }
}

impl SharedCounts {
    /// Counts one request of `session_id` in `window`; the count so far, this one included. A request whose
    /// window is older than the newest one counted (its clock was read just before the minute turned) counts in
    /// the newest.
    pub fn count(&self, session_id: &str, window: u64) -> u64 {
        let mut guard = self.tallies.lock();
        let tallies = &mut *guard;
        tallies.advance(window);
        if let Some(tally) = tallies.by_session.get_mut(session_id) {
            tally.pending += 1;
            let (count, queued) = (tally.synced + tally.pending, tally.queued);
            if !queued {
                tallies.queue(session_id);
            }
            return count;
        }
        let id: Arc<str> = Arc::from(session_id);
        tallies.by_session.insert(id.clone(), Tally { synced: 0, pending: 1, queued: true });
        tallies.queued.push(id);
        1
    }

    /// What to add to the store now: the window, and the sessions of it with requests since their last sync
    /// with how many (a session this instance does not serve costs no sync; it learns the others' counts with
    /// its next request's sync). Tallies of earlier windows are dropped (their counters expire in the store).
    pub fn to_sync(&self, window: u64) -> (u64, Vec<(Arc<str>, u64)>) {
        let mut guard = self.tallies.lock();
        let tallies = &mut *guard;
        tallies.advance(window);
        let queued = std::mem::take(&mut tallies.queued);
        let mut pending = Vec::with_capacity(queued.len());
        for id in queued {
            if let Some(tally) = tallies.by_session.get_mut(&*id) {
                tally.queued = false;
                if tally.pending > 0 {
                    pending.push((id, tally.pending));
                }
            }
        }
        (tallies.window, pending)
    }

    /// A sync added `sent` of each listed tally's pending requests, and the store's counter is now `total`.
    /// Requests counted meanwhile stay pending (and queued). Nothing happens if the window has moved on.
    pub fn synced<'a>(&self, window: u64, results: impl IntoIterator<Item = (&'a str, u64, u64)>) {
        let mut tallies = self.tallies.lock();
        if tallies.window != window {
            return;
        }
        for (id, sent, total) in results {
            if let Some(tally) = tallies.by_session.get_mut(id) {
                tally.pending = tally.pending.saturating_sub(sent);
                tally.synced = tally.synced.max(total);
            }
        }
    }

    /// A sync could not add these sessions' requests: they go back in the queue for the next one.
    pub fn unsent<'a>(&self, window: u64, ids: impl IntoIterator<Item = &'a str>) {
        let mut tallies = self.tallies.lock();
        if tallies.window != window {
            return;
        }
        for id in ids {
            tallies.queue(id);
        }
    }
}

/// Counts an event for `key` in the clock-aligned window: the key carries the window, and pingora-limits
/// keeps the current and the previous interval, which together cover the whole window.
fn count<K: Hash>(rate: &Rate, key: &K) -> u64 {
    let current = rate.observe(key, 1).max(0) as u64;
    let previous = (rate.rate(key) * WINDOW_SECONDS as f64).round() as u64;
    current + previous
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        let interval = Duration::from_secs(WINDOW_SECONDS);
        RateLimits {
            config: config.clone(),
            sessions: Arc::new(Rate::new_with_estimator_config(interval, 4, SESSION_SLOTS)),
            ips: Arc::new(Rate::new_with_estimator_config(interval, 4, SESSION_SLOTS)),
            shared: Arc::new(SharedCounts::default()),
            registrations: Arc::new(Rate::new(REGISTRATION_WINDOW)),
        }
    }

    /// New limits that count on with this one's counters (a live reload: this window's counts stay).
    pub fn reconfigured(&self, config: &RateLimitConfig) -> Self {
        RateLimits {
            config: config.clone(),
            sessions: self.sessions.clone(),
            ips: self.ips.clone(),
            shared: self.shared.clone(),
            registrations: self.registrations.clone(),
        }
    }

    /// Is the per-session count taken by the store (exact across instances)?
    pub fn counted_by_store(&self) -> bool {
        self.config.backend == RateLimitBackend::Redis && self.config.per_session_per_minute > 0
    }

    /// The approximate backend's counts, for the task that syncs them with the store (`None` with another
    /// backend). There are counts to sync only while `per_session_per_minute` is above 0, but the task runs
    /// with the backend whatever the limit: a live reload may set one.
    pub fn shared_counts(&self) -> Option<Arc<SharedCounts>> {
        (self.config.backend == RateLimitBackend::Approximate).then(|| self.shared.clone())
    }

    /// The per-session verdict. `store_count` is the store's count for this window when
    /// [`Self::counted_by_store`], else `None` and the local counter is used.
    pub fn session(&self, session_id: &str, store_count: Option<u64>, now: u64) -> Result<Option<Verdict>, ApiError> {
        let limit = self.config.per_session_per_minute;
        if limit == 0 {
            return Ok(None);
        }
        let (window, reset) = window(now);
        let count = match (store_count, self.config.backend) {
            (Some(count), _) => count,
            (None, RateLimitBackend::Approximate) => self.shared.count(session_id, window),
            (None, _) => count(&self.sessions, &(session_id, window)),
        };
        Verdict::of(LimitScope::Session, limit, count, reset).map(Some)
    }

    /// The per-IP verdict for traffic without a valid session.
    pub fn ip(&self, ip: Option<IpAddr>, now: u64) -> Result<(), ApiError> {
        let limit = self.config.per_ip_per_minute;
        let Some(ip) = ip.filter(|_| limit > 0) else {
            return Ok(());
        };
        let (window, reset) = window(now);
        Verdict::of(LimitScope::Ip, limit, count(&self.ips, &(client_key(ip), window)), reset).map(|_| ())
    }
}

impl RateLimits {
    /// Counts one client registration from `ip` and refuses it past `per_hour` (`oauth.registration.
    /// per_ip_per_hour`; 0: no limit) with 429 and `Retry-After` of the hour.
    pub fn registration(&self, ip: Option<IpAddr>, per_hour: u32) -> Result<(), ApiError> {
        let Some(ip) = ip.filter(|_| per_hour > 0) else { return Ok(()) };
        let seen = self.registrations.observe(&client_key(ip), 1);
        if seen > i64::from(per_hour) as isize {
            return Err(ApiError::RateLimited {
                limit: per_hour,
                retry_after: REGISTRATION_WINDOW.as_secs(),
                scope: LimitScope::Registration,
            });
        }
        Ok(())
    }
}

/// What a per-IP limit counts by: the IPv4 address, or the IPv6 /64 (one host owns a whole /64, so counting
/// single IPv6 addresses would be no limit at all). An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_the_minute() {
        assert_eq!(window(120), (2, 60));
        assert_eq!(window(179), (2, 1));
    }

    #[test]
    fn the_request_after_the_limit_is_refused_with_retry_after() {
        let limits = RateLimits::new(&RateLimitConfig { per_session_per_minute: 3, ..RateLimitConfig::default() });
        let now = 1_000_000_040;
        for remaining in [2, 1, 0] {
            assert_eq!(limits.session("s", None, now).unwrap().unwrap().remaining, remaining);
        }
        assert_eq!(
            limits.session("s", None, now),
            Err(ApiError::RateLimited { limit: 3, retry_after: 40, scope: LimitScope::Session })
        );
        // Another session has its own budget, and the next window starts afresh.
        assert!(limits.session("t", None, now).is_ok());
        assert!(limits.session("s", None, now + 40).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let key = |text: &str| client_key(text.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        let limits = RateLimits::new(&RateLimitConfig { per_ip_per_minute: 2, ..RateLimitConfig::default() });
        let now = 1_000_000_020;
        for host in ["2001:db8::1", "2001:db8::2"] {
            assert!(limits.ip(Some(host.parse().unwrap()), now).is_ok());
        }
        assert!(limits.ip(Some("2001:db8::3".parse().unwrap()), now).is_err(), "the same /64");
        assert!(limits.ip(Some("2001:db8:0:1::3".parse().unwrap()), now).is_ok(), "another /64");
    }

    #[test]
    fn reconfigured_limits_keep_the_counts_of_the_window() {
        let limits = RateLimits::new(&RateLimitConfig { per_session_per_minute: 3, ..RateLimitConfig::default() });
        let now = 1_000_000_020;
        assert!(limits.session("s", None, now).is_ok());
        assert!(limits.session("s", None, now).is_ok());
        let lowered = limits.reconfigured(&RateLimitConfig { per_session_per_minute: 2, ..RateLimitConfig::default() });
        assert!(lowered.session("s", None, now).is_err(), "the two requests before the reload still count");
        let raised =
            lowered.reconfigured(&RateLimitConfig { per_session_per_minute: 10, ..RateLimitConfig::default() });
        assert_eq!(raised.session("s", None, now).unwrap().unwrap().remaining, 6);
    }

    #[test]
    fn approximate_counts_add_the_others_as_of_the_last_sync_and_never_lose_a_request() {
        let config = RateLimitConfig {
            backend: RateLimitBackend::Approximate,
            per_session_per_minute: 5,
            ..RateLimitConfig::default()
        };
        let limits = RateLimits::new(&config);
        let shared = limits.shared_counts().expect("approximate");
        let now = 1_000_000_020;
        let (window, _) = window(now);
        let sent = |(w, pending): (u64, Vec<(Arc<str>, u64)>)| {
            assert_eq!(w, window);
            pending.into_iter().map(|(id, n)| (id.to_string(), n)).collect::<Vec<_>>()
        };
        assert_eq!(limits.session("s", None, now).unwrap().unwrap().remaining, 4);
        assert_eq!(limits.session("s", None, now).unwrap().unwrap().remaining, 3);
        // The sync sends the 2 pending; meanwhile a third request arrives; the store says 4 (others sent 2).
        assert_eq!(sent(shared.to_sync(window)), [("s".to_string(), 2)]);
        assert_eq!(limits.session("s", None, now).unwrap().unwrap().remaining, 2, "local count before the sync");
        shared.synced(window, [("s", 2, 4)]);
        assert_eq!(sent(shared.to_sync(window)), [("s".to_string(), 1)], "the third is still pending");
        // 4 known + 1 pending + this one = 6 > 5.
        assert!(limits.session("s", None, now).is_err());
        shared.synced(window, [("s", 2, 9)]);
        assert!(sent(shared.to_sync(window)).is_empty(), "nothing pending: no sync");
        // An old window's tally is dropped at the next sync.
        assert!(shared.to_sync(window + 1).1.is_empty());
        assert_eq!(limits.session("s", None, now + 60).unwrap().unwrap().remaining, 4, "a new window");
        // Local and exact backends have none.
        assert!(RateLimits::new(&RateLimitConfig::default()).shared_counts().is_none());
    }

    #[test]
    fn a_sync_sends_only_the_sessions_counted_since_the_last_one_and_a_failed_send_is_sent_again() {
        let shared = SharedCounts::default();
        for session in ["a", "b", "c"] {
            shared.count(session, 7);
        }
        let (_, first) = shared.to_sync(7);
        assert_eq!(first.len(), 3);
        shared.synced(7, first.iter().map(|(id, n)| (&**id, *n, *n)));
        shared.count("b", 7);
        shared.count("b", 7);
        let (_, second) = shared.to_sync(7);
        assert_eq!(second.iter().map(|(id, n)| (&**id, *n)).collect::<Vec<_>>(), [("b", 2)], "b once, with both");
        shared.unsent(7, ["b"]);
        shared.count("b", 7);
        let (_, again) = shared.to_sync(7);
        assert_eq!(again.iter().map(|(id, n)| (&**id, *n)).collect::<Vec<_>>(), [("b", 3)], "kept, not doubled");
        assert_eq!(shared.count("b", 7), 5, "1 synced + 3 pending + this one");
        // A request stamped with the window before the newest counts in the newest.
        shared.count("d", 8);
        assert_eq!(shared.count("d", 7), 2);
        shared.synced(7, [("d", 2, 100)]);
        assert_eq!(shared.count("d", 8), 3, "a sync of an older window changes nothing");
    }

    #[test]
    fn approximate_tallies_hold_one_windows_sessions_even_when_no_sync_runs() {
        let shared = SharedCounts::default();
        for session in ["a", "b", "c"] {
            shared.count(session, 7);
        }
        shared.count("d", 8);
        let tallies = shared.tallies.lock();
        let kept: Vec<&str> = tallies.by_session.keys().map(|id| &**id).collect();
        assert_eq!(kept, ["d"], "the first count of window 8 dropped window 7's tallies");
        assert_eq!(tallies.queued.len(), 1);
    }

    #[test]
    fn the_approximate_backend_has_counts_to_sync_even_while_its_limit_is_off() {
        let config = RateLimitConfig { backend: RateLimitBackend::Approximate, ..RateLimitConfig::default() };
        let off = RateLimits::new(&RateLimitConfig { per_session_per_minute: 0, ..config.clone() });
        assert!(off.shared_counts().is_some(), "the sync task starts with the backend, whatever the limit");
        assert_eq!(off.session("s", None, 60), Ok(None), "no limit, nothing counted");
        let on = off.reconfigured(&RateLimitConfig { per_session_per_minute: 5, ..config });
        assert!(Arc::ptr_eq(&off.shared_counts().unwrap(), &on.shared_counts().unwrap()), "the same counts");
    }

    #[test]
    fn registrations_are_limited_per_client_address_and_hour_and_zero_means_no_limit() {
        let limits = RateLimits::new(&RateLimitConfig::default());
        let ip = Some("192.0.2.1".parse().unwrap());
        assert!(limits.registration(ip, 2).is_ok());
        assert!(limits.registration(ip, 2).is_ok());
        assert_eq!(
            limits.registration(ip, 2),
            Err(ApiError::RateLimited { limit: 2, retry_after: 3_600, scope: LimitScope::Registration })
        );
        assert!(limits.registration(Some("192.0.2.2".parse().unwrap()), 2).is_ok(), "another address");
        assert!(limits.registration(ip, 0).is_ok(), "0: no limit");
        assert!(limits.registration(None, 2).is_ok(), "no address known");
    }

    #[test]
    fn store_counts_are_used_when_given() {
        let limits = RateLimits::new(&RateLimitConfig { per_session_per_minute: 5, ..RateLimitConfig::default() });
        assert!(limits.session("s", Some(5), 60).is_ok());
        assert!(limits.session("s", Some(6), 60).is_err());
    }
}
