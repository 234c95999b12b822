//! What the mock platform remembers: login tokens, IB sessions, request counters and the trace context of the
//! last request to each endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::MockSettings;

/// Hours a mock session lasts when its `logintimeoutperiod` is absent or not a number (IB's default).
const DEFAULT_TIMEOUT_HOURS: i64 = 120;

/// The IB user a completed login reports.
#[derive(Debug, Clone)]
pub(super) struct MockUser {
    pub uuid: String,
    pub first_name: String,
    pub last_name: String,
}

/// How a test overrides one field of a completed login: `None` leaves it out of the body entirely.
pub(super) type FieldOverride = Option<Value>;

/// Reads an override from a query value: `none` omits the field, `"8"` (quoted) is the string `8`,
/// a whole number is a JSON number, anything else is sent as a string.
pub(super) fn parse_override(text: &str) -> FieldOverride {
    if text == "none" {
        return None;
    }
    if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        return Some(Value::String(quoted.to_string()));
    }
    match text.parse::<i64>() {
        Ok(n) => Some(Value::from(n)),
        Err(_) => Some(Value::String(text.to_string())),
    }
}

/// What a completion may change, beyond the user.
#[derive(Debug, Default)]
pub(super) struct CompletionOverrides {
    pub login_timeout: Option<FieldOverride>,
    pub login_time: Option<FieldOverride>,
}

enum Login {
    Pending {
        app_sid: String,
    },
    /// A failed login never completes; its token answers 404 forever.
    Failed,
    Completed {
        body: Value,
    },
}

struct MockSession {
    client_id: String,
    expires_at: i64,
}

/// Why `/_mock/complete` or `/_mock/fail` could not act on a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenError {
    Unknown,
    AlreadyFinished,
}

pub(super) struct MockState {
    pub settings: MockSettings,
    pub origin: String,
    logins: Mutex<HashMap<String, Login>>,
    sessions: Mutex<HashMap<String, MockSession>>,
    requests: Mutex<BTreeMap<&'static str, u64>>,
    /// Endpoint → the `traceparent` and `tracestate` of its last request (`None`: the header was absent).
    trace_headers: Mutex<BTreeMap<&'static str, TraceHeaders>>,
    connections: AtomicU64,
    /// Of them, connections that speak h2 (ALPN picked it).
    h2_connections: AtomicU64,
}

/// `traceparent` and `tracestate` as received (every field of each, joined by `, `).
type TraceHeaders = (Option<String>, Option<String>);

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random_id() -> String {
    crate::tokens::random_secret()
}

impl MockState {
    pub fn new(settings: MockSettings, origin: String) -> Self {
        MockState {
            settings,
            origin,
            logins: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            requests: Mutex::new(BTreeMap::new()),
            trace_headers: Mutex::new(BTreeMap::new()),
            connections: AtomicU64::new(0),
            h2_connections: AtomicU64::new(0),
        }
    }

    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_h2_connection(&self) {
        self.h2_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_request(&self, endpoint: &'static str) {
        *self.requests.lock().entry(endpoint).or_insert(0) += 1;
    }

    /// Remembers the trace context a request to `endpoint` carried.
    pub fn record_trace(&self, endpoint: &'static str, headers: &hyper::HeaderMap) {
        let joined = |name: &str| {
            let values: Vec<String> =
                headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        self.trace_headers.lock().insert(endpoint, (joined("traceparent"), joined("tracestate")));
    }

    /// `{endpoint: {"traceparent": ..., "tracestate": ...}}` of the last request to each endpoint.
    pub fn trace_headers(&self) -> Value {
        let endpoints: Map<String, Value> = self
            .trace_headers
            .lock()
            .iter()
            .map(|(name, (parent, state))| (name.to_string(), json!({ "traceparent": parent, "tracestate": state })))
            .collect();
        Value::Object(endpoints)
    }

    pub fn stats(&self) -> Value {
        let requests: Map<String, Value> =
            self.requests.lock().iter().map(|(name, count)| (name.to_string(), Value::from(*count))).collect();
        let total: u64 = requests.values().filter_map(Value::as_u64).sum();
        json!({
            "connections_accepted": self.connections.load(Ordering::Relaxed),
            "h2_connections_accepted": self.h2_connections.load(Ordering::Relaxed),
            "requests_total": total,
            "requests": requests,
        })
    }

    /// Step 1: a new pending login. Returns `(SID, login token)`.
    pub fn start_login(&self) -> (String, String) {
        let app_sid = random_id();
        let token = random_id();
        self.logins.lock().insert(token.clone(), Login::Pending { app_sid: app_sid.clone() });
        (app_sid, token)
    }

    pub fn is_pending(&self, token: &str) -> bool {
        matches!(self.logins.lock().get(token), Some(Login::Pending { .. }))
    }

    /// The completed info body, or `None` while pending, failed or unknown.
    pub fn login_info(&self, token: &str) -> Option<Value> {
        match self.logins.lock().get(token) {
            Some(Login::Completed { body }) => Some(body.clone()),
            _ => None,
        }
    }

    pub fn fail_login(&self, token: &str) -> Result<(), TokenError> {
        let mut logins = self.logins.lock();
        match logins.get_mut(token) {
            None => Err(TokenError::Unknown),
            Some(login @ Login::Pending { .. }) => {
                *login = Login::Failed;
                Ok(())
            }
            Some(_) => Err(TokenError::AlreadyFinished),
        }
    }

    /// Completes a pending login as `user`, opening a new IB session. Returns the session's sid.
    pub fn complete_login(
        &self,
        token: &str,
        user: &MockUser,
        overrides: CompletionOverrides,
    ) -> Result<String, TokenError> {
        let mut logins = self.logins.lock();
        let app_sid = match logins.get(token) {
            None => return Err(TokenError::Unknown),
            Some(Login::Pending { app_sid }) => app_sid.clone(),
            Some(_) => return Err(TokenError::AlreadyFinished),
        };
        let sid = random_id();
        let settings = &self.settings;
        let login_time = overrides
            .login_time
            .unwrap_or_else(|| Some(Value::from(now().saturating_add(settings.login_time_offset_seconds))));
        let login_timeout = overrides.login_timeout.unwrap_or_else(|| settings.login_timeout_hours.map(Value::from));
        let api_v3_url = settings.api_v3_url.clone().unwrap_or_else(|| self.origin.clone());

        let mut session = json!({ "sid": sid, "userUuid": user.uuid, "originalUserUuid": user.uuid });
        if let Some(login_time) = &login_time {
            session["loginTime"] = login_time.clone();
        }
        let mut info = json!({
            "clientname": "Mock Client",
            "clientuuid": "00000000-0000-4000-8000-00000000c11e",
            "clientid": settings.client_id,
            "sid": sid,
            "apikey": random_id(),
            "apiV3url": api_v3_url,
            "adminemail": "admin@mock-platform.invalid",
            "firstname": user.first_name,
            "lastname": user.last_name,
            "useruuid": user.uuid,
        });
        if let Some(login_timeout) = &login_timeout {
            info["logintimeoutperiod"] = login_timeout.clone();
        }
        let body = json!({ "SID": app_sid, "content": { "session": session, "info": info } });

        // The mock's own session clock: absolute from loginTime, as the contract page says to assume.
        let started = login_time.as_ref().and_then(lenient_i64).unwrap_or_else(now);
        let hours = login_timeout.as_ref().and_then(lenient_i64).unwrap_or(DEFAULT_TIMEOUT_HOURS).clamp(1, 120);
        let expires_at = started.saturating_add(hours * 3_600);
        self.sessions.lock().insert(sid.clone(), MockSession { client_id: settings.client_id.clone(), expires_at });
        logins.insert(token.to_string(), Login::Completed { body });
        Ok(sid)
    }

    /// Ends a session as IB's automatic logout would. Returns whether it existed.
    pub fn expire_session(&self, sid: &str) -> bool {
        self.sessions.lock().remove(sid).is_some()
    }

    /// Whether `sid` names a live session of the account `client_id`.
    pub fn session_ok(&self, sid: &str, client_id: &str) -> bool {
        match self.sessions.lock().get(sid) {
            Some(session) => session.client_id == client_id && now() < session.expires_at,
            None => false,
        }
    }
}

fn lenient_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_read_none_quoted_strings_and_numbers() {
        assert_eq!(parse_override("none"), None);
        assert_eq!(parse_override("\"8\""), Some(json!("8")));
        assert_eq!(parse_override("8"), Some(json!(8)));
        assert_eq!(parse_override("-5"), Some(json!(-5)));
        assert_eq!(parse_override("soon"), Some(json!("soon")));
    }

    #[test]
    fn a_login_completes_once_and_a_failed_one_never() {
        let state = MockState::new(MockSettings::default(), "http://127.0.0.1:1".into());
        let user = MockUser { uuid: "u".into(), first_name: "F".into(), last_name: "L".into() };
        let (_, token) = state.start_login();
        assert!(state.is_pending(&token));
        let sid = state.complete_login(&token, &user, CompletionOverrides::default()).expect("completes");
        assert!(state.session_ok(&sid, "mockclient"));
        assert!(!state.session_ok(&sid, "otherclient"));
        assert_eq!(
            state.complete_login(&token, &user, CompletionOverrides::default()),
            Err(TokenError::AlreadyFinished)
        );
        assert!(state.expire_session(&sid));
        assert!(!state.session_ok(&sid, "mockclient"));

        let (_, failed) = state.start_login();
        assert_eq!(state.fail_login(&failed), Ok(()));
        assert_eq!(state.login_info(&failed), None);
        assert_eq!(
            state.complete_login(&failed, &user, CompletionOverrides::default()),
            Err(TokenError::AlreadyFinished)
        );
        assert_eq!(state.fail_login("nope"), Err(TokenError::Unknown));
    }

    #[test]
    fn a_session_past_its_logintimeoutperiod_is_not_ok() {
        let settings =
            MockSettings { login_timeout_hours: Some(1), login_time_offset_seconds: -3_601, ..MockSettings::default() };
        let state = MockState::new(settings, "http://127.0.0.1:1".into());
        let user = MockUser { uuid: "u".into(), first_name: String::new(), last_name: String::new() };
        let (_, token) = state.start_login();
        let sid = state.complete_login(&token, &user, CompletionOverrides::default()).expect("completes");
        assert!(!state.session_ok(&sid, "mockclient"));
    }
}
