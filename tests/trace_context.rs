//! W3C trace context through a real gateway process and the mock platform: a valid `traceparent` is continued
//! (same trace id, the gateway's own span as IB's parent), anything else starts a new trace, the client's
//! `tracestate` goes along only with a valid parent, and the access line names the trace.

mod common;

use common::*;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn client_traceparent(flags: &str) -> String {
    format!("00-{TRACE_ID}-{CLIENT_SPAN}-{flags}")
}

/// `version-trace_id-parent_id-flags` of a `traceparent` the mock received, checked for shape.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[0], "00", "{traceparent}");
    assert!(fields[1].len() == 32 && fields[2].len() == 16 && fields[3].len() == 2, "{traceparent}");
    assert!(traceparent.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    (fields[1].to_string(), fields[2].to_string(), fields[3].to_string())
}

/// A proxied GET with `headers`; the echo of what IB received, and the answer's `X-Request-Id`.
async fn proxied(gateway: &GatewayProcess, tokens: &Value, headers: &[(&str, &str)]) -> (Value, String) {
    let mut request = http().get(gateway.url("/api/v3/resource")).bearer_auth(tokens["access_token"].as_str().unwrap());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let answer = send(request).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    (answer.body["headers"].clone(), answer.header("x-request-id").unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_traceparent_is_continued_with_the_gateways_span_as_ibs_parent() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let sent = client_traceparent("01");
    let (received, request_id) =
        proxied(&gateway, &tokens, &[("traceparent", &sent), ("tracestate", "congo=t61rcWkgMzE")]).await;
    let traceparent = received["traceparent"].as_str().expect("IB receives a traceparent");
    let (trace_id, parent_id, flags) = parts(traceparent);
    assert_eq!(trace_id, TRACE_ID, "the client's trace is continued");
    assert_ne!(parent_id, CLIENT_SPAN, "IB's parent is the gateway's span, not the client's");
    assert_eq!(flags, "01", "the client's sampling decision");
    assert_eq!(received["tracestate"], "congo=t61rcWkgMzE");
    // The mock's own record agrees with its echo: one traceparent, the gateway's.
    assert_eq!(mock_trace(&mock).await["api"]["traceparent"], traceparent);

    let needle = format!("id={request_id} ");
    let log = gateway.log_with(&needle);
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    assert!(line.contains(&format!("trace_id={TRACE_ID} ")), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsampled_trace_stays_unsampled() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let (received, _) = proxied(&gateway, &tokens, &[("traceparent", &client_traceparent("00"))]).await;
    let (trace_id, _, flags) = parts(received["traceparent"].as_str().unwrap());
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE_ID, "00"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_or_missing_traceparent_starts_a_new_trace_without_the_clients_tracestate() {
    let (gateway, mock) = gateway_and_mock("logging:\n  format: json\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let uppercase = client_traceparent("01").to_uppercase();
    let zero = format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32));
    let mut seen = Vec::new();
    for headers in [
        vec![("traceparent", uppercase.as_str()), ("tracestate", "congo=t61rcWkgMzE")],
        vec![("traceparent", zero.as_str())],
        vec![("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1")],
        vec![],
    ] {
        let (received, request_id) = proxied(&gateway, &tokens, &headers).await;
        let (trace_id, parent_id, flags) = parts(received["traceparent"].as_str().unwrap());
        assert_ne!(trace_id, TRACE_ID, "{headers:?}");
        assert_ne!(parent_id, CLIENT_SPAN, "{headers:?}");
        assert_eq!(flags, "01", "new traces are sampled by default");
        assert!(received.get("tracestate").is_none(), "{headers:?}: {received}");
        assert!(!seen.contains(&trace_id), "every new trace is new");
        let log = gateway.log_with(&request_id);
        let line: Value = log
            .lines()
            .filter(|l| l.contains(&request_id) && l.contains(r#""type":"access""#))
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap();
        assert_eq!(line["trace_id"], trace_id.as_str(), "the access line names the new trace");
        seen.push(trace_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_traceparent_fields_are_not_a_trace_to_continue() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let sent = client_traceparent("01");
    let (received, _) = proxied(&gateway, &tokens, &[("traceparent", &sent), ("traceparent", &sent)]).await;
    let (trace_id, _, _) = parts(received["traceparent"].as_str().unwrap());
    assert_ne!(trace_id, TRACE_ID);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_browser_login_calls_carry_the_requests_trace() {
    let (gateway, mock) = gateway_and_mock("").await;
    let sent = client_traceparent("01");
    let url = format!(
        "{}&platform_url={}",
        gateway.url(&format!("/authorize?{}", authorize_query("t"))),
        urlencode(&mock.origin)
    );
    let answer = send(http().get(url).header("Accept", "application/json").header("traceparent", &sent)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let traceparent = mock_trace(&mock).await["token"]["traceparent"].as_str().unwrap().to_string();
    let (trace_id, parent_id, _) = parts(&traceparent);
    assert_eq!(trace_id, TRACE_ID);
    assert_ne!(parent_id, CLIENT_SPAN);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_traces_follow_the_sample_ratio() {
    let (gateway, mock) = gateway_and_mock("tracing:\n  sample_ratio: 0\n").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let (received, _) = proxied(&gateway, &tokens, &[]).await;
    let (_, _, flags) = parts(received["traceparent"].as_str().unwrap());
    assert_eq!(flags, "00");
    // An outside caller cannot raise the ratio: its trace is continued, unsampled.
    let (received, _) = proxied(&gateway, &tokens, &[("traceparent", &client_traceparent("01"))]).await;
    let (trace_id, _, flags) = parts(received["traceparent"].as_str().unwrap());
    assert_eq!((trace_id.as_str(), flags.as_str()), (TRACE_ID, "00"));
    // A trusted proxy's decision wins (the edge sampled it).
    let trusted =
        GatewayProcess::start_full("tracing:\n  sample_ratio: 0\n", None, "", "  trusted_proxies: ['127.0.0.1']\n");
    let tokens = tokens_for(&trusted, &mock, "").await;
    let (received, _) = proxied(&trusted, &tokens, &[("traceparent", &client_traceparent("01"))]).await;
    assert_eq!(parts(received["traceparent"].as_str().unwrap()).2, "01");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_carry_the_trace_id_of_the_request_that_caused_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let (gateway, mock) = gateway_and_mock(&format!("logging:\n  audit: file {}\n", path.display())).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let sent = client_traceparent("01");
    let form = [("token", tokens["access_token"].as_str().unwrap()), ("client_id", PUBLIC_CLIENT)];
    let response = http().post(gateway.url("/revoke")).header("traceparent", &sent).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = sent.split('-').nth(1).unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let revoked = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let found = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|event| event["event"] == "token_revoked");
        if let Some(event) = found {
            break event;
        }
        assert!(std::time::Instant::now() < deadline, "no token_revoked line in {text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(revoked["trace_id"], trace_id.as_str(), "{revoked}");
}
