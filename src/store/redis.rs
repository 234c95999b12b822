//! The shared store: Redis standalone, Sentinel or Cluster, for several gateway instances.
//!
//! Layout (`P` = `store.redis.key_prefix`):
//! - `P:s:{<session id>}` — one hash per session: grant JSON, `sid_created_at`, `sid_expiry`, `refresh_count`,
//!   state, the current refresh-token hash, the last rotation (for the grace window) and `u:<hash>` for every
//!   retired token. All of a session's state is in one key, so each operation is one script on one slot.
//! - `P:c:<code hash>` — an authorization code (`F:<grant>`), then its spent marker (`S:<session id>`).
//! - `P:login:<key>`, `P:client:<key>` — login attempts and registered clients.
//! - `P:sessions` — sorted set of session ids by `sid_expiry`, only for the session-count estimate.
//! - `P:u:{<user hash>}` — one IB user's sessions (sorted set: session id → when its record expires), for the
//!   admin API. Written (one script, `index_user_session.lua`) *before* the session, because in a Cluster the
//!   two keys are in different slots and cannot change in one step: a stored session is thus always in its
//!   user's index, and an id whose session never got stored is skipped when listing and pruned by its score;
//!   an ended session leaves it when a listing meets it.
//!
//! - `P:invalidate` — the pub/sub channel on which every script that changes a session publishes its key, in the
//!   same atomic step, for the instances' local session caches (`store::cache`, `store::invalidation`).
//!
//! Every key has a TTL but the `P:sessions` index, which is trimmed by score. Atomic operations are Lua scripts (`src/store/lua/`), sent by SHA and loaded on
//! `NOSCRIPT`. A lost connection or a restarted server gives [`StoreError::Unavailable`] and the connection
//! is re-established in the background (ConnectionManager, the cluster client, or a Sentinel re-query).

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use async_trait::async_trait;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::cache::SessionCache;
use super::invalidation;
use super::*;
use crate::config::{RedisConfig, RedisMode};
use crate::session::SessionGrant;

static CREATE_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/create_session.lua")));
static ROTATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rotate.lua")));
static END_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/end_session.lua")));
static END_ISSUED_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/end_issued_session.lua")));
static REVOKE_BY_REFRESH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/revoke_by_refresh.lua")));
static GET_SESSION_METERED: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/get_session_metered.lua")));
/// How many ids of a user's index one read takes.
const USER_INDEX_PAGE: usize = 500;
static INDEX_USER_SESSION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/index_user_session.lua")));
static ADD_TO_METER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/add_to_meter.lua")));
static REDEEM_CODE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/redeem_code.lua")));

/// One connection type for the three deployment modes; cheap to clone.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelConnection>),
}

/// The master as the sentinels name it, re-resolved after a connection error or a `READONLY` reply
/// (the old master was demoted in a failover).
pub(crate) struct SentinelConnection {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    current: parking_lot::Mutex<Option<ConnectionManager>>,
    manager_config: ConnectionManagerConfig,
}

#[async_trait]
impl invalidation::MasterClient for SentinelConnection {
    /// A client for the master as the sentinels name it now (for the invalidation subscription).
    async fn master_client(&self) -> ::redis::RedisResult<::redis::Client> {
        self.sentinels.lock().await.async_get_client().await
    }
}

impl SentinelConnection {
    async fn master(&self) -> ::redis::RedisResult<ConnectionManager> {
        if let Some(manager) = self.current.lock().clone() {
            return Ok(manager);
        }
        let client = self.sentinels.lock().await.async_get_client().await?;
        let manager = ConnectionManager::new_with_config(client, self.manager_config.clone()).await?;
        *self.current.lock() = Some(manager.clone());
        Ok(manager)
    }

    fn forget_master_after(&self, error: &::redis::RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.code() == Some("READONLY") {
            *self.current.lock() = None;
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(s) => Box::pin(async move {
                let result = s.master().await?.req_packed_command(cmd).await;
                if let Err(e) = &result {
                    s.forget_master_after(e);
                }
                result
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(s) => Box::pin(async move {
                let result = s.master().await?.req_packed_commands(cmd, offset, count).await;
                if let Err(e) = &result {
                    s.forget_master_after(e);
                }
                result
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

pub struct RedisStore {
    connection: Connection,
    prefix: String,
    /// `P:invalidate`.
    channel: String,
    /// Hot sessions, exact by the invalidation channel; `None` with `session_cache_max_entries: 0`.
    cache: Option<Arc<SessionCache>>,
}

fn unavailable(error: ::redis::RedisError) -> StoreError {
    // The error text names the failure (refused, timed out, ...) and never a command's arguments.
    StoreError::Unavailable(error.to_string())
}

fn url_with_credentials(raw: &str, config: &RedisConfig, password: Option<&str>) -> Result<String, StoreError> {
    let mut url = url::Url::parse(raw).map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
    if let Some(username) = &config.username {
        let _ = url.set_username(username);
    }
    if let Some(password) = password {
        let _ = url.set_password(Some(password));
    }
    Ok(url.to_string())
}

impl RedisStore {
    /// Connects as configured. Fails when no server answers, so a misconfigured gateway does not start.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let password = match &config.password {
            Some(source) => Some(source.resolve().map_err(|e| StoreError::Unavailable(e.to_string()))?),
            None => None,
        };
        let password = password.as_ref().map(|p| p.expose());
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let response_timeout = Duration::from_millis(config.command_timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let subscribe_to;
        let connection = match config.mode {
            RedisMode::Standalone => {
                let url = url_with_credentials(&config.urls[0], config, password)?;
                subscribe_to = invalidation::Source::Standalone(url.clone());
                let client = ::redis::Client::open(url).map_err(unavailable)?;
                let manager = ConnectionManager::new_with_config(client, manager_config).await.map_err(unavailable)?;
                Connection::Single(manager)
            }
            RedisMode::Cluster => {
                let urls = config
                    .urls
                    .iter()
                    .map(|u| url_with_credentials(u, config, password))
                    .collect::<Result<Vec<_>, _>>()?;
                subscribe_to = invalidation::Source::Cluster(urls.clone());
                let client = ::redis::cluster::ClusterClient::builder(urls)
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .build()
                    .map_err(unavailable)?;
                Connection::Cluster(client.get_async_connection().await.map_err(unavailable)?)
            }
            RedisMode::Sentinel => {
                let mut node = ::redis::RedisConnectionInfo::default();
                if let Some(username) = &config.username {
                    node = node.set_username(username);
                }
                if let Some(password) = password {
                    node = node.set_password(password);
                }
                let node_info = SentinelNodeConnectionInfo::default().set_redis_connection_info(node);
                let sentinels = SentinelClient::build(
                    config.urls.clone(),
                    config.sentinel_master.clone(),
                    Some(node_info),
                    SentinelServerType::Master,
                )
                .map_err(unavailable)?;
                let sentinel = SentinelConnection {
                    sentinels: tokio::sync::Mutex::new(sentinels),
                    current: parking_lot::Mutex::new(None),
                    manager_config,
                };
                sentinel.master().await.map_err(unavailable)?;
                let sentinel = Arc::new(sentinel);
                subscribe_to = invalidation::Source::Sentinel(sentinel.clone());
                Connection::Sentinel(sentinel)
            }
        };
        let channel = format!("{}:invalidate", config.key_prefix);
        let cache = (config.session_cache_max_entries > 0).then(|| {
            let max_age = Duration::from_millis(config.session_cache_max_age_ms);
            let cache = Arc::new(SessionCache::new(config.session_cache_max_entries, max_age));
            let settings = invalidation::Settings {
                channel: channel.clone(),
                timeout: response_timeout,
                heartbeat: Duration::from_millis(config.session_cache_heartbeat_ms),
            };
            tokio::spawn(invalidation::run(subscribe_to, settings, Arc::downgrade(&cache)));
            cache
        });
        let store = RedisStore { connection, prefix: config.key_prefix.clone(), channel, cache };
        store.ping().await?;
        Ok(store)
    }

    fn session_key(&self, id: &SessionId) -> String {
        format!("{}:s:{{{}}}", self.prefix, id.as_str())
    }

    /// A session's request counter in one rate-limit window, in the session's slot.
    fn meter_key(&self, id: &SessionId, window: u64) -> String {
        format!("{}:rl:{{{}}}:{window}", self.prefix, id.as_str())
    }

    fn code_key(&self, code: &TokenHash) -> String {
        format!("{}:c:{}", self.prefix, code.encoded())
    }

    fn record_key(&self, kind: RecordKind, key: &str) -> String {
        format!("{}:{}:{}", self.prefix, kind.key_part(), key)
    }

    /// The user's uuid comes from IB: hashed, so it cannot shape the key (or its hash tag).
    fn user_key(&self, user: &str) -> String {
        format!("{}:u:{{{}}}", self.prefix, TokenHash::of(user).encoded())
    }

    fn index_key(&self) -> String {
        format!("{}:sessions", self.prefix)
    }

    /// A record's value by `GET`, or by `GETDEL` (read and deleted in one step).
    async fn read_record(&self, command: &str, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ::redis::cmd(command)
            .arg(self.record_key(kind, key))
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    /// The session and this window's count for it, read and counted in one script (both keys carry the
    /// session's hash tag: one Cluster slot).
    async fn read_session_metered(
        &self,
        id: &SessionId,
        window: u64,
        window_seconds: u64,
    ) -> Result<(Option<Session>, u64), StoreError> {
        let meter = self.meter_key(id, window);
        let reply: Vec<Vec<u8>> = GET_SESSION_METERED
            .key(self.session_key(id))
            .key(meter)
            .arg(window_seconds)
            .invoke_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let count = reply
            .first()
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("meter count".into()))?;
        Ok((session_from_fields(id, reply.get(1..).unwrap_or_default())?, count))
    }

    /// `add_to_meter.lua` over the given sessions' counters of one window: their new counts, in order.
    async fn add_to_meters_in_one_call<'a>(
        &self,
        window: u64,
        adds: impl Iterator<Item = (&'a SessionId, u64)> + Clone,
        window_seconds: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut invocation = ADD_TO_METER.prepare_invoke();
        for (id, _) in adds.clone() {
            invocation.key(self.meter_key(id, window));
        }
        for (_, add) in adds {
            invocation.arg(add);
        }
        invocation.arg(window_seconds).invoke_async(&mut self.connection()).await.map_err(unavailable)
    }

    async fn read_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let fields: Vec<Vec<u8>> = ::redis::cmd("HMGET")
            .arg(self.session_key(id))
            .arg(&["g", "ca", "ex", "rc", "lr", "st"])
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        session_from_fields(id, &fields)
    }

    fn forget(&self, id: &SessionId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(id);
        }
    }

    /// Is the local session cache serving (on, its subscription up, and its newest heartbeat recent enough)?
    /// For tests and the admin listener.
    pub fn session_cache_live(&self) -> bool {
        self.cache.as_ref().is_some_and(|cache| cache.is_serving())
    }

    fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Runs a script that ends a session (1: ended, 0: nothing to end) and drops it from the count index.
    async fn end_with(&self, id: &SessionId, invocation: ::redis::ScriptInvocation<'_>) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let ended: i64 = invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        if ended == 1 {
            // The script published the change for every instance; this one need not wait for its own message.
            self.forget(id);
            // Best effort: the index only feeds the active-sessions estimate.
            let _: ::redis::RedisResult<()> =
                ::redis::cmd("ZREM").arg(self.index_key()).arg(id.as_str()).query_async(&mut connection).await;
        }
        Ok(ended == 1)
    }
}

/// Rebuilds a session from the fields `g ca ex rc lr st` (in that order).
fn session_from_fields(id: &SessionId, fields: &[Vec<u8>]) -> Result<Option<Session>, StoreError> {
    if fields.len() < 6 || fields[0].is_empty() {
        return Ok(None);
    }
    let corrupt = |what: &str| StoreError::Corrupt(format!("session field {what}"));
    let text = |i: usize| std::str::from_utf8(&fields[i]).map_err(|_| corrupt("encoding"));
    let number = |i: usize, what: &str| text(i)?.parse::<u64>().map_err(|_| corrupt(what));
    let grant: SessionGrant = serde_json::from_slice(&fields[0]).map_err(|_| corrupt("grant"))?;
    let last_refresh_at = match text(4)? {
        "" => None,
        _ => Some(number(4, "last_refresh_at")?),
    };
    Ok(Some(Session {
        id: id.clone(),
        grant: Arc::new(grant),
        sid_created_at: number(1, "sid_created_at")?,
        sid_expiry: number(2, "sid_expiry")?,
        refresh_count: u32::try_from(number(3, "refresh_count")?).map_err(|_| corrupt("refresh_count"))?,
        last_refresh_at,
        state: SessionState::parse(text(5)?).ok_or_else(|| corrupt("state"))?,
    }))
}

fn status_from_refusal(reason: &[u8]) -> Result<SessionStatus, StoreError> {
    Ok(match reason {
        b"revoked" => SessionStatus::Revoked,
        b"upstream_rejected" => SessionStatus::UpstreamRejected,
        b"expired" => SessionStatus::Expired,
        b"refresh_limit_exceeded" => SessionStatus::RefreshLimitExceeded,
        _ => return Err(StoreError::Corrupt("rotation refusal reason".into())),
    })
}

#[async_trait]
impl TokenStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        refresh_expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let grant = serde_json::to_string(session.grant.as_ref())
            .map_err(|e| StoreError::Corrupt(format!("cannot encode grant: {e}")))?;
        let ttl = session_record_ttl(session, now);
        let mut connection = self.connection();
        let _: i64 = INDEX_USER_SESSION
            .key(self.user_key(&session.grant.user.uuid))
            .arg(session.id.as_str())
            .arg(now + ttl)
            .arg(now)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let created: i64 = CREATE_SESSION
            .key(self.session_key(&session.id))
            .arg(grant)
            .arg(session.sid_created_at)
            .arg(session.sid_expiry)
            .arg(&session.grant.oauth_client_id)
            .arg(refresh.encoded())
            .arg(refresh_expires_at)
            .arg(ttl)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if created == 0 {
            return Err(StoreError::SessionIdTaken);
        }
        // The count index is best effort: it is only for the active-sessions estimate.
        let index = self.index_key();
        let _: ::redis::RedisResult<()> = ::redis::pipe()
            .zrembyscore(&index, "-inf", now as f64)
            .ignore()
            .zadd(&index, session.id.as_str(), session.sid_expiry as f64)
            .ignore()
            .query_async(&mut connection)
            .await;
        Ok(())
    }

    async fn get_session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        if let Some(cache) = &self.cache {
            if let Some(session) = cache.get(id) {
                return Ok(Some(session));
            }
            let ticket = cache.begin_read();
            let session = self.read_session(id).await?;
            if let Some(session) = &session {
                cache.keep(ticket, session);
            }
            return Ok(session);
        }
        self.read_session(id).await
    }

    /// One round trip either way: a session the cache holds costs only the count (`add_to_meter.lua`); any
    /// other is read together with its count (`get_session_metered.lua`) and kept.
    async fn get_session_metered(
        &self,
        id: &SessionId,
        window: u64,
        window_seconds: u64,
    ) -> Result<(Option<Session>, u64), StoreError> {
        let Some(cache) = &self.cache else {
            return self.read_session_metered(id, window, window_seconds).await;
        };
        if let Some(session) = cache.get(id) {
            let count = self.add_to_meter(id, window, 1, window_seconds).await?;
            return Ok((Some(session), count));
        }
        let ticket = cache.begin_read();
        let (session, count) = self.read_session_metered(id, window, window_seconds).await?;
        if let Some(session) = &session {
            cache.keep(ticket, session);
        }
        Ok((session, count))
    }

    async fn add_to_meter(
        &self,
        id: &SessionId,
        window: u64,
        add: u64,
        window_seconds: u64,
    ) -> Result<u64, StoreError> {
        let counts = self.add_to_meters_in_one_call(window, std::iter::once((id, add)), window_seconds).await?;
        counts.first().copied().ok_or_else(|| StoreError::Corrupt("meter count".into()))
    }

    /// One script call per session on Cluster (each counter is in its session's slot), concurrently; one call
    /// for all of them elsewhere.
    async fn add_to_meters(
        &self,
        window: u64,
        adds: &[(SessionId, u64)],
        window_seconds: u64,
    ) -> Vec<Result<u64, StoreError>> {
        if adds.is_empty() {
            return Vec::new();
        }
        if matches!(self.connection, Connection::Cluster(_)) {
            let each = adds.iter().map(|(id, add)| self.add_to_meter(id, window, *add, window_seconds));
            return futures_util::future::join_all(each).await;
        }
        let all = adds.iter().map(|(id, add)| (id, *add));
        match self.add_to_meters_in_one_call(window, all, window_seconds).await {
            Ok(counts) if counts.len() == adds.len() => counts.into_iter().map(Ok).collect(),
            Ok(_) => vec![Err(StoreError::Corrupt("meter counts".into())); adds.len()],
            Err(error) => vec![Err(error); adds.len()],
        }
    }

    async fn rotate_refresh(&self, request: &RotateRequest<'_>) -> Result<RotateOutcome, StoreError> {
        let reply: Vec<Vec<u8>> = ROTATE
            .key(self.session_key(request.session_id))
            .arg(request.presented.encoded())
            .arg(request.successor.encoded())
            .arg(request.sealed_successor)
            .arg(request.client_id)
            .arg(request.now)
            .arg(request.limits.max_refresh_count)
            .arg(request.grace_seconds)
            .arg(request.refresh_ttl)
            .arg(&self.channel)
            .invoke_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let session = |reply: &[Vec<u8>]| -> Result<Session, StoreError> {
            session_from_fields(request.session_id, &reply[2..])?
                .ok_or_else(|| StoreError::Corrupt("rotated session vanished".into()))
        };
        let outcome = match reply.first().map(Vec::as_slice) {
            Some(b"rotated") if reply.len() == 8 => RotateOutcome::Rotated(session(&reply)?),
            Some(b"repeated") if reply.len() == 8 => RotateOutcome::Repeated {
                session: session(&reply)?,
                sealed_successor: String::from_utf8(reply[1].clone())
                    .map_err(|_| StoreError::Corrupt("sealed successor".into()))?,
            },
            Some(b"refused") if reply.len() == 2 => RotateOutcome::Refused(status_from_refusal(&reply[1])?),
            Some(b"reuse") => RotateOutcome::ReuseDetected,
            Some(b"invalid") => RotateOutcome::Invalid,
            _ => return Err(StoreError::Corrupt("unexpected rotation reply".into())),
        };
        if matches!(outcome, RotateOutcome::Rotated(_) | RotateOutcome::ReuseDetected) {
            self.forget(request.session_id);
        }
        Ok(outcome)
    }

    async fn end_session(&self, id: &SessionId, state: SessionState) -> Result<bool, StoreError> {
        let mut invocation = END_SESSION.key(self.session_key(id));
        invocation.arg(state.as_str()).arg(&self.channel);
        self.end_with(id, invocation).await
    }

    async fn end_issued_session(&self, id: &SessionId, reserve_seconds: u64) -> Result<bool, StoreError> {
        let mut invocation = END_ISSUED_SESSION.key(self.session_key(id));
        invocation.arg(reserve_seconds.max(1)).arg(&self.channel);
        self.end_with(id, invocation).await
    }

    async fn revoke_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        let mut invocation = REVOKE_BY_REFRESH.key(self.session_key(id));
        invocation.arg(presented.encoded()).arg(client_id).arg(&self.channel);
        self.end_with(id, invocation).await
    }

    async fn find_by_refresh(
        &self,
        id: &SessionId,
        presented: &TokenHash,
    ) -> Result<Option<(Session, u64)>, StoreError> {
        let fields: Vec<Vec<u8>> = ::redis::cmd("HMGET")
            .arg(self.session_key(id))
            .arg(&["g", "ca", "ex", "rc", "lr", "st", "rt", "rx"])
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        if fields.len() != 8 || fields[6] != presented.encoded().as_bytes() {
            return Ok(None);
        }
        let expires_at = std::str::from_utf8(&fields[7]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        Ok(session_from_fields(id, &fields[..6])?.map(|session| (session, expires_at)))
    }

    async fn put_code(&self, code: &TokenHash, grant: &[u8], ttl: u64) -> Result<(), StoreError> {
        let mut value = b"F:".to_vec();
        value.extend_from_slice(grant);
        ::redis::cmd("SET")
            .arg(self.code_key(code))
            .arg(value)
            .arg("EX")
            .arg(ttl.max(1))
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    async fn redeem_code(
        &self,
        code: &TokenHash,
        issued: &SessionId,
        replay_window: u64,
    ) -> Result<CodeRedemption, StoreError> {
        let reply: (String, Vec<u8>) = REDEEM_CODE
            .key(self.code_key(code))
            .arg(issued.as_str())
            .arg(replay_window.max(1))
            .invoke_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        Ok(match reply.0.as_str() {
            "redeemed" => CodeRedemption::Redeemed(reply.1),
            "replayed" => match std::str::from_utf8(&reply.1).ok().and_then(SessionId::parse) {
                Some(session) => CodeRedemption::Replayed(session),
                None => return Err(StoreError::Corrupt("spent code marker".into())),
            },
            _ => CodeRedemption::Unknown,
        })
    }

    async fn put_record(&self, kind: RecordKind, key: &str, value: &[u8], ttl: u64) -> Result<(), StoreError> {
        ::redis::cmd("SET")
            .arg(self.record_key(kind, key))
            .arg(value)
            .arg("EX")
            .arg(ttl.max(1))
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    async fn get_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_record("GET", kind, key).await
    }

    async fn take_record(&self, kind: RecordKind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_record("GETDEL", kind, key).await
    }

    async fn user_sessions(&self, user: &str, limit: usize) -> Result<UserSessions, StoreError> {
        let key = self.user_key(user);
        let now = now_unix();
        let mut read = Vec::new();
        // Page through the index (ordered by record expiry, not age) until `limit` live sessions are found
        // beyond the first, or the index ends; ended sessions met on the way leave it below.
        let mut offset = 0;
        loop {
            let ids: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg(format!("({now}"))
                .arg("+inf")
                .arg("LIMIT")
                .arg(offset)
                .arg(USER_INDEX_PAGE)
                .query_async(&mut self.connection())
                .await
                .map_err(unavailable)?;
            offset += ids.len();
            // Each session is its own key (its own slot in a Cluster): read them concurrently.
            let reads =
                ids.iter().filter_map(|id| SessionId::parse(id)).map(|id| async move { self.get_session(&id).await });
            for session in futures_util::future::join_all(reads).await {
                // The hash could only collide by accident, but the index must never list another user's session.
                // An id with no session stays: it is indexed before it is stored, and may be being created now.
                read.extend(session?.filter(|session| session.grant.user.uuid == user));
            }
            let live = read.iter().filter(|session| session.state == SessionState::Active).count();
            if ids.len() < USER_INDEX_PAGE || live > limit {
                break;
            }
        }
        let (listed, ended) = split_user_sessions(read, limit);
        if !ended.is_empty() {
            ::redis::cmd("ZREM")
                .arg(&key)
                .arg(ended.iter().map(SessionId::as_str).collect::<Vec<_>>())
                .query_async::<()>(&mut self.connection())
                .await
                .map_err(unavailable)?;
        }
        Ok(listed)
    }

    /// An estimate: sessions created and neither ended nor past `sid_expiry`, from the `P:sessions` index,
    /// which is written after the session itself and not atomically with it.
    async fn session_count(&self) -> Result<u64, StoreError> {
        let index = self.index_key();
        let (count,): (u64,) = ::redis::pipe()
            .zrembyscore(&index, "-inf", now_unix() as f64)
            .ignore()
            .zcard(&index)
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        Ok(count)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        ::redis::cmd("PING").query_async::<String>(&mut self.connection()).await.map(|_| ()).map_err(unavailable)
    }
}
