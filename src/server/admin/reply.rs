//! The admin listener's answers, the one reply type of every admin route: JSON or text that no cache keeps,
//! and the refusals every route shares (`{"error": …, "error_description": …}`, as the OAuth errors).

use http::{Method, Response, StatusCode};

use crate::errors::ApiError;

/// A JSON answer.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    text(status, "application/json", body.to_string())
}

pub fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// `404 not_found`: a path the admin listener does not serve, or a thing (`what`) that does not exist.
pub fn not_found(what: &str) -> Response<Vec<u8>> {
    json(StatusCode::NOT_FOUND, &serde_json::json!({"error": "not_found", "error_description": what}))
}

/// A refusal in the words of [`ApiError`]: its status, `error` and `error_description`.
pub fn error(error: &ApiError) -> Response<Vec<u8>> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &error.body())
}

/// `405` with the `Allow` header.
pub fn method_not_allowed(allowed: &[Method]) -> Response<Vec<u8>> {
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let body = serde_json::json!({"error": "method_not_allowed", "error_description": format!("Use {allow}")});
    with_header(json(StatusCode::METHOD_NOT_ALLOWED, &body), http::header::ALLOW, &allow)
}

/// `response` with the header `name: value` (left out if `value` could not be a header value).
pub fn with_header(mut response: Response<Vec<u8>>, name: http::HeaderName, value: &str) -> Response<Vec<u8>> {
    if let Ok(value) = http::HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_not_allowed_names_the_methods() {
        let refused = method_not_allowed(&[Method::POST]);
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()[http::header::ALLOW], "POST");
    }
}
