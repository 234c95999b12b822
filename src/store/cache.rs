//! The Redis store's local session cache: a hot session is read from Redis once, not on every request, and
//! Redis itself keeps the copy exact.
//!
//! Every script that changes a session (ending it, revoking it, rotating its refresh token, detecting reuse)
//! publishes the session's key on the invalidation channel in the same atomic step; every instance subscribes
//! and drops that session. Three rules keep a copy from outliving a change:
//! - A copy is kept only while the subscription is up. When it drops, the whole cache is flushed and every read
//!   goes to Redis until the subscription is back (a change published meanwhile is never missed).
//! - A read that raced a change is not kept: each invalidation (and each subscription change) moves an epoch,
//!   and a read is stored only if the epoch did not move while it was in flight.
//! - A copy is dropped `max_age` after its Redis read *began*, whatever happens, bounding the damage of an
//!   invalidation that is lost without the connection noticing (a silent network partition). Counting from the
//!   start of the read, not from when its answer was stored, keeps that bound at `max_age` however slow Redis is.
//!
//! The map is hand-written rather than a cache crate: `moka` in its place was measured slower on the
//! hit (`benches/hot_paths.rs`, `session_cache_hit` 160 ns here, 337 ns with moka), see docs/operations.md.
//!
//! Only sessions are cached, never their absence, and nothing here changes what Redis holds.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::session::{Session, SessionId};

/// A read in flight: when it began, and what the epoch was then (`None`: the cache is not live, keep nothing).
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    epoch: Option<u64>,
    began: Instant,
}

pub struct SessionCache {
    /// Each copy with the moment the Redis read that found it began.
    entries: RwLock<HashMap<SessionId, (Session, Instant)>>,
    max_entries: usize,
    max_age: Duration,
    epoch: AtomicU64,
    live: AtomicBool,
}

impl SessionCache {
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        SessionCache {
            entries: RwLock::new(HashMap::new()),
            max_entries,
            max_age,
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
        }
    }

    /// A copy whose read began less than `max_age` ago, while the subscription is up.
    pub fn get(&self, id: &SessionId) -> Option<Session> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read();
        let (session, read_began) = entries.get(id)?;
        (read_began.elapsed() < self.max_age).then(|| session.clone())
    }

    /// Call just before reading a session from Redis; pass the ticket to [`Self::keep`] with what the read
    /// found.
    pub fn begin_read(&self) -> ReadTicket {
        // The epoch is read before `live`: a subscription that drops in between moves the epoch, so `keep`
        // refuses the read.
        let epoch = self.epoch.load(Ordering::Acquire);
        ReadTicket { epoch: self.live.load(Ordering::Acquire).then_some(epoch), began: Instant::now() }
    }

    /// Keeps what a read found, unless the cache was not live, anything was invalidated since the read began,
    /// or it began `max_age` ago already.
    pub fn keep(&self, ticket: ReadTicket, session: &Session) {
        let Some(epoch) = ticket.epoch else { return };
        if ticket.began.elapsed() >= self.max_age {
            return;
        }
        let mut entries = self.entries.write();
        // Checked under the write lock: an invalidation moves the epoch before it takes this lock.
        if self.epoch.load(Ordering::Acquire) != epoch || !self.live.load(Ordering::Acquire) {
            return;
        }
        if entries.len() >= self.max_entries && !entries.contains_key(&session.id) {
            let now = Instant::now();
            entries.retain(|_, (_, read_began)| now.duration_since(*read_began) < self.max_age);
            if entries.len() >= self.max_entries {
                // Still full of fresh copies: start over rather than track recency on every hit.
                entries.clear();
            }
        }
        entries.insert(session.id.clone(), (session.clone(), ticket.began));
    }

    /// The session changed in Redis: drop its copy, and any read of anything still in flight.
    pub fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.write().remove(id);
    }

    /// An invalidation message: the session key as the scripts publish it (`P:s:{<id>}`).
    pub fn invalidate_key(&self, key: &[u8]) {
        let id = std::str::from_utf8(key)
            .ok()
            .and_then(|key| key.rsplit_once('{'))
            .and_then(|(_, rest)| rest.strip_suffix('}'))
            .and_then(SessionId::parse);
        match id {
            Some(id) => self.invalidate(&id),
            // Not a key we publish: forget everything rather than guess.
            None => self.set_live(self.live.load(Ordering::Acquire)),
        }
    }

    /// The subscription came up (`true`) or dropped (`false`). Either way every copy and every read in flight
    /// is forgotten: nothing read before the subscription was up is known to be current.
    pub fn set_live(&self, live: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.entries.write();
        entries.clear();
        self.live.store(live, Ordering::Release);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let now = crate::store::now_unix();
        Session::start(SessionId::generate(), crate::session::SessionGrant::example("c"), now, 1)
    }

    fn live_cache() -> SessionCache {
        let cache = SessionCache::new(3, Duration::from_secs(60));
        cache.set_live(true);
        cache
    }

    #[test]
    fn nothing_is_kept_or_served_while_the_subscription_is_down() {
        let cache = SessionCache::new(10, Duration::from_secs(60));
        let s = session();
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), None);
        cache.set_live(true);
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), Some(s.clone()));
        cache.set_live(false);
        assert_eq!(cache.get(&s.id), None, "a dropped subscription flushes");
        cache.set_live(true);
        assert_eq!(cache.get(&s.id), None, "and nothing comes back with it");
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_kept() {
        let cache = live_cache();
        let (s, other) = (session(), session());
        let ticket = cache.begin_read();
        cache.invalidate(&other.id);
        cache.keep(ticket, &s);
        assert_eq!(cache.get(&s.id), None, "any invalidation during the read: not kept");
        let ticket = cache.begin_read();
        cache.set_live(false);
        cache.set_live(true);
        cache.keep(ticket, &s);
        assert_eq!(cache.get(&s.id), None, "a reconnection during the read: not kept");
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), Some(s));
    }

    #[test]
    fn an_invalidation_message_drops_that_session_only() {
        let cache = live_cache();
        let (s, other) = (session(), session());
        cache.keep(cache.begin_read(), &s);
        cache.keep(cache.begin_read(), &other);
        cache.invalidate_key(format!("ibgw:s:{{{}}}", s.id.as_str()).as_bytes());
        assert_eq!(cache.get(&s.id), None);
        assert_eq!(cache.get(&other.id), Some(other.clone()));
        cache.invalidate_key(b"something else");
        assert_eq!(cache.get(&other.id), None, "a message it cannot read flushes everything");
    }

    #[test]
    fn copies_expire_after_max_age_and_the_cache_stays_bounded() {
        let cache = SessionCache::new(3, Duration::ZERO);
        cache.set_live(true);
        let s = session();
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), None, "older than max_age");

        let cache = live_cache();
        for _ in 0..10 {
            cache.keep(cache.begin_read(), &session());
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn a_copy_ages_from_when_its_read_began_not_from_when_it_was_kept() {
        // A Redis read slower than max_age: what it found may already be older than max_age.
        let cache = SessionCache::new(10, Duration::from_millis(30));
        cache.set_live(true);
        let s = session();
        let ticket = cache.begin_read();
        std::thread::sleep(Duration::from_millis(40));
        cache.keep(ticket, &s);
        assert_eq!(cache.get(&s.id), None, "a read that took longer than max_age is never served");

        let ticket = cache.begin_read();
        std::thread::sleep(Duration::from_millis(20));
        cache.keep(ticket, &s);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(cache.get(&s.id), None, "max_age after the read began, although kept only 20 ms ago");
    }
}
