//! The public listener: a Pingora [`ProxyHttp`] whose `request_filter` decides every request.
//!
//! CORS preflights are answered first, without authentication. The OAuth endpoints are answered here
//! (no upstream). Anything else is a JSON 404. Every response carries an `X-Request-Id`.

pub mod cors;
pub mod exchange;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use std::sync::Arc;

use crate::errors::ApiError;
use crate::server::AppState;
use exchange::{Reply, Request};

pub struct Gateway {
    pub state: Arc<AppState>,
}

/// Per-request state.
pub struct RequestContext {
    pub request_id: String,
}

fn new_request_id() -> String {
    crate::tokens::random_secret()[..16].to_string()
}

/// Reads the whole request body, refusing more than `limit` bytes (413) before reading it when the
/// length is declared.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, ApiError> {
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                log::debug!("request body could not be read: {e}");
                return Err(ApiError::InvalidRequest("Malformed request body".into()));
            }
        }
    }
}

impl Gateway {
    fn resource_metadata(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource", self.state.config.server.public_url.trim_end_matches('/'))
    }

    /// Writes a reply the gateway made itself, with CORS, security headers and the request id.
    async fn send(&self, session: &mut Session, ctx: &RequestContext, reply: Reply) -> Result<()> {
        let origin = session.req_header().headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 8))?;
        for (name, value) in &reply.headers {
            header.append_header(*name, value.as_str())?;
        }
        for (name, value) in self.state.cors.response_headers(origin.as_deref()) {
            header.append_header(name, value)?;
        }
        header.insert_header("Content-Length", reply.body.len().to_string())?;
        header.insert_header("X-Content-Type-Options", "nosniff")?;
        header.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session.write_response_header(Box::new(header), head_only || reply.body.is_empty()).await?;
        if !head_only && !reply.body.is_empty() {
            session.write_response_body(Some(reply.body), true).await?;
        }
        Ok(())
    }

    async fn oauth(&self, session: &mut Session) -> Reply {
        let limit = self.state.config.server.max_form_body_bytes;
        let body = match read_body(session, limit).await {
            Ok(body) => body,
            Err(error) => return Reply::error(&error, &self.resource_metadata()),
        };
        let header = session.req_header();
        let request = Request {
            method: header.method.clone(),
            path: header.uri.path().to_string(),
            query: header.uri.query().unwrap_or_default().to_string(),
            headers: header.headers.clone(),
            body,
            client_ip: session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
        };
        crate::oauth::handle(&self.state, &request).await
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext { request_id: new_request_id() }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let header = session.req_header();
        let requested_method = header.headers.get("access-control-request-method").and_then(|v| v.to_str().ok());
        let reply = if cors::Cors::is_preflight(&header.method, requested_method) {
            let origin = header.headers.get("origin").and_then(|v| v.to_str().ok());
            self.state.cors.preflight(origin)
        } else if crate::oauth::owns(header.uri.path()) {
            self.oauth(session).await
        } else {
            Reply::error(&ApiError::NotFound, &self.resource_metadata())
        };
        self.send(session, ctx, reply).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        // request_filter answers every request this build routes; reaching here is a bug, not a client error.
        Error::e_explain(ErrorType::InternalError, "no upstream route")
    }
}
