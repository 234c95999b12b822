//! The Redis store's local session cache, across two real gateway processes sharing one Redis (standalone and
//! Cluster): the second instance serves a hot session from memory, and every change made through the first —
//! revocation, IB's 401, refresh-token reuse, an operator ending it, the refresh limit — is refused by the
//! second from then on, because the change and its invalidation message are one atomic step in Redis.
//!
//! The cache's copies live for the default `session_cache_max_age_ms` (60 s, longer than any wait here), so only
//! the invalidation channel can explain a refusal. The time from the first instance's answer to the second instance's refusal is printed
//! (run with `--nocapture`); it is asserted only against a generous bound, as the machine is shared.

mod common;

use std::time::{Duration, Instant};

use common::store::cluster_urls;
use common::*;
use serde_json::Value;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
/// Generous: the invalidation is one pub/sub message, typically well under a millisecond on one host.
const BOUND: Duration = Duration::from_secs(2);

fn yaml(store: &str) -> String {
    format!("{store}tokens:\n  max_refresh_count: 2\n  refresh_grace_seconds: 0\nadmin:\n  token: {ADMIN_TOKEN}\n")
}

/// `shared_redis_yaml` for a standalone server (the cache with its defaults).
fn standalone(redis_url: &str, keys: &std::path::Path) -> String {
    shared_redis_yaml(redis_url, keys, "local")
}

/// The same for the test cluster (`IBGW_TEST_REDIS_CLUSTER_URLS`).
fn cluster(keys: &std::path::Path) -> String {
    let urls = cluster_urls();
    let one = shared_redis_yaml(&urls[0], keys, "local");
    let list = urls.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", ");
    one.replace(&format!("    urls: ['{}']\n", urls[0]), &format!("    mode: cluster\n    urls: [{list}]\n"))
}

async fn proxied(gateway: &GatewayProcess, access_token: &str) -> u16 {
    get_resource_with(gateway, access_token).await.status().as_u16()
}

/// Polls the second instance until it refuses the token; how long that took after the change.
async fn refused_within(gateway: &GatewayProcess, access_token: &str, changed_at: Instant, event: &str) -> Duration {
    loop {
        let status = proxied(gateway, access_token).await;
        let elapsed = changed_at.elapsed();
        if status == 401 {
            eprintln!("{event}: refused by the other instance {elapsed:?} after the change");
            return elapsed;
        }
        assert_eq!(status, 200, "{event}");
        assert!(elapsed < BOUND, "{event}: the other instance still serves the session after {elapsed:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_else(|| panic!("no {key} in {value}")).to_string()
}

async fn every_change_on_one_instance_is_refused_by_the_other(store_yaml: String) {
    let first = GatewayProcess::start_with(&yaml(&store_yaml), Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&yaml(&store_yaml), Some("https://gateway.example.com"));
    let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;

    // Each case: a fresh session, hot on the second instance, then one change through the first.
    let cases = ["revoke", "upstream 401", "refresh-token reuse", "operator", "refresh rotation"];
    for (n, event) in cases.into_iter().enumerate() {
        let user = format!("00000000-0000-4000-8000-{n:012}");
        let tokens = tokens_for(&first, &mock, &format!("&uuid={user}")).await;
        let access = text(&tokens, "access_token");
        for _ in 0..3 {
            assert_eq!(proxied(&second, &access).await, 200, "{event}: warm-up");
        }
        let changed_at = match event {
            "revoke" => {
                let form = [("token", access.as_str()), ("client_id", PUBLIC_CLIENT)];
                assert_eq!(post_form(&first.url("/revoke"), &form).await.0, 200);
                Instant::now()
            }
            "upstream 401" => {
                assert!(expire_session(&mock, &text(&tokens, "sid")).await.is_success());
                assert_eq!(proxied(&first, &access).await, 401, "IB's 401 ends the session");
                Instant::now()
            }
            "refresh-token reuse" => {
                let old = text(&tokens, "refresh_token");
                assert_eq!(refresh(&first, &old).await.0, 200);
                assert_eq!(refresh(&first, &old).await.0, 400, "reuse revokes the session");
                Instant::now()
            }
            "operator" => {
                let (_, listing) = {
                    let response = http()
                        .get(format!("{}/admin/sessions?user={user}", first.admin))
                        .bearer_auth(ADMIN_TOKEN)
                        .send()
                        .await
                        .unwrap();
                    (response.status(), response.json::<Value>().await.unwrap())
                };
                let active = listing["sessions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["state"] == "active")
                    .map(|s| text(s, "id"))
                    .collect::<Vec<_>>();
                assert_eq!(active.len(), 1, "{listing}");
                let response = http()
                    .delete(format!("{}/admin/sessions/{}", first.admin, active[0]))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                Instant::now()
            }
            "refresh rotation" => {
                // Not an ending: the session stays usable everywhere, and its refresh limit holds on both.
                let mut refresh_token = text(&tokens, "refresh_token");
                for _ in 0..2 {
                    let (status, next) = refresh(&first, &refresh_token).await;
                    assert_eq!(status, 200, "{next}");
                    refresh_token = text(&next, "refresh_token");
                }
                assert_eq!(proxied(&second, &access).await, 200, "a rotation ends nothing");
                let (status, body) = refresh(&second, &refresh_token).await;
                assert_eq!((status, body["error_description"].as_str()), (400, Some("Session refresh limit exceeded")));
                // End it so the loop's check below applies to this case as well.
                let form = [("token", refresh_token.as_str()), ("client_id", PUBLIC_CLIENT)];
                assert_eq!(post_form(&first.url("/revoke"), &form).await.0, 200);
                Instant::now()
            }
            _ => unreachable!(),
        };
        refused_within(&second, &access, changed_at, event).await;
        assert_eq!(proxied(&first, &access).await, 401, "{event}: and the first instance too");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_a_hot_session_costs_no_redis_read_and_every_change_reaches_the_other_instance() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let store_yaml = standalone(&redis.url(), keys.path());

    // The cache is used: 30 requests for one session read it from Redis once.
    {
        let gateway = GatewayProcess::start(&yaml(&store_yaml));
        let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;
        let tokens = tokens_for(&gateway, &mock, "").await;
        let access = text(&tokens, "access_token");
        assert_eq!(proxied(&gateway, &access).await, 200);
        redis.cli(&["CONFIG", "RESETSTAT"]);
        for _ in 0..30 {
            assert_eq!(proxied(&gateway, &access).await, 200);
        }
        let stats = redis.cli(&["INFO", "commandstats"]);
        assert!(!stats.contains("cmdstat_hmget"), "a hot session is read from memory: {stats}");
    }
    every_change_on_one_instance_is_refused_by_the_other(store_yaml).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_every_change_reaches_the_other_instance() {
    let keys = tempfile::tempdir().unwrap();
    every_change_on_one_instance_is_refused_by_the_other(cluster(keys.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_invalidation_channel_flushes_the_cache_and_reads_go_to_redis() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let store_yaml = standalone(&redis.url(), keys.path());
    let first = GatewayProcess::start_with(&yaml(&store_yaml), Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&yaml(&store_yaml), Some("https://gateway.example.com"));
    let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, "").await;
    let access = text(&tokens, "access_token");
    assert_eq!(proxied(&second, &access).await, 200, "hot on the second instance");
    assert_eq!(proxied(&first, &access).await, 200);

    // Every subscription is cut; until an instance has noticed and flushed, a change must not be missed.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let form = [("token", access.as_str()), ("client_id", PUBLIC_CLIENT)];
    assert_eq!(post_form(&first.url("/revoke"), &form).await.0, 200);
    assert_eq!(proxied(&second, &access).await, 401, "the flushed cache read the revocation from Redis");

    // The subscriptions come back by themselves, and the cache serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(&redis) != 2 {
        assert!(Instant::now() < deadline, "the instances did not subscribe again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribers of any `*:invalidate` channel.
fn subscribers(redis: &RedisServer) -> u64 {
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "*:invalidate"]);
    let channel = channels.lines().next().unwrap_or_default().trim().to_string();
    if channel.is_empty() {
        return 0;
    }
    let numsub = redis.cli(&["PUBSUB", "NUMSUB", &channel]);
    numsub.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}
