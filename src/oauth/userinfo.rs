//! `GET /userinfo`: the OIDC-style claims of the stored IB login. The caller is authenticated by the same
//! path as the proxy ([`crate::auth::Authenticator::authenticate`]): a refusal here is worded exactly as
//! there.

use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::state::AppState;
use crate::store::now_unix;

pub(super) async fn userinfo(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let authenticated =
        state.auth.authenticate(request.headers.get(http::header::AUTHORIZATION), now_unix(), None).await?;
    let (claims, session) = (authenticated.claims, authenticated.session);
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
    // A metadata-document client never gets the IB session (and its document is not fetched for this).
    let client = match crate::cimd::is_metadata_client_id(&claims.client_id) {
        true => None,
        false => state.clients.find(state.store.as_ref(), &claims.client_id).await?,
    };
    if client.is_some_and(|c| c.ib_session_in_token_response) {
        body["ib_session_id"] = serde_json::json!(grant.sid.expose());
    }
    Ok(Reply::json(200, &body))
}
