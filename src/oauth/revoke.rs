//! `POST /revoke` (RFC 7009): answers 200 whatever the token; revoking any token of a session ends the
//! session.

use crate::audit::{AuditEvent, AuditKind};
use crate::auth::access_token::{self, Audience};
use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::session::SessionState;
use crate::state::AppState;
use crate::store::now_unix;
use crate::tokens::RefreshToken;

pub(super) async fn revoke(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let form = request.form()?;
    let client = state.clients.authenticate(state.store.as_ref(), request, &form).await?;
    let token = form.required("token")?;
    form.get("token_type_hint")?;
    // The session ended, and its user when the token said it.
    let revoked = if let Some((session_id, refresh)) = RefreshToken::parse(token) {
        let ended = state.store.revoke_by_refresh(&session_id, &refresh.hash(), &client.client_id).await?;
        match ended {
            true => Some((super::token::session_user(state, &session_id).await, session_id)),
            false => None,
        }
    } else {
        // An access token: verified (expired is fine) and of this client, it ends its session too.
        let claims =
            access_token::verify(&state.keys, &state.config, Audience::Issued(&state.resources), token, now_unix())
                .ok();
        let claims = claims.map(|verified| verified.claims().clone());
        match claims.filter(|c| c.client_id == client.client_id) {
            Some(claims) => match claims.session_id() {
                Some(session_id) if state.store.end_session(&session_id, SessionState::Revoked).await? => {
                    Some((Some(claims.sub), session_id))
                }
                _ => None,
            },
            None => None,
        }
    };
    if let Some((user, session_id)) = revoked {
        log::info!("session revoked by client {}", client.client_id);
        state.audit.record(
            AuditEvent::new(AuditKind::TokenRevoked)
                .client(&client.client_id)
                .with_user(user)
                .session(&session_id)
                .request(request),
        );
    }
    Ok(Reply::json(200, &serde_json::json!({})))
}
