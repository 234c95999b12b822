//! `GET /userinfo` and the Bearer check it shares with the proxy: verify the access token, find its session,
//! apply the session rules, and say precisely why when refusing.

use super::access_token::{self, AccessClaims, Verified};
use super::token::limits;
use crate::errors::{ApiError, ACCESS_TOKEN_EXPIRED, INVALID_ACCESS_TOKEN};
use crate::gateway::exchange::{Reply, Request};
use crate::server::AppState;
use crate::session::{rules, Session};
use crate::store::now_unix;

/// The session behind an access token, or the refusal a client should see.
pub async fn authenticate(state: &AppState, token: &str, now: u64) -> Result<(AccessClaims, Session), ApiError> {
    let (claims, expired) = match access_token::verify(&state.keys, &state.config, token, now) {
        Ok(Verified::Valid(claims)) => (claims, false),
        Ok(Verified::Expired(claims)) => (claims, true),
        Err(_) => return Err(ApiError::InvalidToken(INVALID_ACCESS_TOKEN)),
    };
    let session_id = claims.session_id().ok_or(ApiError::InvalidToken(INVALID_ACCESS_TOKEN))?;
    let session = state.store.get_session(&session_id).await?.ok_or(ApiError::InvalidToken(INVALID_ACCESS_TOKEN))?;
    let limits = limits(state);
    // An expired token: tell "refresh and retry" apart from "log in again".
    let status = if expired {
        rules::refresh_status(&session, now, &limits)
    } else {
        rules::access_status(&session, now, &limits)
    };
    if !status.is_usable() {
        state.metrics.refused(&ApiError::for_session(status), Some(status));
        return Err(ApiError::for_session(status));
    }
    if expired {
        return Err(ApiError::InvalidToken(ACCESS_TOKEN_EXPIRED));
    }
    Ok((claims, session))
}

pub(super) async fn userinfo(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let token = request.bearer_token()?.ok_or(ApiError::MissingToken)?;
    let (claims, session) = authenticate(state, token, now_unix()).await?;
    let grant = &session.grant;
    let user = &grant.user;
    let name = [user.first_name.as_str(), user.last_name.as_str()]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = serde_json::json!({
        "sub": user.uuid,
        "name": name,
        "given_name": user.first_name,
        "family_name": user.last_name,
        // Seconds, as OIDC says (the old bridge divided a seconds value by 1000).
        "updated_at": session.sid_created_at,
        "ib_client_id": grant.ib_client_id,
        "ib_api_url": grant.api_v3_url,
        "ib_user_uuid": user.uuid,
        "ib_platform_url": grant.platform_url,
        "sid_expiry": session.sid_expiry,
    });
    if let Some(email) = &user.email {
        body["email"] = serde_json::json!(email);
    }
    let client = state.clients.find(state.store.as_ref(), &claims.client_id).await?;
    if client.is_some_and(|c| c.ib_session_in_token_response) {
        body["ib_session_id"] = serde_json::json!(grant.sid.expose());
    }
    Ok(Reply::json(200, &body))
}
