//! Faults that only happen in production, on real processes over loopback, each bounded in time: Redis out of
//! memory, Redis slow, a Sentinel failover under load with a revocation right after it, and a gateway killed
//! (`kill -9`) in the middle of refreshes. What must hold: the client gets a clear 503 (never a hang or a 500),
//! nothing is half-written, revocation still wins, and everything recovers when the fault goes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The authorization request's start, as a page would send it: the first store write of a login.
async fn start_login(gateway: &GatewayProcess, mock: &ib_oauth_gateway::mock::MockHandle) -> Answer {
    let query = format!("{}&platform_url={}", authorize_query("f"), urlencode(&mock.origin));
    send(http().get(gateway.url(&format!("/authorize?{query}"))).header("Accept", "application/json")).await
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `within`.
async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Redis at `maxmemory` with `noeviction` refuses every write: logins and refreshes answer 503
/// `temporarily_unavailable`, a refresh refused so did not rotate (the same refresh token works once memory is
/// back), and nothing else changed.
#[tokio::test(flavor = "multi_thread")]
async fn redis_out_of_memory_refuses_writes_with_503_and_changes_nothing_until_memory_is_back() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let gateway =
        GatewayProcess::start_with(&shared_redis_yaml(&redis.url(), keys.path(), "local"), Some("https://gw.example"));
    let mock = start_mock(Default::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    let keys_before = redis.cli(&["DBSIZE"]);

    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let (status, body) = refresh(&gateway, &refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{body}");
    let started = start_login(&gateway, &mock).await;
    assert_eq!((started.status, started.body["error"].as_str()), (503, Some("temporarily_unavailable")));
    assert_eq!(redis.cli(&["DBSIZE"]), keys_before, "nothing was written");
    // Reading goes on: a live session is still served.
    assert_eq!(get_resource_with(&gateway, access(&tokens)).await.status(), 200);

    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (status, rotated) = refresh(&gateway, &refresh_token).await;
    assert_eq!(status, 200, "the refused refresh had not rotated: the same token works now: {rotated}");
    assert_eq!(get_resource_with(&gateway, access(&rotated)).await.status(), 200);
    assert_eq!(start_login(&gateway, &mock).await.status, 200, "logins work again");
}

/// A TCP relay in front of a server on loopback that holds every chunk `delay` (changeable while it runs)
/// before passing it on, each way: a slow network to Redis without `tc netem`. Stops with the test process.
struct DelayRelay {
    port: u16,
    delay_ms: Arc<AtomicU64>,
}

impl DelayRelay {
    async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await else { continue };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pipe(client_read, server_write, delay.clone()));
                tokio::spawn(Self::pipe(server_read, client_write, delay.clone()));
            }
        });
        DelayRelay { port, delay_ms }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay_ms: Arc<AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let Ok(read) = from.read(&mut buffer).await else { return };
            if read == 0 {
                return;
            }
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Redis slower than `command_timeout_ms` (twice it, each way): requests fail with 503 instead of waiting on,
/// none is left hanging (the in-flight gauge comes back to zero), and the gateway serves again once Redis is
/// fast again.
#[tokio::test(flavor = "multi_thread")]
async fn slow_redis_fails_requests_with_503_without_a_pile_up_and_recovers() {
    const TIMEOUT_MS: u64 = 200;
    let redis = RedisServer::start();
    let relay = DelayRelay::start(redis.port).await;
    let keys = tempfile::tempdir().unwrap();
    // No session cache: every request reads its session through the relay.
    let config = shared_redis_yaml(&format!("redis://127.0.0.1:{}", relay.port), keys.path(), "local").replace(
        "    key_prefix:",
        &format!("    command_timeout_ms: {TIMEOUT_MS}\n    session_cache_max_entries: 0\n    key_prefix:"),
    );
    let gateway = GatewayProcess::start_with(&config, Some("https://gw.example"));
    let mock = start_mock(Default::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    assert_eq!(get_resource_with(&gateway, access(&tokens)).await.status(), 200);

    relay.set_delay(Duration::from_millis(2 * TIMEOUT_MS));
    let calls = (0..40).map(|_| async {
        let answer = send(http().get(gateway.url("/api/v3/resource")).bearer_auth(access(&tokens))).await;
        (answer.status, answer.body["error"].as_str().map(str::to_string))
    });
    let answers = futures_util::future::join_all(calls).await;
    for (status, error) in &answers {
        assert_eq!((*status, error.as_deref()), (503, Some("temporarily_unavailable")), "{answers:?}");
    }
    let in_flight = || async { sample(&scrape(&gateway).await, "ibgw_requests_in_flight") };
    // The scrape itself is not counted (the admin listener); nothing of the 40 is left waiting on Redis.
    eventually("no request is left in flight", Duration::from_secs(10), async || in_flight().await == 0.0).await;

    relay.set_delay(Duration::ZERO);
    eventually("the gateway serves again", Duration::from_secs(15), async || {
        get_resource_with(&gateway, access(&tokens)).await.status() == 200
    })
    .await;
}

/// Two instances on Redis behind Sentinel, under load, through a failover: a session revoked on one instance
/// right after the switch is refused by both within the session cache's bound (docs/operations.md), and the
/// other sessions are served again on the new master.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_right_after_a_sentinel_failover_is_refused_by_every_instance() {
    let common::redis::SentinelSet { master: _master, replica, sentinel } = common::redis::SentinelSet::start();
    let keys = tempfile::tempdir().unwrap();
    let config = shared_redis_yaml("redis://unused", keys.path(), "local").replace(
        "    urls: ['redis://unused']",
        &format!("    mode: sentinel\n    urls: ['{}']\n    sentinel_master: ibgw", sentinel.url()),
    );
    let first = GatewayProcess::start_with(&config, Some("https://gw.example"));
    let second = GatewayProcess::start_with(&config, Some("https://gw.example"));
    let mock = start_mock(Default::default()).await;
    let revoked = tokens_for(&first, &mock, "").await;
    let kept = tokens_for(&first, &mock, "").await;

    // Load on both instances for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = [&first, &second]
        .iter()
        .map(|gateway| {
            let (url, token, stop) = (gateway.url("/api/v3/resource"), access(&kept).to_string(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = http().get(&url).bearer_auth(&token).send().await;
                }
            })
        })
        .collect();

    assert_eq!(sentinel.cli(&["SENTINEL", "FAILOVER", "ibgw"]).trim(), "OK");
    eventually("the replica is promoted", Duration::from_secs(30), async || {
        replica.cli(&["ROLE"]).starts_with("master")
    })
    .await;
    // Right after the switch, the client revokes its session on the first instance (RFC 7009), retried while
    // the instance finds the new master (503 meanwhile).
    let refresh_token = revoked["refresh_token"].as_str().unwrap().to_string();
    eventually("the revocation reaches the new master", Duration::from_secs(30), async || {
        let form = [("token", refresh_token.as_str()), ("client_id", PUBLIC_CLIENT)];
        post_form(&first.url("/revoke"), &form).await.0 == 200
    })
    .await;
    for gateway in [&first, &second] {
        eventually("every instance refuses the revoked session", Duration::from_secs(10), async || {
            get_resource_with(gateway, access(&revoked)).await.status() == 401
        })
        .await;
        eventually("the other session is served on the new master", Duration::from_secs(30), async || {
            get_resource_with(gateway, access(&kept)).await.status() == 200
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let _ = task.await;
    }
}

/// A gateway killed (`kill -9`) while refreshes are in flight: whatever it had done, every client's retry of its
/// refresh token on another instance within the grace window gets a working token pair — no session is left
/// rotated to a successor nobody received.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_refresh_leaves_every_session_refreshable_on_another_instance() {
    const SESSIONS: usize = 20;
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let config = shared_redis_yaml(&redis.url(), keys.path(), "local");
    let mut victim = GatewayProcess::start_with(&config, Some("https://gw.example"));
    let survivor = GatewayProcess::start_with(&config, Some("https://gw.example"));
    let mock = start_mock(Default::default()).await;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(tokens_for(&victim, &mock, "").await["refresh_token"].as_str().unwrap().to_string());
    }
    // Every client refreshes on the victim at once; it is killed while they are in flight.
    let in_flight: Vec<_> = sessions
        .iter()
        .map(|token| {
            let url = victim.url("/token");
            let form: Vec<(String, String)> =
                refresh_form(token).iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
            tokio::spawn(async move { http().post(url).form(&form).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    victim.signal("KILL");
    victim.wait_exit(Duration::from_secs(10));
    let outcomes: Vec<_> = futures_util::future::join_all(in_flight).await.into_iter().map(|r| r.unwrap()).collect();

    // Each client retries with the token it holds (it never saw an answer, or saw one and retries anyway).
    for (n, token) in sessions.iter().enumerate() {
        let (status, pair) = refresh(&survivor, token).await;
        assert_eq!(status, 200, "session {n} (first attempt: {:?}): {pair}", outcomes[n]);
        assert_eq!(get_resource_with(&survivor, access(&pair)).await.status(), 200, "session {n}");
        let (status, next) = refresh(&survivor, pair["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, 200, "session {n}: the successor is the session's live token: {next}");
    }
}
