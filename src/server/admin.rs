//! The admin listener: `/healthz` (the process answers), `/readyz` (the store answers) and `/metrics`
//! (Prometheus text format). Keep it off the public network; it reveals no token, sid or user.

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

use crate::state::AppState;

pub struct AdminApp {
    pub state: Arc<AppState>,
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/healthz" => text(StatusCode::OK, "application/json", r#"{"status":"ok"}"#),
            "/readyz" => match self.state.store.ping().await {
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
            "/metrics" => {
                // The gauges that describe the store are read now, by this service; metrics read nothing.
                let metrics = &self.state.metrics;
                metrics.set_store_up(self.state.store.ping().await.is_ok());
                if let Ok(count) = self.state.store.session_count().await {
                    metrics.set_active_sessions(count);
                }
                text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics.render())
            }
            _ => text(StatusCode::NOT_FOUND, "application/json", r#"{"error":"not_found"}"#),
        }
    }
}
