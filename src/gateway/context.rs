//! What one request carries through the gateway's phases: the state it started on, what the edge learned about
//! the client, what was decided, and what happened upstream. Filled by the phases in order (`edge` first,
//! then `decide`, then the upstream phases), read by `respond` and `telemetry`. Holds the session's `sid` only
//! inside the shared grant, which nothing here prints.

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::route::Target;
use crate::limits::Verdict;
use crate::session::{SessionGrant, SessionId};
use crate::state::AppState;
use crate::trace::{SpanId, TraceContext};

/// What `request_filter` decided for a proxied request.
pub struct Proxied {
    pub target: Target,
    pub addr: SocketAddr,
    pub session_id: SessionId,
    /// The session's grant (its `sid`, user and client), shared with the session read, not copied.
    pub grant: Arc<SessionGrant>,
    pub verdict: Option<Verdict>,
}

/// Per-request state.
pub struct RequestContext {
    /// The state this request started on, loaded once: a reload mid-request does not change it.
    pub state: Arc<AppState>,
    /// Ours, made at the edge; a client's own id is adopted only from a trusted proxy.
    pub request_id: String,
    /// An `X-Request-Id` the client sent that was not adopted: logged beside ours, never forwarded.
    pub client_request_id: Option<String>,
    /// The client and the trusted proxies it came through, client first, the TCP peer last.
    pub forwarded_chain: Vec<IpAddr>,
    pub downstream_tls: bool,
    pub started: Instant,
    /// The `route` label of the request's metrics (bounded: never the path itself).
    pub route_class: &'static str,
    pub proxied: Option<Proxied>,
    /// The body that replaces an upstream 401's.
    pub replacement_body: Option<Bytes>,
    /// When the request was sent to IB.
    pub upstream_started: Option<Instant>,
    /// IB's answer: its status and how long its header took.
    pub upstream_answer: Option<(u16, Duration)>,
    /// The W3C trace this request continues or starts (set first thing in `request_filter`).
    pub trace: Option<TraceContext>,
    /// The span of the call to IB: the parent id IB is sent.
    pub upstream_span: Option<SpanId>,
}

impl RequestContext {
    /// A request that has only just arrived, on `state`, with a fresh request id.
    pub fn new(state: Arc<AppState>, request_id: String) -> Self {
        RequestContext {
            state,
            request_id,
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

    /// The client's address as the gateway believes it (the first of the forwarded chain).
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.forwarded_chain.first().copied()
    }
}
