//! Operations: `/metrics` counters move by the right amounts over a scripted flow, and a full flow with
//! debug logging leaves no token, code, sid or secret in the log.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockSettings;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_scripted_flow_and_logs_hold_no_secrets() {
    let (gateway, mock) = gateway_and_mock("tokens:\n  max_refresh_count: 2\n").await;
    let before = scrape(&gateway).await;
    assert_eq!(sample(&before, r#"ibgw_logins_total{result="started"}"#), 0.0);
    assert_eq!(sample(&before, "ibgw_store_up"), 1.0);

    // A login, two refreshes, one refused at the limit.
    let redirect = login(&gateway, &mock, &authorize_query("m"), "").await;
    let code = query_param(&redirect, "code").unwrap();
    let (_, tokens) = exchange(&gateway, &redirect).await;
    let mut refresh_tokens = vec![tokens["refresh_token"].as_str().unwrap().to_string()];
    let mut access_tokens = vec![tokens["access_token"].as_str().unwrap().to_string()];
    for _ in 0..2 {
        let (status, next) = refresh(&gateway, refresh_tokens.last().unwrap()).await;
        assert_eq!(status, 200);
        refresh_tokens.push(next["refresh_token"].as_str().unwrap().to_string());
        access_tokens.push(next["access_token"].as_str().unwrap().to_string());
    }
    let (status, _) = refresh(&gateway, refresh_tokens.last().unwrap()).await;
    assert_eq!(status, 400);
    let access = access_tokens.last().unwrap().clone();

    // Three proxied calls: one through, one without a token, one to a foreign host.
    let ok = http().get(gateway.url("/api/v3/resource")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(http().get(gateway.url("/api/v3/resource")).send().await.unwrap().status(), 401);
    let foreign = http().get(gateway.url("/proxy/evil.example.com/x")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    // IB ends the session: the next call is refused as upstream-rejected.
    let sid = tokens["sid"].as_str().unwrap().to_string();
    expire_session(&mock, &sid).await;
    let rejected = http().get(gateway.url("/api/v3/resource")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(rejected.status(), 401);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error_description"], "Session has expired");

    let after = scrape(&gateway).await;
    let moved = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(moved(r#"ibgw_logins_total{result="started"}"#), 1.0, "{after}");
    assert_eq!(moved(r#"ibgw_logins_total{result="completed"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_tokens_issued_total{grant_type="authorization_code"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_tokens_issued_total{grant_type="refresh_token"}"#), 2.0);
    assert_eq!(moved(r#"ibgw_token_refreshes_total{result="ok"}"#), 2.0);
    assert_eq!(moved(r#"ibgw_token_refreshes_total{result="refresh_limit_exceeded"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_session_timeouts_total{reason="refresh_limit"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_session_timeouts_total{reason="upstream_rejected"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_auth_failures_total{reason="missing_token"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_auth_failures_total{reason="host_not_allowed"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_http_requests_total{route="proxy",status="200"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_http_requests_total{route="proxy",status="401"}"#), 2.0);
    assert_eq!(moved(r#"ibgw_http_requests_total{route="proxy",status="403"}"#), 1.0);
    assert_eq!(moved(r#"ibgw_http_requests_total{route="token",status="200"}"#), 3.0);
    assert_eq!(moved(r#"ibgw_http_request_duration_seconds_count{route="proxy"}"#), 4.0);
    assert_eq!(moved("ibgw_upstream_duration_seconds_count"), 2.0, "the successful call and IB's 401");
    assert!(
        moved(r#"ibgw_store_operation_duration_seconds_count{backend="memory",operation="rotate_refresh"}"#) >= 3.0
    );
    assert_eq!(sample(&after, "ibgw_active_sessions"), 0.0, "the only session was ended by IB");
    assert!(after
        .lines()
        .any(|l| l.starts_with("ibgw_build_info{") && l.contains(r#"store_backend="memory",version=""#)));
    for forbidden in [sid.as_str(), access.as_str(), code.as_str()] {
        assert!(!after.contains(forbidden), "metrics never carry secrets");
    }

    // The gateway ran with RUST_LOG=debug the whole time.
    let mut secrets: Vec<String> = vec![code, sid, VERIFIER.to_string(), CONFIDENTIAL_SECRET.to_string()];
    secrets.extend(refresh_tokens);
    secrets.extend(access_tokens);
    assert_log_free_of(&gateway, &secrets);
    assert!(gateway.log_with("access request id=").contains("route=token"), "one line per request is logged");
}

/// Every sample of the refusal counters, by series (`name{labels}`).
fn refusal_samples(metrics: &str) -> std::collections::BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|line| {
            ["ibgw_auth_failures_total{", "ibgw_session_timeouts_total{", "ibgw_rate_limited_total{"]
                .iter()
                .any(|family| line.starts_with(family))
        })
        .filter_map(|line| line.rsplit_once(' ').map(|(series, value)| (series.to_string(), value.parse().unwrap())))
        .collect()
}

/// Runs `step`, then asserts that the refusal counters moved by exactly `expected` and nothing else moved.
async fn counts_exactly<F: std::future::Future<Output = ()>>(
    gateway: &GatewayProcess,
    what: &str,
    expected: &[(&str, f64)],
    step: F,
) {
    let before = refusal_samples(&scrape(gateway).await);
    step.await;
    let after = refusal_samples(&scrape(gateway).await);
    let mut moved: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    for (series, value) in &after {
        let delta = value - before.get(series).copied().unwrap_or(0.0);
        if delta != 0.0 {
            moved.insert(series.clone(), delta);
        }
    }
    let expected: std::collections::BTreeMap<String, f64> =
        expected.iter().map(|(series, delta)| (series.to_string(), *delta)).collect();
    assert_eq!(moved, expected, "{what}: the refusal counters moved by exactly this much");
}

async fn proxied(gateway: &GatewayProcess, path: &str, bearer: Option<&str>) -> u16 {
    let mut request = http().get(gateway.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_refusal_is_counted_once_by_its_kind() {
    let gateway = GatewayProcess::start(
        "tokens:\n  access_token_ttl_seconds: 4\n  leeway_seconds: 0\n  max_refresh_count: 1\n  refresh_grace_seconds: 0\nrate_limits:\n  per_session_per_minute: 3\n",
    );
    let mock = start_mock(MockSettings::default()).await;
    let a = tokens_for(&gateway, &mock, "").await;
    let access_a = a["access_token"].as_str().unwrap().to_string();
    let refresh_a = a["refresh_token"].as_str().unwrap().to_string();
    let failure = |reason: &str| format!(r#"ibgw_auth_failures_total{{reason="{reason}"}}"#);
    let timeout = |reason: &str| format!(r#"ibgw_session_timeouts_total{{reason="{reason}"}}"#);

    counts_exactly(&gateway, "no bearer", &[(&failure("missing_token"), 1.0)], async {
        assert_eq!(proxied(&gateway, "/api/v3/resource", None).await, 401);
    })
    .await;
    counts_exactly(&gateway, "garbage bearer", &[(&failure("invalid_token"), 1.0)], async {
        assert_eq!(proxied(&gateway, "/api/v3/resource", Some("garbage")).await, 401);
    })
    .await;
    counts_exactly(&gateway, "foreign host", &[(&failure("host_not_allowed"), 1.0)], async {
        assert_eq!(proxied(&gateway, "/proxy/evil.example.com/x", Some(&access_a)).await, 403);
    })
    .await;
    // The foreign-host request above counted against the session's budget of 3 too: two more go through.
    counts_exactly(&gateway, "session rate limit", &[(r#"ibgw_rate_limited_total{scope="session"}"#, 1.0)], async {
        for _ in 0..2 {
            assert_eq!(proxied(&gateway, "/api/v3/resource", Some(&access_a)).await, 200);
        }
        assert_eq!(proxied(&gateway, "/api/v3/resource", Some(&access_a)).await, 429);
    })
    .await;
    counts_exactly(&gateway, "unknown client", &[(&failure("invalid_client"), 1.0)], async {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_a.as_str()), ("client_id", "nope")];
        assert_eq!(post_form(&gateway.url("/token"), &form).await.0, 401);
    })
    .await;
    counts_exactly(&gateway, "unknown code", &[(&failure("invalid_grant"), 1.0)], async {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", PUBLIC_CLIENT),
            ("code_verifier", VERIFIER),
        ];
        assert_eq!(post_form(&gateway.url("/token"), &form).await.0, 400);
    })
    .await;
    let (status, refreshed) = refresh(&gateway, &refresh_a).await;
    assert_eq!(status, 200, "{refreshed}");
    let latest_refresh = refreshed["refresh_token"].as_str().unwrap().to_string();
    let latest_access = refreshed["access_token"].as_str().unwrap().to_string();
    counts_exactly(
        &gateway,
        "refresh past the limit",
        &[(&failure("invalid_grant"), 1.0), (&timeout("refresh_limit"), 1.0)],
        async {
            let (status, body) = refresh(&gateway, &latest_refresh).await;
            assert_eq!((status, body["error_description"].as_str()), (400, Some("Session refresh limit exceeded")));
        },
    )
    .await;
    counts_exactly(
        &gateway,
        "refresh-token reuse",
        &[(&failure("invalid_grant"), 1.0), (&timeout("revoked"), 1.0)],
        async {
            assert_eq!(refresh(&gateway, &refresh_a).await.0, 400);
        },
    )
    .await;
    counts_exactly(
        &gateway,
        "revoked session",
        &[(&failure("session_ended"), 1.0), (&timeout("revoked"), 1.0)],
        async {
            assert_eq!(proxied(&gateway, "/api/v3/resource", Some(&latest_access)).await, 401);
        },
    )
    .await;

    let b = tokens_for(&gateway, &mock, "").await;
    let sid = b["sid"].as_str().unwrap();
    expire_session(&mock, sid).await;
    counts_exactly(
        &gateway,
        "IB ended the session",
        &[(&failure("session_ended"), 1.0), (&timeout("upstream_rejected"), 1.0)],
        async {
            assert_eq!(proxied(&gateway, "/api/v3/resource", b["access_token"].as_str()).await, 401);
        },
    )
    .await;

    let c = tokens_for(&gateway, &mock, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(4_200)).await;
    counts_exactly(&gateway, "expired access token", &[(&failure("token_expired"), 1.0)], async {
        assert_eq!(proxied(&gateway, "/api/v3/resource", c["access_token"].as_str()).await, 401);
    })
    .await;
}

/// `ibgw_requests_in_flight` once it reads `expected`: the gateway counts a request from its header to the end
/// of its `logging`, which runs after the client has its answer, so the gauge is read until it settles.
async fn in_flight_settles_at(gateway: &GatewayProcess, expected: f64) {
    let mut last = f64::NAN;
    for _ in 0..500 {
        last = sample(&scrape(gateway).await, "ibgw_requests_in_flight");
        assert!(last >= 0.0, "ibgw_requests_in_flight is negative: {last}");
        if last == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("ibgw_requests_in_flight stays at {last}, not {expected}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_process_exports_process_metrics_build_info_and_requests_in_flight() {
    let gateway = GatewayProcess::start("");
    let idle = scrape(&gateway).await;

    // The process collector, under the registry's prefix.
    assert!(sample(&idle, "ibgw_process_resident_memory_bytes") > 0.0, "{idle}");
    assert!(sample(&idle, "ibgw_process_virtual_memory_bytes") > 0.0, "{idle}");
    let open_fds = sample(&idle, "ibgw_process_open_fds");
    assert!(open_fds > 0.0, "{idle}");
    assert!(sample(&idle, "ibgw_process_max_fds") >= open_fds, "{idle}");
    assert!(sample(&idle, "ibgw_process_threads") >= 1.0, "{idle}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started = sample(&idle, "ibgw_process_start_time_seconds");
    assert!(started > 1.0e9 && started <= now + 1.0, "start time {started}, now {now}");
    assert!(idle.lines().any(|line| line.starts_with("ibgw_process_cpu_seconds_total ")), "{idle}");
    assert!(!idle.lines().any(|line| line.starts_with("process_")), "every name has the ibgw_ prefix");

    // Build info: the version, the commit (12 hex digits, or `unknown` for a build without git), the backend.
    let build = idle.lines().find(|line| line.starts_with("ibgw_build_info{")).expect("ibgw_build_info");
    assert!(build.ends_with(" 1"), "{build}");
    assert!(build.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(build.contains(r#"store_backend="memory""#), "{build}");
    let sha = build.split(r#"git_sha=""#).nth(1).and_then(|rest| rest.split('"').next()).expect("a git_sha label");
    assert!(sha == "unknown" || (sha.len() == 12 && sha.chars().all(|c| c.is_ascii_hexdigit())), "git_sha {sha:?}");

    // In flight: 0 when idle (the scrapes themselves go to the admin listener and do not count).
    assert!(idle.lines().any(|line| line == "ibgw_requests_in_flight 0"), "{idle}");
    for _ in 0..3 {
        assert_eq!(http().get(gateway.url("/api/v3/resource")).send().await.unwrap().status(), 401);
        let jwks = http().get(gateway.url("/.well-known/jwks.json")).send().await.unwrap();
        assert_eq!(jwks.status(), 200);
    }
    in_flight_settles_at(&gateway, 0.0).await;

    // A /token request whose body never comes is in flight until its client goes away.
    let addr = gateway.base.trim_start_matches("http://").to_string();
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type="
    );
    tokio::io::AsyncWriteExt::write_all(&mut stalled, head.as_bytes()).await.unwrap();
    in_flight_settles_at(&gateway, 1.0).await;
    drop(stalled);
    in_flight_settles_at(&gateway, 0.0).await;
}
