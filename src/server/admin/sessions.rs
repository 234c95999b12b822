//! The admin session API: find and end an IB user's sessions (someone leaves the company, a device is lost).
//!
//! Served on the admin listener only, behind `admin.token` (the admin service checks it before calling in
//! here). A listed session shows what it is — its id, log tag, OAuth client, IB host, times, refresh count,
//! state — never a token or an IB `sid`. The session id alone grants nothing (a refresh token is the id *and*
//! a secret; an access token is signed), and is what `DELETE /admin/sessions/<id>` takes.
//!
//! Ending a session here is the same store operation as any other revocation (`end_session`, state
//! `revoked`): every gateway instance refuses it from its next read of the session (with Redis, its cached
//! copy is dropped by the invalidation message; see docs/operations.md for the bound). Ending by user ends
//! every session of the user, page after page, and says whether it got them all (`complete`); a listing says
//! when it was cut at [`USER_SESSIONS_LIMIT`] (`truncated`).

use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::reply;
use crate::errors::ApiError;
use crate::exchange::Params;
use crate::session::{rules, Limits, Session, SessionId, SessionState};
use crate::state::AppState;
use crate::store::{now_unix, USER_SESSIONS_LIMIT};

/// The path the API answers on, and under which a session id follows.
pub const PATH: &str = "/admin/sessions";

/// IB user ids are UUIDs; anything much longer is not one.
const MAX_USER_BYTES: usize = 128;

/// What a request to the session API asks for, decided from its method, path and query alone.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    ListUser(String),
    EndUser(String),
    Show(SessionId),
    End(SessionId),
}

/// The methods the session API answers.
pub const METHODS: &[Method] = &[Method::GET, Method::HEAD, Method::DELETE];

/// Decides what `method path?query` asks for; `Err` is the client's mistake, as the answer to send.
/// `path` is `PATH` or `PATH/<id>`.
#[allow(clippy::result_large_err)] // the refusal is the answer itself, made once per refused request
pub fn action(method: &Method, path: &str, query: Option<&str>) -> Result<Action, Response<Vec<u8>>> {
    let rest = path.strip_prefix(PATH).ok_or_else(|| reply::not_found("No such path"))?;
    let delete = match *method {
        Method::GET | Method::HEAD => false,
        Method::DELETE => true,
        _ => return Err(reply::method_not_allowed(METHODS)),
    };
    if rest.is_empty() || rest == "/" {
        let user = user_param(query)?;
        return Ok(if delete { Action::EndUser(user) } else { Action::ListUser(user) });
    }
    let id = rest.strip_prefix('/').and_then(SessionId::parse).ok_or_else(no_such_session)?;
    Ok(if delete { Action::End(id) } else { Action::Show(id) })
}

#[allow(clippy::result_large_err)] // as `action`
fn user_param(query: Option<&str>) -> Result<String, Response<Vec<u8>>> {
    let invalid = |message: &str| reply::error(&ApiError::InvalidRequest(message.into()));
    let params = Params::parse(query.unwrap_or("")).map_err(|e| reply::error(&e))?;
    let user = params.get("user").map_err(|e| reply::error(&e))?;
    match user {
        None => Err(invalid("the user parameter (an IB user uuid) is required")),
        Some(user) if user.len() > MAX_USER_BYTES || user.chars().any(char::is_control) => {
            Err(invalid("the user parameter is not an IB user uuid"))
        }
        Some(user) => Ok(user.to_string()),
    }
}

fn no_such_session() -> Response<Vec<u8>> {
    reply::not_found("No such session")
}

/// Who asked, for the audit log: the admin client's address and an id for its request.
pub struct Operator {
    pub ip: Option<std::net::IpAddr>,
    pub request_id: String,
}

impl Operator {
    pub fn new(ip: Option<std::net::IpAddr>) -> Self {
        Operator { ip, request_id: crate::exchange::new_request_id() }
    }
}

/// Carries out an [`Action`] against the store.
pub async fn serve(state: &AppState, action: Action, operator: &Operator) -> Response<Vec<u8>> {
    match run(state, action, operator).await {
        Ok(answer) => answer,
        Err(error) => reply::error(&ApiError::from(error)),
    }
}

async fn run(
    state: &AppState,
    action: Action,
    operator: &Operator,
) -> Result<Response<Vec<u8>>, crate::store::StoreError> {
    let limits = Limits::from(state.config.as_ref());
    let now = now_unix();
    let describe = |session: &Session| describe(session, now, &limits);
    Ok(match action {
        Action::ListUser(user) => {
            let listed = state.store.user_sessions(&user, USER_SESSIONS_LIMIT).await?;
            let sessions: Vec<Value> = listed.sessions.iter().map(describe).collect();
            reply::json(StatusCode::OK, &json!({"user": user, "sessions": sessions, "truncated": listed.truncated}))
        }
        Action::EndUser(user) => {
            let (ended, complete) = end_user(state, &user, operator).await?;
            let sessions: Vec<Value> = ended.iter().map(describe).collect();
            reply::json(
                StatusCode::OK,
                &json!({"user": user, "ended": ended.len(), "complete": complete, "sessions": sessions}),
            )
        }
        Action::Show(id) => match state.store.get_session(&id).await? {
            Some(session) => reply::json(StatusCode::OK, &describe(&session)),
            None => no_such_session(),
        },
        Action::End(id) => match state.store.get_session(&id).await? {
            Some(session) => {
                let ended = end(state, &session, operator).await?;
                let after = state.store.get_session(&id).await?.unwrap_or(session);
                reply::json(StatusCode::OK, &json!({"ended": ended, "session": describe(&after)}))
            }
            None => no_such_session(),
        },
    })
}

/// Ends every session of `user`, a page at a time (each page's ended sessions leave the index, so the next page
/// holds others): the sessions it ended, as they are now, and whether none is left. It stops short (`false`)
/// only when a whole page could not be ended — another operator or IB ended them first, and the next call
/// finds what is left — or after [`END_USER_PAGES`] pages.
async fn end_user(
    state: &AppState,
    user: &str,
    operator: &Operator,
) -> Result<(Vec<Session>, bool), crate::store::StoreError> {
    let mut ended = Vec::new();
    for _ in 0..END_USER_PAGES {
        let page = state.store.user_sessions(user, USER_SESSIONS_LIMIT).await?;
        let before = ended.len();
        for mut session in page.sessions {
            if end(state, &session, operator).await? {
                session.state = SessionState::Revoked;
                ended.push(session);
            }
        }
        if !page.truncated {
            return Ok((ended, true));
        }
        if ended.len() == before {
            break;
        }
    }
    Ok((ended, false))
}

/// At most this many pages of [`USER_SESSIONS_LIMIT`] sessions are ended by one request (a million sessions).
const END_USER_PAGES: usize = 1_000;

/// Ends one session as an operator; `false` when it had already ended.
async fn end(state: &AppState, session: &Session, operator: &Operator) -> Result<bool, crate::store::StoreError> {
    let ended = state.store.end_session(&session.id, SessionState::Revoked).await?;
    if ended {
        let grant = &session.grant;
        state.audit.record(
            crate::audit::AuditEvent::session_ended_by_operator(&session.id, &grant.user.uuid, &grant.oauth_client_id)
                .caused_by(operator.ip, &operator.request_id),
        );
    }
    Ok(ended)
}

/// A session as the API shows it: never a token, never the IB `sid`.
fn describe(session: &Session, now: u64, limits: &Limits) -> Value {
    let grant = &session.grant;
    let host = |url: &str| url.split_once("://").map_or(url, |(_, rest)| rest).to_string();
    json!({
        "id": session.id.as_str(),
        "log_tag": session.id.log_tag(),
        "user": grant.user.uuid,
        "client_id": grant.oauth_client_id,
        "platform_host": host(&grant.platform_url),
        "api_host": host(&grant.api_v3_url),
        "created_at": session.sid_created_at,
        "sid_expiry": session.sid_expiry,
        "refresh_count": session.refresh_count,
        "last_refresh_at": session.last_refresh_at,
        "state": session.state.as_str(),
        "status": status_name(rules::access_status(session, now, limits)),
    })
}

fn status_name(status: rules::SessionStatus) -> &'static str {
    match status {
        rules::SessionStatus::Active => "active",
        rules::SessionStatus::NearExpiry => "near_expiry",
        rules::SessionStatus::Expired => "expired",
        rules::SessionStatus::RefreshLimitExceeded => "refresh_limit_exceeded",
        rules::SessionStatus::Revoked => "revoked",
        rules::SessionStatus::UpstreamRejected => "upstream_rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(method: http::Method, path: &str, query: Option<&str>) -> Result<Action, u16> {
        action(&method, path, query).map_err(|refused| refused.status().as_u16())
    }

    #[test]
    fn listing_and_ending_by_user_need_the_user_parameter() {
        assert_eq!(decide(http::Method::GET, PATH, Some("user=u-1")), Ok(Action::ListUser("u-1".into())));
        assert_eq!(
            decide(http::Method::DELETE, "/admin/sessions/", Some("user=u-1")),
            Ok(Action::EndUser("u-1".into()))
        );
        assert_eq!(decide(http::Method::GET, PATH, None), Err(400));
        assert_eq!(decide(http::Method::DELETE, PATH, Some("user=")), Err(400), "empty counts as absent");
        assert_eq!(decide(http::Method::GET, PATH, Some("user=a&user=b")), Err(400), "repeated");
        assert_eq!(decide(http::Method::GET, PATH, Some(&format!("user={}", "u".repeat(129)))), Err(400));
        assert_eq!(decide(http::Method::GET, PATH, Some(&format!("user={}", "u".repeat(128)))).map(|_| ()), Ok(()));
        assert_eq!(decide(http::Method::GET, PATH, Some("user=a%0Ab")), Err(400), "control character");
    }

    #[test]
    fn one_session_is_named_by_a_well_formed_id() {
        let id = SessionId::generate();
        let path = format!("{PATH}/{}", id.as_str());
        assert_eq!(decide(http::Method::GET, &path, None), Ok(Action::Show(id.clone())));
        assert_eq!(decide(http::Method::DELETE, &path, None), Ok(Action::End(id)));
        assert_eq!(decide(http::Method::DELETE, "/admin/sessions/not-an-id", None), Err(404));
        assert_eq!(decide(http::Method::DELETE, "/admin/sessions/../../x", None), Err(404));
    }

    #[test]
    fn other_methods_are_refused_with_405() {
        assert_eq!(decide(http::Method::POST, PATH, Some("user=u")), Err(405));
        assert_eq!(decide(http::Method::PUT, &format!("{PATH}/{}", SessionId::generate().as_str()), None), Err(405));
    }

    #[test]
    fn a_described_session_holds_no_sid() {
        let now = now_unix();
        let session = Session::start(SessionId::generate(), crate::session::SessionGrant::example("c"), now, 1);
        let limits = Limits { max_refresh_count: 10, near_expiry_margin: 300 };
        let text = describe(&session, now, &limits).to_string();
        assert!(!text.contains(&format!("\"{}\"", session.grant.sid.expose())), "{text}");
        assert!(!text.contains("\"sid\""), "{text}");
        let value = describe(&session, now, &limits);
        assert_eq!(value["platform_host"], "acme.intelligencebank.com");
        assert_eq!(value["state"], "active");
        assert_eq!(value["status"], "active");
        assert_eq!(value["log_tag"], session.id.log_tag());
    }
}
