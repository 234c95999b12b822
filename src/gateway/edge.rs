//! The edge: what the gateway learns about a request before deciding anything. Who the client is (the TCP peer,
//! or the address a trusted proxy vouches for), which request id the request goes by, which W3C trace it belongs
//! to, whether it came over TLS; and, for the authorization server, its whole (bounded) body.
//!
//! Only `server.trusted_proxies` are believed: their `X-Forwarded-For`, their `X-Request-Id` and their trace's
//! sampled flag. Anyone else's are recorded apart (a request id) or only allowed to decline (sampling).

use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::prelude::Session;
use std::net::IpAddr;

use super::context::RequestContext;
use crate::errors::ApiError;
use crate::exchange::Request;
use crate::state::AppState;
use crate::trace::{self, TraceContext};

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

/// Fills in what the edge knows: the trace, the client chain, TLS, and the request id (a trusted proxy's own,
/// or ours with the client's kept apart).
pub fn intake(session: &Session, ctx: &mut RequestContext) {
    let state = &ctx.state;
    let from_trusted_proxy = peer_is_trusted(state, session);
    ctx.trace = Some(accept_trace(session.req_header(), state.config.tracing.sample_ratio, from_trusted_proxy));
    ctx.forwarded_chain = chain(state, session);
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
}

/// The request's `Origin`, if it is text.
pub fn origin(session: &Session) -> Option<&str> {
    session.req_header().headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok())
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

/// The request as the authorization server's handlers take it: its body read whole, up to
/// `server.max_form_body_bytes`.
pub async fn exchange_request(session: &mut Session, ctx: &RequestContext) -> Result<Request, ApiError> {
    let body = read_body(session, ctx.state.config.server.max_form_body_bytes).await?;
    let header = session.req_header();
    Ok(Request {
        method: header.method.clone(),
        path: header.uri.path().to_string(),
        query: header.uri.query().unwrap_or_default().to_string(),
        headers: header.headers.clone(),
        body,
        client_ip: ctx.client_ip(),
        request_id: ctx.request_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::forwarded_chain;
    use std::net::IpAddr;

    /// The client's address for per-IP limits: the first address of [`forwarded_chain`].
    fn client_ip(peer: &str, forwarded_for: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
        forwarded_chain(peer.parse().unwrap(), forwarded_for, trusted)[0]
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(client_ip("203.0.113.9", &["1.2.3.4"], &trusted), ip("203.0.113.9"));
        // A trusted peer: the right-most untrusted hop; forged entries further left do not matter.
        assert_eq!(client_ip("10.0.0.2", &["6.6.6.6, 198.51.100.7"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip("10.0.0.2", &["198.51.100.7, 10.0.0.5"], &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip("10.0.0.2", &["6.6.6.6", "198.51.100.7"], &trusted), ip("198.51.100.7"));
        // Nothing forwarded, or garbage: the last trusted address.
        assert_eq!(client_ip("10.0.0.2", &[], &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip("10.0.0.2", &["nonsense, 10.0.0.3"], &trusted), ip("10.0.0.3"));
    }
}
