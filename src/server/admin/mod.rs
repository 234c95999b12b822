//! The admin listener (`server.admin_listen`): the probes `/healthz` (the process answers) and `/readyz` (the
//! store answers), `/metrics` (Prometheus text format), and the admin API under `/admin/`.
//!
//! One router decides for every request, in this order: who may ask ([`auth::AdminAuth::authorize`]: every
//! `/admin/` path, and `/metrics` with `admin.protect_metrics`), whether the path exists (`404`), whether the
//! method fits (`405`), then the handler. The probes stay open whatever is configured. Keep the listener off
//! the public network all the same; it reveals no token, sid or user, and never logs the admin token.

pub mod auth;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use super::sessions;
use crate::exchange::Reply;
use crate::state::AppState;
use auth::AdminAuth;

/// `/admin/sessions/`: a session id follows.
const SESSIONS_UNDER: &str = "/admin/sessions/";

pub struct AdminApp {
    pub state: Arc<AppState>,
    pub auth: AdminAuth,
}

/// A path the admin listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    /// `/admin/sessions` and `/admin/sessions/<id>`: the session API (`server::sessions`).
    Sessions,
}

/// Who may ask for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone: liveness and readiness probes never need a token.
    Probe,
    /// Anyone, or only with the admin token when `admin.protect_metrics` is on.
    Metrics,
    /// Only with the admin token; without one configured the path does not exist.
    Admin,
}

/// Is this path the admin API's (token required, even for a path that does not exist)?
fn is_admin_path(path: &str) -> bool {
    path == "/admin" || path.starts_with("/admin/")
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        match path {
            "/healthz" => Some(Route::Healthz),
            "/readyz" => Some(Route::Readyz),
            "/metrics" => Some(Route::Metrics),
            _ if path == sessions::PATH || path.starts_with(SESSIONS_UNDER) => Some(Route::Sessions),
            _ => None,
        }
    }

    fn access(self) -> Access {
        match self {
            Route::Healthz | Route::Readyz => Access::Probe,
            Route::Metrics => Access::Metrics,
            Route::Sessions => Access::Admin,
        }
    }

    /// The methods a route answers; `None`: any (the probes and `/metrics` never checked the method).
    fn methods(self) -> Option<&'static [Method]> {
        match self {
            Route::Healthz | Route::Readyz | Route::Metrics => None,
            Route::Sessions => Some(&[Method::GET, Method::HEAD, Method::DELETE]),
        }
    }
}

/// A JSON answer that no cache keeps.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Vec<u8>> {
    text(status, "application/json", body.to_string())
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// A reply made by the layers below, as the admin service answers it.
fn from_reply(reply: Reply) -> Response<Vec<u8>> {
    let mut builder = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value);
    }
    builder.header(http::header::CONTENT_LENGTH, reply.body.len()).body(reply.body.to_vec()).unwrap_or_default()
}

/// `405` with the `Allow` header.
fn method_not_allowed(allowed: &[Method]) -> Response<Vec<u8>> {
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let body = serde_json::json!({"error": "method_not_allowed", "error_description": format!("Use {allow}")});
    let mut response = json(StatusCode::METHOD_NOT_ALLOWED, &body);
    if let Ok(value) = http::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(http::header::ALLOW, value);
    }
    response
}

impl AdminApp {
    /// Who may ask, does the path exist, does the method fit: the route to serve, or the refusal.
    #[allow(clippy::result_large_err)] // the refusal is the answer itself (see `AdminAuth::authorize`)
    fn route(&self, session: &ServerSession) -> Result<Route, Response<Vec<u8>>> {
        let request = session.req_header();
        let path = request.uri.path();
        let route = Route::of(path);
        let access = match route {
            _ if is_admin_path(path) => Access::Admin,
            Some(route) => route.access(),
            None => Access::Probe,
        };
        let needs_token = match access {
            Access::Probe => false,
            Access::Metrics => self.auth.protects_metrics(),
            Access::Admin => true,
        };
        if needs_token {
            self.auth.authorize(request)?;
        }
        let route = route.ok_or_else(auth::not_found)?;
        match route.methods() {
            Some(methods) if !methods.contains(&request.method) => Err(method_not_allowed(methods)),
            _ => Ok(route),
        }
    }

    async fn serve(&self, route: Route, session: &ServerSession) -> Response<Vec<u8>> {
        match route {
            Route::Sessions => {
                let request = session.req_header();
                let reply = match sessions::action(&request.method, request.uri.path(), request.uri.query()) {
                    Ok(action) => {
                        let operator = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
                        sessions::serve(&self.state, action, &sessions::Operator::new(operator)).await
                    }
                    Err(refused) => refused,
                };
                from_reply(reply)
            }
            Route::Healthz => text(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
            Route::Readyz => match self.state.store.ping().await {
                Ok(()) => {
                    self.state.metrics.set_store_up(true);
                    text(StatusCode::OK, "application/json", r#"{"status":"ready"}"#)
                }
                Err(e) => {
                    self.state.metrics.set_store_up(false);
                    log::warn!("readiness check failed: {e}");
                    text(StatusCode::SERVICE_UNAVAILABLE, "application/json", r#"{"status":"store_unavailable"}"#)
                }
            },
            Route::Metrics => {
                // The gauges that describe the store are read now, by this service; metrics read nothing.
                let metrics = &self.state.metrics;
                metrics.set_store_up(self.state.store.ping().await.is_ok());
                if let Ok(count) = self.state.store.session_count().await {
                    metrics.set_active_sessions(count);
                }
                text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
            }
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    /// No handler reads a request body it does not need; none is ever echoed.
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.route(session) {
            Ok(route) => self.serve(route, session).await,
            Err(refused) => refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_path_needs_the_token_and_the_probes_never_do() {
        assert!(is_admin_path("/admin") && is_admin_path("/admin/reload") && is_admin_path("/admin/nothing"));
        assert!(!is_admin_path("/administrator") && !is_admin_path("/healthz"));
        assert_eq!(Route::of("/healthz").map(Route::access), Some(Access::Probe));
        assert_eq!(Route::of("/readyz").map(Route::access), Some(Access::Probe));
        assert_eq!(Route::of("/metrics").map(Route::access), Some(Access::Metrics));
        assert_eq!(Route::of("/admin/sessions").map(Route::access), Some(Access::Admin));
        assert_eq!(Route::of("/admin/sessions/x").map(Route::access), Some(Access::Admin));
        assert_eq!(Route::of("/admin/sessionsx"), None);
    }

    #[test]
    fn method_not_allowed_names_the_methods() {
        let refused = method_not_allowed(&[Method::POST]);
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()[http::header::ALLOW], "POST");
    }
}
