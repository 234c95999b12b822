//! The IntelligenceBank Browser Login, as the gateway's `/authorize` drives it.
//!
//! [`IbClient::start_login`] asks the platform for a login token, the user's browser opens
//! [`IbClient::login_page_url`], and [`IbClient::poll_login`] asks until IB reports the session. One shared
//! `reqwest` client pools connections and verifies certificates (system roots plus `platforms.extra_ca_file`);
//! it follows no redirects, so a response can never lead the gateway to a host the policy did not check.
//! The `apiV3url` IB returns goes through the same [`PlatformPolicy`] as the platform itself.
//! Never logs a login token, a `sid` or a URL carrying one; details of failures go to `debug` only.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::platform_url::{PlatformPolicy, PlatformUrl};
use crate::config::Config;
use crate::session::{IbSid, IbUser, SessionGrant, LOGIN_TIMEOUT_HOURS};
use crate::trace::{self, export::FinishedSpan, export::Kind};
use opentelemetry::KeyValue;

const USER_AGENT: &str = concat!("ib-oauth-gateway/", env!("CARGO_PKG_VERSION"));
/// Login responses are a few hundred bytes; anything past this is not IB talking.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// IB client ids are short identifiers; the id becomes a path segment of every API call, so nothing that
/// could change the path (`/`, `..`, `?`) may pass.
const MAX_CLIENT_ID_LEN: usize = 128;

/// RFC 3986 unreserved characters stay; everything else in a login token is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a call to IB failed. `Display` carries no secret and no URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbError {
    /// No connection, a TLS failure (including an untrusted certificate), or a broken response stream.
    #[error("IntelligenceBank could not be reached")]
    Unreachable,
    #[error("IntelligenceBank did not answer in time")]
    Timeout,
    #[error("IntelligenceBank answered with unexpected HTTP status {0}")]
    UnexpectedStatus(u16),
    /// The status was right but the body was not what the Browser Login sends; the reason is fixed text.
    #[error("IntelligenceBank sent an unexpected response: {0}")]
    BadResponse(&'static str),
}

/// Where a Browser Login stands.
#[derive(Debug, Clone, PartialEq, Eq)]
// A poll result lives for one request; boxing the completed login would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum LoginPoll {
    /// The user has not finished (IB answered 404, or 200 without `content.session.sid`).
    Pending,
    Complete(CompletedLogin),
}

/// What a completed Browser Login reported, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedLogin {
    /// `content.session.sid`
    pub sid: IbSid,
    /// `content.session.userUuid`, else `content.info.useruuid`.
    pub user_uuid: String,
    /// `content.session.loginTime`, Unix seconds.
    pub login_time: Option<u64>,
    /// `content.info.clientid`, the customer account in every API v3 path.
    pub client_id: String,
    /// `content.info.apiV3url`, accepted by the platform policy.
    pub api_v3_url: PlatformUrl,
    /// `content.info.logintimeoutperiod` in hours, as IB sent it (not clamped); `None` when absent.
    pub login_timeout_hours: Option<u32>,
    pub first_name: String,
    pub last_name: String,
    /// IB's login reports no user e-mail (`adminemail` is someone else's), so this is always `None` here.
    pub email: Option<String>,
}

impl CompletedLogin {
    /// The immutable grant a session is started from. `logintimeoutperiod` is clamped to IB's 1-120 hours,
    /// as [`SessionGrant`] documents.
    pub fn into_grant(self, platform: &PlatformUrl, oauth_client_id: String, scope: String) -> SessionGrant {
        SessionGrant {
            sid: self.sid,
            platform_url: platform.origin().to_string(),
            api_v3_url: self.api_v3_url.origin().to_string(),
            ib_client_id: self.client_id,
            user: IbUser {
                uuid: self.user_uuid,
                first_name: self.first_name,
                last_name: self.last_name,
                email: self.email,
                login_time: self.login_time,
            },
            login_timeout_hours: self
                .login_timeout_hours
                .map(|hours| hours.clamp(*LOGIN_TIMEOUT_HOURS.start(), *LOGIN_TIMEOUT_HOURS.end())),
            oauth_client_id,
            scope,
            resource: None,
        }
    }
}

/// Why the IntelligenceBank client could not be built at start-up; `Display` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbSetupError {
    #[error("platforms.extra_ca_file: cannot read {path}: {reason}")]
    CaFileUnreadable { path: String, reason: String },
    #[error("platforms.extra_ca_file: {path} is not a PEM certificate bundle: {reason}")]
    CaFileNotPem { path: String, reason: String },
    #[error("platforms.extra_ca_file: {path} holds no PEM certificate")]
    CaFileEmpty { path: String },
    #[error("cannot build the IntelligenceBank HTTPS client: {0}")]
    Client(String),
}

/// The CAs of `platforms.extra_ca_file`, read once at start-up and kept for the life of the process: the login
/// client and Pingora's upstream TLS trust the same ones, and a reload rebuilds the login client (its timeouts
/// are live) with these, not with the file as it is then (see `server::reload`).
#[derive(Debug, Clone)]
pub struct ExtraCas {
    /// The file's bytes, as read.
    pub pem: std::sync::Arc<Vec<u8>>,
    certs: Vec<reqwest::Certificate>,
}

impl ExtraCas {
    /// Reads and parses the file `platforms.extra_ca_file` names (`None` without one).
    pub fn read(config: &Config) -> Result<Option<Self>, IbSetupError> {
        let Some(path) = &config.platforms.extra_ca_file else { return Ok(None) };
        let pem = std::fs::read(path)
            .map_err(|e| IbSetupError::CaFileUnreadable { path: path.clone(), reason: e.to_string() })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| IbSetupError::CaFileNotPem { path: path.clone(), reason: e.to_string() })?;
        if certs.is_empty() {
            return Err(IbSetupError::CaFileEmpty { path: path.clone() });
        }
        Ok(Some(ExtraCas { pem: std::sync::Arc::new(pem), certs }))
    }
}

/// The Browser Login calls, over one pooled HTTPS client shared by every request.
#[derive(Debug, Clone)]
pub struct IbClient {
    http: reqwest::Client,
    policy: PlatformPolicy,
}

impl IbClient {
    /// Builds the shared client from `platforms` and `upstream`, reading `platforms.extra_ca_file`. The error
    /// names the configuration key.
    pub fn new(config: &Config) -> Result<Self, IbSetupError> {
        Self::with_extra_cas(config, ExtraCas::read(config)?.as_ref())
    }

    /// [`Self::new`] trusting `extra` (read before) besides the system roots, whatever `platforms.extra_ca_file`
    /// says now.
    pub fn with_extra_cas(config: &Config, extra: Option<&ExtraCas>) -> Result<Self, IbSetupError> {
        super::install_crypto_provider();
        let upstream = &config.upstream;
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_millis(upstream.connect_timeout_ms))
            .timeout(Duration::from_millis(upstream.read_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(upstream.idle_timeout_seconds))
            .pool_max_idle_per_host(upstream.pool_size)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(extra) = extra {
            builder = builder.tls_certs_merge(extra.certs.clone());
        }
        let http = builder.build().map_err(|e| IbSetupError::Client(e.to_string()))?;
        Ok(IbClient { http, policy: PlatformPolicy::new(&config.platforms) })
    }

    /// The policy platform and API hosts are checked against.
    pub fn policy(&self) -> &PlatformPolicy {
        &self.policy
    }

    /// Step 1: `POST {platform}/v1/auth/app/token`; returns the one-time login token (`content`).
    pub async fn start_login(&self, platform: &PlatformUrl) -> Result<String, IbError> {
        let url = format!("{}/v1/auth/app/token", platform.origin());
        let (status, body) = self.send(self.http.post(url), platform).await?;
        if status != 200 {
            log::debug!("IB login start at {}: status {status}", platform.host());
            return Err(IbError::UnexpectedStatus(status));
        }
        parse_login_token(&body)
    }

    /// Step 2: where the user's browser logs in: `{platform}/auth/?login=0&token=<token>`.
    pub fn login_page_url(platform: &PlatformUrl, login_token: &str) -> String {
        format!("{}/auth/?login=0&token={}", platform.origin(), utf8_percent_encode(login_token, QUERY_VALUE))
    }

    /// Step 3: `GET {platform}/v1/auth/app/info?token=<token>`; 404 or no session yet means pending.
    pub async fn poll_login(&self, platform: &PlatformUrl, login_token: &str) -> Result<LoginPoll, IbError> {
        let url =
            format!("{}/v1/auth/app/info?token={}", platform.origin(), utf8_percent_encode(login_token, QUERY_VALUE));
        let (status, body) = self.send(self.http.get(url), platform).await?;
        match status {
            404 => Ok(LoginPoll::Pending),
            200 => {
                let json: Value = serde_json::from_slice(&body).map_err(|_| {
                    log::debug!("IB login poll at {}: 200 with a body that is not JSON", platform.host());
                    IbError::BadResponse("the login status is not JSON")
                })?;
                parse_login_info(&json, &self.policy).inspect_err(|e| {
                    log::debug!("IB login poll at {}: {e}", platform.host());
                })
            }
            _ => {
                log::debug!("IB login poll at {}: status {status}", platform.host());
                Err(IbError::UnexpectedStatus(status))
            }
        }
    }

    /// Sends a request and reads at most [`MAX_RESPONSE_BYTES`] of the answer. Within a request's trace
    /// (see [`crate::trace::within`]) IB is sent a `traceparent` whose parent is a new span of the gateway's,
    /// exported when spans are.
    async fn send(&self, request: reqwest::RequestBuilder, platform: &PlatformUrl) -> Result<(u16, Bytes), IbError> {
        let host = platform.host();
        let Some(parent) = trace::current() else {
            return self.read(request, host).await;
        };
        let span_id = trace::SpanId::random();
        let request = request.header("traceparent", parent.traceparent(span_id).to_string());
        if !(parent.sampled && trace::export::enabled()) {
            return self.read(request, host).await;
        }
        let start = std::time::SystemTime::now();
        let result = self.read(request, host).await;
        let mut span = FinishedSpan::child_with_id(parent, span_id, "IB browser login", Kind::Client, start);
        span.attributes.push(KeyValue::new("server.address", host.to_string()));
        match &result {
            Ok((status, _)) => span.attributes.push(KeyValue::new("http.response.status_code", i64::from(*status))),
            Err(_) => span.failed = true,
        }
        trace::export::record(span);
        result
    }

    /// Sends a request and reads at most [`MAX_RESPONSE_BYTES`] of the answer.
    async fn read(&self, request: reqwest::RequestBuilder, host: &str) -> Result<(u16, Bytes), IbError> {
        let mut response = request.send().await.map_err(|e| classify(e, host))?;
        let status = response.status().as_u16();
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, host))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                log::debug!("IB at {host}: response larger than {MAX_RESPONSE_BYTES} bytes");
                return Err(IbError::BadResponse("the response is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body.freeze()))
    }
}

/// Maps a transport error, logging its causes without the URL (which may carry a login token).
fn classify(error: reqwest::Error, host: &str) -> IbError {
    let kind = if error.is_timeout() { IbError::Timeout } else { IbError::Unreachable };
    let error = error.without_url();
    // reqwest's Display stops at the outermost error; the TLS or socket reason is further down the chain.
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        cause.push_str(": ");
        cause.push_str(&inner.to_string());
        source = inner.source();
    }
    log::debug!("IB at {host}: {cause}");
    kind
}

/// `{"SID": ..., "content": "<login token>"}`
fn parse_login_token(body: &[u8]) -> Result<String, IbError> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| IbError::BadResponse("the login start answer is not JSON"))?;
    match json.get("content").and_then(Value::as_str) {
        Some(token) if !token.is_empty() => Ok(token.to_string()),
        _ => Err(IbError::BadResponse("the login start answer has no login token")),
    }
}

/// Reads a completed login tolerantly: numbers may come as strings, the user uuid from either place.
fn parse_login_info(json: &Value, policy: &PlatformPolicy) -> Result<LoginPoll, IbError> {
    let session = &json["content"]["session"];
    let info = &json["content"]["info"];
    let Some(sid) = non_empty_str(&session["sid"]) else {
        return Ok(LoginPoll::Pending);
    };
    let user_uuid = non_empty_str(&session["userUuid"])
        .or_else(|| non_empty_str(&info["useruuid"]))
        .ok_or(IbError::BadResponse("the completed login names no user"))?;
    let client_id = non_empty_str(&info["clientid"])
        .filter(|id| is_client_id(id))
        .ok_or(IbError::BadResponse("the completed login has no usable clientid"))?;
    // The API host gets every later call and the user's sid: it must pass the same policy as the platform.
    let api_v3_url = match non_empty_str(&info["apiV3url"]) {
        None => return Err(IbError::BadResponse("the completed login has no apiV3url")),
        Some(raw) => policy.validate(raw).map_err(|_| IbError::BadResponse("the apiV3url is not an allowed host"))?,
    };
    Ok(LoginPoll::Complete(CompletedLogin {
        sid: IbSid::new(sid),
        user_uuid: user_uuid.to_string(),
        login_time: lenient_u64(&session["loginTime"]),
        client_id: client_id.to_string(),
        api_v3_url,
        login_timeout_hours: lenient_u64(&info["logintimeoutperiod"]).and_then(|h| u32::try_from(h).ok()),
        first_name: info["firstname"].as_str().unwrap_or_default().to_string(),
        last_name: info["lastname"].as_str().unwrap_or_default().to_string(),
        email: None,
    }))
}

fn non_empty_str(value: &Value) -> Option<&str> {
    value.as_str().filter(|s| !s.is_empty())
}

fn is_client_id(id: &str) -> bool {
    id.len() <= MAX_CLIENT_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A non-negative whole number, given as a JSON number (`120`, `120.0`) or a numeric string (`"120"`).
fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlatformConfig;
    use serde_json::json;

    fn policy() -> PlatformPolicy {
        PlatformPolicy::new(&PlatformConfig::default())
    }

    fn completed() -> Value {
        json!({
            "SID": "app-sid",
            "content": {
                "session": { "sid": "s3cr3t", "userUuid": "u-1", "originalUserUuid": "u-1", "loginTime": 1609227014 },
                "info": {
                    "clientname": "Company", "clientuuid": "c-uuid", "clientid": "Abc_12-x", "sid": "s3cr3t",
                    "apikey": "k", "apiV3url": "https://lbv3us1.intelligencebank.com", "logintimeoutperiod": 8,
                    "adminemail": "admin@example.com", "firstname": "Ada", "lastname": "Lovelace", "useruuid": "u-2"
                }
            }
        })
    }

    fn complete(json: &Value) -> CompletedLogin {
        match parse_login_info(json, &policy()) {
            Ok(LoginPoll::Complete(login)) => login,
            other => panic!("expected a completed login, got {other:?}"),
        }
    }

    #[test]
    fn completed_login_is_read_field_by_field() {
        let login = complete(&completed());
        assert_eq!(login.sid.expose(), "s3cr3t");
        assert_eq!(login.user_uuid, "u-1");
        assert_eq!(login.login_time, Some(1_609_227_014));
        assert_eq!(login.client_id, "Abc_12-x");
        assert_eq!(login.api_v3_url.origin(), "https://lbv3us1.intelligencebank.com");
        assert_eq!(login.login_timeout_hours, Some(8));
        assert_eq!((login.first_name.as_str(), login.last_name.as_str()), ("Ada", "Lovelace"));
        assert_eq!(login.email, None, "adminemail is not the user's e-mail");
    }

    #[test]
    fn numbers_given_as_strings_are_accepted() {
        let mut json = completed();
        json["content"]["session"]["loginTime"] = json!("1609227014");
        json["content"]["info"]["logintimeoutperiod"] = json!("24");
        let login = complete(&json);
        assert_eq!(login.login_time, Some(1_609_227_014));
        assert_eq!(login.login_timeout_hours, Some(24));
    }

    #[test]
    fn logintimeoutperiod_is_not_clamped_when_read_but_is_in_the_grant() {
        let mut json = completed();
        json["content"]["info"]["logintimeoutperiod"] = json!(500);
        let login = complete(&json);
        assert_eq!(login.login_timeout_hours, Some(500));
        let platform = policy().validate("company.intelligencebank.com").expect("valid");
        let grant = login.into_grant(&platform, "app".into(), "profile".into());
        assert_eq!(grant.login_timeout_hours, Some(120));
    }

    #[test]
    fn missing_or_unreadable_optional_numbers_are_none() {
        let mut json = completed();
        json["content"]["info"].as_object_mut().expect("object").remove("logintimeoutperiod");
        json["content"]["session"]["loginTime"] = json!("yesterday");
        let login = complete(&json);
        assert_eq!(login.login_timeout_hours, None);
        assert_eq!(login.login_time, None);
        json["content"]["info"]["logintimeoutperiod"] = json!(-3);
        assert_eq!(complete(&json).login_timeout_hours, None);
    }

    #[test]
    fn user_uuid_falls_back_to_info_useruuid_and_names_default_to_empty() {
        let mut json = completed();
        json["content"]["session"].as_object_mut().expect("object").remove("userUuid");
        json["content"]["info"].as_object_mut().expect("object").remove("firstname");
        let login = complete(&json);
        assert_eq!(login.user_uuid, "u-2");
        assert_eq!(login.first_name, "");
    }

    #[test]
    fn without_a_session_sid_the_login_is_pending() {
        for json in [json!({}), json!({"content": "x"}), json!({"content": {"session": {}}}), json!([1, 2])] {
            assert_eq!(parse_login_info(&json, &policy()), Ok(LoginPoll::Pending), "{json}");
        }
        let mut empty_sid = completed();
        empty_sid["content"]["session"]["sid"] = json!("");
        assert_eq!(parse_login_info(&empty_sid, &policy()), Ok(LoginPoll::Pending));
    }

    #[test]
    fn api_v3_url_outside_the_policy_is_a_bad_response() {
        for api in ["https://evil.com", "http://lbv3us1.intelligencebank.com", "https://169.254.169.254", ""] {
            let mut json = completed();
            json["content"]["info"]["apiV3url"] = json!(api);
            assert!(matches!(parse_login_info(&json, &policy()), Err(IbError::BadResponse(_))), "{api}");
        }
    }

    #[test]
    fn client_id_that_could_change_an_api_path_is_a_bad_response() {
        for id in ["../x", "a/b", "a?b", "", "a b"] {
            let mut json = completed();
            json["content"]["info"]["clientid"] = json!(id);
            assert!(matches!(parse_login_info(&json, &policy()), Err(IbError::BadResponse(_))), "{id}");
        }
    }

    #[test]
    fn login_token_is_the_content_string() {
        assert_eq!(parse_login_token(br#"{"SID":"x","content":"tok"}"#), Ok("tok".into()));
        for body in [&br#"{"sid":"x"}"#[..], br#"{"content":5}"#, br#"{"content":""}"#, b"<html>"] {
            assert!(matches!(parse_login_token(body), Err(IbError::BadResponse(_))));
        }
    }

    #[test]
    fn login_page_url_percent_encodes_the_token() {
        let platform = policy().validate("company.intelligencebank.com").expect("valid");
        assert_eq!(
            IbClient::login_page_url(&platform, "a+b/c=&d"),
            "https://company.intelligencebank.com/auth/?login=0&token=a%2Bb%2Fc%3D%26d"
        );
    }

    #[test]
    fn error_display_has_no_detail_beyond_the_status() {
        assert_eq!(
            IbError::UnexpectedStatus(502).to_string(),
            "IntelligenceBank answered with unexpected HTTP status 502"
        );
        assert_eq!(format!("{:?}", complete(&completed()).sid), "IbSid(***)");
    }
}
