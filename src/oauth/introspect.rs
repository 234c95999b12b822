//! `POST /introspect` (RFC 7662): for an authenticated confidential client, whether a token is active and what
//! it grants. An access token is checked by the one authentication path (`auth::Authenticator`, with its
//! verified-token cache); a refresh token by its session's refresh rules. Says only `{"active": false}` about
//! anything inactive, and nothing about why.

use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::session::{rules, Limits};
use crate::state::AppState;
use crate::store::now_unix;
use crate::tokens::RefreshToken;

pub(super) async fn introspect(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let form = request.form()?;
    let client = state.clients.authenticate(state.store.as_ref(), request, &form).await?;
    if client.is_public() {
        return Err(ApiError::InvalidClient {
            description: "Introspection needs an authenticated confidential client".into(),
            basic: false,
        });
    }
    let token = form.required("token")?;
    let now = now_unix();
    let inactive = Reply::json(200, &serde_json::json!({ "active": false }));
    if let Some((session_id, refresh)) = RefreshToken::parse(token) {
        let Some((session, expires_at)) = state.store.find_by_refresh(&session_id, &refresh.hash()).await? else {
            return Ok(inactive);
        };
        if now >= expires_at || !rules::refresh_status(&session, now, &Limits::from(state.config.as_ref())).is_usable()
        {
            return Ok(inactive);
        }
        return Ok(Reply::json(
            200,
            &serde_json::json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": session.grant.oauth_client_id,
                "scope": session.grant.scope,
                "sub": session.grant.user.uuid,
                "exp": expires_at,
                "iss": crate::auth::access_token::audience(&state.config),
            }),
        ));
    }
    let claims = match state.auth.authenticate_token(token, now, None).await {
        Ok(authenticated) => authenticated.claims,
        // The store did not answer: that is no verdict on the token.
        Err(ApiError::TemporarilyUnavailable) => return Err(ApiError::TemporarilyUnavailable),
        Err(_) => return Ok(inactive),
    };
    Ok(Reply::json(
        200,
        &serde_json::json!({
            "active": true,
            "token_type": "Bearer",
            "client_id": claims.client_id,
            "scope": claims.scope,
            "sub": claims.sub,
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "aud": claims.aud,
            "jti": claims.jti,
        }),
    ))
}
