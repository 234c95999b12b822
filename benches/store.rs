//! Token-store benchmarks: the per-request session look-up and a full refresh-token rotation.
//!
//! Memory always; Redis standalone when `IBGW_BENCH_REDIS_URL` names a private server (nothing is started
//! here; keys go under a random `ibgw-bench-*` prefix and are deleted at the end).
//!
//!   cargo bench --bench store -- --warm-up-time 1 --measurement-time 3
//!   IBGW_BENCH_REDIS_URL=redis://127.0.0.1:PORT cargo bench --bench store
//!
//! `rotate_refresh` times only the store call: the caller's work (generating and sealing the successor) is
//! done outside the measurement. Each iteration is a real `Rotated`: a chain of rotations on one session,
//! restarted on a fresh session every `CHAIN` rotations (the default `max_refresh_count`), so the session
//! record has the size it has over a session's life.

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ib_oauth_gateway::config::{MemoryStoreConfig, RedisMode};
use ib_oauth_gateway::session::{Limits, Session, SessionId};
use ib_oauth_gateway::store::memory::MemoryStore;
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{now_unix, RotateOutcome, RotateRequest, TokenStore};
use ib_oauth_gateway::tokens::{self, RefreshToken};

/// The sessions and rotations of the store tests: sessions of `CLIENT` lasting 8 hours.
#[allow(dead_code)]
#[path = "../tests/common/store.rs"]
mod store_support;
use store_support::{redis_config, start_session, Prepared, CLIENT};

const CHAIN: u32 = 120;
const LIMITS: Limits = Limits { max_refresh_count: CHAIN, near_expiry_margin: 300 };
const GRACE: u64 = 10;
/// Sessions stored before timing look-ups, so the look-up is not on a one-entry map.
const PRELOADED_SESSIONS: usize = 10_000;

/// The request of a prepared rotation (prepared by the caller, not timed), with the chain's limits.
fn rotation<'a>(prepared: &'a Prepared, session: &'a SessionId, now: u64) -> RotateRequest<'a> {
    prepared.request_with(session, CLIENT, now, LIMITS, GRACE)
}

/// A session being rotated down its chain.
struct Chain {
    session: Session,
    token: RefreshToken,
    rotations: u32,
}

impl Chain {
    async fn start(store: &dyn TokenStore, now: u64) -> Self {
        let (session, token) = start_session(store, now).await;
        Chain { session, token, rotations: 0 }
    }

    /// One rotation; returns how long the store call took. Panics unless it rotated.
    async fn rotate(&mut self, store: &dyn TokenStore, now: u64) -> Duration {
        if self.rotations == CHAIN {
            *self = Chain::start(store, now).await;
        }
        let prepared = Prepared::new(&self.session.id, &self.token);
        let request = rotation(&prepared, &self.session.id, now);
        let started = Instant::now();
        let outcome = store.rotate_refresh(&request).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(RotateOutcome::Rotated(_)) => {}
            other => panic!("benchmark rotation did not rotate: {other:?}"),
        }
        self.token = prepared.successor;
        self.rotations += 1;
        elapsed
    }
}

fn bench_store(c: &mut Criterion, runtime: &tokio::runtime::Runtime, name: &str, store: Arc<dyn TokenStore>) {
    let now = now_unix();

    // Setup and the once-outside-timing checks.
    let ids: Vec<SessionId> = runtime.block_on(async {
        let mut ids = Vec::with_capacity(PRELOADED_SESSIONS);
        for _ in 0..PRELOADED_SESSIONS {
            ids.push(start_session(store.as_ref(), now).await.0.id);
        }
        let (session, token) = start_session(store.as_ref(), now).await;
        let prepared = Prepared::new(&session.id, &token);
        let outcome = store.rotate_refresh(&rotation(&prepared, &session.id, now)).await.expect("rotate_refresh");
        assert!(matches!(outcome, RotateOutcome::Rotated(ref s) if s.refresh_count == 1), "{outcome:?}");
        assert!(store.get_session(&ids[0]).await.expect("get_session").is_some());
        ids
    });
    let ids = Arc::new(ids);

    let mut group = c.benchmark_group(name);
    group.bench_function("get_session", |b| {
        let mut next = 0usize;
        b.to_async(runtime).iter(|| {
            let (store, ids) = (store.clone(), ids.clone());
            next = (next + 1) % ids.len();
            let i = next;
            async move {
                let session = store.get_session(&ids[i]).await.expect("get_session");
                debug_assert!(session.is_some());
                session
            }
        })
    });
    group.bench_function("rotate_refresh", |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let mut chain = Chain::start(store.as_ref(), now).await;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += chain.rotate(store.as_ref(), now).await;
                }
                total
            }
        })
    });
    group.finish();
}

async fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut connection).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");

    let memory: Arc<dyn TokenStore> = Arc::new(MemoryStore::new(&MemoryStoreConfig::default()));
    bench_store(c, &runtime, "memory", memory);

    match std::env::var("IBGW_BENCH_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let prefix = format!("ibgw-bench-{}", &tokens::random_secret()[..12]);
            let config = redis_config(RedisMode::Standalone, vec![url.clone()], &prefix);
            let store = runtime
                .block_on(RedisStore::connect(&config))
                .unwrap_or_else(|e| panic!("IBGW_BENCH_REDIS_URL={url}: {e}"));
            bench_store(c, &runtime, "redis_standalone", Arc::new(store));
            if let Err(e) = runtime.block_on(delete_prefix(&url, &prefix)) {
                eprintln!("note: could not delete the benchmark keys {prefix}:*: {e}");
            }
        }
        _ => eprintln!(
            "note: IBGW_BENCH_REDIS_URL is not set: skipping the Redis benchmarks \
             (set it to a private redis-server, e.g. redis://127.0.0.1:PORT)"
        ),
    }
}

criterion_group!(store, benches);
criterion_main!(store);
