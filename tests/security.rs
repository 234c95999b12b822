//! The findings of the black-box attack run and of reading the code, each pinned by the behaviour that closes
//! it, against a real gateway process and the mock IntelligenceBank platform. docs/security.md lists each
//! defence with the test here that proves it.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_track_and_unknown_methods_are_405_before_any_store_look_up_and_never_reach_ib() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let before = scrape(&gateway).await;
    for method in ["TRACE", "TRACK", "PROPFIND", "CONNECTX"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let answer =
            send(http().request(method.clone(), gateway.url("/api/v3/resource")).bearer_auth(access(&tokens))).await;
        assert_eq!(answer.status, 405, "{method}: {}", answer.text);
        assert_eq!(answer.body["error"], "method_not_allowed", "{method}");
        assert_eq!(answer.header("allow"), Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    }
    let after = scrape(&gateway).await;
    let reads =
        |m: &str| sample(m, r#"ibgw_store_operation_duration_seconds_count{backend="memory",operation="get_session"}"#);
    assert_eq!(reads(&after), reads(&before), "no store look-up for a refused method");
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), 0, "nothing reached IB");
    // OPTIONS that is not a CORS preflight is one of IB's methods and is forwarded.
    let options =
        http().request(reqwest::Method::OPTIONS, gateway.url("/api/v3/resource")).bearer_auth(access(&tokens));
    assert_eq!(options.send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_forwarding_headers_never_reach_ib_and_x_forwarded_for_is_rebuilt() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let echo: Value = http()
        .get(gateway.url("/api/v3/resource"))
        .bearer_auth(access(&tokens))
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Real-IP", "6.6.6.6")
        .header("X-Original-URL", "/admin")
        .header("X-Rewrite-URL", "/admin")
        .header("X-HTTP-Method-Override", "DELETE")
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "not appended to the client's: {headers}");
    for forged in ["x-real-ip", "x-original-url", "x-rewrite-url", "x-http-method-override", "x-forwarded-host"] {
        assert!(headers.get(forged).is_none(), "{forged} reached IB: {headers}");
    }
}

/// Every header a CDN or proxy uses for the client's address is the client's to forge: none reaches IB, which
/// learns the address from the `X-Forwarded-For` the gateway rebuilt.
#[tokio::test(flavor = "multi_thread")]
async fn no_cdn_client_ip_header_from_a_client_reaches_ib() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let forged = [
        "CF-Connecting-IP",
        "Fastly-Client-IP",
        "X-Cluster-Client-IP",
        "Client-IP",
        "X-Original-Forwarded-For",
        "True-Client-IP",
        "X-Client-IP",
        "Forwarded",
    ];
    let mut request = http().get(gateway.url("/api/v3/resource")).bearer_auth(access(&tokens));
    for name in forged {
        request = request.header(name, "6.6.6.6");
    }
    let echo: Value = request.send().await.unwrap().json().await.unwrap();
    let headers = &echo["headers"];
    for name in forged {
        assert!(headers.get(name.to_ascii_lowercase()).is_none(), "{name} reached IB: {headers}");
    }
    assert!(!headers.to_string().contains("6.6.6.6"), "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
}

/// IB's own CORS answer never reaches the client: only the gateway's policy decides which origins may read a
/// proxied answer, and whether with credentials.
#[tokio::test(flavor = "multi_thread")]
async fn ibs_access_control_headers_are_replaced_by_the_gateways_policy() {
    let (gateway, mock) =
        gateway_and_mock("cors:\n  allowed_origins: ['https://app.example.com']\n  allow_credentials: false\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    for origin in ["https://evil.example", "https://app.example.com"] {
        let response = http()
            .get(gateway.url("/api/v3/resource?mock_cors=1"))
            .bearer_auth(access(&tokens))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert!(headers.get("access-control-allow-credentials").is_none(), "{origin}: {headers:?}");
        assert!(headers.get("access-control-expose-headers").is_none_or(|v| v != "X-IB-Internal"), "{headers:?}");
        let allowed: Vec<_> = headers.get_all("access-control-allow-origin").iter().collect();
        if origin == "https://evil.example" {
            assert!(allowed.is_empty(), "IB's wildcard reached a foreign origin: {headers:?}");
        } else {
            assert_eq!(allowed, ["https://app.example.com"], "the gateway's answer, once");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_ib_sees_the_trusted_chain_only() {
    let gateway = GatewayProcess::start_full("", None, "", "  trusted_proxies: ['127.0.0.1']\n");
    let mock = start_mock(Default::default()).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let echo: Value = http()
        .get(gateway.url("/api/v3/resource"))
        .bearer_auth(access(&tokens))
        .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 198.51.100.7 is the client the trusted proxy (127.0.0.1) vouched for; 6.6.6.6 could be anyone's forgery.
    assert_eq!(echo["headers"]["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn ib_cookies_and_headers_carrying_the_sid_never_reach_the_client() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let sid = tokens["sid"].as_str().unwrap();
    let response =
        http().get(gateway.url("/api/v3/resource?mock_cookies=1")).bearer_auth(access(&tokens)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none(), "{:?}", response.headers());
    assert!(response.headers().get("x-debug-session").is_none(), "{:?}", response.headers());
    for (name, value) in response.headers() {
        assert!(!value.as_bytes().windows(sid.len()).any(|w| w == sid.as_bytes()), "{name} carries the sid");
    }
    assert_eq!(response.headers()["content-type"], "application/json", "IB's content headers pass");
    assert!(response.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_request_id_is_not_adopted_at_the_edge_but_logged_apart() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let chosen = "client-chosen-id-0123";
    let response = http()
        .get(gateway.url("/api/v3/resource"))
        .bearer_auth(access(&tokens))
        .header("X-Request-Id", chosen)
        .send()
        .await
        .unwrap();
    let ours = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(ours, chosen);
    let echo: Value = response.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], ours.as_str(), "IB gets the gateway's id");
    let log = gateway.log_with(&format!("client_request_id={chosen}"));
    assert!(log.contains(&format!("id={ours} ")), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_request_id_is_adopted() {
    let gateway = GatewayProcess::start_full("", None, "", "  trusted_proxies: ['127.0.0.1']\n");
    let response = http().get(gateway.url("/no-such-endpoint")).header("X-Request-Id", "edge-id-0123456").send().await;
    assert_eq!(response.unwrap().headers()["x-request-id"], "edge-id-0123456");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_to_a_foreign_host_count_against_the_session_and_are_limited() {
    let (gateway, mock) = gateway_and_mock("rate_limits:\n  per_session_per_minute: 3\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = http().get(gateway.url("/proxy/evil.example.com/x")).bearer_auth(access(&tokens));
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [403, 403, 403, 429]);
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_anonymous_requests_count_against_the_client_ip_whatever_the_refusal() {
    let (gateway, _mock) = gateway_and_mock("rate_limits:\n  per_ip_per_minute: 3\n").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = http().request(reqwest::Method::from_bytes(b"TRACE").unwrap(), gateway.url("/api/v3/x"));
        statuses.push(request.send().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [405, 405, 405, 429]);
}

/// Sends a request line and headers that announce a body, then resets the connection (SO_LINGER 0) without
/// sending it: the gateway's read and its reply both meet a client that is gone.
fn request_then_reset(base: &str, target: &str) {
    let stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    let mut stream = tokio_linger_zero(stream);
    write!(stream, "GET {target} HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(stream);
}

/// `SO_LINGER` 0, so that dropping the stream sends RST instead of FIN.
fn tokio_linger_zero(stream: std::net::TcpStream) -> std::net::TcpStream {
    let socket = socket2::Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    socket.into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_poll_leaves_no_poll_token_in_the_log_and_no_5xx() {
    let (gateway, mock) = gateway_and_mock("").await;
    let started: Value = http()
        .get(gateway.url(&format!("/authorize?{}&platform_url={}", authorize_query("s"), urlencode(&mock.origin))))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poll_token = started["token"].as_str().unwrap().to_string();
    for _ in 0..5 {
        request_then_reset(&gateway.base, &format!("/authorize/poll?token={poll_token}"));
    }
    // A request to flush the log lines of the ones before.
    let mut probe = std::net::TcpStream::connect(gateway.base.trim_start_matches("http://")).unwrap();
    probe.write_all(b"GET /healthz-probe HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").unwrap();
    let _ = probe.read_to_end(&mut Vec::new());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_log_free_of(&gateway, &[poll_token.as_str()]);
    let metrics = scrape(&gateway).await;
    assert!(
        !metrics.lines().any(|l| l.starts_with("ibgw_http_requests_total{") && l.contains(r#"status="5"#)),
        "{metrics}"
    );
    assert!(sample(&metrics, r#"ibgw_http_requests_total{route="authorize",status="499"}"#) >= 1.0, "{metrics}");
    assert!(!gateway.log().contains("failed upstream"), "a client going away is not an upstream failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_log_configuration_lets_a_secret_into_the_log() {
    // The most verbose setting there is, with the library targets that print headers named explicitly (a more
    // specific target used to lift the cap).
    let rust_log = "trace,pingora=trace,pingora_proxy=trace,pingora_proxy::proxy_h1=trace,pingora_core=trace,\
                    pingora_core::protocols::http::v1::client=trace,hyper=trace,hyper_util=trace,h2=trace,\
                    reqwest=trace,rustls=trace,redis=trace,ib_oauth_gateway=trace";
    let gateway = GatewayProcess::start_logged(rust_log, "", None, "", "");
    let mock = start_mock(Default::default()).await;
    let redirect = login(&gateway, &mock, &authorize_query("v"), "").await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, tokens) = exchange(&gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    let response = http()
        .get(gateway.url("/api/v3/resource?mock_cookies=1"))
        .bearer_auth(access(&tokens))
        .header("Cookie", "c=cookie-value-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, refreshed) = refresh(&gateway, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{refreshed}");
    let secrets = [
        code,
        tokens["sid"].as_str().unwrap().to_string(),
        access(&tokens),
        tokens["refresh_token"].as_str().unwrap().to_string(),
        access(&refreshed),
        refreshed["refresh_token"].as_str().unwrap().to_string(),
        "cookie-value-0123456789".to_string(),
        VERIFIER.to_string(),
    ];
    assert!(gateway.log().contains("DEBUG"), "the gateway logged at its most verbose");
    assert_log_free_of(&gateway, &secrets);
}
