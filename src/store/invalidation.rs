//! The subscriber that keeps [`SessionCache`] exact: per gateway instance, one pub/sub connection to every
//! master, listening on `P:invalidate`, where every script that changes a session publishes its key.
//!
//! Loss is made detectable rather than bounded by the copies' age:
//! - **Numbered heartbeats.** Every `heartbeat` the subscriber publishes `<round>:<node>` on its own channel
//!   `P:invalidate:hb:<instance>` on each master, through a second, plain connection to that master (a
//!   subscribed RESP2 connection takes no other command). Redis delivers what one node publishes to one
//!   connection in order, so when round *n* has come back through the subscription to every master, every
//!   invalidation published before round *n* was sent has been applied, and the cache may serve copies until
//!   twice the heartbeat after that send ([`SessionCache::confirm`]). A round not back within the command
//!   timeout, or one that comes back out of order, drops every subscription and flushes the cache.
//! - **Every master, directly.** Standalone: the one server. Sentinel: the master the sentinels name. Cluster:
//!   every master in `CLUSTER SLOTS`; a script runs on the master of its key's slot and publishes there, so the
//!   message reaches this instance on a direct connection and never depends on the cluster bus (a classic
//!   `PUBLISH` is also forwarded to the other nodes, and arrives again through their subscriptions: harmless,
//!   an invalidation is idempotent).
//! - **Still the master.** With every heartbeat each node is asked its `ROLE`; a demoted master still answers
//!   `PING` and still echoes our heartbeats, but no script publishes there any more, so a node that is no longer
//!   the master drops the subscriptions (the cache flushed) and they are made again on the current masters. In a
//!   Cluster the slot map is read again every heartbeat, and any change of the set of masters does the same.
//!
//! The connection dropping, a failed command, or a failed reconnection all flush the cache; reads go to Redis
//! until a new subscription's first heartbeat is back.

use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::Value;

use super::cache::SessionCache;

/// The master as Sentinel names it now (the subscription follows failovers).
#[async_trait::async_trait]
pub(crate) trait MasterClient: Send + Sync {
    async fn master_client(&self) -> ::redis::RedisResult<::redis::Client>;
}

/// Where to subscribe.
pub(crate) enum Source {
    /// Standalone: one URL.
    Standalone(String),
    /// Cluster seed nodes (tried in turn to read the slot map; every master is subscribed to).
    Cluster(Vec<String>),
    Sentinel(Arc<dyn MasterClient>),
}

/// How the subscriber runs.
pub(crate) struct Settings {
    /// `P:invalidate`.
    pub channel: String,
    /// Each command's limit, and how long a heartbeat may take to come back.
    pub timeout: Duration,
    /// How often a heartbeat round is sent; copies are served until twice this after the newest confirmed one.
    pub heartbeat: Duration,
}

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Subscribes until the cache is dropped (the store is gone); never returns an error.
pub(crate) async fn run(source: Source, settings: Settings, cache: Weak<SessionCache>) {
    let instance = format!("{:016x}", rand::random::<u64>());
    let heartbeat_channel = format!("{}:hb:{instance}", settings.channel);
    let mut attempt = 0usize;
    let mut backoff = Duration::from_millis(50);
    loop {
        if cache.strong_count() == 0 {
            return;
        }
        match subscribe(&source, attempt, &settings, &heartbeat_channel, &cache).await {
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

/// One master: its subscribed connection's messages and a plain connection for commands.
struct Node {
    address: String,
    commands: MultiplexedConnection,
}

/// A message from node `.0`; `None` when that node's subscription ended.
type Delivery = (usize, Option<::redis::Msg>);

fn failed(what: &'static str) -> impl Fn(::redis::RedisError) -> String {
    move |e| format!("{what}: {e}")
}

async fn within<T>(
    timeout: Duration,
    what: &'static str,
    future: impl std::future::Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, future).await.map_err(|_| format!("{what} timed out"))?.map_err(failed(what))
}

/// A Cluster's masters as `CLUSTER SLOTS` names them.
type Masters = BTreeSet<(String, u16)>;

/// The clients to subscribe through, one per master, and in a Cluster the slot map's masters they came from.
async fn masters(
    source: &Source,
    attempt: usize,
    timeout: Duration,
) -> Result<(Vec<(String, ::redis::Client)>, Option<Masters>), String> {
    match source {
        Source::Standalone(url) => {
            let client = ::redis::Client::open(url.as_str()).map_err(failed("bad URL"))?;
            Ok((vec![(address_of(&client), client)], None))
        }
        Source::Sentinel(sentinel) => {
            let client = within(timeout, "asking the sentinels", sentinel.master_client()).await?;
            Ok((vec![(address_of(&client), client)], None))
        }
        Source::Cluster(seeds) => {
            let seed = &seeds[attempt % seeds.len().max(1)];
            let client = ::redis::Client::open(seed.as_str()).map_err(failed("bad URL"))?;
            let mut connection = commands_connection(&client, timeout).await?;
            let addresses = cluster_masters(&mut connection, timeout).await?;
            let seed = url::Url::parse(seed).map_err(|e| format!("bad URL: {e}"))?;
            let clients = addresses
                .iter()
                .map(|(host, port)| {
                    let mut url = seed.clone();
                    if !host.is_empty() {
                        url.set_host(Some(host)).map_err(|e| format!("bad node address: {e}"))?;
                    }
                    url.set_port(Some(*port)).map_err(|_| "bad node port".to_string())?;
                    let client = ::redis::Client::open(url.as_str()).map_err(failed("bad node URL"))?;
                    Ok((address_of(&client), client))
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok((clients, Some(addresses)))
        }
    }
}

/// A plain connection whose commands wait `timeout` (the library's own default, 500 ms, would cut a slow
/// heartbeat short of the configured command timeout).
async fn commands_connection(client: &::redis::Client, timeout: Duration) -> Result<MultiplexedConnection, String> {
    let config =
        ::redis::AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(timeout));
    within(timeout, "connecting", client.get_multiplexed_async_connection_with_config(&config)).await
}

/// `host:port` for logs and comparisons (never the credentials).
fn address_of(client: &::redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// The masters' `(host, port)` from `CLUSTER SLOTS` (an empty host means the node that answered).
async fn cluster_masters(connection: &mut MultiplexedConnection, timeout: Duration) -> Result<Masters, String> {
    let slots: Value =
        within(timeout, "CLUSTER SLOTS", ::redis::cmd("CLUSTER").arg("SLOTS").query_async(connection)).await?;
    let Value::Array(ranges) = slots else { return Err("CLUSTER SLOTS: not an array".into()) };
    let mut masters = BTreeSet::new();
    for range in ranges {
        // [start, end, [host, port, id, ...], replicas...]
        let Value::Array(range) = range else { return Err("CLUSTER SLOTS: a range is not an array".into()) };
        let Some(Value::Array(master)) = range.get(2) else {
            return Err("CLUSTER SLOTS: a range without a master".into());
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => return Err("CLUSTER SLOTS: a master without a host".into()),
        };
        let port = match master.get(1) {
            Some(Value::Int(port)) => u16::try_from(*port).map_err(|_| "CLUSTER SLOTS: a bad port".to_string())?,
            _ => return Err("CLUSTER SLOTS: a master without a port".into()),
        };
        masters.insert((host, port));
    }
    if masters.is_empty() {
        return Err("CLUSTER SLOTS: no master serves a slot".into());
    }
    Ok(masters)
}

/// One subscription to every master, until it fails (`Err`) or the cache is gone (`Ok`).
async fn subscribe(
    source: &Source,
    attempt: usize,
    settings: &Settings,
    heartbeat_channel: &str,
    cache: &Weak<SessionCache>,
) -> Result<(), String> {
    let timeout = settings.timeout;
    let (clients, cluster_masters_then) = masters(source, attempt, timeout).await?;
    let mut nodes = Vec::with_capacity(clients.len());
    let mut deliveries: Vec<BoxStream<'static, Delivery>> = Vec::with_capacity(clients.len());
    let mut sinks = Vec::with_capacity(clients.len());
    for (index, (address, client)) in clients.into_iter().enumerate() {
        let commands = commands_connection(&client, timeout).await?;
        let pubsub = within(timeout, "connecting", client.get_async_pubsub()).await?;
        let (mut sink, messages) = pubsub.split();
        within(timeout, "SUBSCRIBE", sink.subscribe(&[settings.channel.as_str(), heartbeat_channel])).await?;
        sinks.push(sink);
        deliveries
            .push(messages.map(move |m| (index, Some(m))).chain(stream::once(async move { (index, None) })).boxed());
        nodes.push(Node { address, commands });
    }
    let mut deliveries = stream::select_all(deliveries);
    match cache.upgrade() {
        Some(cache) => cache.set_live(true),
        None => return Ok(()),
    }

    let lasting = settings.heartbeat * 2;
    let mut tick = tokio::time::interval(settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    // The round in flight: when it was sent, and which nodes have not echoed it yet.
    let mut pending: Option<(Instant, Vec<bool>)> = None;
    loop {
        let deadline = pending.as_ref().map(|(sent, _)| *sent + timeout);
        tokio::select! {
            delivery = deliveries.next() => {
                let Some((index, message)) = delivery else { return Err("connection closed".into()) };
                let Some(message) = message else {
                    return Err(format!("connection to {} closed", nodes[index].address));
                };
                let Some(cache) = cache.upgrade() else { return Ok(()) };
                if message.get_channel_name() != heartbeat_channel {
                    cache.invalidate_key(message.get_payload_bytes());
                    continue;
                }
                // `<round>:<node>`; a node's own echo is the one that proves its connection delivers.
                let echo = std::str::from_utf8(message.get_payload_bytes())
                    .ok()
                    .and_then(|text| text.split_once(':'))
                    .and_then(|(r, n)| Some((r.parse::<u64>().ok()?, n.parse::<usize>().ok()?)));
                let Some((echoed, from)) = echo else { return Err("an unreadable heartbeat".into()) };
                if from != index {
                    continue;
                }
                let Some((sent, waiting)) = pending.as_mut() else {
                    return Err(format!("heartbeat {echoed} from {} out of order", nodes[index].address));
                };
                if echoed != round || !waiting[index] {
                    return Err(format!("heartbeat {echoed} from {} out of order (expected {round})", nodes[index].address));
                }
                waiting[index] = false;
                if waiting.iter().all(|w| !w) {
                    cache.confirm(*sent, lasting);
                    pending = None;
                }
            }
            _ = sleep_until(deadline) => {
                let (_, waiting) = pending.as_ref().expect("a deadline only with a round in flight");
                let late = waiting.iter().position(|w| *w).map(|i| nodes[i].address.as_str()).unwrap_or("?");
                return Err(format!("heartbeat {round} did not come back from {late} within {timeout:?}"));
            }
            _ = tick.tick(), if pending.is_none() => {
                if cache.strong_count() == 0 {
                    return Ok(());
                }
                round += 1;
                let sent = Instant::now();
                let payloads: Vec<String> = (0..nodes.len()).map(|i| format!("{round}:{i}")).collect();
                let checks = nodes.iter_mut().zip(&payloads).map(|(node, payload)| {
                    let mut pipe = ::redis::pipe();
                    pipe.cmd("PUBLISH").arg(heartbeat_channel).arg(payload).ignore().cmd("ROLE");
                    let address = node.address.as_str();
                    let commands = &mut node.commands;
                    async move {
                        let (role,): (Vec<Value>,) = within(timeout, "heartbeat", pipe.query_async(commands)).await?;
                        if !matches!(role.first(), Some(Value::BulkString(role)) if role == b"master") {
                            return Err(format!("{address} is no longer a master"));
                        }
                        Ok(())
                    }
                });
                futures_util::future::try_join_all(checks).await?;
                if let Some(then) = &cluster_masters_then {
                    if &cluster_masters(&mut nodes[0].commands, timeout).await? != then {
                        return Err("the cluster's masters changed".into());
                    }
                }
                pending = Some((sent, vec![true; nodes.len()]));
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
