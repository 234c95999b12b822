//! The token store: sessions, refresh-token rotation, authorization codes and short-lived records.
//!
//! One trait, [`TokenStore`], with two implementations that behave identically (the conformance suite in
//! `tests/store_conformance.rs` runs against both): [`memory::MemoryStore`], the embedded default, and
//! [`redis::RedisStore`] for several gateway instances (standalone, Sentinel or Cluster). The store keeps
//! only hashes of tokens and codes; it never logs a token, a code or an IB `sid`.
//!
//! Operations that must be atomic across instances are one call each: creating a session, rotating a refresh
//! token (rule check, `refresh_count` + 1, old token retired, successor stored), ending a session with all its
//! tokens, redeeming a code exactly once.

pub mod cache;
mod invalidation;
pub mod memory;
pub mod redis;

use async_trait::async_trait;
use std::sync::Arc;

use crate::config::{Config, StoreBackend};
use crate::session::{Limits, Session, SessionId, SessionState, SessionStatus};
use crate::tokens::TokenHash;
use crate::trace::{self, export::FinishedSpan, export::Kind};
use opentelemetry::KeyValue;

/// The most sessions an operator's listing of one user shows ([`TokenStore::user_sessions`]'s `limit` from the
/// admin API); ending a user's sessions goes on page after page until none is left.
pub const USER_SESSIONS_LIMIT: usize = 1_000;

/// One user's sessions that have not ended, oldest first, as [`TokenStore::user_sessions`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSessions {
    pub sessions: Vec<Session>,
    /// The user has more than the listing's limit: these are that many of them (the others are listed once
    /// these have ended).
    pub truncated: bool,
}

/// A user's sessions as read from the index, split by [`TokenStore::user_sessions`]'s rule: those not ended,
/// oldest first and cut at `limit`, and the ids of the ended ones (to leave the index).
fn split_user_sessions(read: Vec<Session>, limit: usize) -> (UserSessions, Vec<SessionId>) {
    let (mut live, ended): (Vec<Session>, Vec<Session>) =
        read.into_iter().partition(|session| session.state == SessionState::Active);
    live.sort_by(|a, b| (a.sid_created_at, &a.id).cmp(&(b.sid_created_at, &b.id)));
    let truncated = live.len() > limit;
    live.truncate(limit);
    (UserSessions { sessions: live, truncated }, ended.into_iter().map(|session| session.id).collect())
}

/// How long a session's record stays after `sid_expiry`, so a late client is told `Session has expired`
/// instead of a generic invalid token.
pub const EXPIRED_SESSION_TAIL_SECONDS: u64 = 3_600;

/// Why the store could not answer. None of these is the client's fault: the gateway answers
/// 503 `temporarily_unavailable`, never 401.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store is full ({0})")]
    CapacityExceeded(&'static str),
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
    /// `create_session` found the id taken: by a replayed code's reservation (see
    /// [`TokenStore::end_issued_session`]), or, with 128 random bits, never by chance.
    #[error("session id is taken")]
    SessionIdTaken,
}

impl From<StoreError> for crate::errors::ApiError {
    fn from(error: StoreError) -> Self {
        log::error!("store error: {error}");
        crate::errors::ApiError::TemporarilyUnavailable
    }
}

/// A refresh-token rotation, prepared by the caller: the successor token is generated (and sealed with the
/// presented token, for the grace window) before the store decides atomically whether it takes effect.
#[derive(Debug, Clone)]
pub struct RotateRequest<'a> {
    pub session_id: &'a SessionId,
    pub presented: TokenHash,
    pub successor: TokenHash,
    /// The successor, encrypted under a key derived from the presented token (see `tokens::seal_successor`).
    pub sealed_successor: &'a str,
    /// The client presenting the token; a token is bound to the client it was issued to.
    pub client_id: &'a str,
    pub now: u64,
    pub limits: Limits,
    pub grace_seconds: u64,
    pub refresh_ttl: u64,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current: it is retired and the successor is current. The session is as stored
    /// afterwards (`refresh_count` incremented).
    Rotated(Session),
    /// The presented token was rotated less than `grace_seconds` ago: the same successor again, still sealed.
    Repeated { session: Session, sealed_successor: String },
    /// The session rules refuse a refresh (`Expired`, `RefreshLimitExceeded`, `Revoked`, `UpstreamRejected`).
    /// Nothing changed.
    Refused(SessionStatus),
    /// A retired token came back after the grace window: the whole session is now revoked (RFC 9700 §4.14).
    ReuseDetected,
    /// Unknown token, token of another client, expired refresh token, or no such session. Nothing changed.
    Invalid,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// First use: here is what was stored with the code. It is now spent.
    Redeemed(Vec<u8>),
    /// Already used; the session it issued (to be revoked, RFC 6749 §4.1.2).
    Replayed(SessionId),
    /// Never issued, or expired.
    Unknown,
}

/// Short-lived records that are neither sessions nor codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A started IB login, keyed by the poll token's hash.
    LoginAttempt,
    /// A dynamically registered client, keyed by its client id.
    Client,
}

impl RecordKind {
    pub fn key_part(self) -> &'static str {
        match self {
            RecordKind::LoginAttempt => "login",
            RecordKind::Client => "client",
        }
    }
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// `memory` or `redis`, for metrics and logs.
    fn backend(&self) -> &'static str;

    /// Stores a new session whose current refresh token has the hash `refresh`, valid until
    /// `refresh_expires_at`. The session's record lives until `sid_expiry` plus a short tail.
    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        refresh_expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError>;

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;

    /// The session and, in the same atomic round trip, its request count in rate-limit window `window`
    /// (incremented by this call; the counter lives `window_seconds`). No session: no count (0).
    async fn get_session_metered(
        &self,
        id: &SessionId,
        window: u64,
        window_seconds: u64,
    ) -> Result<(Option<Session>, u64), StoreError>;

    /// Adds `add` requests (0: none, only read) to the session's count in rate-limit window `window` — the
    /// counter [`Self::get_session_metered`] increments — and returns the count. The approximate rate-limit
    /// backend's sync.
    async fn add_to_meter(&self, id: &SessionId, window: u64, add: u64, window_seconds: u64)
        -> Result<u64, StoreError>;

    /// [`Self::add_to_meter`] for many sessions of one window, in as few round trips as the store can; one
    /// result per entry, in order.
    async fn add_to_meters(
        &self,
        window: u64,
        adds: &[(SessionId, u64)],
        window_seconds: u64,
    ) -> Vec<Result<u64, StoreError>> {
        let mut totals = Vec::with_capacity(adds.len());
        for (id, add) in adds {
            totals.push(self.add_to_meter(id, window, *add, window_seconds).await);
        }
        totals
    }

    /// Rotates a refresh token atomically; see [`RotateOutcome`].
    async fn rotate_refresh(&self, request: &RotateRequest<'_>) -> Result<RotateOutcome, StoreError>;

    /// Ends a session and every token of it (`Revoked` or `UpstreamRejected`). Returns whether an active
    /// session was ended; ending an ended or unknown session changes nothing.
    async fn end_session(&self, id: &SessionId, state: SessionState) -> Result<bool, StoreError>;

    /// Ends the session a replayed authorization code issued (RFC 6749 §4.1.2), at any moment of its life: an
    /// active session is revoked like [`Self::end_session`]; a session the redeeming request has not created
    /// yet can never be created (its id is reserved as revoked for `reserve_seconds`, and `create_session`
    /// then fails with [`StoreError::SessionIdTaken`]). Returns whether it ended or reserved anything.
    async fn end_issued_session(&self, id: &SessionId, reserve_seconds: u64) -> Result<bool, StoreError>;

    /// Ends the session (`Revoked`) if `presented` is its current or a retired refresh token and the session
    /// belongs to `client_id` (RFC 7009: a client revokes only its own tokens). Returns whether it ended one.
    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        client_id: &str,
    ) -> Result<bool, StoreError>;

    /// The session whose *current* refresh token is `presented`, with that token's expiry (introspection).
    async fn find_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<(Session, u64)>, StoreError>;

    /// Stores what an authorization code grants, for `ttl` seconds.
    async fn put_code(&self, code: &TokenHash, grant: &[u8], ttl: u64) -> Result<(), StoreError>;

    /// Spends a code exactly once. On first use it records `issued` (the session the caller is about to create)
    /// for `replay_window` seconds, so a replay can name the session to revoke.
    async fn redeem_code(
        &self,
        code: &TokenHash,
        issued: &SessionId,
        replay_window: u64,
    ) -> Result<CodeRedemption, StoreError>;

    async fn put_record(&self, kind: RecordKind, key: &str, value: &[u8], ttl: u64) -> Result<(), StoreError>;

    async fn get_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads and deletes a record in one step: of two concurrent takers, one gets it.
    async fn take_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The stored sessions of one IB user (by `IbUser::uuid`) that have not ended (they may be past `sid_expiry`,
    /// until their record expires: `sid_expiry` plus [`EXPIRED_SESSION_TAIL_SECONDS`]); at most `limit`, oldest
    /// first, and whether there are more. The index behind it is written with the session (memory: under the
    /// same lock; Redis: before it, so a stored session is always in its user's index). An ended session leaves
    /// the index when a listing meets it, so ended sessions never take the places of live ones.
    async fn user_sessions(&self, user: &str, limit: usize) -> Result<UserSessions, StoreError>;

    /// Sessions currently stored (exact for memory; for Redis, see the implementation).
    async fn session_count(&self) -> Result<u64, StoreError>;

    /// Is the store reachable?
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Builds the store the configuration names.
pub async fn from_config(config: &Config) -> Result<Arc<dyn TokenStore>, StoreError> {
    Ok(match config.store.backend {
        StoreBackend::Memory => Arc::new(memory::MemoryStore::new(&config.store.memory)),
        StoreBackend::Redis => Arc::new(redis::RedisStore::connect(&config.store.redis).await?),
    })
}

/// Seconds a session's record is kept from `now`.
pub(crate) fn session_record_ttl(session: &Session, now: u64) -> u64 {
    (session.sid_expiry + EXPIRED_SESSION_TAIL_SECONDS).saturating_sub(now).max(1)
}

/// The current Unix time in seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The store as the gateway uses it: the configured backend, connected on first use inside whichever runtime
/// first needs it (Pingora creates its runtimes after daemonizing, and a connection's driver task must live in
/// a runtime that lives; a failed attempt is retried on the next call), with every operation timed into the
/// metrics.
pub struct SharedStore {
    config: Arc<Config>,
    inner: tokio::sync::OnceCell<Arc<dyn TokenStore>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl SharedStore {
    pub fn new(config: Arc<Config>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let inner = tokio::sync::OnceCell::new();
        if config.store.backend == StoreBackend::Memory {
            let memory: Arc<dyn TokenStore> = Arc::new(memory::MemoryStore::new(&config.store.memory));
            let _ = inner.set(memory);
        }
        SharedStore { config, inner, metrics }
    }

    /// Around a store made already (the bench's loader serves a memory store it filled itself), timed like any.
    /// Not in production builds (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn around(store: Arc<dyn TokenStore>, config: Arc<Config>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        let inner = tokio::sync::OnceCell::new_with(Some(store));
        SharedStore { config, inner, metrics }
    }

    async fn get(&self) -> Result<&Arc<dyn TokenStore>, StoreError> {
        self.inner.get_or_try_init(|| from_config(&self.config)).await
    }

    /// Runs a store operation, timing it into the metrics and, within a sampled trace whose spans are
    /// exported, into a span under the request's.
    async fn timed<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = trace::export::enabled()
            .then(trace::current)
            .flatten()
            .filter(|parent| parent.sampled)
            .map(|parent| (parent, std::time::SystemTime::now()));
        let started = std::time::Instant::now();
        let result = work.await;
        let elapsed = started.elapsed();
        self.metrics.observe_store(operation, self.backend(), elapsed, result.is_ok());
        if let Some((parent, start)) = span {
            let mut span = FinishedSpan::child(parent, format!("store {operation}"), Kind::Client, start);
            span.end = start + elapsed;
            span.attributes =
                vec![KeyValue::new("db.system.name", self.backend()), KeyValue::new("db.operation.name", operation)];
            span.failed = result.is_err();
            trace::export::record(span);
        }
        result
    }
}

#[async_trait]
impl TokenStore for SharedStore {
    fn backend(&self) -> &'static str {
        match self.config.store.backend {
            StoreBackend::Memory => "memory",
            StoreBackend::Redis => "redis",
        }
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        refresh_expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.timed("create_session", async {
            self.get().await?.create_session(session, refresh, refresh_expires_at, now).await
        })
        .await
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.timed("get_session", async { self.get().await?.get_session(id).await }).await
    }

    async fn get_session_metered(
        &self,
        id: &SessionId,
        window: u64,
        window_seconds: u64,
    ) -> Result<(Option<Session>, u64), StoreError> {
        self.timed("get_session_metered", async {
            self.get().await?.get_session_metered(id, window, window_seconds).await
        })
        .await
    }

    async fn add_to_meter(
        &self,
        id: &SessionId,
        window: u64,
        add: u64,
        window_seconds: u64,
    ) -> Result<u64, StoreError> {
        self.timed("add_to_meter", async { self.get().await?.add_to_meter(id, window, add, window_seconds).await })
            .await
    }

    async fn add_to_meters(
        &self,
        window: u64,
        adds: &[(SessionId, u64)],
        window_seconds: u64,
    ) -> Vec<Result<u64, StoreError>> {
        // Timed as one operation, failed when no entry was added.
        let totals = self
            .timed("add_to_meters", async {
                let totals = self.get().await?.add_to_meters(window, adds, window_seconds).await;
                match totals.iter().find_map(|total| total.as_ref().err()) {
                    Some(error) if totals.iter().all(Result::is_err) => Err(error.clone()),
                    _ => Ok(totals),
                }
            })
            .await;
        totals.unwrap_or_else(|error| vec![Err(error); adds.len()])
    }

    async fn rotate_refresh(&self, request: &RotateRequest<'_>) -> Result<RotateOutcome, StoreError> {
        self.timed("rotate_refresh", async { self.get().await?.rotate_refresh(request).await }).await
    }

    async fn end_session(&self, id: &SessionId, state: SessionState) -> Result<bool, StoreError> {
        self.timed("end_session", async { self.get().await?.end_session(id, state).await }).await
    }

    async fn end_issued_session(&self, id: &SessionId, reserve_seconds: u64) -> Result<bool, StoreError> {
        self.timed("end_issued_session", async { self.get().await?.end_issued_session(id, reserve_seconds).await })
            .await
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        self.timed("revoke_by_refresh", async { self.get().await?.revoke_by_refresh(id, presented, client_id).await })
            .await
    }

    async fn find_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<(Session, u64)>, StoreError> {
        self.timed("find_by_refresh", async { self.get().await?.find_by_refresh(id, presented).await }).await
    }

    async fn put_code(&self, code: &TokenHash, grant: &[u8], ttl: u64) -> Result<(), StoreError> {
        self.timed("put_code", async { self.get().await?.put_code(code, grant, ttl).await }).await
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        issued: &SessionId,
        replay_window: u64,
    ) -> Result<CodeRedemption, StoreError> {
        self.timed("redeem_code", async { self.get().await?.redeem_code(code, issued, replay_window).await }).await
    }

    async fn put_record(&self, kind: RecordKind, key: &str, value: &[u8], ttl: u64) -> Result<(), StoreError> {
        self.timed("put_record", async { self.get().await?.put_record(kind, key, value, ttl).await }).await
    }

    async fn get_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("get_record", async { self.get().await?.get_record(kind, key).await }).await
    }

    async fn take_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("take_record", async { self.get().await?.take_record(kind, key).await }).await
    }

    async fn user_sessions(&self, user: &str, limit: usize) -> Result<UserSessions, StoreError> {
        self.timed("user_sessions", async { self.get().await?.user_sessions(user, limit).await }).await
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        self.timed("session_count", async { self.get().await?.session_count().await }).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", async { self.get().await?.ping().await }).await
    }
}
