//! The one error type for what a client may be told, mapped once to status code, OAuth/RFC 6750 `error`,
//! `error_description` and headers. Internal detail goes to the log at the place the error is made,
//! never into a description.

/// Descriptions old clients match on exactly: they re-login on these instead of retrying.
pub const SESSION_EXPIRED: &str = "Session has expired";
pub const SESSION_REFRESH_LIMIT: &str = "Session refresh limit exceeded";
pub const ACCESS_TOKEN_EXPIRED: &str = "The access token has expired";
pub const INVALID_ACCESS_TOKEN: &str = "Invalid or expired access token";

/// Why a session can no longer be used; `label` is the `reason` of `ibgw_session_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEnd {
    /// `now >= sid_expiry`.
    Expired,
    /// `refresh_count` reached `tokens.max_refresh_count` (refresh only).
    RefreshLimit,
    /// Ended by the user, an operator, refresh-token reuse or a code replay.
    Revoked,
    /// IntelligenceBank answered 401 for the session's `sid`.
    UpstreamRejected,
}

impl SessionEnd {
    pub fn label(self) -> &'static str {
        match self {
            SessionEnd::Expired => "expired",
            SessionEnd::RefreshLimit => "refresh_limit",
            SessionEnd::Revoked => "revoked",
            SessionEnd::UpstreamRejected => "upstream_rejected",
        }
    }

    /// The description a client sees: old clients tell "log in again" by these two strings.
    pub fn description(self) -> &'static str {
        match self {
            SessionEnd::RefreshLimit => SESSION_REFRESH_LIMIT,
            _ => SESSION_EXPIRED,
        }
    }
}

/// Which limit refused a request; `label` is the `scope` of `ibgw_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Session,
    Ip,
    Registration,
}

impl LimitScope {
    pub fn label(self) -> &'static str {
        match self {
            LimitScope::Session => "session",
            LimitScope::Ip => "ip",
            LimitScope::Registration => "registration",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400 `invalid_request` (RFC 6749 §5.2).
    InvalidRequest(String),
    /// 401 `invalid_client`; `basic` adds `WWW-Authenticate: Basic` (the client tried HTTP Basic).
    InvalidClient { description: String, basic: bool },
    /// 400 `invalid_grant`.
    InvalidGrant(String),
    /// 400 `unauthorized_client`.
    UnauthorizedClient(String),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 400 `unsupported_response_type` (RFC 6749 §4.1.2.1): a `response_type` other than `code`.
    UnsupportedResponseType,
    /// 400 `invalid_scope`.
    InvalidScope(String),
    /// 400 `invalid_redirect_uri` / `invalid_client_metadata` (RFC 7591).
    InvalidClientMetadata { error: &'static str, description: String },
    /// 404 `authorization_pending` (the old bridge's poll answer).
    AuthorizationPending,
    /// 401 Bearer challenge without an error code: no credentials were sent (RFC 6750 §3.1).
    MissingToken,
    /// 401 `invalid_token` with one of the access-token descriptions above.
    InvalidToken(&'static str),
    /// 401 `invalid_token`: the token is fine but its session is over (`Session has expired` or
    /// `Session refresh limit exceeded`, the descriptions old clients re-login on).
    SessionEnded(SessionEnd),
    /// 400 `invalid_grant`: a refresh refused because the session is over (the same descriptions).
    RefreshRefused(SessionEnd),
    /// 400 `invalid_grant`: a retired refresh token came back after the grace window; the session is revoked.
    RefreshTokenReused,
    /// 403 `forbidden`: the proxy target is not the session's own IB host.
    HostNotAllowed,
    /// 403 `insufficient_scope` (RFC 6750 §3.1): the token's scope does not cover the method; names the scope
    /// that would (`ib:read` or `ib:write`), for a step-up.
    InsufficientScope(&'static str),
    /// 400 `invalid_target` (RFC 8707 §2): `resource` is not one of this gateway's resources, or is not the one
    /// the grant was made for.
    InvalidTarget(String),
    /// 404 `not_found`.
    NotFound,
    /// 405, with the allowed methods.
    MethodNotAllowed(&'static str),
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType(&'static str),
    /// 429 with `Retry-After` and `RateLimit-*`.
    RateLimited { limit: u32, retry_after: u64, scope: LimitScope },
    /// 502: the IB host could not be reached, or IB failed.
    BadGateway(&'static str),
    /// 504: the IB host did not answer in time.
    GatewayTimeout,
    /// 503 `temporarily_unavailable` with `Retry-After`: the store is unreachable (never 401).
    TemporarilyUnavailable,
    /// 500 `server_error`: a bug; details are in the log.
    ServerError,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest(_)
            | ApiError::InvalidGrant(_)
            | ApiError::UnauthorizedClient(_)
            | ApiError::UnsupportedGrantType
            | ApiError::UnsupportedResponseType
            | ApiError::InvalidScope(_)
            | ApiError::InvalidClientMetadata { .. }
            | ApiError::RefreshRefused(_)
            | ApiError::InvalidTarget(_)
            | ApiError::RefreshTokenReused => 400,
            ApiError::InvalidClient { .. }
            | ApiError::MissingToken
            | ApiError::InvalidToken(_)
            | ApiError::SessionEnded(_) => 401,
            ApiError::HostNotAllowed | ApiError::InsufficientScope(_) => 403,
            ApiError::AuthorizationPending | ApiError::NotFound => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::PayloadTooLarge => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::RateLimited { .. } => 429,
            ApiError::ServerError => 500,
            ApiError::BadGateway(_) => 502,
            ApiError::TemporarilyUnavailable => 503,
            ApiError::GatewayTimeout => 504,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidClient { .. } => "invalid_client",
            ApiError::InvalidGrant(_) | ApiError::RefreshRefused(_) | ApiError::RefreshTokenReused => "invalid_grant",
            ApiError::UnauthorizedClient(_) => "unauthorized_client",
            ApiError::UnsupportedGrantType => "unsupported_grant_type",
            ApiError::UnsupportedResponseType => "unsupported_response_type",
            ApiError::InvalidScope(_) => "invalid_scope",
            ApiError::InvalidClientMetadata { error, .. } => error,
            ApiError::AuthorizationPending => "authorization_pending",
            ApiError::MissingToken => "invalid_request",
            ApiError::InvalidToken(_) | ApiError::SessionEnded(_) => "invalid_token",
            ApiError::HostNotAllowed => "forbidden",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::InvalidTarget(_) => "invalid_target",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limit_exceeded",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::GatewayTimeout => "gateway_timeout",
            ApiError::TemporarilyUnavailable => "temporarily_unavailable",
            ApiError::ServerError => "server_error",
        }
    }

    pub fn description(&self) -> String {
        match self {
            ApiError::InvalidRequest(d)
            | ApiError::InvalidGrant(d)
            | ApiError::UnauthorizedClient(d)
            | ApiError::InvalidScope(d)
            | ApiError::InvalidTarget(d)
            | ApiError::InvalidClient { description: d, .. }
            | ApiError::InvalidClientMetadata { description: d, .. } => d.clone(),
            ApiError::UnsupportedGrantType => "grant_type must be authorization_code or refresh_token".into(),
            ApiError::UnsupportedResponseType => "response_type must be code".into(),
            ApiError::AuthorizationPending => "The user has not completed the IntelligenceBank login yet".into(),
            ApiError::MissingToken => "Bearer access token required in the Authorization header".into(),
            ApiError::InvalidToken(d) => (*d).into(),
            ApiError::SessionEnded(end) | ApiError::RefreshRefused(end) => end.description().into(),
            ApiError::RefreshTokenReused => "Refresh token was already used; the session has been revoked".into(),
            ApiError::HostNotAllowed => {
                "The target host does not belong to this session's IntelligenceBank platform".into()
            }
            ApiError::InsufficientScope(scope) => format!("This request needs the {scope} scope"),
            ApiError::NotFound => "No such endpoint".into(),
            ApiError::MethodNotAllowed(allow) => format!("Method not allowed; use {allow}"),
            ApiError::PayloadTooLarge => "Request body too large".into(),
            ApiError::UnsupportedMediaType(expected) => format!("Content-Type must be {expected}"),
            ApiError::RateLimited { .. } => "Rate limit exceeded; retry after the time in Retry-After".into(),
            ApiError::BadGateway(d) => (*d).into(),
            ApiError::GatewayTimeout => "IntelligenceBank did not answer in time".into(),
            ApiError::TemporarilyUnavailable => "The gateway's session store is unavailable; retry shortly".into(),
            ApiError::ServerError => "Internal error".into(),
        }
    }

    /// Headers that go with the error. `resource_metadata` is the RFC 9728 document URL for Bearer challenges.
    pub fn headers(&self, resource_metadata: &str) -> Vec<(&'static str, String)> {
        match self {
            ApiError::InvalidClient { basic: true, .. } => {
                vec![("WWW-Authenticate", r#"Basic realm="ib-oauth-gateway""#.into())]
            }
            ApiError::MissingToken => {
                vec![("WWW-Authenticate", format!(r#"Bearer resource_metadata="{resource_metadata}""#))]
            }
            ApiError::InvalidToken(_) | ApiError::SessionEnded(_) => vec![(
                "WWW-Authenticate",
                format!(
                    r#"Bearer error="invalid_token", error_description="{}", resource_metadata="{resource_metadata}""#,
                    self.description()
                ),
            )],
            ApiError::InsufficientScope(scope) => vec![(
                "WWW-Authenticate",
                format!(
                    r#"Bearer error="insufficient_scope", scope="{scope}", resource_metadata="{resource_metadata}", error_description="{}""#,
                    self.description()
                ),
            )],
            ApiError::MethodNotAllowed(allow) => vec![("Allow", (*allow).into())],
            ApiError::RateLimited { limit, retry_after, .. } => vec![
                ("Retry-After", retry_after.to_string()),
                ("RateLimit-Limit", limit.to_string()),
                ("RateLimit-Remaining", "0".into()),
                ("RateLimit-Reset", retry_after.to_string()),
            ],
            ApiError::TemporarilyUnavailable => vec![("Retry-After", "1".into())],
            _ => Vec::new(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.code(), "error_description": self.description() })
    }

    /// The `reason` of `ibgw_auth_failures_total` when this error refuses credentials.
    pub fn auth_failure_reason(&self) -> Option<&'static str> {
        Some(match self {
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken(ACCESS_TOKEN_EXPIRED) => "token_expired",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::SessionEnded(_) => "session_ended",
            ApiError::HostNotAllowed => "host_not_allowed",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::InvalidClient { .. } => "invalid_client",
            ApiError::InvalidGrant(_) | ApiError::RefreshRefused(_) | ApiError::RefreshTokenReused => "invalid_grant",
            _ => return None,
        })
    }

    /// The session end this error reports, if any (`ibgw_session_timeouts_total`).
    pub fn session_end(&self) -> Option<SessionEnd> {
        match self {
            ApiError::SessionEnded(end) | ApiError::RefreshRefused(end) => Some(*end),
            ApiError::RefreshTokenReused => Some(SessionEnd::Revoked),
            _ => None,
        }
    }

    /// The limit that refused the request, if any (`ibgw_rate_limited_total`).
    pub fn limit_scope(&self) -> Option<LimitScope> {
        match self {
            ApiError::RateLimited { scope, .. } => Some(*scope),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        let headers = ApiError::MissingToken.headers("https://gw/.well-known/oauth-protected-resource");
        assert_eq!(headers[0].0, "WWW-Authenticate");
        assert!(!headers[0].1.contains("error="));
        assert!(headers[0].1.contains("resource_metadata="));
    }

    #[test]
    fn an_insufficient_scope_challenge_names_the_needed_scope_and_the_metadata() {
        let error = ApiError::InsufficientScope("ib:write");
        assert_eq!((error.status(), error.code()), (403, "insufficient_scope"));
        let headers = error.headers("https://gw.example.com/.well-known/oauth-protected-resource");
        assert_eq!(
            headers,
            [(
                "WWW-Authenticate",
                "Bearer error=\"insufficient_scope\", scope=\"ib:write\", \
                 resource_metadata=\"https://gw.example.com/.well-known/oauth-protected-resource\", \
                 error_description=\"This request needs the ib:write scope\""
                    .to_string()
            )]
        );
        assert!(http::HeaderValue::from_str(&headers[0].1).is_ok());
    }

    #[test]
    fn dead_sessions_use_the_descriptions_old_clients_match() {
        assert_eq!(ApiError::SessionEnded(SessionEnd::Expired).description(), "Session has expired");
        assert_eq!(ApiError::SessionEnded(SessionEnd::UpstreamRejected).description(), "Session has expired");
        let limit = ApiError::SessionEnded(SessionEnd::RefreshLimit);
        assert_eq!((limit.status(), limit.code()), (401, "invalid_token"));
        assert_eq!(limit.description(), "Session refresh limit exceeded");
        assert!(limit.headers("m")[0].1.contains(r#"error_description="Session refresh limit exceeded""#));
        let refused = ApiError::RefreshRefused(SessionEnd::Expired);
        assert_eq!((refused.status(), refused.code()), (400, "invalid_grant"));
        assert_eq!(refused.description(), "Session has expired");
    }

    #[test]
    fn each_refusal_has_its_metric_labels() {
        assert_eq!(ApiError::RefreshTokenReused.session_end(), Some(SessionEnd::Revoked));
        assert_eq!(ApiError::RefreshTokenReused.auth_failure_reason(), Some("invalid_grant"));
        assert_eq!(ApiError::InvalidToken(ACCESS_TOKEN_EXPIRED).auth_failure_reason(), Some("token_expired"));
        assert_eq!(ApiError::SessionEnded(SessionEnd::Revoked).auth_failure_reason(), Some("session_ended"));
        let limited = ApiError::RateLimited { limit: 1, retry_after: 1, scope: LimitScope::Ip };
        assert_eq!(limited.limit_scope(), Some(LimitScope::Ip));
        assert_eq!(ApiError::NotFound.auth_failure_reason(), None);
    }
}
