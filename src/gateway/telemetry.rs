//! What a finished request leaves behind: its metrics (`ibgw_http_requests_total`, the duration histogram, the
//! in-flight gauge), its spans when its trace is sampled and export is on, and its access-log line. Runs once
//! per request, after the answer; never a header value, token or path with ids in a label.

use opentelemetry::KeyValue;
use pingora::prelude::*;

use super::context::RequestContext;
use crate::access_log::{truncate_user_agent, AccessLog, AccessRecord};
use crate::trace;
use crate::trace::export::{FinishedSpan, Kind};

/// The status a request ended with: 499 (the client closed the request) when the client went away, whatever
/// was written before; else what was written (0: nothing).
pub fn final_status(session: &Session, error: Option<&Error>) -> u16 {
    let client_gone = error.is_some_and(|e| *e.esource() == pingora::ErrorSource::Downstream);
    if client_gone {
        499
    } else {
        session.response_written().map_or(0, |r| r.status.as_u16())
    }
}

/// Records the finished request: spans (before it counts as finished: shutdown exports once nothing is in
/// flight), metrics, then the access line.
pub fn finish(session: &Session, ctx: &mut RequestContext, status: u16, access_log: &AccessLog) {
    if trace::export::enabled() {
        export_spans(session, ctx, status);
    }
    ctx.state.metrics.request_finished();
    ctx.state.metrics.request_answered(ctx.route_class, status, ctx.started.elapsed().as_secs_f64());
    if !access_log.enabled() {
        return;
    }
    let header = session.req_header();
    let user_agent = header
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| truncate_user_agent(&String::from_utf8_lossy(v.as_bytes())));
    access_log.record(AccessRecord {
        at: std::time::SystemTime::now(),
        request_id: std::mem::take(&mut ctx.request_id),
        client_request_id: ctx.client_request_id.take(),
        client_ip: ctx.client_ip(),
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

/// The request's server span and, when it was proxied, the span of its call to IB (whose id IB was sent as
/// the parent). Only for sampled traces; names and attributes carry the route class, never the path.
fn export_spans(session: &Session, ctx: &RequestContext, status: u16) {
    let Some(trace) = ctx.trace.as_ref().filter(|trace| trace.sampled) else { return };
    let now = std::time::SystemTime::now();
    let method = session.req_header().method.as_str().to_string();
    if let (Some(span_id), Some(started)) = (ctx.upstream_span, ctx.upstream_started) {
        let start = now - started.elapsed();
        let mut span = FinishedSpan::child_with_id(trace.span(), span_id, format!("IB {method}"), Kind::Client, start);
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
