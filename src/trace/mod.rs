//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and `tracestate` headers,
//! read from a client and written towards IntelligenceBank.
//!
//! Every request belongs to a trace: the client's, when it sent a valid `traceparent` (its trace id is
//! continued and its parent id becomes our request's parent), else a new one with random ids. The gateway's own
//! span ids are random. Parsing is strict where the specification is (lowercase hex, exact lengths, no
//! all-zero ids) and never panics on anything a client sends; `tracestate` is passed on only when it is small
//! and well formed, else dropped. Trace ids are not secrets: they are logged.
//!
//! The request's span is carried to the work done for it (store operations, calls to IB) by [`within`] and
//! found there by [`current`], so no signature on the way has to carry it. [`export`] sends spans to an OTLP
//! collector when one is configured; without one, this module is all a request pays for.

pub mod export;

use std::fmt;
use std::future::Future;

/// The only version this gateway writes.
const VERSION: &str = "00";
/// `00-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;
/// The `sampled` bit of `trace-flags`; the only bit the gateway passes on (the others are unknown to
/// version 00 and must be zero when written).
pub const SAMPLED: u8 = 0x01;
/// A `tracestate` longer than this is dropped: the specification asks vendors to pass on at least 512
/// characters, and nothing the gateway does needs more.
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// The specification's limit of list members in a `tracestate`.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// An id of `$len` bytes, never all zero, written as lowercase hex.
macro_rules! trace_id_type {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// `None` for the all-zero id, which the specification reserves as invalid.
            pub fn from_bytes(bytes: [u8; $len]) -> Option<Self> {
                (bytes != [0; $len]).then_some($name(bytes))
            }

            pub fn random() -> Self {
                loop {
                    if let Some(id) = Self::from_bytes(rand::random()) {
                        return id;
                    }
                }
            }

            pub fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }
    };
}

trace_id_type!(
    /// 16 bytes, never all zero; written as 32 lowercase hex digits.
    TraceId,
    16
);
trace_id_type!(
    /// 8 bytes, never all zero; written as 16 lowercase hex digits.
    SpanId,
    8
);

/// `bytes` as lowercase hex, through one table look-up per byte (this is on every proxied request's path:
/// the `traceparent` IB is sent, and the access log's `trace_id`).
fn write_hex<const N: usize>(f: &mut fmt::Formatter<'_>, bytes: &[u8; N]) -> fmt::Result {
    let mut digits = [0u8; 32];
    let digits = digits.get_mut(..2 * N).ok_or(fmt::Error)?;
    hex::encode_to_slice(bytes, digits).map_err(|_| fmt::Error)?;
    f.write_str(std::str::from_utf8(digits).map_err(|_| fmt::Error)?)
}

/// `N` bytes from exactly `2N` lowercase hex digits; uppercase, other characters or another length: `None`.
fn lower_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

/// A parsed `traceparent`: `version-trace_id-parent_id-trace_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    /// As received (a later version may define more bits; see [`SAMPLED`]).
    pub flags: u8,
}

/// Why a `traceparent` was not accepted (the request then starts a new trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("not the traceparent format")]
    Malformed,
    /// Version `ff` is forbidden by the specification.
    #[error("version ff is invalid")]
    InvalidVersion,
    #[error("the trace id is all zeros")]
    ZeroTraceId,
    #[error("the parent id is all zeros")]
    ZeroParentId,
}

impl TraceParent {
    /// Reads a `traceparent` value. Version `00` must be exactly 55 characters. A later version (`01`..`fe`)
    /// is read by the version-00 layout as the specification asks: at least 55 characters, and when longer,
    /// a `-` after the flags and anything after it ignored.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        use TraceParentError::*;
        let bytes = value.as_bytes();
        if bytes.len() < TRACEPARENT_LEN {
            return Err(Malformed);
        }
        let [version] = lower_hex::<1>(&bytes[..2]).ok_or(Malformed)?;
        if version == 0xff {
            return Err(InvalidVersion);
        }
        if version == 0 && bytes.len() != TRACEPARENT_LEN {
            return Err(Malformed);
        }
        if bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] != b'-' {
            return Err(Malformed);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(Malformed);
        }
        let trace_id = lower_hex::<16>(&bytes[3..35]).ok_or(Malformed)?;
        let parent_id = lower_hex::<8>(&bytes[36..52]).ok_or(Malformed)?;
        let [flags] = lower_hex::<1>(&bytes[53..55]).ok_or(Malformed)?;
        Ok(TraceParent {
            trace_id: TraceId::from_bytes(trace_id).ok_or(ZeroTraceId)?,
            parent_id: SpanId::from_bytes(parent_id).ok_or(ZeroParentId)?,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// Always version `00`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{VERSION}-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

/// The `tracestate` to pass on, from every `tracestate` field of a request (several fields are one list,
/// joined by commas). `None` when there is none, when it is longer than [`MAX_TRACESTATE_BYTES`], or when it
/// is not a list of at most 32 distinct `key=value` members of the specification's characters: a vendor's
/// state is passed on as it came or not at all.
pub fn tracestate<'a>(fields: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut combined = String::new();
    for (i, field) in fields.into_iter().enumerate() {
        // Joined exactly as received (an empty first field included), so what is passed on is the list whole.
        if i > 0 {
            combined.push(',');
        }
        if combined.len() + field.len() > MAX_TRACESTATE_BYTES {
            return None;
        }
        combined.push_str(field);
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in combined.split(',').map(|m| m.trim_matches([' ', '\t'])) {
        if member.is_empty() {
            continue; // Empty members are allowed (e.g. a trailing comma).
        }
        let (key, value) = member.split_once('=')?;
        if !tracestate_key(key) || !tracestate_value(value) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return None;
        }
    }
    (!keys.is_empty()).then_some(combined)
}

/// `simple-key` or `tenant-id@system-id`.
fn tracestate_key(key: &str) -> bool {
    let part = |text: &str, max: usize, first_may_be_digit: bool| {
        let bytes = text.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= max
            && (bytes[0].is_ascii_lowercase() || (first_may_be_digit && bytes[0].is_ascii_digit()))
            && bytes.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    };
    match key.split_once('@') {
        None => part(key, 256, false),
        Some((tenant, system)) => part(tenant, 241, true) && part(system, 14, false),
    }
}

/// 1 to 256 printable ASCII characters other than `,` and `=`, not ending in a space.
fn tracestate_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes.last() != Some(&b' ')
        && bytes.iter().all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// The trace a request belongs to, and the gateway's span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The span of the gateway's handling of this request (random).
    pub span_id: SpanId,
    /// The client's span, when the request continued a trace.
    pub parent_id: Option<SpanId>,
    pub sampled: bool,
    /// Passed on to IB as it came, when it was valid.
    pub tracestate: Option<String>,
}

/// One draw: sampled with probability `ratio` (always at 1, never at 0).
fn sampled_at(ratio: f64) -> bool {
    ratio >= 1.0 || rand::random::<f64>() < ratio
}

impl TraceContext {
    /// Continues the trace of `traceparent` (the value of the request's only `traceparent` field; absent or
    /// several fields: `None`), or starts a new one, sampled with probability `sample_ratio`.
    /// `tracestate` is kept only with a valid `traceparent`.
    ///
    /// A parent's sampled flag is followed when `parent_trusted` (it came through `server.trusted_proxies`, whose
    /// edge made the decision). Anyone else's flag can only decline: their trace is sampled when they ask for
    /// it *and* `sample_ratio` picks it, so an untrusted caller cannot make the gateway export more than the
    /// operator chose (with `sample_ratio: 0`, nothing).
    pub fn accept(
        traceparent: Option<&str>,
        tracestate: Option<String>,
        sample_ratio: f64,
        parent_trusted: bool,
    ) -> Self {
        match traceparent.map(TraceParent::parse) {
            Some(Ok(parent)) => TraceContext {
                trace_id: parent.trace_id,
                span_id: SpanId::random(),
                parent_id: Some(parent.parent_id),
                sampled: parent.sampled() && (parent_trusted || sampled_at(sample_ratio)),
                tracestate,
            },
            _ => Self::start(sample_ratio),
        }
    }

    /// A new trace.
    pub fn start(sample_ratio: f64) -> Self {
        TraceContext {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            parent_id: None,
            sampled: sampled_at(sample_ratio),
            tracestate: None,
        }
    }

    /// The `traceparent` that makes `span` (a span of ours in this trace) the parent of the next hop.
    pub fn traceparent(&self, span: SpanId) -> TraceParent {
        self.span().traceparent(span)
    }

    /// The request's own span, for [`within`].
    pub fn span(&self) -> SpanContext {
        SpanContext { trace_id: self.trace_id, span_id: self.span_id, sampled: self.sampled }
    }
}

/// A span of the gateway's: what work done for a request (a store operation, a call to IB) belongs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl SpanContext {
    /// The `traceparent` that makes `span` (a child of ours in this trace) the parent of the next hop.
    pub fn traceparent(&self, span: SpanId) -> TraceParent {
        TraceParent { trace_id: self.trace_id, parent_id: span, flags: if self.sampled { SAMPLED } else { 0 } }
    }
}

tokio::task_local! {
    static CURRENT: SpanContext;
}

/// Runs `work` as part of `span`: what it calls (the store, the IB client) finds the span with [`current`],
/// without every signature on the way carrying it.
pub async fn within<F: Future>(span: SpanContext, work: F) -> F::Output {
    CURRENT.scope(span, work).await
}

/// The span the running work belongs under (see [`within`]); `None` outside a request.
pub fn current() -> Option<SpanContext> {
    CURRENT.try_with(|span| *span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(value: &str) -> Result<TraceParent, TraceParentError> {
        TraceParent::parse(value)
    }

    #[test]
    fn a_version_00_traceparent_is_read_and_written_back_unchanged() {
        let parsed = parse(VALID).unwrap();
        assert_eq!(parsed.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), VALID);
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn wrong_shapes_are_refused() {
        use TraceParentError::*;
        for (value, why) in [
            ("", Malformed),
            (&VALID[..54], Malformed),
            (&format!("{VALID}-"), Malformed),
            (&format!("{VALID}0"), Malformed),
            (&VALID.to_uppercase(), Malformed),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", Malformed),
            ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", Malformed),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701", Malformed),
            ("0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Malformed),
            (" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Malformed),
            ("00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Malformed),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ZeroTraceId),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ZeroParentId),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", InvalidVersion),
            ("é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Malformed),
        ] {
            assert_eq!(parse(value), Err(why), "{value:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_the_version_00_layout_and_written_as_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-comes-next";
        let parsed = parse(later).unwrap();
        assert_eq!(parsed.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09");
        assert!(parse(&later[..55]).is_ok(), "exactly 55 characters");
        assert_eq!(parse(&later[..56]).map(|p| p.flags), Ok(9), "a dash and nothing after it");
        assert_eq!(
            parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09x"),
            Err(TraceParentError::Malformed),
            "longer without a dash after the flags"
        );
        assert_eq!(parse(&later[..54]), Err(TraceParentError::Malformed), "shorter than version 00");
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_span_of_ours() {
        let context = TraceContext::accept(Some(VALID), Some("congo=t61rcWkgMzE".into()), 0.0, true);
        assert_eq!(context.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id.map(|p| p.to_string()).as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert!(context.sampled, "a trusted proxy's sampling decision, not the ratio");
        assert_eq!(context.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let next = context.traceparent(context.span_id).to_string();
        assert_eq!(next, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id));
    }

    #[test]
    fn an_untrusted_callers_sampled_flag_can_decline_but_never_force_export() {
        let unsampled = format!("{}-00", &VALID[..52]);
        for ratio in [0.0, 1.0] {
            // The trace is continued either way (its id correlates logs); only the export decision differs.
            let forced = TraceContext::accept(Some(VALID), None, ratio, false);
            assert_eq!(forced.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(forced.sampled, ratio == 1.0, "ratio {ratio}: sampled only when the ratio picks it too");
            assert!(!TraceContext::accept(Some(&unsampled), None, ratio, false).sampled, "declined at ratio {ratio}");
            assert!(!TraceContext::accept(Some(&unsampled), None, ratio, true).sampled, "declined at ratio {ratio}");
        }
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace_without_its_tracestate() {
        for value in [Some("00-zz-00f067aa0ba902b7-01"), None] {
            let context = TraceContext::accept(value, Some("congo=t61rcWkgMzE".into()), 1.0, true);
            assert_ne!(context.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(context.parent_id, None);
            assert!(context.sampled, "ratio 1");
            assert_eq!(context.tracestate, None);
        }
        assert!(!TraceContext::start(0.0).sampled, "ratio 0");
    }

    #[test]
    fn only_the_sampled_flag_is_passed_on() {
        let context = TraceContext::accept(Some(&format!("{}-ff", &VALID[..52])), None, 1.0, true);
        assert!(context.traceparent(context.span_id).to_string().ends_with("-01"));
        let context = TraceContext::accept(Some(&format!("{}-fe", &VALID[..52])), None, 1.0, true);
        assert!(context.traceparent(context.span_id).to_string().ends_with("-00"));
    }

    #[tokio::test]
    async fn work_within_a_span_finds_it_and_work_outside_finds_none() {
        let context = TraceContext::start(1.0);
        assert_eq!(current(), None);
        let found = within(context.span(), async { current() }).await;
        assert_eq!(found, Some(context.span()));
        assert_eq!(current(), None);
    }

    #[test]
    fn new_ids_are_random_and_never_zero() {
        let (a, b) = (TraceContext::start(1.0), TraceContext::start(1.0));
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert_eq!(TraceId::from_bytes([0; 16]), None);
        assert_eq!(SpanId::from_bytes([0; 8]), None);
        assert_eq!(a.trace_id.to_string().len(), 32);
        assert_eq!(a.span_id.to_string().len(), 16);
    }

    #[test]
    fn a_well_formed_tracestate_is_passed_on_as_it_came() {
        assert_eq!(tracestate(["rojo=00f067aa0ba902b7"]).as_deref(), Some("rojo=00f067aa0ba902b7"));
        assert_eq!(
            tracestate(["rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", "fw529a3039@dt=ZGF0YQ"]).as_deref(),
            Some("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,fw529a3039@dt=ZGF0YQ")
        );
        assert_eq!(tracestate(["a=1,,b=2,"]).as_deref(), Some("a=1,,b=2,"), "empty members are allowed");
        assert_eq!(tracestate(["a=x y"]).as_deref(), Some("a=x y"), "inner spaces are allowed");
        // Several fields are one list joined by commas, an empty first field included (found by the property
        // test: the first field's comma was dropped, so the list passed on was not the one received).
        assert_eq!(tracestate(["", "a=@"]).as_deref(), Some(",a=@"));
    }

    #[test]
    fn a_malformed_or_oversized_tracestate_is_dropped() {
        for bad in ["", ",", "novalue", "=1", "Upper=1", "1a=1", "a=", "a=x\ty", "a=b=c", "a=1,a=2", "a@=1", "a@B=1"] {
            assert_eq!(tracestate([bad]), None, "{bad:?}");
        }
        assert_eq!(tracestate(["a=\u{7f}"]), None, "a control character");
        assert_eq!(tracestate(["a=é"]), None, "not ASCII");
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(tracestate([members.join(",").as_str()]), None, "33 members");
        assert!(tracestate([members[..32].join(",").as_str()]).is_some(), "32 members");
        let at_limit = format!("a={}", "x".repeat(254));
        let two = format!("{at_limit},b={}", "y".repeat(MAX_TRACESTATE_BYTES - at_limit.len() - 3));
        assert_eq!(two.len(), MAX_TRACESTATE_BYTES);
        assert_eq!(tracestate([two.as_str()]).as_deref(), Some(two.as_str()), "512 bytes");
        let over = format!("{two}z");
        assert_eq!(tracestate([over.as_str()]), None, "513 bytes");
        assert_eq!(tracestate([&two[..300], &two[300..]]), None, "512 bytes plus the joining comma");
        assert_eq!(tracestate([format!("a={}", "x".repeat(257)).as_str()]), None, "a value over 256");
    }
}
