//! The embedded store: everything in this process's memory, gone at restart.
//!
//! Bounded: each map holds at most its configured number of entries and refuses new ones when full (after
//! reclaiming what has expired). Expired entries are invisible at once and reclaimed on the next write, in
//! expiry order, so memory follows the live set. One instance only: several gateways need the Redis store.

use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;

use super::*;
use crate::config::MemoryStoreConfig;
use crate::session::rules;

/// A map whose entries vanish at their expiry time (Unix seconds, this process's clock).
struct ExpiringMap<K, V> {
    entries: HashMap<K, (V, u64)>,
    by_expiry: BTreeSet<(u64, K)>,
    capacity: usize,
    what: &'static str,
}

impl<K: Clone + Eq + Hash + Ord, V> ExpiringMap<K, V> {
    fn new(capacity: usize, what: &'static str) -> Self {
        ExpiringMap { entries: HashMap::new(), by_expiry: BTreeSet::new(), capacity, what }
    }

    fn purge(&mut self, now: u64) {
        while let Some((expires_at, _)) = self.by_expiry.first() {
            if *expires_at > now {
                break;
            }
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.entries.remove(&key);
            }
        }
    }

    fn insert(&mut self, key: K, value: V, ttl: u64) -> Result<(), StoreError> {
        let now = now_unix();
        self.purge(now);
        if let Some((_, old_expiry)) = self.entries.get(&key) {
            self.by_expiry.remove(&(*old_expiry, key.clone()));
        } else if self.entries.len() >= self.capacity {
            return Err(StoreError::CapacityExceeded(self.what));
        }
        let expires_at = now + ttl;
        self.by_expiry.insert((expires_at, key.clone()));
        self.entries.insert(key, (value, expires_at));
        Ok(())
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

enum CodeEntry {
    Fresh(Vec<u8>),
    Spent(SessionId),
}

pub struct MemoryStore {
    sessions: RwLock<ExpiringMap<SessionId, SessionEntry>>,
    codes: RwLock<ExpiringMap<TokenHash, CodeEntry>>,
    records: RwLock<ExpiringMap<(RecordKind, String), Vec<u8>>>,
    meters: RwLock<ExpiringMap<(SessionId, u64), u64>>,
    /// Ids of sessions a replayed code issued before they were created: never to be created. Always locked
    /// after `sessions`, so that checking both is one step.
    reserved: RwLock<ExpiringMap<SessionId, ()>>,
}

impl MemoryStore {
    pub fn new(config: &MemoryStoreConfig) -> Self {
        MemoryStore {
            sessions: RwLock::new(ExpiringMap::new(config.max_sessions, "sessions")),
            codes: RwLock::new(ExpiringMap::new(config.max_records, "codes")),
            records: RwLock::new(ExpiringMap::new(config.max_records, "records")),
            meters: RwLock::new(ExpiringMap::new(config.max_sessions, "rate-limit counters")),
            reserved: RwLock::new(ExpiringMap::new(config.max_records, "reserved session ids")),
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
        sessions.insert(session.id.clone(), entry, session_record_ttl(session, now))
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

    async fn rotate_refresh(&self, request: &RotateRequest<'_>) -> Result<RotateOutcome, StoreError> {
        let mut sessions = self.sessions.write();
        Ok(match sessions.get_mut(request.session_id) {
            Some(entry) => rotate(entry, request),
            None => RotateOutcome::Invalid,
        })
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
        self.records.write().insert((kind, key.to_string()), value.to_vec(), ttl)
    }

    async fn get_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.read().get(&(kind, key.to_string())).cloned())
    }

    async fn take_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.write().remove(&(kind, key.to_string())))
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

    #[test]
    fn full_map_refuses_new_keys_but_accepts_updates() {
        let mut map = ExpiringMap::new(2, "test");
        map.insert(1u32, "a", 60).unwrap();
        map.insert(2u32, "b", 60).unwrap();
        assert!(matches!(map.insert(3u32, "c", 60), Err(StoreError::CapacityExceeded("test"))));
        map.insert(2u32, "b2", 60).unwrap();
        assert_eq!(map.get(&2), Some(&"b2"));
        assert_eq!(map.live_len(), 2);
    }

    #[test]
    fn expired_entries_are_invisible_and_reclaimed() {
        let mut map = ExpiringMap::new(1, "test");
        map.insert(1u32, "a", 0).unwrap();
        assert_eq!(map.get(&1), None);
        assert_eq!(map.live_len(), 0);
        // Full by count, but the expired entry is reclaimed on write.
        map.insert(2u32, "b", 60).unwrap();
        assert_eq!(map.entries.len(), 1);
        assert_eq!(map.by_expiry.len(), 1);
    }
}
