//! The verdict on a proxied request, before anything reaches IntelligenceBank: is the method one IB's API
//! uses, is the path well formed, who is calling (bearer token → session → session rules), are they within their
//! rate limit, does the token's scope cover the method (`ib:read` reads only), may the session's `sid` go to the
//! host they name (the session's own hosts, still allowed by the platform allowlist in force), and at which
//! address. Also the one decision taken after IB answered: IB rejected the `sid`, so the session ends.
//!
//! Every refusal is an [`ApiError`], tagged with whether it already counted against the session's rate limit;
//! `respond` turns it into the answer. Nothing here writes a response or logs a token.

use pingora::prelude::Session;

use super::context::{Proxied, RequestContext};
use super::route;
use super::upstream::DnsCache;
use crate::audit::{AuditEvent, AuditKind};
use crate::auth::Meter;
use crate::errors::ApiError;
use crate::limits;
use crate::scopes;
use crate::session::SessionState;
use crate::state::AppState;
use crate::trace;

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

/// A refused proxied request, and whether it was already counted against its session's rate limit (else it
/// counts against the client IP).
pub enum Refusal {
    Anonymous(ApiError),
    CountedAgainstSession(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Anonymous(error)
    }
}

/// Decides a proxied request: who is calling, may they, and where does it go.
pub async fn proxied(state: &AppState, session: &Session, dns: &DnsCache, now: u64) -> Result<Proxied, Refusal> {
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
    let authenticated = state.auth.authenticate(header.headers.get(http::header::AUTHORIZATION), now, meter).await?;
    let stored = authenticated.session;
    // From here on every request counts against its session, refused or not (a flood of requests to a
    // foreign host is limited like any other).
    let verdict = state.rate_limits.session(stored.id.as_str(), authenticated.count, now);
    let counted = Refusal::CountedAgainstSession;
    let verdict = verdict.map_err(counted)?;
    // The token's scope decides which methods it may send (`ib:read`: reading only); refused before IB.
    scopes::method_allowed(&authenticated.claims.scope, &header.method)
        .map_err(|required| counted(ApiError::InsufficientScope(required.as_str())))?;
    let target = route::bind(&route, &stored).map_err(counted)?;
    // The session's hosts were allowed when it logged in; the allowlist in force now decides (a reload may
    // have narrowed `platforms.allowed_host_suffixes` or turned off the loopback switch since).
    if !state.ib.policy().allows_host(&target.host, target.tls) {
        log::warn!("session {} has an IB host the platform allowlist no longer allows", stored.id.log_tag());
        return Err(counted(ApiError::HostNotAllowed));
    }
    let addr = dns.resolve(&target.authority, &target.host, target.port).await.map_err(counted)?;
    Ok(Proxied { target, addr, session_id: stored.id, grant: stored.grant, verdict })
}

/// IB answered 401 for the session's `sid`: the session ends in the store, so every instance refuses it
/// from now on, and the audit log records it once (a concurrent request's 401 finds it ended already).
pub async fn end_rejected_session(proxied: &Proxied, ctx: &RequestContext) {
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
                    .caused_by(ctx.client_ip(), &ctx.request_id);
                event.trace_id = ctx.trace.as_ref().map(|trace| trace.trace_id.to_string());
                ctx.state.audit.record(event);
            }
        }
        Err(e) => log::error!("could not mark session {tag} as rejected: {e}"),
    }
}
