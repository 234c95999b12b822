//! The approximate rate-limit backend across two real gateway processes sharing one Redis: each instance counts
//! locally and syncs with Redis every `sync_interval_ms`, so a session's limit holds across instances up to
//! what the other instances admit in one interval, and no request costs a Redis round trip.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const LIMIT: u32 = 20;

async fn status(gateway: &GatewayProcess, tokens: &Value) -> u16 {
    get_resource_with(gateway, tokens["access_token"].as_str().unwrap()).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_instance_learns_the_others_counts_within_a_sync_interval() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "approximate")
        .replace("    key_prefix:", "    session_cache_max_age_ms: 600000\n    key_prefix:")
        + &format!("  per_session_per_minute: {LIMIT}\n  sync_interval_ms: 100\n");
    let first = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, "").await;
    // All of this in one clock minute (the windows are aligned to it).
    let now = ib_oauth_gateway::store::now_unix();
    if 60 - now % 60 < 20 {
        tokio::time::sleep(Duration::from_secs(60 - now % 60)).await;
    }

    // Warm-up: each instance caches the session (the second connects to Redis with its first request, and keeps
    // copies once its invalidation subscription is up) and syncs its count; then count Redis commands.
    assert_eq!(status(&second, &tokens).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for gateway in [&first, &second] {
        assert_eq!(status(gateway, &tokens).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.cli(&["CONFIG", "RESETSTAT"]);

    // The first instance admits by its own count plus the second's as of its last sync.
    let mut admitted = 3;
    for _ in 0..LIMIT {
        if status(&first, &tokens).await == 200 {
            admitted += 1;
        }
    }
    // The second instance last synced before all that: its next request may still be admitted (what the
    // others admitted since an instance's last sync is the documented overshoot); it syncs, and refuses from
    // then on, as does the first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    admitted += u32::from(status(&second, &tokens).await == 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&second, &tokens).await, 429, "the second instance learned the first's count");
    assert_eq!(status(&first, &tokens).await, 429);
    assert!(
        (LIMIT..=LIMIT + 2).contains(&admitted),
        "admitted {admitted} of a limit of {LIMIT}: never fewer, and at most one interval's worth more per instance"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total: u64 = {
        let keys = redis.cli(&["KEYS", "*:rl:*"]);
        let key = keys.lines().next().expect("a counter in Redis").trim().to_string();
        redis.cli(&["GET", &key]).trim().parse().unwrap()
    };
    assert_eq!(total, 3 + u64::from(LIMIT) + 3, "every request reached the shared counter, refused ones too");

    // No request went to Redis: the counts travel by sync (INCRBY inside EVALSHA), the session by the cache.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(!stats.contains("cmdstat_hmget"), "{stats}");
    let evalsha = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse::<u64>().unwrap());
    assert!(evalsha < u64::from(LIMIT), "{evalsha} syncs for {} requests: not one per request", LIMIT + 6);
}

/// A gateway started with the approximate backend and no per-session limit, given one by a live reload: its
/// counts reach the shared Redis counter (the sync task runs with the backend, not only with a limit at
/// start-up), so the limit holds across instances instead of each instance limiting alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_per_session_limit_set_by_a_reload_is_synced_across_instances() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let token = "approximate-reload-admin-token-0123456789";
    let config = shared_redis_yaml(&redis.url(), keys.path(), "approximate")
        + "  per_session_per_minute: 0\n  sync_interval_ms: 100\n"
        + &format!("admin:\n  token: {token}\n");
    let gateway = GatewayProcess::start_with(&config, Some("https://gateway.example.com"));
    let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let now = ib_oauth_gateway::store::now_unix();
    if 60 - now % 60 < 20 {
        tokio::time::sleep(Duration::from_secs(60 - now % 60)).await;
    }
    gateway.edit_config("per_session_per_minute: 0", &format!("per_session_per_minute: {LIMIT}"));
    let reload = send(http().post(format!("{}/admin/reload", gateway.admin)).bearer_auth(token)).await;
    assert_eq!(reload.status, 200, "{}", reload.text);
    assert_eq!(reload.body["changed"], serde_json::json!(["rate_limits.per_session_per_minute"]));
    for _ in 0..5 {
        assert_eq!(status(&gateway, &tokens).await, 200);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let counters = redis.cli(&["KEYS", "*:rl:*"]);
        let total = counters.lines().next().map(|key| redis.cli(&["GET", key.trim()]).trim().to_string());
        if total.as_deref() == Some("5") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the five requests never reached Redis: {total:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
