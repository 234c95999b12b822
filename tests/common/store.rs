//! The token store under test: backends (memory, Redis standalone and cluster), sessions and rotations.
//!
//! Redis-backed tests read `IBGW_TEST_REDIS_URL` (standalone) and `IBGW_TEST_REDIS_CLUSTER_URLS` (seed URLs of
//! a 3-master cluster), which `./scripts/test.sh` exports. A missing variable fails the test: it never skips.
//! Every backend gets a unique key prefix, so tests run in parallel on the same servers.

use std::sync::Arc;

use ib_oauth_gateway::config::{MemoryStoreConfig, RedisConfig, RedisMode};
use ib_oauth_gateway::session::{rules, IbSid, IbUser, Limits, Session, SessionGrant, SessionId};
use ib_oauth_gateway::store::memory::MemoryStore;
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{RotateOutcome, RotateRequest, TokenStore};
use ib_oauth_gateway::tokens::{self, RefreshToken};

pub const STANDALONE_ENV: &str = "IBGW_TEST_REDIS_URL";
pub const CLUSTER_ENV: &str = "IBGW_TEST_REDIS_CLUSTER_URLS";

/// The OAuth client every test session is issued to.
pub const CLIENT: &str = "client-under-test";
/// Default rotation parameters: limits far away, a 30 s grace window, 30-day refresh tokens.
pub const LIMITS: Limits = Limits { max_refresh_count: 100, near_expiry_margin: 300 };
pub const GRACE: u64 = 30;
pub const REFRESH_TTL: u64 = 30 * 86_400;
/// Sessions last this long unless a test says otherwise.
pub const SESSION_HOURS: u32 = 8;

fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: the Redis store tests need a private Redis. Run ./scripts/test.sh, or set \
             IBGW_TEST_REDIS_URL=redis://127.0.0.1:PORT and IBGW_TEST_REDIS_CLUSTER_URLS=redis://H:P1,redis://H:P2,\
             redis://H:P3 (never the system Redis on 6379: tests write keys)"
        ),
    }
}

pub fn standalone_url() -> String {
    env_or_fail(STANDALONE_ENV)
}

pub fn cluster_urls() -> Vec<String> {
    env_or_fail(CLUSTER_ENV).split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect()
}

/// A key prefix no other test (or earlier run) uses.
pub fn unique_prefix() -> String {
    format!("ibgw-test-{}", &tokens::random_secret()[..12])
}

pub fn redis_config(mode: RedisMode, urls: Vec<String>, prefix: &str) -> RedisConfig {
    RedisConfig { mode, urls, key_prefix: prefix.to_string(), ..RedisConfig::default() }
}

/// A raw connection beside the store, to look at what it wrote.
#[derive(Clone)]
pub enum Raw {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Raw {
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let result = match self.clone() {
            Raw::Single(mut c) => cmd.query_async(&mut c).await,
            Raw::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        result.unwrap_or_else(|e| panic!("raw redis command failed: {e}"))
    }
}

/// One store under test.
pub struct Backend {
    pub store: Arc<dyn TokenStore>,
    /// `None` for the memory store.
    pub mode: Option<RedisMode>,
    pub urls: Vec<String>,
    pub prefix: String,
    pub raw: Option<Raw>,
}

impl Backend {
    pub async fn memory() -> Self {
        Backend {
            store: Arc::new(MemoryStore::new(&MemoryStoreConfig::default())),
            mode: None,
            urls: Vec::new(),
            prefix: String::new(),
            raw: None,
        }
    }

    pub async fn redis_standalone() -> Self {
        let url = standalone_url();
        let prefix = unique_prefix();
        let store = RedisStore::connect(&redis_config(RedisMode::Standalone, vec![url.clone()], &prefix))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {STANDALONE_ENV}={url}: {e}"));
        let client = redis::Client::open(url.as_str()).expect("redis URL");
        let raw = client.get_multiplexed_async_connection().await.expect("raw connection");
        Backend {
            store: Arc::new(store),
            mode: Some(RedisMode::Standalone),
            urls: vec![url],
            prefix,
            raw: Some(Raw::Single(raw)),
        }
    }

    pub async fn redis_cluster() -> Self {
        let urls = cluster_urls();
        let prefix = unique_prefix();
        let store = RedisStore::connect(&redis_config(RedisMode::Cluster, urls.clone(), &prefix))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {CLUSTER_ENV}={urls:?}: {e}"));
        let client = redis::cluster::ClusterClient::new(urls.clone()).expect("cluster URLs");
        let raw = client.get_async_connection().await.expect("raw cluster connection");
        Backend { store: Arc::new(store), mode: Some(RedisMode::Cluster), urls, prefix, raw: Some(Raw::Cluster(raw)) }
    }

    /// The Redis key of a session, as documented in `src/store/redis.rs`.
    pub fn session_key(&self, id: &SessionId) -> String {
        format!("{}:s:{{{}}}", self.prefix, id.as_str())
    }

    /// The Redis key of a session's rate-limit counter for `window`.
    pub fn meter_key(&self, id: &SessionId, window: u64) -> String {
        format!("{}:rl:{{{}}}:{window}", self.prefix, id.as_str())
    }
}

pub fn grant_for(client: &str, login_time: Option<u64>, hours: Option<u32>) -> SessionGrant {
    SessionGrant {
        sid: IbSid::new(format!("sid-{}", tokens::random_secret())),
        platform_url: "https://acme.intelligencebank.com".into(),
        api_v3_url: "https://lbv3us1.intelligencebank.com".into(),
        ib_client_id: "ib-client-7".into(),
        user: IbUser {
            uuid: "user-uuid-1".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: Some("ada@example.com".into()),
            login_time,
        },
        login_timeout_hours: hours,
        oauth_client_id: client.into(),
        scope: "profile api".into(),
        resource: None,
    }
}

/// A fresh active session of [`CLIENT`] that began at `now` and lasts [`SESSION_HOURS`].
pub fn new_session(now: u64) -> Session {
    Session::start(SessionId::generate(), grant_for(CLIENT, Some(now), Some(SESSION_HOURS)), now, 120)
}

/// Stores `session` with a fresh refresh token valid for [`REFRESH_TTL`] (capped by the session); returns it.
pub async fn store_session(store: &dyn TokenStore, session: &Session, now: u64) -> RefreshToken {
    let token = RefreshToken::generate(&session.id);
    let expires = rules::refresh_token_expiry(session, now, REFRESH_TTL);
    store.create_session(session, &token.hash(), expires, now).await.expect("create_session");
    token
}

/// Creates and stores a fresh session at `now`.
pub async fn start_session(store: &dyn TokenStore, now: u64) -> (Session, RefreshToken) {
    let session = new_session(now);
    let token = store_session(store, &session, now).await;
    (session, token)
}

/// What a caller prepares before asking the store to rotate `old`: the successor and its sealed form.
pub struct Prepared {
    pub old: RefreshToken,
    pub successor: RefreshToken,
    pub sealed: String,
}

impl Prepared {
    pub fn new(session: &SessionId, old: &RefreshToken) -> Self {
        let successor = RefreshToken::generate(session);
        let sealed = tokens::seal_successor(old, &successor);
        Prepared { old: old.clone(), successor, sealed }
    }

    pub fn request<'a>(&'a self, session: &'a SessionId, now: u64) -> RotateRequest<'a> {
        self.request_with(session, CLIENT, now, LIMITS, GRACE)
    }

    pub fn request_with<'a>(
        &'a self,
        session: &'a SessionId,
        client_id: &'a str,
        now: u64,
        limits: Limits,
        grace_seconds: u64,
    ) -> RotateRequest<'a> {
        RotateRequest {
            session_id: session,
            presented: self.old.hash(),
            successor: self.successor.hash(),
            sealed_successor: &self.sealed,
            client_id,
            now,
            limits,
            grace_seconds,
            refresh_ttl: REFRESH_TTL,
        }
    }
}

/// Asks `store` to rotate `presented` (with a fresh successor of its own) at `now`, with the default
/// parameters; the outcome.
pub async fn rotate_once(
    store: &dyn TokenStore,
    session: &SessionId,
    presented: &RefreshToken,
    now: u64,
) -> RotateOutcome {
    let attempt = Prepared::new(session, presented);
    store.rotate_refresh(&attempt.request(session, now)).await.expect("rotate_refresh")
}
