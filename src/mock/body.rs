//! Building the mock's responses and reading its requests: shared by the login routes and the API echo.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

pub(super) type MockBody = BoxBody<Bytes, Infallible>;

pub(super) fn form_param(form: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(form).find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// The first value of a decoded query parameter.
pub(super) fn query_param<B>(request: &Request<B>, name: &str) -> Option<String> {
    uri_param(request.uri(), name)
}

pub(super) fn uri_param(uri: &hyper::Uri, name: &str) -> Option<String> {
    form_param(uri.query()?.as_bytes(), name)
}

pub(super) fn full(bytes: impl Into<Bytes>) -> MockBody {
    Full::new(bytes.into()).boxed()
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response<MockBody> {
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A small JSON error body; IB documents none, so this only helps a human reading test output.
pub(super) fn message(status: StatusCode, text: &str) -> Response<MockBody> {
    json_response(status, &json!({ "message": text }))
}
