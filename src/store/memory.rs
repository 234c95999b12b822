//! The embedded store: everything in this process's memory, gone at restart.
//!
//! Bounded: each map holds at most its configured number of entries and bytes, and refuses new ones when full
//! (after reclaiming what has expired), never evicting a live entry. Sessions, codes, login attempts and
//! registered clients each have their own map, so a flood of one kind (say, login attempts from many
//! addresses) can fill only its own budget: it never pushes out, or denies, a live session. Expired entries are invisible at once and reclaimed on the next write, in
//! expiry order, so memory follows the live set. One instance only: several gateways need the Redis store.

use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use super::*;
use crate::config::MemoryStoreConfig;
use crate::session::rules;

/// Roughly how many bytes an entry holds (its variable-size parts plus a fixed overhead), for byte budgets.
trait Weight {
    fn weight(&self) -> usize;
}

/// Per-entry bookkeeping: the hash-map slot, the expiry index, the key.
const ENTRY_OVERHEAD: usize = 128;
/// A session id in its user's index (the set slot and the id).
const USER_INDEX_ENTRY: usize = 64;

impl Weight for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weight for u64 {
    fn weight(&self) -> usize {
        0
    }
}

impl Weight for () {
    fn weight(&self) -> usize {
        0
    }
}

/// A map whose entries vanish at their expiry time (Unix seconds, this process's clock), bounded by an entry
/// count and a byte budget.
struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    by_expiry: BTreeSet<(u64, K)>,
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    what: &'static str,
}

impl<K: Clone + Eq + Hash + Ord, V: Weight> ExpiringMap<K, V> {
    fn new(capacity: usize, max_bytes: usize, what: &'static str) -> Self {
        ExpiringMap { entries: HashMap::new(), by_expiry: BTreeSet::new(), capacity, max_bytes, bytes: 0, what }
    }

    /// Reclaims every expired entry, handing each to `evicted` (so an index kept beside the map can follow).
    fn purge(&mut self, now: u64, mut evicted: impl FnMut(K, V)) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                if let Some((value, _)) = self.entries.remove(&key) {
                    self.bytes -= value.weight() + ENTRY_OVERHEAD;
                    evicted(key, value);
                }
            }
        }
    }

    fn insert(&mut self, key: K, value: V, ttl: u64) -> Result<(), StoreError> {
        self.insert_evicting(key, value, ttl, |_, _| {})
    }

    /// [`Self::insert`], handing the expired entries it reclaims to `evicted`.
    fn insert_evicting(&mut self, key: K, value: V, ttl: u64, evicted: impl FnMut(K, V)) -> Result<(), StoreError> {
        let now = now_unix();
        self.purge(now, evicted);
        let weight = value.weight() + ENTRY_OVERHEAD;
        let replaced = self.entries.get(&key).map(|(old, expiry)| (old.weight() + ENTRY_OVERHEAD, *expiry));
        let (count_after, bytes_after) = match replaced {
            Some((old_weight, _)) => (self.entries.len(), self.bytes - old_weight + weight),
            None => (self.entries.len() + 1, self.bytes + weight),
        };
        if count_after > self.capacity || bytes_after > self.max_bytes {
            return Err(StoreError::CapacityExceeded(self.what));
        }
        if let Some((_, old_expiry)) = replaced {
            self.by_expiry.remove(&(old_expiry, key.clone()));
        }
        let expires_at = now + ttl;
        self.by_expiry.insert((expires_at, key.clone()));
        self.entries.insert(key, (value, expires_at));
        self.bytes = bytes_after;
        Ok(())
    }

    /// Re-weighs an entry changed in place (a rotation adds a retired token to a session).
    fn reweigh(&mut self, before: usize, after: usize) {
        self.bytes = (self.bytes + after).saturating_sub(before);
    }

    fn get(&self, key: &K) -> Option<&V> {
        let (value, expires_at) = self.entries.get(key)?;
        (*expires_at > now_unix()).then_some(value)
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let now = now_unix();
        let (value, expires_at) = self.entries.get_mut(key)?;
        (*expires_at > now).then_some(value)
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let (value, expires_at) = self.entries.remove(key)?;
        self.by_expiry.remove(&(expires_at, key.clone()));
        self.bytes -= value.weight() + ENTRY_OVERHEAD;
        (expires_at > now_unix()).then_some(value)
    }

    #[cfg(test)]
    fn live_len(&self) -> usize {
        let now = now_unix();
        let expired = self.by_expiry.iter().take_while(|(expires_at, _)| *expires_at <= now).count();
        self.entries.len() - expired
    }
}

/// A session with its refresh-token bookkeeping.
struct SessionEntry {
    session: Session,
    refresh: TokenHash,
    refresh_expires_at: u64,
    /// The token rotated most recently, until when a repeat of it is answered, and the sealed successor.
    previous: Option<(TokenHash, u64, String)>,
    /// Every token this session has retired, for reuse detection.
    retired: HashSet<TokenHash>,
}

impl Weight for SessionEntry {
    fn weight(&self) -> usize {
        let grant = &self.session.grant;
        let strings = grant.sid.expose().len()
            + grant.platform_url.len()
            + grant.api_v3_url.len()
            + grant.ib_client_id.len()
            + grant.user.uuid.len()
            + grant.user.first_name.len()
            + grant.user.last_name.len()
            + grant.oauth_client_id.len()
            + grant.scope.len()
            + grant.resource.as_ref().map_or(0, String::len);
        let previous = self.previous.as_ref().map_or(0, |(_, _, sealed)| sealed.len() + 40);
        // USER_INDEX_ENTRY: the session's line in its user's index.
        std::mem::size_of::<Self>() + strings + previous + self.retired.len() * 48 + USER_INDEX_ENTRY
    }
}

enum CodeEntry {
    Fresh(Vec<u8>),
    Spent(SessionId),
}

impl Weight for CodeEntry {
    fn weight(&self) -> usize {
        match self {
            CodeEntry::Fresh(grant) => grant.len(),
            CodeEntry::Spent(_) => 24,
        }
    }
}

pub struct MemoryStore {
    sessions: RwLock<ExpiringMap<SessionId, SessionEntry>>,
    codes: RwLock<ExpiringMap<TokenHash, CodeEntry>>,
    login_attempts: RwLock<ExpiringMap<String, Vec<u8>>>,
    clients: RwLock<ExpiringMap<String, Vec<u8>>>,
    meters: RwLock<ExpiringMap<(SessionId, u64), u64>>,
    /// Ids of sessions a replayed code issued before they were created: never to be created. Always locked
    /// after `sessions`, so that checking both is one step.
    reserved: RwLock<ExpiringMap<SessionId, ()>>,
    /// IB user uuid → the ids of that user's stored sessions. Changed only while `sessions` is write-locked
    /// (and locked after it), so it always holds exactly the stored sessions.
    users: RwLock<HashMap<String, HashSet<SessionId>>>,
}

impl MemoryStore {
    pub fn new(config: &MemoryStoreConfig) -> Self {
        MemoryStore {
            sessions: RwLock::new(ExpiringMap::new(config.max_sessions, config.max_session_bytes, "sessions")),
            codes: RwLock::new(ExpiringMap::new(config.max_records, config.max_record_bytes, "codes")),
            login_attempts: RwLock::new(ExpiringMap::new(
                config.max_records,
                config.max_record_bytes,
                "login attempts",
            )),
            clients: RwLock::new(ExpiringMap::new(config.max_records, config.max_record_bytes, "registered clients")),
            meters: RwLock::new(ExpiringMap::new(config.max_sessions, usize::MAX, "rate-limit counters")),
            reserved: RwLock::new(ExpiringMap::new(config.max_records, usize::MAX, "reserved session ids")),
            users: RwLock::new(HashMap::new()),
        }
    }
}

impl MemoryStore {
    /// Each kind of record has its own map, and so its own budget.
    fn records(&self, kind: RecordKind) -> &RwLock<ExpiringMap<String, Vec<u8>>> {
        match kind {
            RecordKind::LoginAttempt => &self.login_attempts,
            RecordKind::Client => &self.clients,
        }
    }
}

/// The rotation decision, on one session entry. `store/redis/rotate.lua` is the same decision in Lua.
fn rotate(entry: &mut SessionEntry, request: &RotateRequest<'_>) -> RotateOutcome {
    if entry.session.grant.oauth_client_id != request.client_id {
        return RotateOutcome::Invalid;
    }
    let now = request.now;
    if request.presented.matches(&entry.refresh) {
        let status = rules::refresh_status(&entry.session, now, &request.limits);
        if !status.is_usable() {
            return RotateOutcome::Refused(status);
        }
        if now >= entry.refresh_expires_at {
            return RotateOutcome::Invalid;
        }
        entry.retired.insert(request.presented);
        entry.previous = Some((request.presented, now + request.grace_seconds, request.sealed_successor.to_string()));
        entry.refresh = request.successor;
        entry.refresh_expires_at = rules::refresh_token_expiry(&entry.session, now, request.refresh_ttl);
        entry.session.refresh_count += 1;
        entry.session.last_refresh_at = Some(now);
        return RotateOutcome::Rotated(entry.session.clone());
    }
    if let Some((previous, grace_until, sealed)) = &entry.previous {
        if previous.matches(&request.presented) && now < *grace_until {
            // The successor was issued; only an ended or expired session stops handing it out again.
            let status = rules::access_status(&entry.session, now, &request.limits);
            if !status.is_usable() {
                return RotateOutcome::Refused(status);
            }
            return RotateOutcome::Repeated { session: entry.session.clone(), sealed_successor: sealed.clone() };
        }
    }
    if entry.retired.contains(&request.presented) {
        entry.session.state = SessionState::Revoked;
        // As in `end_session` (and rotate.lua): a revoked session repeats no successor.
        entry.previous = None;
        return RotateOutcome::ReuseDetected;
    }
    RotateOutcome::Invalid
}

#[async_trait]
impl TokenStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        refresh_expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let entry = SessionEntry {
            session: session.clone(),
            refresh: *refresh,
            refresh_expires_at,
            previous: None,
            retired: HashSet::new(),
        };
        let mut sessions = self.sessions.write();
        if sessions.get(&session.id).is_some() || self.reserved.read().get(&session.id).is_some() {
            return Err(StoreError::SessionIdTaken);
        }
        let mut users = self.users.write();
        sessions.insert_evicting(session.id.clone(), entry, session_record_ttl(session, now), |id, expired| {
            let user = &expired.session.grant.user.uuid;
            if let Some(ids) = users.get_mut(user) {
                ids.remove(&id);
                if ids.is_empty() {
                    users.remove(user);
                }
            }
        })?;
        users.entry(session.grant.user.uuid.clone()).or_default().insert(session.id.clone());
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.read().get(id).map(|entry| entry.session.clone()))
    }

    async fn get_session_metered(
        &self,
        id: &SessionId,
        window: u64,
        window_seconds: u64,
    ) -> Result<(Option<Session>, u64), StoreError> {
        let Some(session) = self.get_session(id).await? else {
            return Ok((None, 0));
        };
        let key = (id.clone(), window);
        let mut meters = self.meters.write();
        let count = meters.get(&key).copied().unwrap_or(0) + 1;
        meters.insert(key, count, window_seconds)?;
        Ok((Some(session), count))
    }

    async fn add_to_meter(
        &self,
        id: &SessionId,
        window: u64,
        add: u64,
        window_seconds: u64,
    ) -> Result<u64, StoreError> {
        let key = (id.clone(), window);
        let mut meters = self.meters.write();
        let count = meters.get(&key).copied().unwrap_or(0) + add;
        meters.insert(key, count, window_seconds)?;
        Ok(count)
    }

    async fn rotate_refresh(&self, request: &RotateRequest<'_>) -> Result<RotateOutcome, StoreError> {
        let mut sessions = self.sessions.write();
        let Some(entry) = sessions.get_mut(request.session_id) else {
            return Ok(RotateOutcome::Invalid);
        };
        let before = entry.weight();
        let outcome = rotate(entry, request);
        let after = entry.weight();
        sessions.reweigh(before, after);
        Ok(outcome)
    }

    async fn end_session(&self, id: &SessionId, state: SessionState) -> Result<bool, StoreError> {
        let mut sessions = self.sessions.write();
        match sessions.get_mut(id) {
            Some(entry) if entry.session.state == SessionState::Active => {
                entry.session.state = state;
                entry.previous = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn end_issued_session(&self, id: &SessionId, reserve_seconds: u64) -> Result<bool, StoreError> {
        let mut sessions = self.sessions.write();
        match sessions.get_mut(id) {
            Some(entry) if entry.session.state == SessionState::Active => {
                entry.session.state = SessionState::Revoked;
                entry.previous = None;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => {
                self.reserved.write().insert(id.clone(), (), reserve_seconds.max(1))?;
                Ok(true)
            }
        }
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        let mut sessions = self.sessions.write();
        match sessions.get_mut(id) {
            Some(entry)
                if entry.session.state == SessionState::Active
                    && entry.session.grant.oauth_client_id == client_id
                    && (entry.refresh.matches(presented) || entry.retired.contains(presented)) =>
            {
                entry.session.state = SessionState::Revoked;
                entry.previous = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn find_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<(Session, u64)>, StoreError> {
        let sessions = self.sessions.read();
        Ok(sessions
            .get(id)
            .filter(|entry| entry.refresh.matches(presented))
            .map(|entry| (entry.session.clone(), entry.refresh_expires_at)))
    }

    async fn put_code(&self, code: &TokenHash, grant: &[u8], ttl: u64) -> Result<(), StoreError> {
        self.codes.write().insert(*code, CodeEntry::Fresh(grant.to_vec()), ttl)
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        issued: &SessionId,
        replay_window: u64,
    ) -> Result<CodeRedemption, StoreError> {
        let mut codes = self.codes.write();
        match codes.remove(code) {
            Some(CodeEntry::Fresh(grant)) => {
                codes.insert(*code, CodeEntry::Spent(issued.clone()), replay_window)?;
                Ok(CodeRedemption::Redeemed(grant))
            }
            Some(CodeEntry::Spent(session)) => {
                let redemption = CodeRedemption::Replayed(session.clone());
                codes.insert(*code, CodeEntry::Spent(session), replay_window)?;
                Ok(redemption)
            }
            None => Ok(CodeRedemption::Unknown),
        }
    }

    async fn put_record(&self, kind: RecordKind, key: &str, value: &[u8], ttl: u64) -> Result<(), StoreError> {
        self.records(kind).write().insert(key.to_string(), value.to_vec(), ttl)
    }

    async fn get_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records(kind).read().get(&key.to_string()).cloned())
    }

    async fn take_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records(kind).write().remove(&key.to_string()))
    }

    async fn user_sessions(&self, user: &str, limit: usize) -> Result<UserSessions, StoreError> {
        let sessions = self.sessions.read();
        let mut users = self.users.write();
        let read: Vec<Session> = users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| sessions.get(id))
            .map(|entry| entry.session.clone())
            .collect();
        let (listed, ended) = split_user_sessions(read, limit);
        if let Some(ids) = users.get_mut(user) {
            for id in &ended {
                ids.remove(id);
            }
            if ids.is_empty() {
                users.remove(user);
            }
        }
        Ok(listed)
    }

    /// Active sessions not past `sid_expiry` (the same meaning as the Redis index), by a scan.
    async fn session_count(&self) -> Result<u64, StoreError> {
        let now = now_unix();
        let sessions = self.sessions.read();
        let active = sessions
            .entries
            .values()
            .filter(|(entry, expires_at)| {
                *expires_at > now && entry.session.state == SessionState::Active && now < entry.session.sid_expiry
            })
            .count();
        Ok(active as u64)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weight for &'static str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    #[test]
    fn the_byte_budget_refuses_what_would_exceed_it_and_frees_on_removal() {
        let mut map = ExpiringMap::new(100, 2 * ENTRY_OVERHEAD + 10, "test");
        map.insert(1u32, "12345", 60).unwrap();
        map.insert(2u32, "12345", 60).unwrap();
        assert!(matches!(map.insert(3u32, "x", 60), Err(StoreError::CapacityExceeded("test"))));
        assert!(matches!(map.insert(2u32, "123456", 60), Err(StoreError::CapacityExceeded("test"))), "growing");
        map.insert(2u32, "1234", 60).unwrap();
        map.remove(&1);
        map.insert(3u32, "x", 60).unwrap();
        assert_eq!(map.bytes, 2 * ENTRY_OVERHEAD + 5);
    }

    #[tokio::test]
    async fn a_flood_of_login_attempts_never_denies_a_session_or_a_client() {
        let config = MemoryStoreConfig { max_records: 3, ..MemoryStoreConfig::default() };
        let store = MemoryStore::new(&config);
        for n in 0..3 {
            store.put_record(RecordKind::LoginAttempt, &format!("a{n}"), b"attempt", 600).await.unwrap();
        }
        let full = store.put_record(RecordKind::LoginAttempt, "a3", b"attempt", 600).await;
        assert!(matches!(full, Err(StoreError::CapacityExceeded("login attempts"))), "{full:?}");
        store.put_record(RecordKind::Client, "c", b"client", 600).await.unwrap();
        let now = now_unix();
        let grant = crate::session::SessionGrant::example("client");
        let session = Session::start(SessionId::generate(), grant, now, 1);
        store.create_session(&session, &TokenHash::of("r"), now + 60, now).await.unwrap();
    }

    #[tokio::test]
    async fn the_user_index_follows_sessions_as_they_expire() {
        let store = MemoryStore::new(&MemoryStoreConfig::default());
        let now = now_unix();
        // Stored as create_session would, but expiring at once.
        let expired = Session::start(SessionId::generate(), crate::session::SessionGrant::example("client"), now, 1);
        store.sessions.write().insert(expired.id.clone(), entry_for(&expired), 0).unwrap();
        store.users.write().entry(expired.grant.user.uuid.clone()).or_default().insert(expired.id.clone());
        let listed = store.user_sessions(&expired.grant.user.uuid, USER_SESSIONS_LIMIT).await.unwrap();
        assert!(listed.sessions.is_empty(), "invisible at once");

        let fresh = Session::start(SessionId::generate(), crate::session::SessionGrant::example("client"), now, 1);
        store.create_session(&fresh, &TokenHash::of("r"), now + 60, now).await.unwrap();
        let users = store.users.read();
        let ids = users.get(&fresh.grant.user.uuid).expect("indexed");
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![&fresh.id], "the expired id was reclaimed with its session");
    }

    fn entry_for(session: &Session) -> SessionEntry {
        SessionEntry {
            session: session.clone(),
            refresh: TokenHash::of("r"),
            refresh_expires_at: 0,
            previous: None,
            retired: HashSet::new(),
        }
    }

    #[test]
    fn full_map_refuses_new_keys_but_accepts_updates() {
        let mut map = ExpiringMap::new(2, usize::MAX, "test");
        map.insert(1u32, "a", 60).unwrap();
        map.insert(2u32, "b", 60).unwrap();
        assert!(matches!(map.insert(3u32, "c", 60), Err(StoreError::CapacityExceeded("test"))));
        map.insert(2u32, "b2", 60).unwrap();
        assert_eq!(map.get(&2), Some(&"b2"));
        assert_eq!(map.live_len(), 2);
    }

    #[test]
    fn expired_entries_are_invisible_and_reclaimed() {
        let mut map = ExpiringMap::new(1, usize::MAX, "test");
        map.insert(1u32, "a", 0).unwrap();
        assert_eq!(map.get(&1), None);
        assert_eq!(map.live_len(), 0);
        // Full by count, but the expired entry is reclaimed on write.
        map.insert(2u32, "b", 60).unwrap();
        assert_eq!(map.entries.len(), 1);
        assert_eq!(map.by_expiry.len(), 1);
    }
}
