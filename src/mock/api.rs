//! API v3 on the mock: `ANY /api/3.0.0/{clientid}/...`, authenticated by the `sid` header (or `?sid=`).
//!
//! A valid call is echoed as JSON: the method, the request target exactly as received (path and query, byte
//! for byte), the headers, and how many body bytes arrived. Query parameters steer the answer:
//! `mock_bytes=N` streams N bytes of [`pattern_byte`] instead, `mock_delay_ms=N` waits first and
//! `mock_status=N` answers with that status, and `mock_cookies=1` adds what a load balancer or a chatty
//! server in front of IB may send (`Set-Cookie: AWSALB=...` and `X-Debug-Session: <the sid>`), `mock_cors=1` IB's
//! own permissive CORS answer (`Access-Control-Allow-Origin: *` with credentials). `GET .../resource.limit(N)...` adds an IB-style list to the echo.
//! Bodies are counted and produced chunk by chunk; nothing is buffered.

use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::body::{json_response, message, uri_param, MockBody};
use super::state::MockState;

pub(super) const API_PREFIX: &str = "/api/3.0.0/";

/// The download pattern repeats every 251 bytes (a prime, so it never lines up with chunk or buffer sizes).
const PATTERN_PERIOD: u64 = 251;
/// A whole number of periods, so every chunk starts at pattern offset 0 and one shared buffer serves all.
const CHUNK_LEN: usize = 251 * 256;
static PATTERN_CHUNK: LazyLock<Bytes> =
    LazyLock::new(|| (0..CHUNK_LEN as u64).map(pattern_byte).collect::<Vec<u8>>().into());
/// Rows a mock list answer holds at most.
const MAX_LIST_ROWS: u64 = 1_000;

/// The byte at `offset` of a `mock_bytes` download, for checking what arrived.
pub fn pattern_byte(offset: u64) -> u8 {
    // The remainder is below 251, so it fits a byte.
    (offset % PATTERN_PERIOD) as u8
}

pub(super) async fn handle(request: Request<Incoming>, state: &MockState) -> Response<MockBody> {
    let (parts, mut body) = request.into_parts();
    let uri = &parts.uri;
    let param = |name: &str| uri_param(uri, name);

    let mut body_length: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_length += frame.data_ref().map_or(0, |data| data.len() as u64),
            Err(e) => {
                log::debug!("mock platform: request body broke off: {e}");
                return message(StatusCode::BAD_REQUEST, "request body broke off");
            }
        }
    }
    if let Some(delay) = param("mock_delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let path_after_prefix = uri.path().strip_prefix(API_PREFIX).unwrap_or_default();
    let (client_id, resource_path) = path_after_prefix.split_once('/').unwrap_or((path_after_prefix, ""));
    let sid = parts.headers.get("sid").and_then(|v| v.to_str().ok()).map(str::to_string).or_else(|| param("sid"));
    if !sid.as_deref().is_some_and(|sid| state.session_ok(sid, client_id)) {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }

    let status = match param("mock_status") {
        None => StatusCode::OK,
        Some(text) => match text.parse::<u16>().ok().filter(|s| (200..=599).contains(s)).map(StatusCode::from_u16) {
            Some(Ok(status)) => status,
            _ => return message(StatusCode::BAD_REQUEST, "mock_status must be 200 to 599"),
        },
    };
    if let Some(text) = param("mock_bytes") {
        return match text.parse::<u64>() {
            Ok(length) => pattern_response(status, length),
            Err(_) => message(StatusCode::BAD_REQUEST, "mock_bytes must be a byte count"),
        };
    }

    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    let raw_target = uri.path_and_query().map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
    let mut echo = json!({
        "method": parts.method.as_str(),
        "path": raw_target,
        "headers": headers,
        "body_length": body_length,
        "sid_ok": true,
    });
    if parts.method == Method::GET {
        if let Some(count) = list_limit(resource_path) {
            echo["response"] = list(count);
        }
    }
    let mut response = json_response(status, &echo);
    if param("mock_cookies").is_some() {
        let headers = response.headers_mut();
        headers.append(hyper::header::SET_COOKIE, HeaderValue::from_static("AWSALB=sticky-0123456789; Path=/"));
        headers.append(hyper::header::SET_COOKIE, HeaderValue::from_static("JSESSIONID=ib-internal; HttpOnly"));
        if let Some(sid) = sid.as_deref().and_then(|sid| HeaderValue::from_str(&format!("sid={sid}")).ok()) {
            headers.insert("x-debug-session", sid);
        }
    }
    if param("mock_cors").is_some() {
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
        headers.insert("access-control-expose-headers", HeaderValue::from_static("X-IB-Internal"));
    }
    response
}

/// `N` in a path like `resource.limit(N).order(...)`.
fn list_limit(resource_path: &str) -> Option<u64> {
    let rest = resource_path.strip_prefix("resource.limit(")?;
    let (count, _) = rest.split_once(')')?;
    count.parse().ok()
}

fn list(count: u64) -> Value {
    let count = count.min(MAX_LIST_ROWS);
    let rows: Vec<Value> = (1..=count)
        .map(|i| json!({ "_id": format!("mock-resource-{i}"), "name": format!("Mock resource {i}") }))
        .collect();
    json!({ "rows": rows, "count": count, "offset": 0 })
}

/// `length` bytes of the pattern, streamed in shared chunks.
fn pattern_response(status: StatusCode, length: u64) -> Response<MockBody> {
    let chunks = PatternChunks { remaining: length };
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

struct PatternChunks {
    remaining: u64,
}

impl Iterator for PatternChunks {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let length = usize::try_from(self.remaining).map_or(CHUNK_LEN, |remaining| remaining.min(CHUNK_LEN));
        self.remaining -= length as u64;
        Some(Ok(Frame::data(PATTERN_CHUNK.slice(..length))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_chunks_add_up_to_the_length_and_continue_the_pattern() {
        let length = CHUNK_LEN as u64 * 2 + 1_000;
        let mut offset = 0u64;
        for frame in (PatternChunks { remaining: length }) {
            let data = frame.expect("infallible").into_data().expect("data frame");
            for (i, byte) in data.iter().enumerate() {
                assert_eq!(*byte, pattern_byte(offset + i as u64));
            }
            offset += data.len() as u64;
        }
        assert_eq!(offset, length);
    }

    #[test]
    fn list_limit_reads_the_resource_limit() {
        assert_eq!(list_limit("resource.limit(100).order(createTime:-1)"), Some(100));
        assert_eq!(list_limit("resource/abc"), None);
        assert_eq!(list_limit("resource.limit(x)"), None);
    }
}
