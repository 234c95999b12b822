//! The public listener: a Pingora [`ProxyHttp`] whose hooks are the phases of a request. Each hook only says what
//! happens in its phase; the work lives in rooms named for it:
//!
//! - [`edge`]: who the client is, which request id and trace the request has, the OAuth request body;
//! - [`decide`]: the verdict on a proxied request (method, path, bearer token, session rules, rate limit, host);
//! - [`route`] (pure): where a proxied request may go; [`upstream`]: DNS, the peer, the header rewrite;
//! - [`respond`]: every answer, and the one header policy they all get (CORS, security headers, request id);
//! - [`telemetry`]: metrics, spans and the access line of a finished request;
//! - [`context`]: what a request carries from one phase to the next.
//!
//! Nothing here logs a token, code, sid or secret; bodies stream through untouched.

mod context;
mod decide;
mod edge;
mod respond;
pub mod route;
mod telemetry;
pub mod upstream;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::AccessLog;
use crate::errors::ApiError;
use crate::exchange::cors::Cors;
use crate::exchange::new_request_id;
use crate::state::LiveState;
use crate::store::now_unix;
use crate::trace::{self, SpanId};
pub use context::RequestContext;
use decide::Refusal;
use upstream::DnsCache;

pub struct Gateway {
    /// The state each request starts on (a live reload swaps it); the request keeps it in its context.
    live: Arc<LiveState>,
    /// IB API hosts, resolved asynchronously and cached.
    dns: DnsCache,
    access_log: AccessLog,
}

impl Gateway {
    /// The DNS cache and the access log are made once, from the state at start-up (their settings need a
    /// restart to change).
    pub fn new(live: Arc<LiveState>) -> Self {
        let state = live.load();
        let dns = DnsCache::new(state.config.upstream.dns_cache_ttl_seconds);
        let dropped = state.metrics.log_lines_dropped.with_label_values(&["access"]);
        let access_log = AccessLog::start(&state.config.logging, dropped);
        Gateway { live: live.clone(), dns, access_log }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    /// A request arrives: it takes the state in force (one atomic load; a reload meanwhile does not change it)
    /// and counts as in flight until [`Self::logging`], which Pingora calls once for every context.
    fn new_ctx(&self) -> Self::CTX {
        let state = self.live.load_full();
        state.metrics.request_started();
        RequestContext::new(state, new_request_id())
    }

    /// Decides every request, before anything reaches IB. The edge is read first (client, request id, trace);
    /// then a CORS preflight is answered without authentication, an OAuth endpoint is answered here (after the
    /// per-IP limit), a proxied route is authorized (`decide`) and either refused here or handed on with its
    /// target in the context (`Ok(false)`), and anything else is a JSON 404. Refusals are counted once, in
    /// `respond::refuse`.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let now = now_unix();
        edge::intake(session, ctx);
        let state = &ctx.state;
        let span = ctx.trace.as_ref().map(|trace| trace.span());
        let client_ip = ctx.client_ip();
        let header = session.req_header();
        let path = header.uri.path();
        let requested_method = header.headers.get("access-control-request-method").and_then(|v| v.to_str().ok());
        let reply = if Cors::is_preflight(&header.method, requested_method) {
            ctx.route_class = "preflight";
            state.cors.preflight(edge::origin(session))
        } else if route::is_proxy_path(path) {
            ctx.route_class = "proxy";
            // The span is only read by the store's spans (nothing in this path audits or calls IB's login API),
            // so it is set only when spans are exported: it costs a task-local scope on every request.
            let decided = decide::proxied(state, session, &self.dns, now);
            let decided = match span.filter(|_| trace::export::enabled()) {
                Some(span) => trace::within(span, decided).await,
                None => decided.await,
            };
            match decided {
                Ok(proxied) => {
                    ctx.proxied = Some(proxied);
                    return Ok(false);
                }
                Err(Refusal::CountedAgainstSession(error)) => respond::refuse(&error, ctx),
                // Refused before a session was found: counts against the client IP, refused harder past it.
                Err(Refusal::Anonymous(error)) => match state.rate_limits.ip(client_ip, now) {
                    Ok(()) => respond::refuse(&error, ctx),
                    Err(limited) => respond::refuse(&limited, ctx),
                },
            }
        } else if let Some(endpoint) = crate::oauth::find(path) {
            ctx.route_class = endpoint.route;
            let answer = match state.rate_limits.ip(client_ip, now) {
                Ok(()) => {
                    let answer = async {
                        let request = edge::exchange_request(session, ctx).await?;
                        endpoint.handle(state, &request).await
                    };
                    match span {
                        Some(span) => trace::within(span, answer).await,
                        None => answer.await,
                    }
                }
                Err(limited) => Err(limited),
            };
            answer.unwrap_or_else(|error| respond::refuse(&error, ctx))
        } else {
            respond::refuse(&ApiError::NotFound, ctx)
        };
        respond::send(session, ctx, reply).await?;
        Ok(true)
    }

    /// The peer is the session's own IB host at the address `request_filter` resolved (no DNS here: Pingora's
    /// `HttpPeer::new` would resolve with a blocking call), with the configured timeouts and certificate checks.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let Some(proxied) = &ctx.proxied else {
            return Error::e_explain(ErrorType::InternalError, "no upstream was chosen for this request");
        };
        Ok(Box::new(upstream::peer(&proxied.target, proxied.addr, &ctx.state.config.upstream)))
    }

    /// Rewrites the request for IB (`upstream::rewrite_request`): the bearer token, cookies, client-chosen
    /// forwarding and client-IP headers and hop-by-hop headers out; the session's `sid`, `Host`, the trusted
    /// `X-Forwarded-For` and our request id in. Runs once per attempt (Pingora may retry a failed connection),
    /// each with a span of its own as IB's `traceparent` parent.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let Some(proxied) = &ctx.proxied else {
            return Error::e_explain(ErrorType::InternalError, "no upstream was chosen for this request");
        };
        ctx.upstream_started = Some(Instant::now());
        upstream::rewrite_request(
            upstream_request,
            &proxied.target,
            proxied.grant.sid.expose(),
            &ctx.forwarded_chain,
            ctx.downstream_tls,
            &ctx.request_id,
        )?;
        if let Some(trace) = &ctx.trace {
            let span = SpanId::random();
            ctx.upstream_span = Some(span);
            upstream::propagate_trace(upstream_request, &trace.traceparent(span), trace.tracestate.as_deref())?;
        }
        Ok(())
    }

    /// IB's answer header (`respond::proxied_answer`): cleaned of what must not reach the client, given the
    /// gateway's header policy and the rate-limit verdict; an IB 401 ends the session and is replaced.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        respond::proxied_answer(session, upstream_response, ctx).await
    }

    /// IB's body streams through untouched, but for a replaced 401, whose body is the gateway's.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        respond::replace_body(body, end_of_stream, ctx);
        Ok(None)
    }

    /// IB could not be reached or failed mid-answer: 502 or 504 JSON (`respond::failed_upstream`), or nothing
    /// when it was the client that went away. The connection to the client is not reused.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        let error_code = respond::failed_upstream(session, e, ctx).await;
        FailToProxy { error_code, can_reuse_downstream: false }
    }

    /// What Pingora's own error lines say about a request: method, path without the query string (a poll token
    /// or code may be in it), route class and request id. Never a header.
    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        let header = session.req_header();
        format!("{} {} route={} id={}", header.method, header.uri.path(), ctx.route_class, ctx.request_id)
    }

    /// A client that went away mid-request is not an error of ours: our own request line records it (status
    /// 499), Pingora's error line would only repeat it.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        *error.esource() == pingora::ErrorSource::Downstream
    }

    /// The request is over (answered, refused, failed or abandoned): `telemetry` records it once.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = telemetry::final_status(session, e);
        telemetry::finish(session, ctx, status, &self.access_log);
    }
}
