//! The session cache's staleness bound comes from the invalidation channel, not from the copies' age: each
//! failure of the channel stops the cache from serving copies, on standalone, Sentinel and Cluster.
//!
//! Every test keeps copies for ten minutes (`session_cache_max_age_ms: 600000`) and changes a cached session
//! *behind the cache's back* (a plain `HSET`, which publishes nothing — what a lost invalidation looks like).
//! The store first serves the stale copy, which shows the copy is in use; after the failure it must read the
//! change from Redis. The failures:
//! - the channel falls silent while its connections stay up (`CLIENT PAUSE … WRITE` holds every `PUBLISH`,
//!   heartbeats included, while reads go on): the newest heartbeat lapses and copies stop being served, with
//!   no reconnection (the command timeout is longer than the pause);
//! - a Cluster node restarts: its subscription drops, the cache is flushed, and the subscriber is back on
//!   every master once the node is;
//! - (the subscriber's connection cut and a Sentinel failover: `tests/session_cache.rs`,
//!   `tests/store_sentinel.rs`).
//!
//! The private servers here are started by the tests; deadlines are generous liveness bounds, not timings.

mod common;

use std::time::{Duration, Instant};

use common::redis::{ClusterSet, SentinelSet};
use common::store::*;
use common::RedisServer;
use ib_oauth_gateway::config::{RedisConfig, RedisMode};
use ib_oauth_gateway::session::{Session, SessionState};
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{now_unix, TokenStore};

/// Long enough that no copy expires by age during a test.
const MAX_AGE_MS: u64 = 600_000;
const HEARTBEAT_MS: u64 = 100;

fn cache_config(mode: RedisMode, urls: Vec<String>, command_timeout_ms: u64) -> RedisConfig {
    let mut config = redis_config(mode, urls, &unique_prefix());
    config.session_cache_max_age_ms = MAX_AGE_MS;
    config.session_cache_heartbeat_ms = HEARTBEAT_MS;
    config.command_timeout_ms = command_timeout_ms;
    config
}

fn session_key(config: &RedisConfig, session: &Session) -> String {
    format!("{}:s:{{{}}}", config.key_prefix, session.id.as_str())
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state(store: &RedisStore, session: &Session) -> SessionState {
    store.get_session(&session.id).await.expect("read").expect("the session exists").state
}

/// Connects, waits for the cache to serve, stores a session, reads it once (cached), and revokes it behind the
/// cache's back on `owner` (the node that holds its key): the store still answers `active` from memory.
async fn a_stale_copy<'a>(config: &RedisConfig, owner: impl Fn(&str) -> &'a RedisServer) -> (RedisStore, Session) {
    let store = RedisStore::connect(config).await.expect("connect");
    wait_for("the cache serves", Duration::from_secs(10), async || store.session_cache_live()).await;
    let (session, _) = start_session(&store, now_unix()).await;
    assert_eq!(state(&store, &session).await, SessionState::Active);
    let key = session_key(config, &session);
    assert_eq!(owner(&key).cli(&["HSET", &key, "st", "revoked"]).trim(), "0", "the state field was there");
    assert_eq!(state(&store, &session).await, SessionState::Active, "the copy is served from memory");
    (store, session)
}

/// The ids of the pub/sub clients connected to `server` (a sentinel's own included), sorted.
fn subscribers(server: &RedisServer) -> Vec<u64> {
    let mut ids: Vec<u64> = server
        .cli(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .lines()
        .filter_map(|line| line.split_whitespace().find_map(|field| field.strip_prefix("id="))?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// `server` holds every `PUBLISH` for `pause`; within it the copy stops being served (the heartbeat lapsed),
/// the subscriptions stay the same connections, and once the pause ends the cache serves again.
async fn a_silent_channel_stops_the_cache(store: &RedisStore, session: &Session, server: &RedisServer) {
    let before = subscribers(server);
    assert!(!before.is_empty(), "subscribed to {}", server.url());
    let paused_at = Instant::now();
    let pause = Duration::from_secs(8);
    assert_eq!(server.cli(&["CLIENT", "PAUSE", &pause.as_millis().to_string(), "WRITE"]).trim(), "OK");
    wait_for("the stale copy is no longer served", Duration::from_secs(6), async || {
        state(store, session).await == SessionState::Revoked
    })
    .await;
    eprintln!("a silent channel stopped the cache {:?} after the pause began", paused_at.elapsed());
    assert!(paused_at.elapsed() < pause, "the pause was still on: no heartbeat could have come back");
    assert!(!store.session_cache_live(), "the cache does not serve while the channel is silent");
    assert_eq!(subscribers(server), before, "no reconnection: the lapsed heartbeat alone stopped the cache");
    wait_for("the cache serves again after the pause", Duration::from_secs(20), async || store.session_cache_live())
        .await;
    assert_eq!(state(store, session).await, SessionState::Revoked);
}

/// With a command timeout longer than the pause, only the heartbeat's lapse can stop the cache.
const PATIENT_MS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread")]
async fn standalone_a_silent_channel_stops_the_cache() {
    let server = RedisServer::start();
    let config = cache_config(RedisMode::Standalone, vec![server.url()], PATIENT_MS);
    let (store, session) = a_stale_copy(&config, |_| &server).await;
    a_silent_channel_stops_the_cache(&store, &session, &server).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sentinel_a_silent_channel_stops_the_cache() {
    let set = SentinelSet::start();
    let mut config = cache_config(RedisMode::Sentinel, vec![set.sentinel.url()], PATIENT_MS);
    config.sentinel_master = "ibgw".into();
    let (store, session) = a_stale_copy(&config, |_| &set.master).await;
    a_silent_channel_stops_the_cache(&store, &session, &set.master).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_a_silent_node_stops_the_cache() {
    let cluster = ClusterSet::start();
    let config = cache_config(RedisMode::Cluster, cluster.urls(), PATIENT_MS);
    let (store, session) = a_stale_copy(&config, |key| &cluster.nodes[cluster.owner_of(key)]).await;
    // A node other than the session's: silence from any master stops the cache, as any master may publish.
    let quiet = (cluster.owner_of(&session_key(&config, &session)) + 1) % cluster.nodes.len();
    a_silent_channel_stops_the_cache(&store, &session, &cluster.nodes[quiet]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_a_restarted_node_flushes_the_cache_and_the_subscriber_returns_to_every_master() {
    let mut cluster = ClusterSet::start();
    let config = cache_config(RedisMode::Cluster, cluster.urls(), 1_000);
    let (store, session) = a_stale_copy(&config, |key| &cluster.nodes[cluster.owner_of(key)]).await;
    let channel = format!("{}:invalidate", config.key_prefix);
    let numsub = |node: &RedisServer| -> u32 {
        let reply = node.cli(&["PUBSUB", "NUMSUB", &channel]);
        reply.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    assert!(cluster.nodes.iter().all(|n| numsub(n) == 1), "one subscription on every master");

    // Restart a node that does not hold the session (so the session's state can still be read).
    let other = (cluster.owner_of(&session_key(&config, &session)) + 1) % cluster.nodes.len();
    cluster.nodes[other].restart();
    wait_for("the stale copy is gone", Duration::from_secs(10), async || {
        matches!(store.get_session(&session.id).await, Ok(Some(found)) if found.state == SessionState::Revoked)
    })
    .await;
    cluster.wait_until_ok();
    wait_for("the subscriber is back on every master", Duration::from_secs(30), async || {
        cluster.nodes.iter().all(|n| numsub(n) == 1)
    })
    .await;
    wait_for("the cache serves again", Duration::from_secs(10), async || store.session_cache_live()).await;
}
