//! The access log of a real gateway process: one line per request with its fields, text or JSON, its own
//! switch, and never a token, code, poll token, sid or query string.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The access lines in the gateway's log, waiting (up to 10 s) until there are at least `at_least`.
fn access_lines(gateway: &GatewayProcess, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines: Vec<String> = gateway
            .log()
            .lines()
            .filter(|l| l.contains(" access request id=") || l.contains(r#""type":"access""#))
            .map(str::to_string)
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_one_text_line_with_its_fields_and_no_secret() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let response = http()
        .get(gateway.url("/api/v3/resource?verbose=secret-query-value"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .header("User-Agent", "test-agent/1.0")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(response.status(), 200);
    let needle = format!("id={id} ");
    let log = gateway.log_with(&needle);
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    for field in [
        "method=GET",
        "route=proxy",
        "status=200",
        "upstream_status=200",
        "upstream_ms=",
        "bytes_in=0",
        "client=127.0.0.1",
        "user_agent=\"test-agent/1.0\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // A tag is base64url, so it may itself begin with '-'; only the bare "-" means "no session".
    let session = line.split(' ').find_map(|field| field.strip_prefix("session=")).unwrap();
    assert!(session.len() > 1, "a proxied request names its session's tag: {line}");
    assert!(!line.contains("secret-query-value"), "never the query string: {line}");
    let mut secrets = vec!["secret-query-value".to_string()];
    for name in ["access_token", "refresh_token", "sid"] {
        secrets.push(tokens[name].as_str().unwrap().to_string());
    }
    assert_log_free_of(&gateway, &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_access_lines_are_one_object_each() {
    let (gateway, _mock) = gateway_and_mock("logging:\n  format: json\n").await;
    for _ in 0..3 {
        http().get(gateway.url("/no-such-endpoint")).send().await.unwrap();
    }
    let lines = access_lines(&gateway, 3);
    assert!(lines.len() >= 3, "{lines:#?}");
    for line in lines {
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(value["type"], "access");
        assert_eq!(value["route"], "other");
        assert_eq!(value["status"], 404);
        assert!(value["request_id"].as_str().is_some_and(|id| id.len() == 16), "{value}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_has_its_own_switch() {
    let (gateway, _mock) = gateway_and_mock("logging:\n  access_log: false\n").await;
    for _ in 0..3 {
        http().get(gateway.url("/no-such-endpoint")).send().await.unwrap();
    }
    // A request whose line would be there by now if the log were on: its id must not appear.
    let id = http().get(gateway.url("/no-such-endpoint")).send().await.unwrap().headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert!(access_lines(&gateway, 0).is_empty(), "{}", gateway.log());
    assert!(!gateway.log().contains(&id));
}
