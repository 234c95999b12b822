//! The mock platform's endpoints: the Browser Login, the test controls and the dispatch to API v3.
//!
//! Test controls (no browser needed):
//! - `POST /_mock/complete?token=T` completes a pending login as the test user and answers `{"sid": ...}`.
//!   Optional query overrides: `logintimeoutperiod`, `loginTime` (a number, `"quoted"` for a string, `none`
//!   to leave the field out), `uuid`, `firstname`, `lastname`. The login page's button posts the same
//!   endpoint as a form and completes as the demo user instead.
//! - `POST /_mock/fail?token=T`: the login never completes (its token answers 404 forever).
//! - `POST /_mock/expire?sid=S`: the session ends; API calls with it get 401.
//! - `GET /_mock/stats`: connections accepted and requests per endpoint.
//! - `GET /_mock/trace`: the `traceparent` and `tracestate` the last request to each endpoint carried
//!   (`{"api": {"traceparent": "00-...", "tracestate": null}, "info": ...}`); the control endpoints are not
//!   recorded.

use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::exchange::escape_html;

use super::body::{form_param, full, json_response, message, query_param, MockBody};
use super::state::{parse_override, CompletionOverrides, MockState, MockUser, TokenError};

/// The largest login form the mock reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Who `/_mock/complete` logs in unless told otherwise.
fn test_user() -> MockUser {
    MockUser {
        uuid: "00000000-0000-4000-8000-000000000001".into(),
        first_name: "Test".into(),
        last_name: "User".into(),
    }
}

/// Who the login page's button logs in: a fixed, recognisable user for demos in a browser.
fn demo_user() -> MockUser {
    MockUser {
        uuid: "00000000-0000-4000-8000-0000000000de".into(),
        first_name: "Demo".into(),
        last_name: "User".into(),
    }
}

pub(super) async fn handle(request: Request<Incoming>, state: &MockState) -> Response<MockBody> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let endpoint = match path.as_str() {
        "/v1/auth/app/token" => "token",
        "/auth/" | "/auth" => "login_page",
        "/v1/auth/app/info" => "info",
        "/_mock/complete" => "complete",
        "/_mock/fail" => "fail",
        "/_mock/expire" => "expire",
        "/_mock/stats" => "stats",
        "/_mock/trace" => "trace",
        p if p.starts_with(super::api::API_PREFIX) => "api",
        _ => "not_found",
    };
    state.count_request(endpoint);
    if matches!(endpoint, "token" | "login_page" | "info" | "api") {
        state.record_trace(endpoint, request.headers());
    }
    match (endpoint, &method) {
        ("token", &Method::POST | &Method::GET) => start_login(state),
        ("login_page", &Method::GET) => login_page(&request, state),
        ("info", &Method::GET) => login_info(&request, state),
        ("complete", &Method::POST) => complete(request, state).await,
        ("fail", &Method::POST) => fail(request, state).await,
        ("expire", &Method::POST) => expire(&request, state),
        ("stats", &Method::GET) => json_response(StatusCode::OK, &state.stats()),
        ("trace", &Method::GET) => json_response(StatusCode::OK, &state.trace_headers()),
        ("api", _) => super::api::handle(request, state).await,
        ("not_found", _) => message(StatusCode::NOT_FOUND, "Not Found"),
        _ => message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}

fn start_login(state: &MockState) -> Response<MockBody> {
    let (app_sid, token) = state.start_login();
    json_response(StatusCode::OK, &json!({ "SID": app_sid, "content": token }))
}

fn login_info(request: &Request<Incoming>, state: &MockState) -> Response<MockBody> {
    let token = query_param(request, "token").unwrap_or_default();
    if let Some(body) = state.login_info(&token) {
        return json_response(StatusCode::OK, &body);
    }
    if state.settings.pending_as_ok_without_session && state.is_pending(&token) {
        return json_response(StatusCode::OK, &json!({ "SID": Value::Null, "content": { "info": {} } }));
    }
    message(StatusCode::NOT_FOUND, "Not Found")
}

fn login_page(request: &Request<Incoming>, state: &MockState) -> Response<MockBody> {
    let token = query_param(request, "token").unwrap_or_default();
    if !state.is_pending(&token) {
        return unknown_login_page();
    }
    let token = escape_html(&token);
    let user = demo_user();
    let body = format!(
        "<p>This is the mock IntelligenceBank platform. No password is needed.</p>\n\
         <form method=\"post\" action=\"/_mock/complete\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button type=\"submit\">Log in as {} {}</button></form>\n\
         <form method=\"post\" action=\"/_mock/fail\">\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <button type=\"submit\">Fail this login</button></form>",
        escape_html(&user.first_name),
        escape_html(&user.last_name),
    );
    html_response(StatusCode::OK, page("Mock IntelligenceBank login", &body))
}

/// Completes a login: from a test (token in the query, JSON answer) or from the login page's form.
async fn complete(request: Request<Incoming>, state: &MockState) -> Response<MockBody> {
    if let Some(token) = query_param(&request, "token") {
        let mut user = test_user();
        if let Some(uuid) = query_param(&request, "uuid") {
            user.uuid = uuid;
        }
        if let Some(first_name) = query_param(&request, "firstname") {
            user.first_name = first_name;
        }
        if let Some(last_name) = query_param(&request, "lastname") {
            user.last_name = last_name;
        }
        let overrides = CompletionOverrides {
            login_timeout: query_param(&request, "logintimeoutperiod").map(|v| parse_override(&v)),
            login_time: query_param(&request, "loginTime").map(|v| parse_override(&v)),
        };
        return match state.complete_login(&token, &user, overrides) {
            Ok(sid) => json_response(StatusCode::OK, &json!({ "sid": sid })),
            Err(e) => token_error(e),
        };
    }
    let Some(form) = read_form(request).await else {
        return message(StatusCode::BAD_REQUEST, "token is required");
    };
    let token = form_param(&form, "token").unwrap_or_default();
    let user = demo_user();
    match state.complete_login(&token, &user, CompletionOverrides::default()) {
        Ok(_) => {
            let name = escape_html(&format!("{} {}", user.first_name, user.last_name));
            html_response(
                StatusCode::OK,
                page("Logged in", &format!("<p>Logged in as {name}. You can close this window.</p>")),
            )
        }
        Err(_) => unknown_login_page(),
    }
}

/// Fails a login: from a test (token in the query) or from the login page's form.
async fn fail(request: Request<Incoming>, state: &MockState) -> Response<MockBody> {
    if let Some(token) = query_param(&request, "token") {
        return match state.fail_login(&token) {
            Ok(()) => json_response(StatusCode::OK, &json!({ "failed": true })),
            Err(e) => token_error(e),
        };
    }
    let token = read_form(request).await.and_then(|form| form_param(&form, "token")).unwrap_or_default();
    match state.fail_login(&token) {
        Ok(()) => html_response(StatusCode::OK, page("Login failed", "<p>This login failed.</p>")),
        Err(_) => unknown_login_page(),
    }
}

fn expire(request: &Request<Incoming>, state: &MockState) -> Response<MockBody> {
    let sid = query_param(request, "sid").unwrap_or_default();
    if state.expire_session(&sid) {
        json_response(StatusCode::OK, &json!({ "expired": true }))
    } else {
        message(StatusCode::NOT_FOUND, "unknown sid")
    }
}

fn token_error(error: TokenError) -> Response<MockBody> {
    match error {
        TokenError::Unknown => message(StatusCode::NOT_FOUND, "unknown token"),
        TokenError::AlreadyFinished => message(StatusCode::CONFLICT, "login already finished"),
    }
}

/// Reads a small `application/x-www-form-urlencoded` body; `None` for anything else.
async fn read_form(request: Request<Incoming>) -> Option<Vec<u8>> {
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return None;
    }
    let mut body = request.into_body();
    let mut form = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let data = frame.ok()?.into_data().unwrap_or_default();
        if form.len() + data.len() > MAX_FORM_BYTES {
            return None;
        }
        form.extend_from_slice(&data);
    }
    Some(form.to_vec())
}

fn html_response(status: StatusCode, html: String) -> Response<MockBody> {
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; form-action 'self'"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unknown_login_page() -> Response<MockBody> {
    html_response(StatusCode::NOT_FOUND, page("Unknown login", "<p>This login is unknown or finished.</p>"))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n"
    )
}
