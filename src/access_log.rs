//! The access log: one line per request, written by a thread of its own so that the proxy threads only hand
//! over a record (a bounded queue; when it is full the record is dropped and counted, never waited for).
//!
//! Text (`request id=... method=... route=... status=...`) or one JSON object per line, by `logging.format`;
//! on or off by `logging.access_log`, whatever the level of the other logs. A record holds no token, code,
//! poll token, `sid` or query string: the caller passes the route class, never the path, and the session's
//! log tag, never its id.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::config::{LogFormat, LoggingConfig};
use crate::logging::LineWriter;
use crate::trace::TraceId;

/// User agents are cut to this many bytes (at a character boundary).
pub const USER_AGENT_BYTES: usize = 128;

/// One request, as the access log records it.
#[derive(Debug)]
pub struct AccessRecord {
    pub at: SystemTime,
    pub request_id: String,
    /// An `X-Request-Id` the client sent that was not adopted.
    pub client_request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub method: http::Method,
    /// The route class (`proxy`, `token`, ...), never the path.
    pub route: &'static str,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// The session's log tag (a hash), never its id.
    pub session_tag: Option<String>,
    pub user_agent: Option<String>,
    /// The W3C trace the request belongs to (not a secret: it is what finds the request in a tracing system).
    pub trace_id: Option<TraceId>,
}

pub struct AccessLog {
    writer: Option<LineWriter<AccessRecord>>,
}

impl AccessLog {
    /// The access log on standard error when `logging.access_log` is on; a lost line counts in `dropped`.
    pub fn start(config: &LoggingConfig, dropped: prometheus::IntCounter) -> Self {
        Self::start_with(config, Box::new(std::io::stderr()), dropped)
    }

    /// [`Self::start`] writing to `out`.
    pub fn start_with(
        config: &LoggingConfig,
        out: Box<dyn std::io::Write + Send>,
        dropped: prometheus::IntCounter,
    ) -> Self {
        if !config.access_log {
            return AccessLog { writer: None };
        }
        let format = config.format;
        let writer = LineWriter::new("access-log", out, Box::new(move |record| format_line(record, format)), dropped);
        AccessLog { writer: Some(writer) }
    }

    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Hands a record to the writer; never blocks.
    pub fn record(&self, record: AccessRecord) {
        if let Some(writer) = &self.writer {
            writer.record(record);
        }
    }
}

/// The user agent as recorded: at most [`USER_AGENT_BYTES`], cut at a character boundary.
pub fn truncate_user_agent(user_agent: &str) -> String {
    let mut end = user_agent.len().min(USER_AGENT_BYTES);
    while !user_agent.is_char_boundary(end) {
        end -= 1;
    }
    user_agent[..end].to_string()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// One line, newline included.
pub fn format_line(record: &AccessRecord, format: LogFormat) -> String {
    let ts = crate::logging::rfc3339(record.at);
    match format {
        LogFormat::Json => {
            let line = serde_json::json!({
                "ts": ts,
                "type": "access",
                "request_id": record.request_id,
                "client_request_id": record.client_request_id,
                "client_ip": record.client_ip.map(|ip| ip.to_string()),
                "method": record.method.as_str(),
                "route": record.route,
                "status": record.status,
                "upstream_status": record.upstream_status,
                "duration_ms": (millis(record.duration) * 10.0).round() / 10.0,
                "upstream_ms": record.upstream_duration.map(|d| (millis(d) * 10.0).round() / 10.0),
                "bytes_in": record.bytes_in,
                "bytes_out": record.bytes_out,
                "session": record.session_tag,
                "user_agent": record.user_agent,
                "trace_id": record.trace_id.map(|id| id.to_string()),
            });
            format!("{line}\n")
        }
        LogFormat::Text => {
            // Written into one buffer (the writer thread formats every request's line).
            let mut line = String::with_capacity(320);
            let _ = write!(
                line,
                "{ts} access request id={} method={} route={} status={} upstream_status=",
                record.request_id, record.method, record.route, record.status
            );
            match record.upstream_status {
                Some(status) => write!(line, "{status}"),
                None => write!(line, "-"),
            }
            .ok();
            let _ = write!(line, " duration_ms={:.1} upstream_ms=", millis(record.duration));
            match record.upstream_duration {
                Some(took) => write!(line, "{:.1}", millis(took)),
                None => write!(line, "-"),
            }
            .ok();
            let _ = write!(line, " bytes_in={} bytes_out={} client=", record.bytes_in, record.bytes_out);
            match record.client_ip {
                Some(ip) => write!(line, "{ip}"),
                None => write!(line, "-"),
            }
            .ok();
            let _ = write!(line, " session={} trace_id=", record.session_tag.as_deref().unwrap_or("-"));
            match record.trace_id {
                Some(id) => write!(line, "{id}"),
                None => write!(line, "-"),
            }
            .ok();
            let _ = writeln!(
                line,
                " client_request_id={} user_agent={:?}",
                record.client_request_id.as_deref().unwrap_or("-"),
                record.user_agent.as_deref().unwrap_or("-"),
            );
            line
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            request_id: "0123456789abcdef".into(),
            client_request_id: None,
            client_ip: Some("192.0.2.7".parse().unwrap()),
            method: http::Method::GET,
            route: "proxy",
            status: 200,
            upstream_status: Some(200),
            duration: Duration::from_micros(1_250),
            upstream_duration: Some(Duration::from_micros(800)),
            bytes_in: 0,
            bytes_out: 123,
            session_tag: Some("Gk2c9P0aQx1z".into()),
            user_agent: Some("curl/8 \"quoted\"".into()),
            trace_id: TraceId::from_bytes(*b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36"),
        }
    }

    #[test]
    fn text_lines_carry_every_field() {
        let line = format_line(&record(), LogFormat::Text);
        assert_eq!(
            line,
            "2026-01-01T00:00:00.000Z access request id=0123456789abcdef method=GET route=proxy status=200 \
             upstream_status=200 duration_ms=1.2 upstream_ms=0.8 bytes_in=0 bytes_out=123 client=192.0.2.7 \
             session=Gk2c9P0aQx1z trace_id=4bf92f3577b34da6a3ce929d0e0e4736 client_request_id=- \
             user_agent=\"curl/8 \\\"quoted\\\"\"\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let line = format_line(&record(), LogFormat::Json);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "access");
        assert_eq!(value["status"], 200);
        assert_eq!(value["upstream_ms"], 0.8);
        assert_eq!(value["session"], "Gk2c9P0aQx1z");
        assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn user_agents_are_cut_at_a_character_boundary() {
        let long = "é".repeat(100);
        let cut = truncate_user_agent(&long);
        assert!(cut.len() <= USER_AGENT_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_disabled_log_records_nothing_and_never_blocks() {
        let config = LoggingConfig { access_log: false, ..LoggingConfig::default() };
        let dropped = prometheus::IntCounter::new("dropped", "lines dropped").unwrap();
        let log = AccessLog::start(&config, dropped.clone());
        assert!(!log.enabled());
        log.record(record());
        assert_eq!(dropped.get(), 0);
    }
}
