//! The admin listener (`server.admin_listen`): the probes `/healthz` (the process answers) and `/readyz` (the
//! store answers), `/metrics` (Prometheus text format), and the admin API under `/admin/`:
//! `POST /admin/reload` (read the configuration file again, see `server::reload`) and the session API
//! ([`sessions`]: find and end an IB user's sessions). Every answer is made by [`reply`].
//!
//! One router decides for every request, in this order: who may ask ([`auth::AdminAuth::authorize`]: every
//! `/admin/` path, and `/metrics` with `admin.protect_metrics`), whether the path exists (`404`), whether the
//! method fits (`405`), then the handler. The probes stay open whatever is configured. Keep the listener off
//! the public network all the same; it reveals no token, sid or user, never logs the admin token, and reads
//! a request body only where a handler needs one (none does yet).

pub mod auth;
pub mod reply;
pub mod sessions;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use super::reload::{ReloadOutcome, Reloader};
use auth::AdminAuth;
use reply::{json, method_not_allowed, not_found, text};

pub struct AdminApp {
    /// Reloads the configuration, and holds the state requests start on.
    pub reloader: Arc<Reloader>,
    /// The admin token in force (a reload swaps it).
    pub auth: Arc<ArcSwap<AdminAuth>>,
}

/// `/admin/sessions/`: a session id follows.
const SESSIONS_UNDER: &str = "/admin/sessions/";

/// A path the admin listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    /// `POST /admin/reload`
    Reload,
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
            "/admin/reload" => Some(Route::Reload),
            _ if path == sessions::PATH || path.starts_with(SESSIONS_UNDER) => Some(Route::Sessions),
            _ => None,
        }
    }

    fn access(self) -> Access {
        match self {
            Route::Healthz | Route::Readyz => Access::Probe,
            Route::Metrics => Access::Metrics,
            Route::Reload | Route::Sessions => Access::Admin,
        }
    }

    /// The methods a route answers; `None`: any (the probes and `/metrics` never checked the method).
    fn methods(self) -> Option<&'static [Method]> {
        match self {
            Route::Healthz | Route::Readyz | Route::Metrics => None,
            Route::Reload => Some(&[Method::POST]),
            Route::Sessions => Some(sessions::METHODS),
        }
    }
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
        let auth = self.auth.load();
        let needs_token = match access {
            Access::Probe => false,
            Access::Metrics => auth.protects_metrics(),
            Access::Admin => true,
        };
        if needs_token {
            auth.authorize(request)?;
        }
        let route = route.ok_or_else(|| not_found("No such path"))?;
        match route.methods() {
            Some(methods) if !methods.contains(&request.method) => Err(method_not_allowed(methods)),
            _ => Ok(route),
        }
    }

    async fn serve(&self, route: Route, session: &ServerSession) -> Response<Vec<u8>> {
        let state = self.reloader.state();
        match route {
            Route::Sessions => {
                let request = session.req_header();
                match sessions::action(&request.method, request.uri.path(), request.uri.query()) {
                    Ok(action) => {
                        let operator = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
                        sessions::serve(&state, action, &sessions::Operator::new(operator)).await
                    }
                    Err(refused) => refused,
                }
            }
            Route::Healthz => text(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
            Route::Readyz => match state.store.ping().await {
                Ok(()) => {
                    state.metrics.set_store_up(true);
                    text(StatusCode::OK, "application/json", r#"{"status":"ready"}"#)
                }
                Err(e) => {
                    state.metrics.set_store_up(false);
                    log::warn!("readiness check failed: {e}");
                    text(StatusCode::SERVICE_UNAVAILABLE, "application/json", r#"{"status":"store_unavailable"}"#)
                }
            },
            Route::Metrics => {
                // The gauges that describe the store are read now, by this service; metrics read nothing.
                let metrics = &state.metrics;
                metrics.set_store_up(state.store.ping().await.is_ok());
                if let Ok(count) = state.store.session_count().await {
                    metrics.set_active_sessions(count);
                }
                text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
            }
            Route::Reload => self.reload().await,
        }
    }

    /// `POST /admin/reload`: `200` with what changed and what needs a restart, or `422` with every error.
    async fn reload(&self) -> Response<Vec<u8>> {
        let reloader = self.reloader.clone();
        // The file is read and the state built off the runtime's thread.
        let outcome = match tokio::task::spawn_blocking(move || reloader.reload("POST /admin/reload")).await {
            Ok(outcome) => outcome,
            Err(e) => {
                log::error!("configuration reload (POST /admin/reload) failed: {e}");
                let body = serde_json::json!({"error": "server_error", "error_description": "The reload failed"});
                return json(StatusCode::INTERNAL_SERVER_ERROR, &body);
            }
        };
        match outcome {
            ReloadOutcome::Reloaded { changed, restart_required } => json(
                StatusCode::OK,
                &serde_json::json!({"status": "reloaded", "changed": changed, "restart_required": restart_required}),
            ),
            ReloadOutcome::Refused(errors) => {
                let errors: Vec<_> =
                    errors.iter().map(|e| serde_json::json!({"key": e.key, "message": e.message})).collect();
                let body = serde_json::json!({
                    "error": "invalid_config",
                    "error_description": "The configuration file is not valid; the running configuration stays",
                    "errors": errors,
                });
                json(StatusCode::UNPROCESSABLE_ENTITY, &body)
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
        assert_eq!(Route::of("/admin/reload").map(Route::access), Some(Access::Admin));
        assert_eq!(Route::of("/admin/sessions").map(Route::access), Some(Access::Admin));
        assert_eq!(Route::of("/admin/sessions/x").map(Route::access), Some(Access::Admin));
        assert_eq!(Route::of("/admin/sessionsx"), None);
        assert_eq!(Route::Reload.methods(), Some(&[Method::POST][..]));
    }
}
