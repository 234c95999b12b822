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

use ib_oauth_gateway::config::{MemoryStoreConfig, RedisConfig, RedisMode};
use ib_oauth_gateway::session::{rules, IbSid, IbUser, Limits, Session, SessionGrant, SessionId};
use ib_oauth_gateway::store::memory::MemoryStore;
use ib_oauth_gateway::store::redis::RedisStore;
use ib_oauth_gateway::store::{now_unix, RotateOutcome, RotateRequest, TokenStore};
use ib_oauth_gateway::tokens::{self, RefreshToken};

const CLIENT: &str = "bench-client";
const CHAIN: u32 = 120;
const LIMITS: Limits = Limits { max_refresh_count: CHAIN, near_expiry_margin: 300 };
const GRACE: u64 = 10;
const REFRESH_TTL: u64 = 120 * 3_600;
/// Sessions stored before timing look-ups, so the look-up is not on a one-entry map.
const PRELOADED_SESSIONS: usize = 10_000;

fn grant() -> SessionGrant {
    SessionGrant {
        sid: IbSid::new(format!("sid-{}", tokens::random_secret())),
        platform_url: "https://acme.intelligencebank.com".into(),
        api_v3_url: "https://lbv3us1.intelligencebank.com".into(),
        ib_client_id: "ib-client-7".into(),
        user: IbUser {
            uuid: "4f1c2b1e-8d7a-4e0b-9a57-0c6f5d2e9b11".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: Some("ada@example.com".into()),
            login_time: None,
        },
        login_timeout_hours: Some(8),
        oauth_client_id: CLIENT.into(),
        scope: "profile api".into(),
    }
}

async fn start_session(store: &dyn TokenStore, now: u64) -> (Session, RefreshToken) {
    let session = Session::start(SessionId::generate(), grant(), now, 120);
    let token = RefreshToken::generate(&session.id);
    let expires = rules::refresh_token_expiry(&session, now, REFRESH_TTL);
    store.create_session(&session, &token.hash(), expires, now).await.expect("create_session");
    (session, token)
}

/// A rotation prepared by the caller (not timed).
struct Prepared {
    presented: RefreshToken,
    successor: RefreshToken,
    sealed: String,
}

impl Prepared {
    fn new(session: &SessionId, presented: &RefreshToken) -> Self {
        let successor = RefreshToken::generate(session);
        let sealed = tokens::seal_successor(presented, &successor);
        Prepared { presented: presented.clone(), successor, sealed }
    }

    fn request<'a>(&'a self, session: &'a SessionId, now: u64) -> RotateRequest<'a> {
        RotateRequest {
            session_id: session,
            presented: self.presented.hash(),
            successor: self.successor.hash(),
            sealed_successor: &self.sealed,
            client_id: CLIENT,
            now,
            limits: LIMITS,
            grace_seconds: GRACE,
            refresh_ttl: REFRESH_TTL,
        }
    }
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
        let request = prepared.request(&self.session.id, now);
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
        let outcome = store.rotate_refresh(&prepared.request(&session.id, now)).await.expect("rotate_refresh");
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
            let config = RedisConfig {
                mode: RedisMode::Standalone,
                urls: vec![url.clone()],
                key_prefix: prefix.clone(),
                ..RedisConfig::default()
            };
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
