//! The mock IntelligenceBank platform: starting it and driving its test controls (`/_mock/*`).

use ib_oauth_gateway::mock::{self, MockHandle, MockSettings};
use serde_json::Value;

use super::http::{control_http, urlencode};

/// A plain-HTTP mock on a free port of 127.0.0.1 (see [`super::pki`] for a TLS one).
pub async fn start_mock(settings: MockSettings) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    mock::serve(listener, None, settings).await.expect("mock starts")
}

/// The mock platform's counters: `{"connections_accepted", "requests_total", "requests": {endpoint: n}}`.
/// Asked on a connection of its own.
pub async fn mock_stats(mock: &MockHandle) -> Value {
    control_http().get(mock.url("/_mock/stats")).send().await.expect("stats").json().await.expect("stats JSON")
}

/// The trace context the last request to each mock endpoint carried:
/// `{"api": {"traceparent": "00-...", "tracestate": null}, "token": ..., "info": ...}` (see `/_mock/trace`).
pub async fn mock_trace(mock: &MockHandle) -> Value {
    control_http().get(mock.url("/_mock/trace")).send().await.expect("trace").json().await.expect("trace JSON")
}

/// Completes the pending login of the IB login token `token` as the test user, through `client`;
/// `extra_query` is appended (e.g. `&logintimeoutperiod=1`). Returns the IB session id.
pub async fn complete_login_with(
    client: &reqwest::Client,
    mock: &MockHandle,
    token: &str,
    extra_query: &str,
) -> String {
    let url = mock.url(&format!("/_mock/complete?token={}{extra_query}", urlencode(token)));
    let response = client.post(url).send().await.expect("complete request");
    let status = response.status();
    let text = response.text().await.expect("complete answer");
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).expect("complete answers JSON");
    body["sid"].as_str().expect("complete answers the sid").to_string()
}

/// [`complete_login_with`] on the control client.
pub async fn complete_login(mock: &MockHandle, token: &str, extra_query: &str) -> String {
    complete_login_with(&control_http(), mock, token, extra_query).await
}

/// Ends the IB session `sid` on the mock (API calls with it get 401 from then on); the control's status.
pub async fn expire_session(mock: &MockHandle, sid: &str) -> reqwest::StatusCode {
    let url = mock.url(&format!("/_mock/expire?sid={}", urlencode(sid)));
    control_http().post(url).send().await.expect("expire").status()
}
