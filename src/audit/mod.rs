//! The security audit log: one JSON line per security event (a login completed, a code redeemed, a refresh
//! rotated or refused, a session ended, a client registered, an address failing to authenticate again and
//! again), for an operator's SIEM. It is a stream of its own (`logging.audit`: `stderr`, `off` or
//! `file PATH`), written by a [`LineWriter`] thread like the access log, so an event never waits for its line.
//!
//! An event names who and what: the OAuth client id, the IB user's uuid, the client address, the request id and
//! the session's log tag. It never holds a token, refresh token, code, poll token, `sid`, secret or query
//! string: a session can be named only by [`AuditEvent::session`], which writes its log tag, never its id.

mod failures;

pub use failures::{Counted, FailureWindows};

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::{AuditOutput, LoggingConfig};
use crate::errors::{ApiError, ACCESS_TOKEN_EXPIRED};
use crate::exchange::Request;
use crate::logging::LineWriter;
use crate::metrics::Metrics;
use crate::session::SessionId;

/// Addresses the repeated-failure count follows in one window at most; past it, new addresses are not
/// followed until the next window (memory stays bounded under a spread-out attack).
const FAILURE_NETWORKS: usize = 65_536;

/// What happened. The names are the `event` field of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// An IB browser login finished and the poll handed out an authorization code.
    LoginCompleted,
    /// An authorization code was exchanged for tokens: a session began.
    CodeRedeemed,
    /// A refresh token was exchanged for a new one.
    RefreshRotated,
    /// A resource server exchanged its client's access token for a gateway token of the same session (RFC 8693).
    TokenExchanged,
    /// A refresh was refused because the session has used up `tokens.max_refresh_count`.
    RefreshLimitReached,
    /// A retired refresh token was presented again; its session was revoked.
    RefreshTokenReuseDetected,
    /// A client revoked a token (RFC 7009), which ended its session.
    TokenRevoked,
    /// IntelligenceBank answered 401 to a proxied call; the session was ended.
    SessionEndedByIb,
    /// An operator ended the session.
    SessionEndedByOperator,
    /// A client registered itself (RFC 7591).
    ClientRegistered,
    /// One client network failed to authenticate `failures` times within one window: an IPv4 address or an
    /// IPv6 /64, or a wider network when many addresses failed at once (see [`FailureWindows`]).
    RepeatedAuthFailures { failures: u32, window_seconds: u64, network: ipnet::IpNet },
}

impl AuditKind {
    pub fn name(&self) -> &'static str {
        match self {
            AuditKind::LoginCompleted => "login_completed",
            AuditKind::CodeRedeemed => "code_redeemed",
            AuditKind::RefreshRotated => "refresh_rotated",
            AuditKind::TokenExchanged => "token_exchanged",
            AuditKind::RefreshLimitReached => "refresh_limit_reached",
            AuditKind::RefreshTokenReuseDetected => "refresh_token_reuse_detected",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::SessionEndedByIb => "session_ended_by_ib",
            AuditKind::SessionEndedByOperator => "session_ended_by_operator",
            AuditKind::ClientRegistered => "client_registered",
            AuditKind::RepeatedAuthFailures { .. } => "repeated_auth_failures",
        }
    }
}

/// One event, as the audit log records it. Built with [`AuditEvent::new`] and the setters; fields nobody set
/// are written as `null`.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: SystemTime,
    pub kind: AuditKind,
    /// The OAuth client.
    pub client_id: Option<String>,
    /// The IntelligenceBank user's uuid.
    pub user: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// The session's log tag: private, so that only [`AuditEvent::session`] sets it, from the id.
    session: Option<String>,
    pub request_id: Option<String>,
    /// The W3C trace id of the request, once trace context is taken (not yet).
    pub trace_id: Option<String>,
}

impl AuditEvent {
    pub fn new(kind: AuditKind) -> Self {
        AuditEvent {
            at: SystemTime::now(),
            kind,
            client_id: None,
            user: None,
            client_ip: None,
            session: None,
            request_id: None,
            trace_id: None,
        }
    }

    pub fn client(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self
    }

    /// The IB user's uuid.
    pub fn user(mut self, uuid: &str) -> Self {
        self.user = Some(uuid.to_string());
        self
    }

    /// The IB user's uuid when it is known.
    pub fn with_user(mut self, uuid: Option<String>) -> Self {
        self.user = uuid;
        self
    }

    /// The session, by its log tag (never its id).
    pub fn session(mut self, id: &SessionId) -> Self {
        self.session = Some(id.log_tag());
        self
    }

    /// The client address and request id of the request that caused the event.
    pub fn request(self, request: &Request) -> Self {
        self.caused_by(request.client_ip, &request.request_id)
    }

    /// [`Self::request`] for a caller that holds the two apart (the gateway).
    pub fn caused_by(mut self, client_ip: Option<IpAddr>, request_id: &str) -> Self {
        self.client_ip = client_ip;
        self.request_id = Some(request_id.to_string());
        self
    }

    /// An operator ended the session `id` of `user` and `client_id` (the admin API).
    pub fn session_ended_by_operator(id: &SessionId, user: &str, client_id: &str) -> Self {
        AuditEvent::new(AuditKind::SessionEndedByOperator).session(id).user(user).client(client_id)
    }

    /// The session's log tag, if the event names one.
    pub fn session_tag(&self) -> Option<&str> {
        self.session.as_deref()
    }
}

/// One line, newline included: a JSON object with `time`, `type` (`audit`, to tell the lines apart on a
/// shared standard error), `event` and the fields of [`AuditEvent`] (`null` when unknown), plus `failures`,
/// `window_seconds` and the `network` counted for `repeated_auth_failures`.
pub fn format_line(event: &AuditEvent) -> String {
    let mut line = serde_json::json!({
        "time": crate::logging::rfc3339(event.at),
        "type": "audit",
        "event": event.kind.name(),
        "client_id": event.client_id,
        "user": event.user,
        "client_ip": event.client_ip.map(|ip| ip.to_string()),
        "session": event.session,
        "request_id": event.request_id,
        "trace_id": event.trace_id,
    });
    if let AuditKind::RepeatedAuthFailures { failures, window_seconds, network } = event.kind {
        line["failures"] = failures.into();
        line["window_seconds"] = window_seconds.into();
        line["network"] = network.to_string().into();
    }
    format!("{line}\n")
}

/// Is this refusal a failed authentication, as the repeated-failure count sees it? A credential that is not
/// ours or not right (an unknown or forged access token, a wrong client secret, a bad code or refresh token):
/// not a missing token (how a client learns where to log in), an expired one or an ended session (the normal
/// end of a good credential).
pub fn is_failed_authentication(error: &ApiError) -> bool {
    match error {
        ApiError::InvalidToken(description) => *description != ACCESS_TOKEN_EXPIRED,
        ApiError::InvalidClient { .. } | ApiError::InvalidGrant(_) | ApiError::RefreshTokenReused => true,
        _ => false,
    }
}

/// Why the audit log could not start (a start-up failure naming the setting).
#[derive(Debug, thiserror::Error)]
#[error("logging.audit: cannot open {path} for appending: {source}")]
pub struct AuditSetupError {
    path: String,
    source: std::io::Error,
}

/// The audit log: its writer (none when `logging.audit: off`) and the repeated-failure count.
pub struct AuditLog {
    writer: Option<LineWriter<AuditEvent>>,
    failures: Mutex<FailureWindows>,
    /// `ibgw_audit_auth_failures_unfollowed_total`: failures the full table could not follow.
    unfollowed: prometheus::IntCounter,
}

impl AuditLog {
    /// Opens the output `logging.audit` names (a file in append mode, created if need be); the writer
    /// thread starts with the first event. A lost line counts in `ibgw_log_lines_dropped_total{log="audit"}`.
    pub fn start(config: &LoggingConfig, metrics: &Metrics) -> Result<Self, AuditSetupError> {
        let out: Box<dyn std::io::Write + Send> = match &config.audit {
            AuditOutput::Off => return Ok(Self::with_output(config, None, metrics)),
            AuditOutput::Stderr => Box::new(std::io::stderr()),
            AuditOutput::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuditSetupError { path: path.clone(), source })?;
                Box::new(file)
            }
        };
        Ok(Self::with_output(config, Some(out), metrics))
    }

    /// An audit log writing to `out` (`None`: off), with the failure window of `config`.
    pub fn with_output(config: &LoggingConfig, out: Option<Box<dyn std::io::Write + Send>>, metrics: &Metrics) -> Self {
        let dropped = metrics.log_lines_dropped.with_label_values(&["audit"]);
        AuditLog {
            writer: out.map(|out| LineWriter::new("audit-log", out, Box::new(format_line), dropped)),
            failures: Mutex::new(FailureWindows::new(
                config.audit_failure_threshold,
                config.audit_failure_window_seconds,
                FAILURE_NETWORKS,
            )),
            unfollowed: metrics.audit_failures_unfollowed.clone(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Hands an event to the writer; never blocks.
    /// Records `event`; inside a request's trace (`trace::within`), with that trace's id unless it has one.
    pub fn record(&self, mut event: AuditEvent) {
        if let Some(writer) = &self.writer {
            if event.trace_id.is_none() {
                event.trace_id = crate::trace::current().map(|span| span.trace_id.to_string());
            }
            writer.record(event);
        }
    }

    /// Counts a failed authentication (see [`is_failed_authentication`]) from `client_ip` at `now`; the one
    /// that reaches the threshold in its window records `repeated_auth_failures`, naming this request.
    pub fn failed_authentication(&self, client_ip: Option<IpAddr>, request_id: &str, now: u64) {
        let (Some(ip), true) = (client_ip, self.enabled()) else { return };
        let counted = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(ip, now);
        match counted {
            Counted::Followed(Some(kind)) => self.record(AuditEvent::new(kind).caused_by(Some(ip), request_id)),
            Counted::Followed(None) => {}
            Counted::Unfollowed => self.unfollowed.inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// An output the test can read while the writer thread holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        /// The lines written, once there are `count` (up to 5 s).
        fn lines(&self, count: usize) -> Vec<serde_json::Value> {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
                let lines: Vec<_> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                if lines.len() >= count || Instant::now() > deadline {
                    return lines;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log_to(out: &Shared, config: &LoggingConfig) -> AuditLog {
        AuditLog::with_output(config, Some(Box::new(out.clone())), &Metrics::new("memory"))
    }

    #[test]
    fn an_operator_ending_a_session_is_one_line_with_the_tag_never_the_id() {
        let out = Shared::default();
        let log = log_to(&out, &LoggingConfig::default());
        let id = SessionId::generate();
        log.record(AuditEvent::session_ended_by_operator(&id, "user-uuid-1", "reporting-app"));
        let lines = out.lines(1);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["type"], "audit");
        assert_eq!(line["event"], "session_ended_by_operator");
        assert_eq!(line["session"], id.log_tag());
        assert_eq!(line["user"], "user-uuid-1");
        assert_eq!(line["client_id"], "reporting-app");
        assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24), "{line}");
        for absent in ["client_ip", "request_id", "trace_id"] {
            assert!(line[absent].is_null(), "{absent}: {line}");
        }
        assert!(!line.to_string().contains(id.as_str()));
    }

    #[test]
    fn repeated_failures_make_one_event_per_window_naming_the_address() {
        let out = Shared::default();
        let config = LoggingConfig { audit_failure_threshold: 3, ..LoggingConfig::default() };
        let log = log_to(&out, &config);
        let ip = Some("203.0.113.9".parse().unwrap());
        for n in 0..5 {
            log.failed_authentication(ip, &format!("request{n}"), 1_000_020);
        }
        let lines = out.lines(1);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["event"], "repeated_auth_failures");
        assert_eq!(lines[0]["client_ip"], "203.0.113.9");
        assert_eq!(lines[0]["request_id"], "request2", "the failure that reached the threshold");
        assert_eq!(lines[0]["failures"], 3);
        assert_eq!(lines[0]["window_seconds"], 60);
    }

    #[test]
    fn an_audit_log_that_is_off_writes_and_counts_nothing() {
        let metrics = Metrics::new("memory");
        let config = LoggingConfig { audit: AuditOutput::Off, audit_failure_threshold: 1, ..LoggingConfig::default() };
        let log = AuditLog::start(&config, &metrics).unwrap();
        assert!(!log.enabled());
        log.record(AuditEvent::new(AuditKind::CodeRedeemed));
        log.failed_authentication(Some("192.0.2.1".parse().unwrap()), "r", 1);
        assert_eq!(metrics.log_lines_dropped.with_label_values(&["audit"]).get(), 0);
    }

    #[test]
    fn an_unopenable_file_is_a_start_up_error_naming_the_key() {
        let config = LoggingConfig {
            audit: AuditOutput::File("/nonexistent-directory/audit.log".into()),
            ..LoggingConfig::default()
        };
        let error = AuditLog::start(&config, &Metrics::new("memory")).err().unwrap().to_string();
        assert!(error.starts_with("logging.audit: cannot open /nonexistent-directory/audit.log"), "{error}");
    }

    #[test]
    fn failed_authentications_are_wrong_credentials_not_missing_or_expired_ones() {
        use crate::errors::{SessionEnd, INVALID_ACCESS_TOKEN};
        assert!(is_failed_authentication(&ApiError::InvalidToken(INVALID_ACCESS_TOKEN)));
        assert!(is_failed_authentication(&ApiError::InvalidClient { description: "x".into(), basic: false }));
        assert!(is_failed_authentication(&ApiError::InvalidGrant("x".into())));
        assert!(is_failed_authentication(&ApiError::RefreshTokenReused));
        assert!(!is_failed_authentication(&ApiError::InvalidToken(ACCESS_TOKEN_EXPIRED)));
        assert!(!is_failed_authentication(&ApiError::MissingToken));
        assert!(!is_failed_authentication(&ApiError::SessionEnded(SessionEnd::Expired)));
        assert!(!is_failed_authentication(&ApiError::NotFound));
    }

    #[test]
    fn every_event_has_its_snake_case_name() {
        let kinds = [
            (AuditKind::LoginCompleted, "login_completed"),
            (AuditKind::CodeRedeemed, "code_redeemed"),
            (AuditKind::RefreshRotated, "refresh_rotated"),
            (AuditKind::TokenExchanged, "token_exchanged"),
            (AuditKind::RefreshLimitReached, "refresh_limit_reached"),
            (AuditKind::RefreshTokenReuseDetected, "refresh_token_reuse_detected"),
            (AuditKind::TokenRevoked, "token_revoked"),
            (AuditKind::SessionEndedByIb, "session_ended_by_ib"),
            (AuditKind::SessionEndedByOperator, "session_ended_by_operator"),
            (AuditKind::ClientRegistered, "client_registered"),
            (
                AuditKind::RepeatedAuthFailures {
                    failures: 1,
                    window_seconds: 1,
                    network: "192.0.2.0/24".parse().unwrap(),
                },
                "repeated_auth_failures",
            ),
        ];
        for (kind, name) in kinds {
            assert_eq!(kind.name(), name);
            let line: serde_json::Value = serde_json::from_str(&format_line(&AuditEvent::new(kind))).unwrap();
            assert_eq!(line["event"], name);
        }
    }
}
