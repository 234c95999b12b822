//! The public listener: a Pingora [`ProxyHttp`] whose hooks are the phases of a request.
//!
//! - `request_filter` decides: CORS preflights are answered without authentication; the OAuth endpoints are
//!   answered here; proxied routes are authenticated (bearer token, session rules, host binding, rate limit)
//!   and refused here, or handed on with their target in the context. Anything else is a JSON 404.
//! - `upstream_peer` picks the session's own IB host (DNS resolved asynchronously and cached).
//! - `upstream_request_filter` rewrites headers: bearer out, IB `sid` in.
//! - `response_filter` adds CORS, security and rate-limit headers; an upstream 401 ends the session.
//! - `fail_to_proxy` maps upstream failures to 502/504 JSON; `logging` writes one line per request.
//!
//! Nothing here logs a token, code, sid or secret; bodies stream through untouched.

pub mod route;
pub mod upstream;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::access_log::{truncate_user_agent, AccessLog, AccessRecord};
use crate::audit::{self, AuditEvent, AuditKind};
use crate::auth::Meter;
use crate::errors::{ApiError, SessionEnd};
use crate::exchange::cors::Cors;
use crate::exchange::{Reply, Request};
use crate::limits::{self, Verdict};
use crate::session::{SessionGrant, SessionId, SessionState};
use crate::state::{AppState, LiveState};
use crate::store::now_unix;
use crate::trace::export::{FinishedSpan, Kind};
use crate::trace::{self, SpanId, TraceContext};
use opentelemetry::KeyValue;
use route::Target;
use upstream::DnsCache;

pub struct Gateway {
    /// The state each request starts on (a live reload swaps it); the request keeps it in its context.
    live: Arc<LiveState>,
    /// IB API hosts, resolved asynchronously and cached.
    dns: DnsCache,
    access_log: AccessLog,
}

/// What `request_filter` decided for a proxied request.
pub struct Proxied {
    target: Target,
    addr: SocketAddr,
    session_id: SessionId,
    /// The session's grant (its `sid`, user and client), shared with the session read, not copied.
    grant: Arc<SessionGrant>,
    verdict: Option<Verdict>,
}

/// Per-request state.
pub struct RequestContext {
    /// The state this request started on, loaded once: a reload mid-request does not change it.
    state: Arc<AppState>,
    /// Ours, made at the edge; a client's own id is adopted only from a trusted proxy.
    pub request_id: String,
    /// An `X-Request-Id` the client sent that was not adopted: logged beside ours, never forwarded.
    client_request_id: Option<String>,
    /// The client and the trusted proxies it came through, client first, the TCP peer last.
    forwarded_chain: Vec<IpAddr>,
    downstream_tls: bool,
    started: Instant,
    route_class: &'static str,
    proxied: Option<Proxied>,
    /// The body that replaces an upstream 401's.
    replacement_body: Option<Bytes>,
    /// When the request was sent to IB.
    upstream_started: Option<Instant>,
    /// IB's answer: its status and how long its header took.
    upstream_answer: Option<(u16, std::time::Duration)>,
    /// The W3C trace this request continues or starts (set first thing in `request_filter`).
    trace: Option<TraceContext>,
    /// The span of the call to IB: the parent id IB is sent.
    upstream_span: Option<SpanId>,
}

/// The `route` label of a path (bounded: never the path itself).
fn route_label(path: &str) -> &'static str {
    match path {
        "/authorize" | "/authorize/poll" | "/authorize/app.js" | "/authorize/style.css" => "authorize",
        "/token" => "token",
        "/userinfo" => "userinfo",
        "/revoke" => "revoke",
        "/introspect" => "introspect",
        "/register" => "register",
        p if p.starts_with("/.well-known/") => "discovery",
        _ => "other",
    }
}

/// 64 random bits as 16 hex digits: unique enough to find a request in the logs, cheap on the hot path.
pub fn new_request_id() -> String {
    let mut digits = [0u8; 16];
    // Cannot fail: 8 bytes fill 16 digits exactly.
    let _ = hex::encode_to_slice(rand::random::<u64>().to_be_bytes(), &mut digits);
    digits.iter().map(|&digit| char::from(digit)).collect()
}

/// The TCP peer's address.
fn peer_ip(session: &Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// The client and the proxies it came through, client first and the TCP peer last: the peer alone when it is
/// not a trusted proxy; else, reading `X-Forwarded-For` from the right, every trusted hop and then the first
/// untrusted address, which is the client (entries left of it could be forged by the client). Garbage further
/// out ends the chain at the last address a trusted proxy vouched for.
pub fn forwarded_chain(peer: IpAddr, forwarded_for: &[&str], trusted: &[ipnet::IpNet]) -> Vec<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut chain = vec![peer];
    if is_trusted(&peer) {
        for hop in forwarded_for.iter().rev().flat_map(|value| value.rsplit(',')).map(str::trim) {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            chain.push(ip);
            if !is_trusted(&ip) {
                break;
            }
        }
    }
    chain.reverse();
    chain
}

/// The client's address for per-IP limits: the first address of [`forwarded_chain`].
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    peer.map(|peer| forwarded_chain(peer, forwarded_for, trusted)[0])
}

/// The trace of a request: its `traceparent` continued when it is valid and the only one, else a new trace.
/// The parent's sampled flag is followed only from a trusted proxy (see [`TraceContext::accept`]).
fn accept_trace(header: &RequestHeader, sample_ratio: f64, parent_trusted: bool) -> TraceContext {
    let mut fields = header.headers.get_all("traceparent").iter();
    let traceparent = match (fields.next(), fields.next()) {
        (Some(only), None) => only.to_str().ok(),
        _ => None,
    };
    // Only read when there is a parent to go with it; a field that is not text spoils the whole list.
    let tracestate = traceparent
        .and_then(|_| header.headers.get_all("tracestate").iter().map(|v| v.to_str().ok()).collect::<Option<Vec<_>>>())
        .and_then(trace::tracestate);
    TraceContext::accept(traceparent, tracestate, sample_ratio, parent_trusted)
}

/// Methods forwarded to IB: those its API uses. Others (TRACE, TRACK, CONNECT, anything invented) are refused
/// with 405 before any store look-up; a CORS preflight never gets here.
const PROXIED_METHODS: &[http::Method] = &[
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::PATCH,
    http::Method::DELETE,
    http::Method::OPTIONS,
];
const PROXIED_METHODS_ALLOW: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Response headers of IB's that never reach the client: cookies (IB's own, e.g. load-balancer stickiness,
/// mean nothing on the gateway's origin and must not be planted there) and the session header itself. Any
/// other header whose value carries the session's `sid` is dropped too, and so is every `Access-Control-*`
/// header of IB's: the gateway's CORS policy alone says which origins may read an answer (see `response_filter`).
const DROPPED_RESPONSE: &[&str] = &["set-cookie", "set-cookie2", "sid"];

/// Sent on every response when the client reached the gateway over TLS.
const HSTS: &str = "max-age=31536000";

/// A refused proxied request, and whether it was already counted against its session's rate limit (else it
/// counts against the client IP).
enum Refusal {
    Anonymous(ApiError),
    CountedAgainstSession(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Anonymous(error)
    }
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

/// Response headers a proxy must not pass on (RFC 9110 §7.6.1); framing is Pingora's business.
const HOP_BY_HOP_RESPONSE: &[&str] = &["connection", "keep-alive", "proxy-connection", "trailer", "upgrade"];

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

    /// The one place a refusal becomes a response: it is counted here (authentication failures, ended
    /// sessions, rate limits), once, and written as the RFC 6749/6750 JSON error. A failed authentication
    /// also counts towards its client address's `repeated_auth_failures` audit event.
    fn refuse(error: &ApiError, ctx: &RequestContext) -> Reply {
        let state = &ctx.state;
        state.metrics.refused(
            error.auth_failure_reason(),
            error.session_end().map(SessionEnd::label),
            error.limit_scope().map(|scope| scope.label()),
        );
        if audit::is_failed_authentication(error) {
            state.audit.failed_authentication(ctx.forwarded_chain.first().copied(), &ctx.request_id, now_unix());
        }
        Reply::error(error, &Self::resource_metadata(state))
    }

    /// The chain of [`forwarded_chain`] for this request (empty only without a TCP peer address).
    fn chain(state: &AppState, session: &Session) -> Vec<IpAddr> {
        let Some(peer) = peer_ip(session) else { return Vec::new() };
        let trusted = &state.trusted_proxies;
        if trusted.is_empty() {
            return vec![peer];
        }
        let forwarded: Vec<&str> =
            session.req_header().headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        forwarded_chain(peer, &forwarded, trusted)
    }

    fn peer_is_trusted(state: &AppState, session: &Session) -> bool {
        peer_ip(session).is_some_and(|peer| state.trusted_proxies.iter().any(|net| net.contains(&peer)))
    }

    fn resource_metadata(state: &AppState) -> String {
        format!("{}/.well-known/oauth-protected-resource", state.config.server.public_url.trim_end_matches('/'))
    }

    fn origin(session: &Session) -> Option<String> {
        session.req_header().headers.get("origin").and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// Writes a reply the gateway made itself, with CORS, security headers and the request id.
    async fn send(&self, session: &mut Session, ctx: &RequestContext, reply: Reply) -> Result<()> {
        let origin = Self::origin(session);
        let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 8))?;
        for (name, value) in &reply.headers {
            header.append_header(*name, value.as_str())?;
        }
        for (name, value) in ctx.state.cors.response_headers(origin.as_deref()) {
            header.append_header(name, value)?;
        }
        header.insert_header("Content-Length", reply.body.len().to_string())?;
        header.insert_header("X-Content-Type-Options", "nosniff")?;
        header.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        if ctx.downstream_tls {
            header.insert_header("Strict-Transport-Security", HSTS)?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        // A failure to write is the client's side (it went away): not an upstream failure, not a 5xx.
        session
            .write_response_header(Box::new(header), head_only || reply.body.is_empty())
            .await
            .map_err(|e| e.into_down())?;
        if !head_only && !reply.body.is_empty() {
            session.write_response_body(Some(reply.body), true).await.map_err(|e| e.into_down())?;
        }
        Ok(())
    }

    async fn oauth(session: &mut Session, ctx: &RequestContext) -> Result<Reply, ApiError> {
        let state = &ctx.state;
        let limit = state.config.server.max_form_body_bytes;
        let body = read_body(session, limit).await?;
        let header = session.req_header();
        let request = Request {
            method: header.method.clone(),
            path: header.uri.path().to_string(),
            query: header.uri.query().unwrap_or_default().to_string(),
            headers: header.headers.clone(),
            body,
            client_ip: ctx.forwarded_chain.first().copied(),
            request_id: ctx.request_id.clone(),
        };
        crate::oauth::handle(state, &request).await
    }

    /// IB answered 401 for the session's `sid`: the session ends in the store, so every instance refuses it
    /// from now on, and the audit log records it once (a concurrent request's 401 finds it ended already).
    async fn end_rejected_session(proxied: &Proxied, ctx: &RequestContext) {
        let tag = proxied.session_id.log_tag();
        let ended = ctx.state.store.end_session(&proxied.session_id, SessionState::UpstreamRejected);
        let ended = match &ctx.trace {
            Some(trace) => trace::within(trace.span(), ended).await,
            None => ended.await,
        };
        match ended {
            Ok(ended) => {
                log::info!("IB rejected the sid of session {tag}; session ended");
                if ended {
                    let grant = &proxied.grant;
                    let mut event = AuditEvent::new(AuditKind::SessionEndedByIb)
                        .client(&grant.oauth_client_id)
                        .user(&grant.user.uuid)
                        .session(&proxied.session_id)
                        .caused_by(ctx.forwarded_chain.first().copied(), &ctx.request_id);
                    event.trace_id = ctx.trace.as_ref().map(|trace| trace.trace_id.to_string());
                    ctx.state.audit.record(event);
                }
            }
            Err(e) => log::error!("could not mark session {tag} as rejected: {e}"),
        }
    }

    /// Decides a proxied request: who is calling, may they, and where does it go.
    async fn authorize_proxy(&self, state: &AppState, session: &Session, now: u64) -> Result<Proxied, Refusal> {
        let header = session.req_header();
        if !PROXIED_METHODS.contains(&header.method) {
            return Err(ApiError::MethodNotAllowed(PROXIED_METHODS_ALLOW).into());
        }
        let raw_target = std::str::from_utf8(header.raw_path())
            .map_err(|_| ApiError::InvalidRequest("Malformed request path".into()))?;
        let route = route::parse(raw_target)?;
        // One store round trip: the session, and (Redis limit backend) this window's count with it.
        let meter = state
            .rate_limits
            .counted_by_store()
            .then(|| Meter { window: limits::window(now).0, window_seconds: limits::WINDOW_SECONDS });
        let authenticated =
            state.auth.authenticate(header.headers.get(http::header::AUTHORIZATION), now, meter).await?;
        let stored = authenticated.session;
        // From here on every request counts against its session, refused or not (a flood of requests to a
        // foreign host is limited like any other).
        let verdict = state.rate_limits.session(stored.id.as_str(), authenticated.count, now);
        let counted = Refusal::CountedAgainstSession;
        let verdict = verdict.map_err(counted)?;
        let target = route::bind(&route, &stored).map_err(counted)?;
        // The session's hosts were allowed when it logged in; the allowlist in force now decides (a reload may
        // have narrowed `platforms.allowed_host_suffixes` or turned off the loopback switch since).
        if !state.ib.policy().allows_host(&target.host, target.tls) {
            log::warn!("session {} has an IB host the platform allowlist no longer allows", stored.id.log_tag());
            return Err(counted(ApiError::HostNotAllowed));
        }
        let addr = self.dns.resolve(&target.authority, &target.host, target.port).await.map_err(counted)?;
        Ok(Proxied { target, addr, session_id: stored.id, grant: stored.grant, verdict })
    }

    /// The request's server span and, when it was proxied, the span of its call to IB (whose id IB was sent as
    /// the parent). Only for sampled traces; names and attributes carry the route class, never the path.
    fn export_spans(&self, session: &Session, ctx: &RequestContext, status: u16) {
        let Some(trace) = ctx.trace.as_ref().filter(|trace| trace.sampled) else { return };
        let now = std::time::SystemTime::now();
        let method = session.req_header().method.as_str().to_string();
        if let (Some(span_id), Some(started)) = (ctx.upstream_span, ctx.upstream_started) {
            let start = now - started.elapsed();
            let mut span =
                FinishedSpan::child_with_id(trace.span(), span_id, format!("IB {method}"), Kind::Client, start);
            if let Some(proxied) = &ctx.proxied {
                span.attributes.push(KeyValue::new("server.address", proxied.target.host.clone()));
            }
            span.attributes.push(KeyValue::new("http.request.method", method.clone()));
            match ctx.upstream_answer {
                Some((status, _)) => {
                    span.attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
                    span.failed = status >= 500;
                }
                None => span.failed = true,
            }
            trace::export::record(span);
        }
        trace::export::record(FinishedSpan {
            name: format!("{method} {}", ctx.route_class).into(),
            kind: Kind::Server,
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent: trace.parent_id.map(|parent| (parent, true)),
            start: now - ctx.started.elapsed(),
            end: now,
            attributes: vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", ctx.route_class),
                KeyValue::new("http.response.status_code", i64::from(status)),
                KeyValue::new("ibgw.request_id", ctx.request_id.clone()),
            ],
            failed: status >= 500,
        });
    }
}

/// Maps a failed proxy attempt to what the client is told, and the `kind` label of
/// `ibgw_upstream_errors_total` when the failure was IB's side.
fn upstream_failure(error: &Error) -> Option<(ApiError, Option<&'static str>)> {
    use pingora::ErrorType::*;
    match error.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
            Some((ApiError::GatewayTimeout, Some("timeout")))
        }
        ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure | SocketError | BindError => {
            Some((ApiError::BadGateway("IntelligenceBank could not be reached"), Some("connect")))
        }
        TLSHandshakeFailure | TLSWantX509Lookup | InvalidCert | HandshakeError => {
            Some((ApiError::BadGateway("The TLS connection to IntelligenceBank failed"), Some("tls")))
        }
        _ => match error.esource() {
            pingora::ErrorSource::Upstream => {
                Some((ApiError::BadGateway("IntelligenceBank failed to answer"), Some("connect")))
            }
            pingora::ErrorSource::Downstream => None,
            _ => Some((ApiError::ServerError, None)),
        },
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        let state = self.live.load_full();
        state.metrics.request_started(); // Pingora calls `logging` once for each context: it decrements.
        RequestContext {
            state,
            request_id: new_request_id(),
            client_request_id: None,
            forwarded_chain: Vec::new(),
            downstream_tls: false,
            started: Instant::now(),
            route_class: "other",
            proxied: None,
            replacement_body: None,
            upstream_started: None,
            upstream_answer: None,
            trace: None,
            upstream_span: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let now = now_unix();
        let state = &ctx.state;
        let from_trusted_proxy = Self::peer_is_trusted(state, session);
        let trace = accept_trace(session.req_header(), state.config.tracing.sample_ratio, from_trusted_proxy);
        let span = trace.span();
        ctx.trace = Some(trace);
        ctx.forwarded_chain = Self::chain(state, session);
        ctx.downstream_tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        if let Some(id) = session.req_header().headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            // A plain token only. Adopted from a trusted proxy (the id the edge made); from anyone else it is
            // kept apart, for the log line, and never forwarded.
            if (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                if from_trusted_proxy {
                    ctx.request_id = id.to_string();
                } else {
                    ctx.client_request_id = Some(id.to_string());
                }
            }
        }
        let client_ip = ctx.forwarded_chain.first().copied();
        let header = session.req_header();
        let path = header.uri.path();
        let (is_proxy, oauth_route) = (route::is_proxy_path(path), crate::oauth::owns(path).then(|| route_label(path)));
        let requested_method = header.headers.get("access-control-request-method").and_then(|v| v.to_str().ok());
        let reply = if Cors::is_preflight(&header.method, requested_method) {
            ctx.route_class = "preflight";
            state.cors.preflight(Self::origin(session).as_deref())
        } else if is_proxy {
            ctx.route_class = "proxy";
            // The span is only read by the store's spans (nothing in this path audits or calls IB's login API),
            // so it is set only when spans are exported: it costs a task-local scope on every request.
            let authorized = self.authorize_proxy(state, session, now);
            let authorized =
                if trace::export::enabled() { trace::within(span, authorized).await } else { authorized.await };
            match authorized {
                Ok(proxied) => {
                    ctx.proxied = Some(proxied);
                    return Ok(false);
                }
                Err(Refusal::CountedAgainstSession(error)) => Self::refuse(&error, ctx),
                // Refused before a session was found: counts against the client IP, refused harder past it.
                Err(Refusal::Anonymous(error)) => match state.rate_limits.ip(client_ip, now) {
                    Ok(()) => Self::refuse(&error, ctx),
                    Err(limited) => Self::refuse(&limited, ctx),
                },
            }
        } else if let Some(route_class) = oauth_route {
            ctx.route_class = route_class;
            let answer = match state.rate_limits.ip(client_ip, now) {
                Ok(()) => trace::within(span, Self::oauth(session, ctx)).await,
                Err(limited) => Err(limited),
            };
            answer.unwrap_or_else(|error| Self::refuse(&error, ctx))
        } else {
            Self::refuse(&ApiError::NotFound, ctx)
        };
        self.send(session, ctx, reply).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let Some(proxied) = &ctx.proxied else {
            return Error::e_explain(ErrorType::InternalError, "no upstream was chosen for this request");
        };
        Ok(Box::new(upstream::peer(&proxied.target, proxied.addr, &ctx.state.config.upstream)))
    }

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
            // A span of its own for each attempt (Pingora may retry a failed connection).
            let span = SpanId::random();
            ctx.upstream_span = Some(span);
            upstream::propagate_trace(upstream_request, &trace.traceparent(span), trace.tracestate.as_deref())?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let state = &ctx.state;
        if let Some(started) = ctx.upstream_started {
            let elapsed = started.elapsed();
            state.metrics.upstream_duration.observe(elapsed.as_secs_f64());
            ctx.upstream_answer = Some((upstream_response.status.as_u16(), elapsed));
        }
        if upstream_response.status.is_server_error() && ctx.proxied.is_some() {
            state.metrics.upstream_errors.with_label_values(&["5xx"]).inc();
        }
        if upstream_response.status == 401 {
            if let Some(proxied) = &ctx.proxied {
                Self::end_rejected_session(proxied, ctx).await;
                let reply = Self::refuse(&ApiError::SessionEnded(SessionEnd::UpstreamRejected), ctx);
                let mut replacement = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
                for (name, value) in &reply.headers {
                    replacement.insert_header(*name, value.as_str())?;
                }
                replacement.insert_header("Content-Length", reply.body.len().to_string())?;
                *upstream_response = replacement;
                ctx.replacement_body = Some(reply.body);
            }
        }
        // Hop-by-hop and dropped headers, and whatever else IB might echo the session in: one pass over the
        // (few) headers IB sent, rather than a look-up per name that could be dropped.
        let sid =
            ctx.proxied.as_ref().map(|proxied| proxied.grant.sid.expose().as_bytes()).filter(|sid| !sid.is_empty());
        let drops = |(name, value): (&http::HeaderName, &http::HeaderValue)| {
            let name = name.as_str();
            HOP_BY_HOP_RESPONSE.contains(&name)
                || DROPPED_RESPONSE.contains(&name)
                || name.starts_with("access-control-")
                || sid.is_some_and(|sid| value.as_bytes().windows(sid.len()).any(|w| w == sid))
        };
        while let Some(name) =
            upstream_response.headers.iter().find(|&header| drops(header)).map(|(name, _)| name.clone())
        {
            upstream_response.remove_header(&name);
        }
        if ctx.downstream_tls {
            upstream_response.insert_header("Strict-Transport-Security", HSTS)?;
        }
        let origin = session.req_header().headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
        for (name, value) in state.cors.response_headers(origin) {
            // Keep IB's own `Vary` (e.g. Accept-Encoding) and add ours to it.
            let merged = match upstream_response.headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(existing) if name == "Vary" && !existing.is_empty() => {
                    Some(format!("{existing}, {}", value.to_str().unwrap_or_default()))
                }
                _ => None,
            };
            match merged {
                Some(merged) => upstream_response.insert_header(name, merged)?,
                None => upstream_response.insert_header(name, value)?,
            }
        }
        if let Some(verdict) = ctx.proxied.as_ref().and_then(|p| p.verdict) {
            for (name, value) in verdict.headers() {
                upstream_response.insert_header(name, value)?;
            }
        }
        upstream_response.insert_header("X-Content-Type-Options", "nosniff")?;
        upstream_response.insert_header("X-Request-Id", ctx.request_id.as_str())?;
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        if ctx.replacement_body.is_some() {
            *body = if end_of_stream { ctx.replacement_body.take() } else { None };
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Self::CTX) -> FailToProxy {
        let Some((error, kind)) = upstream_failure(e) else {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        };
        log::warn!("request {} failed upstream: {:?}", ctx.request_id, e.etype());
        if let Some(kind) = kind {
            ctx.state.metrics.upstream_errors.with_label_values(&[kind]).inc();
        }
        let status = error.status();
        if session.response_written().is_none() {
            let reply = Reply::error(&error, &Self::resource_metadata(&ctx.state));
            if let Err(write_error) = self.send(session, ctx, reply).await {
                log::debug!("could not write the error response: {write_error}");
            }
        }
        FailToProxy { error_code: status, can_reuse_downstream: false }
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        // 499 (the client closed the request) when the client went away, whatever was written before.
        let client_gone = e.is_some_and(|e| *e.esource() == pingora::ErrorSource::Downstream);
        let status = if client_gone { 499 } else { session.response_written().map_or(0, |r| r.status.as_u16()) };
        if trace::export::enabled() {
            // Before the request counts as finished: shutdown exports once nothing is in flight.
            self.export_spans(session, ctx, status);
        }
        ctx.state.metrics.request_finished();
        ctx.state.metrics.request_answered(ctx.route_class, status, ctx.started.elapsed().as_secs_f64());
        if !self.access_log.enabled() {
            return;
        }
        let header = session.req_header();
        let user_agent = header
            .headers
            .get(http::header::USER_AGENT)
            .map(|v| truncate_user_agent(&String::from_utf8_lossy(v.as_bytes())));
        self.access_log.record(AccessRecord {
            at: std::time::SystemTime::now(),
            request_id: std::mem::take(&mut ctx.request_id),
            client_request_id: ctx.client_request_id.take(),
            client_ip: ctx.forwarded_chain.first().copied(),
            method: header.method.clone(),
            route: ctx.route_class,
            status,
            upstream_status: ctx.upstream_answer.map(|(status, _)| status),
            duration: ctx.started.elapsed(),
            upstream_duration: ctx.upstream_answer.map(|(_, took)| took),
            bytes_in: session.as_ref().body_bytes_read(),
            bytes_out: session.as_ref().body_bytes_sent(),
            session_tag: ctx.proxied.as_ref().map(|p| p.session_id.log_tag()),
            user_agent,
            trace_id: ctx.trace.as_ref().map(|trace| trace.trace_id),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = |ip: &str| Some(ip.parse().unwrap());
        let ip = |text: &str| Some(text.parse().unwrap());
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(client_ip(peer("203.0.113.9"), &["1.2.3.4"], &trusted), ip("203.0.113.9"));
        // A trusted peer: the right-most untrusted hop; forged entries further left do not matter.
        assert_eq!(client_ip(peer("10.0.0.2"), &["6.6.6.6, 198.51.100.7"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(peer("10.0.0.2"), &["198.51.100.7, 10.0.0.5"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(peer("10.0.0.2"), &["6.6.6.6", "198.51.100.7"], &trusted), ip("198.51.100.7"));
        // Nothing forwarded, or garbage: the last trusted address.
        assert_eq!(client_ip(peer("10.0.0.2"), &[], &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(peer("10.0.0.2"), &["nonsense, 10.0.0.3"], &trusted), ip("10.0.0.3"));
    }
}
