//! HTTP from the test's side: clients, whole answers, form posts, raw requests and URL pieces.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

/// The client of an OAuth client or API caller: it never follows redirects (tests look at them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// For the test's own calls to the mock's control endpoints, which may use a test certificate.
/// (The gateway itself always verifies certificates.)
pub fn control_http() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

/// A response, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when it is not JSON.
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, body }
}

/// POSTs a form; the status and the body as JSON (as a JSON string when it is not JSON).
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let answer = send(http().post(url).form(form)).await;
    let body = serde_json::from_str(&answer.text).unwrap_or(Value::String(answer.text));
    (answer.status, body)
}

/// Sends one raw HTTP/1.1 GET (for paths an HTTP client library would normalise) to `base`
/// (`http://host:port`) and returns the status and body.
pub fn raw_request(base: &str, request_line_target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {request_line_target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The `Access-Control-Allow-Origin` a CORS preflight from `origin` gets from the gateway at `base`.
pub async fn preflight_origin(base: &str, origin: &str) -> Option<String> {
    let response = http()
        .request(reqwest::Method::OPTIONS, format!("{base}/api/v3/x"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    response.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Query parameter `name` of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// Reads a streamed download of the mock's pattern (`mock_bytes=N`) to the end, checking a byte every 4099, and
/// returns how many bytes came.
pub async fn read_mock_pattern(response: reqwest::Response) -> u64 {
    use futures_util::StreamExt;
    let mut received = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for (i, byte) in chunk.iter().enumerate().step_by(4099) {
            assert_eq!(*byte, ib_oauth_gateway::mock::pattern_byte(received + i as u64));
        }
        received += chunk.len() as u64;
    }
    received
}

/// A request body of `mib` MiB, streamed in 1 MiB chunks (never held whole).
pub fn streamed_body(mib: u64) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![7u8; 1 << 20]);
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..mib).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ))
}
