//! Every answer the public listener gives, and one header policy for all of them: the gateway's own replies
//! (OAuth endpoints, preflights, 404s), refusals, upstream failures and IntelligenceBank's answers alike get the
//! gateway's CORS headers for the request's origin, `X-Content-Type-Options: nosniff`, the request's
//! `X-Request-Id` and, over TLS, HSTS. IB's answers are cleaned first: hop-by-hop headers, cookies, its own
//! `Access-Control-*` headers and anything carrying the session's `sid` never reach the client.
//!
//! Refusals become answers in one place, [`refuse`], which also counts them (once). Nothing here logs a token.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;

use super::context::RequestContext;
use super::{decide, edge};
use crate::audit;
use crate::errors::{ApiError, SessionEnd};
use crate::exchange::Reply;
use crate::store::now_unix;

/// Sent on every response when the client reached the gateway over TLS.
const HSTS: &str = "max-age=31536000";

/// Response headers of IB's that never reach the client: cookies (IB's own, e.g. load-balancer stickiness,
/// mean nothing on the gateway's origin and must not be planted there) and the session header itself. Any
/// other header whose value carries the session's `sid` is dropped too, and so is every `Access-Control-*`
/// header of IB's: the gateway's CORS policy alone says which origins may read an answer.
const DROPPED_RESPONSE: &[&str] = &["set-cookie", "set-cookie2", "sid"];

/// Response headers a proxy must not pass on (RFC 9110 §7.6.1); framing is Pingora's business.
const HOP_BY_HOP_RESPONSE: &[&str] = &["connection", "keep-alive", "proxy-connection", "trailer", "upgrade"];

/// The headers every answer gets, whoever made it (see the module doc). An existing `Vary` (IB's, e.g.
/// `Accept-Encoding`) is kept and the gateway's added to it.
fn add_policy_headers(header: &mut ResponseHeader, ctx: &RequestContext, origin: Option<&str>) -> Result<()> {
    for (name, value) in ctx.state.cors.response_headers(origin) {
        let merged = match header.headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(existing) if name == "Vary" && !existing.is_empty() => {
                Some(format!("{existing}, {}", value.to_str().unwrap_or_default()))
            }
            _ => None,
        };
        match merged {
            Some(merged) => header.insert_header(name, merged)?,
            None => header.insert_header(name, value)?,
        }
    }
    // Constant values as static header values: no parsing or copying per response.
    header.insert_header("X-Content-Type-Options", http::HeaderValue::from_static("nosniff"))?;
    header.insert_header("X-Request-Id", ctx.request_id.as_str())?;
    if ctx.downstream_tls {
        header.insert_header("Strict-Transport-Security", http::HeaderValue::from_static(HSTS))?;
    }
    Ok(())
}

/// The one place a refusal becomes a response: it is counted here (authentication failures, ended
/// sessions, rate limits), once, and written as the RFC 6749/6750 JSON error. A failed authentication
/// also counts towards its client address's `repeated_auth_failures` audit event.
pub fn refuse(error: &ApiError, ctx: &RequestContext) -> Reply {
    let state = &ctx.state;
    state.metrics.refused(
        error.auth_failure_reason(),
        error.session_end().map(SessionEnd::label),
        error.limit_scope().map(|scope| scope.label()),
    );
    if audit::is_failed_authentication(error) {
        state.audit.failed_authentication(ctx.client_ip(), &ctx.request_id, now_unix());
    }
    Reply::error(error, &crate::oauth::resource_metadata_url(&state.config))
}

/// Writes a reply the gateway made itself, with the header policy.
pub async fn send(session: &mut Session, ctx: &RequestContext, reply: Reply) -> Result<()> {
    let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 8))?;
    for (name, value) in &reply.headers {
        header.append_header(*name, value.as_str())?;
    }
    header.insert_header("Content-Length", reply.body.len().to_string())?;
    add_policy_headers(&mut header, ctx, edge::origin(session))?;
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

/// IB's answer as the client gets it. Its status and timing are recorded; a 401 (IB no longer knows the
/// `sid`) ends the session and is replaced by the gateway's own `401 Session has expired` (the body follows in
/// [`replace_body`]); IB's headers are cleaned and the policy headers and the rate-limit verdict added.
pub async fn proxied_answer(session: &Session, answer: &mut ResponseHeader, ctx: &mut RequestContext) -> Result<()> {
    let state = &ctx.state;
    if let Some(started) = ctx.upstream_started {
        let elapsed = started.elapsed();
        state.metrics.upstream_duration.observe(elapsed.as_secs_f64());
        ctx.upstream_answer = Some((answer.status.as_u16(), elapsed));
    }
    if answer.status.is_server_error() && ctx.proxied.is_some() {
        state.metrics.upstream_errors.with_label_values(&["5xx"]).inc();
    }
    if answer.status == 401 {
        if let Some(proxied) = &ctx.proxied {
            decide::end_rejected_session(proxied, ctx).await;
            let reply = refuse(&ApiError::SessionEnded(SessionEnd::UpstreamRejected), ctx);
            let mut replacement = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
            for (name, value) in &reply.headers {
                replacement.insert_header(*name, value.as_str())?;
            }
            replacement.insert_header("Content-Length", reply.body.len().to_string())?;
            *answer = replacement;
            ctx.replacement_body = Some(reply.body);
        }
    }
    // Hop-by-hop and dropped headers, and whatever else IB might echo the session in: one pass over the
    // (few) headers IB sent, rather than a look-up per name that could be dropped.
    let sid = ctx.proxied.as_ref().map(|proxied| proxied.grant.sid.expose().as_bytes()).filter(|sid| !sid.is_empty());
    let drops = |(name, value): (&http::HeaderName, &http::HeaderValue)| {
        let name = name.as_str();
        HOP_BY_HOP_RESPONSE.contains(&name)
            || DROPPED_RESPONSE.contains(&name)
            || name.starts_with("access-control-")
            || sid.is_some_and(|sid| value.as_bytes().windows(sid.len()).any(|w| w == sid))
    };
    while let Some(name) = answer.headers.iter().find(|&header| drops(header)).map(|(name, _)| name.clone()) {
        answer.remove_header(&name);
    }
    add_policy_headers(answer, ctx, edge::origin(session))?;
    if let Some(verdict) = ctx.proxied.as_ref().and_then(|p| p.verdict) {
        for (name, value) in verdict.headers() {
            answer.insert_header(name, value)?;
        }
    }
    Ok(())
}

/// The body of an answer [`proxied_answer`] replaced: IB's is swallowed, the gateway's sent at its end.
pub fn replace_body(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut RequestContext) {
    if ctx.replacement_body.is_some() {
        *body = if end_of_stream { ctx.replacement_body.take() } else { None };
    }
}

/// Maps a failed proxy attempt to what the client is told, and the `kind` label of
/// `ibgw_upstream_errors_total` when the failure was IB's side. `None`: the client's side failed (it went
/// away); there is nobody to answer.
pub fn upstream_failure(error: &Error) -> Option<(ApiError, Option<&'static str>)> {
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

/// Answers a failed proxy attempt (if the client is still there and nothing was written yet) and says what
/// Pingora should record: the status, 0 when the client's side failed.
pub async fn failed_upstream(session: &mut Session, error: &Error, ctx: &RequestContext) -> u16 {
    let Some((refusal, kind)) = upstream_failure(error) else { return 0 };
    log::warn!("request {} failed upstream: {:?}", ctx.request_id, error.etype());
    if let Some(kind) = kind {
        ctx.state.metrics.upstream_errors.with_label_values(&[kind]).inc();
    }
    if session.response_written().is_none() {
        let reply = Reply::error(&refusal, &crate::oauth::resource_metadata_url(&ctx.state.config));
        if let Err(write_error) = send(session, ctx, reply).await {
            log::debug!("could not write the error response: {write_error}");
        }
    }
    refusal.status()
}
