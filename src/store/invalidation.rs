//! The subscriber that keeps [`SessionCache`] exact: one pub/sub connection per gateway instance, listening
//! on `P:invalidate`, where every script that changes a session publishes its key.
//!
//! The cache is live only while the subscription is: the connection dropping, a `PING` going unanswered within
//! the command timeout, or a failed reconnection all flush it, and reads go to Redis until a new subscription
//! is confirmed. In a Cluster, a classic `PUBLISH` reaches every node, so one seed node is enough (the next
//! one is tried when it fails); with Sentinel, the subscription follows the current master: with every `PING`
//! the subscribed node is asked its `ROLE` (on a second connection: a subscribed one takes no other command),
//! and once it is no longer the master (a demoted master still answers `PING`) the subscription is dropped —
//! the cache flushed — and made again on the master the sentinels name.

use futures_util::StreamExt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::cache::SessionCache;

/// The master as Sentinel names it now (the subscription follows failovers).
#[async_trait::async_trait]
pub(crate) trait MasterClient: Send + Sync {
    async fn master_client(&self) -> ::redis::RedisResult<::redis::Client>;
}

/// Where to subscribe.
pub(crate) enum Source {
    /// Standalone (one URL) or Cluster seed nodes (tried in turn).
    Urls(Vec<String>),
    Sentinel(Arc<dyn MasterClient>),
}

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Subscribes until the cache is dropped (the store is gone); never returns an error.
pub(crate) async fn run(
    source: Source,
    channel: String,
    cache: Weak<SessionCache>,
    timeout: Duration,
    ping_every: Duration,
) {
    let mut attempt = 0usize;
    let mut backoff = Duration::from_millis(50);
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        match subscribe(&source, attempt, &channel, &cache, timeout, ping_every).await {
            Ok(()) => return,
            Err(error) => {
                if let Some(cache) = cache.upgrade() {
                    if cache.is_live() {
                        log::warn!("session cache: invalidation channel lost ({error}); reading every session from Redis until it is back");
                        backoff = Duration::from_millis(50);
                    }
                    cache.set_live(false);
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One subscription, until it fails (`Err`) or the cache is gone (`Ok`).
async fn subscribe(
    source: &Source,
    attempt: usize,
    channel: &str,
    cache: &Weak<SessionCache>,
    timeout: Duration,
    ping_every: Duration,
) -> Result<(), String> {
    let within = |what: &'static str| move |_| format!("{what} timed out");
    let client = match source {
        Source::Urls(urls) => {
            let url = &urls[attempt % urls.len().max(1)];
            ::redis::Client::open(url.as_str()).map_err(|e| e.to_string())?
        }
        Source::Sentinel(sentinel) => tokio::time::timeout(timeout, sentinel.master_client())
            .await
            .map_err(within("asking the sentinels"))?
            .map_err(|e| e.to_string())?,
    };
    // With Sentinel, a plain connection to the same node, to ask its role.
    let mut role_check = match source {
        Source::Sentinel(_) => Some(
            tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
                .await
                .map_err(within("connecting"))?
                .map_err(|e| e.to_string())?,
        ),
        Source::Urls(_) => None,
    };
    let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(within("connecting"))?
        .map_err(|e| e.to_string())?;
    let (mut sink, mut messages) = pubsub.split();
    tokio::time::timeout(timeout, sink.subscribe(channel))
        .await
        .map_err(within("SUBSCRIBE"))?
        .map_err(|e| e.to_string())?;
    match cache.upgrade() {
        Some(cache) => cache.set_live(true),
        None => return Ok(()),
    }
    let mut ping = tokio::time::interval(ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Err("connection closed".into()) };
                let Some(cache) = cache.upgrade() else { return Ok(()) };
                cache.invalidate_key(message.get_payload_bytes());
            }
            _ = ping.tick() => {
                if cache.strong_count() == 0 {
                    return Ok(());
                }
                tokio::time::timeout(timeout, sink.ping::<::redis::Value>())
                    .await
                    .map_err(within("PING"))?
                    .map_err(|e| e.to_string())?;
                if let Some(connection) = role_check.as_mut() {
                    let role: Vec<::redis::Value> = tokio::time::timeout(timeout, ::redis::cmd("ROLE").query_async(connection))
                        .await
                        .map_err(within("ROLE"))?
                        .map_err(|e| e.to_string())?;
                    if !matches!(role.first(), Some(::redis::Value::BulkString(role)) if role == b"master") {
                        return Err("the subscribed node is no longer the master".into());
                    }
                }
            }
        }
    }
}
