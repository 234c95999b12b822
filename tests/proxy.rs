//! The authenticating proxy end to end: a real gateway process, the mock IntelligenceBank platform as the
//! upstream over real HTTP (and TLS), and a real Redis where instances share state.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockSettings;
use reqwest::StatusCode;
use serde_json::Value;

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

/// `GET /api/v3/resource` through `gateway` with the access token of `tokens`.
async fn get_resource(gateway: &GatewayProcess, tokens: &Value) -> reqwest::Response {
    get_resource_with(gateway, &access(tokens)).await
}

/// The authority of the mock as `/proxy/{host}` wants it.
fn host(origin: &str) -> String {
    origin.trim_start_matches("http://").trim_start_matches("https://").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_call_reaches_ib_with_the_sid_and_exact_path_and_no_bearer() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let path = "/api/3.0.0/mockclient/resource.limit(100).order(createTime:-1)?verbose=null&x=%2F,y&q=a%20b";
    let response = http()
        .get(gateway.url(&format!("/proxy/{}{path}", host(&mock.origin))))
        .bearer_auth(access(&tokens))
        .header("Cookie", "session=should-not-pass")
        .header("sid", "client-chosen-sid")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], path, "path and query are forwarded byte for byte");
    let headers = &echo["headers"];
    assert_eq!(headers["sid"], tokens["sid"]);
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("cookie").is_none(), "{headers}");
    assert_eq!(headers["host"], host(&mock.origin).as_str());
    assert_eq!(headers["x-request-id"], request_id.as_str());
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");

    // The shorthand reaches the same account without naming the host; bodies pass through.
    let response = http()
        .put(gateway.url("/api/v3/resource/abc?action=update"))
        .bearer_auth(access(&tokens))
        .json(&serde_json::json!({"data": {"title": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["path"], "/api/3.0.0/mockclient/resource/abc?action=update");
    assert_eq!(echo["body_length"], 22);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_carry_rfc6750_challenges_and_the_bodies_old_clients_parse() {
    let (gateway, mock) = gateway_and_mock("").await;
    let url = gateway.url(&format!("/proxy/{}/api/3.0.0/mockclient/resource", host(&mock.origin)));

    let missing = http().get(&url).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let challenge = missing.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("resource_metadata="), "{challenge}");
    assert!(!challenge.contains("error="), "no error code without credentials: {challenge}");

    let garbage = http().get(&url).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(garbage.status(), 401);
    assert!(garbage.headers()["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
    let body: Value = garbage.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid_token", "error_description": "Invalid or expired access token"})
    );

    let tokens = tokens_for(&gateway, &mock, "").await;
    let in_query = http().get(format!("{url}?access_token={}", access(&tokens))).send().await.unwrap();
    assert_eq!(in_query.status(), 401, "tokens are never taken from the query string");
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), 0, "nothing reached IB");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_access_tokens_say_whether_a_refresh_can_help() {
    let gateway =
        GatewayProcess::start("tokens:\n  access_token_ttl_seconds: 1\n  leeway_seconds: 0\n  max_refresh_count: 1\n");
    let mock = start_mock(MockSettings::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let url = gateway.url("/api/v3/resource");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let expired: Value = http().get(&url).bearer_auth(access(&tokens)).send().await.unwrap().json().await.unwrap();
    assert_eq!(expired["error_description"], "The access token has expired");
    let (status, refreshed) = refresh(&gateway, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{refreshed}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let limit: Value = http().get(&url).bearer_auth(access(&refreshed)).send().await.unwrap().json().await.unwrap();
    assert_eq!(limit["error_description"], "Session refresh limit exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_sid_expiry_is_refused_as_expired() {
    let (gateway, mock) = gateway_and_mock("").await;
    let login_time = ib_oauth_gateway::store::now_unix() - 3600 + 2;
    let tokens = tokens_for(&gateway, &mock, &format!("&logintimeoutperiod=1&loginTime={login_time}")).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let response = get_resource(&gateway, &tokens).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error_description"], "Session has expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_hosts_are_refused_before_any_connection() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let own = host(&mock.origin);
    let port = own.rsplit(':').next().unwrap();
    for other in [
        "evil.com".to_string(),
        format!("{own}.evil.com"),
        format!("127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        format!("localhost:{port}"),
        format!("user@{own}"),
        format!("{own}@evil.com"),
        format!("127.0.0.2:{port}"),
    ] {
        let response = http()
            .get(gateway.url(&format!("/proxy/{other}/api/3.0.0/mockclient/x")))
            .bearer_auth(access(&tokens))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{other}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
    }
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_are_refused_with_400() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let own = host(&mock.origin);
    let bearer = format!("Bearer {}", access(&tokens));
    for path in [
        format!("/proxy/{own}/api/%2e%2e/%2e%2e/admin"),
        format!("/proxy/{own}/api/a/%2E%2E/b"),
        format!("/proxy/{own}/api/../../admin"),
        "/api/v3/./resource".to_string(),
        "/proxy//api/3.0.0".to_string(),
        format!("/proxy/{own}/a%0d%0aX-Injected:1"),
    ] {
        // A raw request: HTTP client libraries would normalise these paths before sending them.
        let (status, body) = raw_request(&gateway.base, &path, &[("Authorization", &bearer)]);
        assert_eq!(status, 400, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_map_to_502_and_504_with_json_bodies() {
    let closed = free_port();
    let (gateway, mock) = gateway_and_mock("upstream:\n  read_timeout_ms: 500\n  connect_timeout_ms: 500\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let slow = http()
        .get(gateway.url("/api/v3/resource?mock_delay_ms=2000"))
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 504);
    let body: Value = slow.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");

    let broken =
        start_mock(MockSettings { api_v3_url: Some(format!("http://127.0.0.1:{closed}")), ..MockSettings::default() })
            .await;
    let tokens = tokens_for(&gateway, &broken, "").await;
    let refused = get_resource(&gateway, &tokens).await;
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    assert!(!body["error_description"].as_str().unwrap().contains("127.0.0.1"), "no internal detail");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_is_answered_without_authentication() {
    let gateway = GatewayProcess::start("cors:\n  allowed_origins: ['https://app.example.com']\n");
    let response = http()
        .request(reqwest::Method::OPTIONS, gateway.url("/api/v3/resource"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    for name in ["access-control-allow-origin", "access-control-expose-headers", "vary", "access-control-allow-methods"]
    {
        assert_eq!(headers.get_all(name).iter().count(), 1, "{name} is sent once (twice, browsers refuse it)");
    }
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("Authorization"));
    let denied = http()
        .request(reqwest::Method::OPTIONS, gateway.url("/api/v3/resource"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());
}

/// Proxied answers: the CORS headers of an allowed origin once each, and `Vary: Origin` on every answer (with or
/// without an `Origin`, allowed or not), so caches never mix them.
#[tokio::test(flavor = "multi_thread")]
async fn proxied_answers_carry_cors_for_allowed_origins_and_always_vary_on_origin() {
    let (gateway, mock) =
        gateway_and_mock("cors:\n  allowed_origins: ['https://app.example.com']\n  allow_credentials: true\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let call = |origin: Option<&'static str>| {
        let request = http().get(gateway.url("/api/v3/resource")).bearer_auth(access(&tokens));
        match origin {
            Some(origin) => request.header("Origin", origin).send(),
            None => request.send(),
        }
    };
    let allowed = call(Some("https://app.example.com")).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    for name in ["access-control-allow-origin", "access-control-allow-credentials", "vary"] {
        assert_eq!(headers.get_all(name).iter().count(), 1, "{name} is sent once");
    }
    assert!(headers["vary"].to_str().unwrap().contains("Origin"));
    for origin in [None, Some("https://evil.example")] {
        let answer = call(origin).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(answer.headers().get("access-control-allow-origin").is_none(), "{origin:?}");
        assert!(answer.headers().get("access-control-allow-credentials").is_none(), "{origin:?}");
        assert!(answer.headers()["vary"].to_str().unwrap().contains("Origin"), "{origin:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_retry_after_then_recovers() {
    let (gateway, mock) = gateway_and_mock("rate_limits:\n  per_session_per_minute: 5\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let call = || http().get(gateway.url("/api/v3/resource")).bearer_auth(access(&tokens)).send();
    // Start at the beginning of a window so that five calls and the refusal land in the same one.
    let now = ib_oauth_gateway::store::now_unix();
    if 60 - now % 60 < 15 {
        tokio::time::sleep(std::time::Duration::from_secs(60 - now % 60)).await;
    }
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let response = call().await.unwrap();
        assert_eq!(response.status(), 200);
        remaining.push(response.headers()["ratelimit-remaining"].to_str().unwrap().to_string());
    }
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    let limited = call().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(limited.headers()["ratelimit-limit"], "5");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_exceeded");
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(call().await.unwrap().status(), 200, "the next window admits the session again");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_401_ends_the_session_on_every_instance() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "local");
    let first = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let mock = start_mock(MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, "").await;
    let on_second = get_resource(&second, &tokens).await;
    assert_eq!(on_second.status(), 200, "instances share sessions and keys");
    assert!(expire_session(&mock, tokens["sid"].as_str().unwrap()).await.is_success());
    let rejected = get_resource(&first, &tokens).await;
    assert_eq!(rejected.status(), 401);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error_description"], "Session has expired");
    let elsewhere = get_resource(&second, &tokens).await;
    assert_eq!(elsewhere.status(), 401, "the other instance sees the session dead without asking IB");
    let (status, refused) = refresh(&second, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, refused["error_description"].as_str()), (400, Some("Session has expired")));
}

#[tokio::test(flavor = "multi_thread")]
async fn store_outage_is_503_never_401_and_recovers() {
    let mut redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&shared_redis_yaml(&redis.url(), keys.path(), "local"));
    let mock = start_mock(MockSettings::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    redis.stop();
    let response = get_resource(&gateway, &tokens).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let ready = http().get(format!("{}/readyz", gateway.admin)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    redis.restart();
    // The data is gone with the server (it kept nothing), but the gateway reconnects by itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let ready = http().get(format!("{}/readyz", gateway.admin)).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "gateway did not reconnect to Redis");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let tokens = tokens_for(&gateway, &mock, "").await;
    let response = get_resource(&gateway, &tokens).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_rate_limit_holds_across_two_instances_in_one_round_trip_each() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "redis") + "  per_session_per_minute: 20\n";
    let first = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let mock = start_mock(MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, "").await;
    let now = ib_oauth_gateway::store::now_unix();
    if 60 - now % 60 < 20 {
        tokio::time::sleep(std::time::Duration::from_secs(60 - now % 60)).await;
    }
    // Count Redis commands from here: each proxied request must cost exactly one.
    redis.cli(&["CONFIG", "RESETSTAT"]);
    let mut accepted = 0;
    for i in 0..40 {
        let gateway = if i % 2 == 0 { &first } else { &second };
        let response = get_resource(gateway, &tokens).await;
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(accepted <= 20 * 102 / 100, "accepted {accepted} of a limit of 20");
    assert!(accepted >= 20, "accepted {accepted}: the limit must not refuse early");
    // Round trips per proxied request: one EVALSHA each. A session the instance's cache holds costs only its
    // count (add_to_meter.lua: INCRBY); any other is read and counted in one script (HMGET and INCR inside).
    let commandstats = redis.cli(&["INFO", "commandstats"]);
    let calls = |command: &str| -> u64 {
        commandstats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let failed_evalsha = commandstats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("failed_calls=")))
        .map_or(0, |n| n.parse::<u64>().unwrap());
    assert_eq!(calls("evalsha") - failed_evalsha, 40, "{commandstats}");
    assert_eq!(calls("hmget"), calls("incr"), "no session read outside the script: {commandstats}");
    assert_eq!(calls("hmget") + calls("incrby"), 40, "every request counted once: {commandstats}");
    assert!(calls("hmget") >= 2, "each instance read the session at least once: {commandstats}");
    for line in commandstats.lines().filter(|l| l.starts_with("cmdstat_")) {
        let command = line.trim_start_matches("cmdstat_").split(':').next().unwrap();
        // `subscribe` and `ping`: an instance's invalidation channel (made with its store, on first use);
        // `publish` and `role`: its heartbeat, which proves that channel still delivers.
        let expected = [
            "evalsha",
            "hmget",
            "incr",
            "incrby",
            "ttl",
            "expire",
            "config|resetstat",
            "info",
            "script|load",
            "ping",
            "client|setinfo",
            "subscribe",
            "publish",
            "role",
        ];
        assert!(expected.contains(&command), "unexpected Redis command {command}: {commandstats}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_upstream_is_verified_against_the_extra_ca() {
    let pki = common::pki::test_pki();
    let trusted = GatewayProcess::start_full("", None, &format!("  extra_ca_file: {}\n", pki.ca.display()), "");
    let untrusted = GatewayProcess::start("");
    let mock = common::pki::start_tls_mock(&pki).await;
    assert!(mock.origin.starts_with("https://"));
    // The login itself goes over TLS too (the IB client trusts the same extra CA).
    let tokens = tokens_for(&trusted, &mock, "").await;
    let response = http().get(trusted.url("/api/v3/resource?x=1")).bearer_auth(access(&tokens)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["path"], "/api/3.0.0/mockclient/resource?x=1");
    assert_eq!(echo["headers"]["sid"], tokens["sid"]);

    // Without the CA the login cannot even start: the platform's certificate is not trusted.
    let started = http()
        .get(untrusted.url(&format!("/authorize?{}&platform_url={}", authorize_query("t"), urlencode(&mock.origin))))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gibibyte_streams_both_ways_with_flat_gateway_memory() {
    const GIB: u64 = 1 << 30;
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let baseline = gateway.peak_rss_kib();

    let download = http()
        .get(gateway.url(&format!("/api/v3/asset/1?action=download&mock_bytes={GIB}")))
        .bearer_auth(access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(read_mock_pattern(download).await, GIB);

    let upload = http()
        .put(gateway.url("/api/v3/asset/1"))
        .bearer_auth(access(&tokens))
        .body(streamed_body(GIB >> 20))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 200);
    let echo: Value = upload.json().await.unwrap();
    assert_eq!(echo["body_length"].as_u64(), Some(GIB));

    let peak = gateway.peak_rss_kib();
    assert!(baseline > 0 && peak > 0);
    assert!(peak - baseline < 64 * 1024, "gateway memory grew from {baseline} KiB to {peak} KiB while streaming 2 GiB");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_ip_limits_use_forwarded_for_only_behind_trusted_proxies() {
    // The test client connects from 127.0.0.1, which plays the load balancer for the first gateway.
    let limits = "rate_limits:\n  per_ip_per_minute: 2\n";
    let behind_proxy = GatewayProcess::start_full(limits, None, "", "  trusted_proxies: ['127.0.0.1']\n");
    let direct = GatewayProcess::start(limits);
    let discovery = |gateway: &GatewayProcess, forwarded: &str| {
        http()
            .get(gateway.url("/.well-known/oauth-authorization-server"))
            .header("X-Forwarded-For", forwarded.to_string())
            .send()
    };
    let now = ib_oauth_gateway::store::now_unix();
    if 60 - now % 60 < 10 {
        tokio::time::sleep(std::time::Duration::from_secs(60 - now % 60)).await;
    }
    // Behind a trusted proxy, each forwarded client has its own budget.
    for client in ["198.51.100.1", "198.51.100.1", "198.51.100.2", "198.51.100.2"] {
        assert_eq!(discovery(&behind_proxy, client).await.unwrap().status(), 200, "{client}");
    }
    assert_eq!(discovery(&behind_proxy, "198.51.100.1").await.unwrap().status(), 429);
    // A forged entry left of the real one changes nothing.
    assert_eq!(discovery(&behind_proxy, "203.0.113.50, 198.51.100.2").await.unwrap().status(), 429);
    // Without trusted proxies, X-Forwarded-For is ignored: the peer is the client.
    for client in ["198.51.100.1", "198.51.100.2"] {
        assert_eq!(discovery(&direct, client).await.unwrap().status(), 200);
    }
    assert_eq!(discovery(&direct, "198.51.100.3").await.unwrap().status(), 429);
}
