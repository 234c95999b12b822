//! The Redis store's local session cache: a hot session is read from Redis once, not on every request, and
//! Redis itself keeps the copy exact.
//!
//! Every script that changes a session (ending it, revoking it, rotating its refresh token, detecting reuse)
//! publishes the session's key on the invalidation channel in the same atomic step; every instance subscribes
//! and drops that session. Four rules keep a copy from outliving a change:
//! - A copy is kept only while the subscription is up. When it drops, the whole cache is flushed and every read
//!   goes to Redis until the subscription is back (a change published meanwhile is never missed).
//! - A copy is *served* only while the channel is proven to deliver: the subscriber publishes a numbered
//!   heartbeat on every master and [`SessionCache::confirm`]s each one that comes back through the
//!   subscription. On one connection Redis delivers messages in the order it published them, so a heartbeat
//!   that came back proves every invalidation published before it arrived; a copy is served only until
//!   `heartbeat_lasts` after the newest confirmed heartbeat was *sent*. A channel that falls silent without the
//!   connection dropping (a stalled subscriber, a node that stopped publishing) thus stops the cache within that
//!   bound, whatever the max age.
//! - A read that raced a change is not kept: each invalidation (and each subscription change) moves an epoch,
//!   and a read is stored only if the epoch did not move while it was in flight.
//! - A copy is dropped `max_age` after its Redis read *began*, whatever happens: the last line of defence, and a
//!   limit on how long a session nobody uses keeps its memory. Counting from the start of the read, not from
//!   when its answer was stored, keeps that bound at `max_age` however slow Redis is. Nor is a copy served past
//!   the moment its Redis record expires (a key's expiry publishes nothing): the store then answers "no such
//!   session", as Redis would.
//!
//! The map is hand-written rather than a cache crate: `moka` in its place was measured slower on the
//! hit (`benches/hot_paths.rs`, `session_cache_hit` 160 ns here, 337 ns with moka), see docs/operations.md.
//! It is split into shards, each under its own lock, so that making room never holds up the whole cache: when
//! the cache is full, the shard a new copy goes to drops its expired copies and, if they are fewer than 1/32 of
//! it, the copies that would expire first up to that share (the oldest reads, which would have to be read again
//! soonest anyway), in one pass over that shard alone. The bound is on the whole cache, not on each shard, so
//! shards that happen to serve more sessions hold more. (One map made room by walking all 100,000 copies under
//! the only write lock, then dropping them all: every request waited for it.)
//!
//! Only sessions are cached, never their absence, and nothing here changes what Redis holds.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::session::{Session, SessionId};

/// A read in flight: when it began, and what the epoch was then (`None`: the cache is not live, keep nothing).
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket {
    epoch: Option<u64>,
    began: Instant,
}

/// At most this many shards (fewer when `max_entries` is smaller).
const SHARDS: usize = 64;

/// A full shard drops at least this share of its copies (1/32), the expired ones first: few enough that a
/// working set just over the capacity still mostly hits, many enough that one pass makes room for many reads.
const EVICTED_SHARE: usize = 32;

/// Each copy with the moment it stops being served.
type Copies = HashMap<SessionId, (Session, Instant)>;

pub struct SessionCache {
    /// Each copy with the moment it stops being served: `max_age` after the Redis read that found it began,
    /// or when its record expires in Redis, whichever comes first. A session's shard is chosen by `hasher`.
    shards: Box<[RwLock<Copies>]>,
    hasher: RandomState,
    max_entries: usize,
    /// Copies in all shards. Changed under the lock of the shard that gained or lost them: two shards filling
    /// at once may each pass the bound by one copy, which the next copy kept in them gives back.
    len: AtomicUsize,
    max_age: Duration,
    epoch: AtomicU64,
    live: AtomicBool,
    /// The clock `fresh_until` counts from.
    base: Instant,
    /// Nanoseconds after `base` until which copies may be served (0: not since the subscription came up).
    fresh_until: AtomicU64,
}

impl SessionCache {
    /// A cache of at most `max_entries` copies (at least 1), give or take one per concurrent `keep`.
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        let shards = max_entries.clamp(1, SHARDS);
        SessionCache {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            max_entries,
            len: AtomicUsize::new(0),
            max_age,
            epoch: AtomicU64::new(0),
            live: AtomicBool::new(false),
            base: Instant::now(),
            fresh_until: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &SessionId) -> &RwLock<Copies> {
        let index = self.hasher.hash_one(id) % self.shards.len() as u64;
        &self.shards[index as usize]
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A copy whose read began less than `max_age` ago, while the subscription is up and a heartbeat confirmed
    /// it recently enough.
    pub fn get(&self, id: &SessionId) -> Option<Session> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        if self.nanos(now) >= self.fresh_until.load(Ordering::Acquire) {
            return None;
        }
        let copies = self.shard(id).read();
        let (session, until) = copies.get(id)?;
        (now < *until).then(|| session.clone())
    }

    /// A heartbeat sent at `sent` came back through every subscription: every invalidation published before
    /// it has been applied, so copies may be served until `sent + lasting`.
    pub fn confirm(&self, sent: Instant, lasting: Duration) {
        if self.live.load(Ordering::Acquire) {
            self.fresh_until.fetch_max(self.nanos(sent + lasting), Ordering::AcqRel);
        }
    }

    /// Is a copy served now (live, and a heartbeat confirmed recently enough)?
    pub fn is_serving(&self) -> bool {
        self.is_live() && self.nanos(Instant::now()) < self.fresh_until.load(Ordering::Acquire)
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
        let record_lasts = Duration::from_secs(super::session_record_ttl(session, super::now_unix()));
        let until = ticket.began + self.max_age.min(record_lasts);
        let mut copies = self.shard(&session.id).write();
        // Checked under the write lock: an invalidation moves the epoch before it takes this lock, and a flush
        // holds every shard's.
        if self.epoch.load(Ordering::Acquire) != epoch || !self.live.load(Ordering::Acquire) {
            return;
        }
        if self.len.load(Ordering::Acquire) >= self.max_entries && !copies.contains_key(&session.id) {
            let dropped = make_room(&mut copies, Instant::now());
            self.len.fetch_sub(dropped, Ordering::AcqRel);
            if dropped == 0 {
                // This shard holds nothing to give up for it: the copy is not kept.
                return;
            }
        }
        if copies.insert(session.id.clone(), (session.clone(), until)).is_none() {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The session changed in Redis: drop its copy, and any read of anything still in flight.
    pub fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if self.shard(id).write().remove(id).is_some() {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
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
        // Every shard's lock at once, so no `keep` lands between the shards' flushes and this change of state;
        // the copies are dropped after the locks are released.
        let mut shards: Vec<_> = self.shards.iter().map(|shard| shard.write()).collect();
        let flushed: Vec<Copies> = shards.iter_mut().map(|copies| std::mem::take(&mut **copies)).collect();
        self.len.store(0, Ordering::Release);
        // Nothing is served until a heartbeat of the new subscription comes back.
        self.fresh_until.store(0, Ordering::Release);
        self.live.store(live, Ordering::Release);
        drop(shards);
        drop(flushed);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let len = self.shards.iter().map(|shard| shard.read().len()).sum();
        assert_eq!(len, self.len.load(Ordering::Acquire), "the count is the copies'");
        len
    }
}

/// Makes room in a shard of a full cache: drops its expired copies and, when they are fewer than the
/// [`EVICTED_SHARE`] of the shard (at least one), the copies that expire first up to that share, so that one pass
/// over the shard makes room for many reads. Returns how many it dropped (0 only when the shard is empty).
fn make_room(copies: &mut Copies, now: Instant) -> usize {
    let before = copies.len();
    copies.retain(|_, (_, until)| now < *until);
    let share = (before / EVICTED_SHARE).max(1);
    let missing = share.saturating_sub(before - copies.len());
    if missing > 0 && !copies.is_empty() {
        let mut untils: Vec<Instant> = copies.values().map(|(_, until)| *until).collect();
        let nth = (missing - 1).min(untils.len() - 1);
        let (_, &mut cutoff, _) = untils.select_nth_unstable(nth);
        copies.retain(|_, (_, until)| *until > cutoff);
    }
    before - copies.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let now = crate::store::now_unix();
        Session::start(SessionId::generate(), crate::session::SessionGrant::example("c"), now, 1)
    }

    /// Live, with a heartbeat confirmed for the next minute.
    fn live_cache() -> SessionCache {
        live(SessionCache::new(3, Duration::from_secs(60)))
    }

    fn live(cache: SessionCache) -> SessionCache {
        cache.set_live(true);
        cache.confirm(Instant::now(), Duration::from_secs(60));
        cache
    }

    #[test]
    fn nothing_is_kept_or_served_while_the_subscription_is_down() {
        let cache = SessionCache::new(10, Duration::from_secs(60));
        let s = session();
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), None);
        cache.confirm(Instant::now(), Duration::from_secs(60));
        assert!(!cache.is_serving(), "a heartbeat without a subscription serves nothing");
        let cache = live(cache);
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
        let cache = live(cache);
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
        let cache = live(SessionCache::new(3, Duration::ZERO));
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
    fn a_full_cache_makes_room_by_dropping_its_oldest_copies_not_every_copy() {
        let capacity = SHARDS * 16;
        let cache = live(SessionCache::new(capacity, Duration::from_secs(60)));
        let sessions: Vec<Session> = (0..capacity * 3).map(|_| session()).collect();
        for s in &sessions {
            cache.keep(cache.begin_read(), s);
            assert!(cache.len() <= capacity);
        }
        assert!(cache.len() > capacity / 2, "room is made a little at a time: {}", cache.len());
        // A copy leaves only once 15 later ones have landed in its shard: the newest 16 of 3,072 are all there.
        for s in &sessions[sessions.len() - 16..] {
            assert_eq!(cache.get(&s.id), Some(s.clone()));
        }
    }

    #[test]
    fn threads_keeping_reading_and_invalidating_at_once_keep_the_count_true_and_the_bound() {
        let capacity = SHARDS * 4;
        let cache = live(SessionCache::new(capacity, Duration::from_secs(60)));
        let sessions: Vec<Session> = (0..capacity * 2).map(|_| session()).collect();
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let (cache, sessions) = (&cache, &sessions);
                scope.spawn(move || {
                    for i in 0..20_000 {
                        let s = &sessions[(i * 7 + thread * 13) % sessions.len()];
                        match i % 10 {
                            0 => cache.invalidate(&s.id),
                            1 if thread == 0 && i % 5_000 == 1 => cache.set_live(true),
                            _ => {
                                if cache.get(&s.id).is_none() {
                                    cache.keep(cache.begin_read(), s);
                                }
                            }
                        }
                    }
                });
            }
        });
        // `len` checks the count against the copies; two shards filling at once may each pass the bound by one.
        assert!(cache.len() <= capacity + 4, "{}", cache.len());
    }

    #[test]
    fn a_working_set_just_over_the_bound_still_mostly_hits() {
        let capacity = SHARDS * 100;
        let cache = live(SessionCache::new(capacity, Duration::from_secs(60)));
        let sessions: Vec<Session> = (0..capacity + capacity / 100).map(|_| session()).collect();
        let (mut hits, mut reads, mut next) = (0, 0, 12_345_u64);
        for round in 0..40 * sessions.len() {
            // Uniformly at random (a fixed linear congruential sequence), like the bench's 100,000 sessions.
            next = next.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let s = &sessions[(next >> 33) as usize % sessions.len()];
            let hit = cache.get(&s.id).is_some();
            if !hit {
                cache.keep(cache.begin_read(), s);
            }
            // Counted once the cache has filled.
            if round >= 20 * sessions.len() {
                reads += 1;
                hits += usize::from(hit);
            }
        }
        let rate = hits as f64 / reads as f64;
        println!("hit rate {rate:.4}");
        assert!(rate > 0.95, "{rate}");
    }

    #[test]
    fn making_room_drops_the_expired_copies_first_else_those_that_expire_soonest() {
        let now = Instant::now();
        let at = |ms: u64| now + Duration::from_millis(ms);
        let full = |untils: &[Instant]| -> Copies {
            untils.iter().map(|&until| (SessionId::generate(), (session(), until))).collect()
        };
        let expired = [now - Duration::from_millis(1), now - Duration::from_millis(2)];
        let mut copies = full(&[expired[0], at(5), expired[1], at(1), at(9), at(7), at(3), at(8)]);
        assert_eq!(make_room(&mut copies, now), 2);
        assert_eq!(copies.len(), 6, "the two expired copies, nothing else");

        let mut copies = full(&(1..=64).map(at).collect::<Vec<_>>());
        assert_eq!(make_room(&mut copies, now), 2);
        let mut left: Vec<Instant> = copies.values().map(|(_, until)| *until).collect();
        left.sort();
        assert_eq!(left, (3..=64).map(at).collect::<Vec<_>>(), "1/32: the 2 that expire first");

        let mut untils: Vec<Instant> = (2..=64).map(at).collect();
        untils.push(expired[0]);
        let mut copies = full(&untils);
        assert_eq!(make_room(&mut copies, now), 2, "one expired is short of 1/32: the one that expires first too");
        assert!(copies.values().all(|(_, until)| *until > at(2)));
    }

    #[test]
    fn a_copy_ages_from_when_its_read_began_not_from_when_it_was_kept() {
        // A Redis read slower than max_age: what it found may already be older than max_age.
        let cache = live(SessionCache::new(10, Duration::from_millis(30)));
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

    #[test]
    fn copies_are_served_only_until_the_newest_heartbeat_lapses_and_stay_for_the_next_one() {
        let cache = SessionCache::new(10, Duration::from_secs(60));
        cache.set_live(true);
        let s = session();
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), None, "kept, but no heartbeat has come back yet");
        let sent = Instant::now();
        cache.confirm(sent, Duration::from_millis(30));
        assert_eq!(cache.get(&s.id), Some(s.clone()));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get(&s.id), None, "the channel fell silent: nothing is served");
        assert!(!cache.is_serving());
        // A late heartbeat on the same connection proves nothing was lost: the copy is good again.
        cache.confirm(Instant::now(), Duration::from_secs(60));
        assert_eq!(cache.get(&s.id), Some(s.clone()));
        cache.confirm(sent, Duration::from_millis(30));
        assert_eq!(cache.get(&s.id), Some(s), "an older heartbeat never shortens the newest one's bound");
    }

    #[test]
    fn a_copy_is_not_served_past_the_expiry_of_its_redis_record() {
        let cache = live(SessionCache::new(10, Duration::from_secs(600)));
        let now = crate::store::now_unix();
        let mut s = session();
        // The record's TTL: one second left of the expired session's tail.
        s.sid_expiry = (now + 1).saturating_sub(crate::store::EXPIRED_SESSION_TAIL_SECONDS);
        cache.keep(cache.begin_read(), &s);
        assert_eq!(cache.get(&s.id), Some(s.clone()));
        std::thread::sleep(Duration::from_millis(1_100));
        assert_eq!(cache.get(&s.id), None, "Redis has dropped the record by now, and so has the cache");
    }
}
