//! The public listener: a Pingora [`ProxyHttp`] whose `request_filter` decides every request.
//!
//! The OAuth endpoints and the authenticated proxy routes are added by their own modules; until a route
//! matches, the gateway answers a JSON 404 itself and never contacts an upstream.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::sync::Arc;

use crate::server::AppState;

pub struct Gateway {
    pub state: Arc<AppState>,
}

/// Writes a complete JSON response from `request_filter`.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    extra_headers: &[(&'static str, String)],
) -> Result<()> {
    let body = Bytes::from(body.to_string());
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("Content-Type", "application/json")?;
    header.insert_header("Content-Length", body.len().to_string())?;
    header.insert_header("Cache-Control", "no-store")?;
    for (name, value) in extra_headers {
        header.insert_header(*name, value.as_str())?;
    }
    session.write_response_header(Box::new(header), false).await?;
    session.write_response_body(Some(body), true).await
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut Self::CTX) -> Result<bool> {
        let body = serde_json::json!({
            "error": "not_found",
            "error_description": "No such endpoint",
        });
        respond_json(session, 404, &body, &[]).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        // request_filter answers every request this build routes; reaching here is a bug, not a client error.
        Error::e_explain(ErrorType::InternalError, "no upstream route")
    }
}
