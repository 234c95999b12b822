//! `POST /token`: the authorization-code grant (exact redirect URI and client, PKCE S256), the
//! refresh-token grant (atomic rotation through the store; a repeat inside the grace window gets the same
//! successor, a late reuse revokes the session), and RFC 8693 token exchange for the resource servers in front of
//! the gateway (`oauth.clients[].token_exchange_resource`). Responses carry `Cache-Control: no-store`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::authorize::{requested_resource, CodeGrant};
use crate::audit::{AuditEvent, AuditKind};
use crate::auth::access_token::{self, Audience};
use crate::auth::clients::Client;
use crate::errors::ApiError;
use crate::exchange::{Params, Reply, Request};
use crate::session::{rules, Limits, Session, SessionGrant, SessionId, SessionStatus};
use crate::state::AppState;
use crate::store::{now_unix, CodeRedemption, RotateOutcome, RotateRequest, StoreError};
use crate::tokens::{b64, open_successor, seal_successor, RefreshToken, TokenHash};

/// RFC 8693 §2.1: the token-exchange grant type, and the one token type it takes and issues.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// How long a spent code is remembered, so that a replay revokes what it issued.
const CODE_REPLAY_WINDOW_SECONDS: u64 = 600;

pub(super) async fn token(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let form = request.form()?;
    let client = state.clients.authenticate(state.store.as_ref(), request, &form).await?;
    match form.required("grant_type")? {
        "authorization_code" => authorization_code(state, request, &client, &form).await,
        "refresh_token" => refresh(state, request, &client, &form).await,
        TOKEN_EXCHANGE => exchange(state, request, &client, &form).await,
        _ => Err(ApiError::UnsupportedGrantType),
    }
}

fn verify_pkce(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), ApiError> {
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(ApiError::InvalidGrant("code_verifier sent for a code issued without PKCE".into())),
        (Some(_), None) => Err(ApiError::InvalidGrant("code_verifier required".into())),
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            let computed = b64(&Sha256::digest(verifier.as_bytes()));
            if well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                Ok(())
            } else {
                Err(ApiError::InvalidGrant("PKCE verification failed".into()))
            }
        }
    }
}

async fn authorization_code(
    state: &AppState,
    request: &Request,
    client: &Client,
    form: &Params,
) -> Result<Reply, ApiError> {
    let code = form.required("code")?;
    let redirect_uri = form.required("redirect_uri")?;
    let verifier = form.get("code_verifier")?;
    let resource = requested_resource(state, form.get("resource")?)?;
    let session_id = SessionId::generate();
    let redemption = state.store.redeem_code(&TokenHash::of(code), &session_id, CODE_REPLAY_WINDOW_SECONDS).await?;
    let code_grant: CodeGrant = match redemption {
        CodeRedemption::Redeemed(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            log::error!("stored code grant is unreadable: {e}");
            ApiError::ServerError
        })?,
        CodeRedemption::Replayed(issued) => {
            // Whether the first redemption has created its session yet or not: it ends, or never begins.
            let revoked = state.store.end_issued_session(&issued, CODE_REPLAY_WINDOW_SECONDS).await?;
            log::warn!("authorization code replayed: client={} session_revoked={revoked}", client.client_id);
            return Err(ApiError::InvalidGrant("Authorization code already used".into()));
        }
        CodeRedemption::Unknown => return Err(ApiError::InvalidGrant("Invalid or expired authorization code".into())),
    };
    if code_grant.grant.oauth_client_id != client.client_id {
        return Err(ApiError::InvalidGrant("Authorization code was issued to another client".into()));
    }
    if code_grant.redirect_uri != redirect_uri {
        return Err(ApiError::InvalidGrant("redirect_uri does not match the authorization request".into()));
    }
    verify_pkce(code_grant.code_challenge.as_deref(), verifier)?;
    check_resource(state, resource.as_deref(), &code_grant.grant)?;
    let now = now_unix();
    let session = Session::start(session_id, code_grant.grant, now, state.config.session.default_login_timeout_hours);
    if let Some(end) = rules::access_status(&session, now, &Limits::from(state.config.as_ref())).end() {
        return Err(ApiError::RefreshRefused(end));
    }
    let refresh = RefreshToken::generate(&session.id);
    let refresh_expires_at = rules::refresh_token_expiry(&session, now, state.config.tokens.refresh_token_ttl_seconds);
    match state.store.create_session(&session, &refresh.hash(), refresh_expires_at, now).await {
        Ok(()) => {}
        // A replay of this code landed between its redemption and now: the session is not to be.
        Err(StoreError::SessionIdTaken) => {
            log::warn!("authorization code replayed while it was being redeemed: client={}", client.client_id);
            return Err(ApiError::InvalidGrant("Authorization code already used".into()));
        }
        Err(e) => return Err(e.into()),
    }
    log::info!("tokens issued: grant=authorization_code client={} session={}", client.client_id, session.id.log_tag());
    state.metrics.tokens_issued.with_label_values(&["authorization_code"]).inc();
    state.audit.record(
        AuditEvent::new(AuditKind::CodeRedeemed)
            .client(&client.client_id)
            .user(&session.grant.user.uuid)
            .session(&session.id)
            .request(request),
    );
    token_response(state, client, &session, &refresh, now)
}

async fn refresh(state: &AppState, request: &Request, client: &Client, form: &Params) -> Result<Reply, ApiError> {
    let invalid = || ApiError::InvalidGrant("Invalid or expired refresh token".into());
    let presented = form.required("refresh_token")?;
    if let Some(scope) = form.get("scope")? {
        if scope.split(' ').filter(|s| !s.is_empty()).any(|s| !client.scopes.iter().any(|c| c == s)) {
            return Err(ApiError::InvalidScope("A refresh cannot widen the scope".into()));
        }
    }
    let (session_id, old) = RefreshToken::parse(presented).ok_or_else(invalid)?;
    // RFC 8707 §2.2: a refresh may name the grant's resource (one per grant: it cannot narrow further) and
    // never another. Checked before the rotation, which would spend the refresh token.
    if let Some(resource) = requested_resource(state, form.get("resource")?)? {
        if let Some(session) = state.store.get_session(&session_id).await? {
            check_resource(state, Some(&resource), &session.grant)?;
        }
    }
    let successor = RefreshToken::generate(&session_id);
    let sealed = seal_successor(&old, &successor);
    let now = now_unix();
    let rotation = RotateRequest {
        session_id: &session_id,
        presented: old.hash(),
        successor: successor.hash(),
        sealed_successor: &sealed,
        client_id: &client.client_id,
        now,
        limits: Limits::from(state.config.as_ref()),
        grace_seconds: state.config.tokens.refresh_grace_seconds,
        refresh_ttl: state.config.tokens.refresh_token_ttl_seconds,
    };
    let outcome = state.store.rotate_refresh(&rotation).await?;
    let event = |kind| AuditEvent::new(kind).client(&client.client_id).session(&session_id).request(request);
    let metrics = &state.metrics;
    let result = match &outcome {
        RotateOutcome::Rotated(_) | RotateOutcome::Repeated { .. } => "ok",
        RotateOutcome::Refused(SessionStatus::RefreshLimitExceeded) => "refresh_limit_exceeded",
        RotateOutcome::Refused(_) => "session_expired",
        RotateOutcome::ReuseDetected => "reuse_detected",
        RotateOutcome::Invalid => "invalid",
    };
    metrics.token_refreshes.with_label_values(&[result]).inc();
    if matches!(outcome, RotateOutcome::Rotated(_) | RotateOutcome::Repeated { .. }) {
        metrics.tokens_issued.with_label_values(&["refresh_token"]).inc();
    }
    match outcome {
        RotateOutcome::Rotated(session) => {
            log::info!(
                "tokens refreshed: client={} session={} refresh_count={}",
                client.client_id,
                session.id.log_tag(),
                session.refresh_count
            );
            state.audit.record(event(AuditKind::RefreshRotated).user(&session.grant.user.uuid));
            token_response(state, client, &session, &successor, now)
        }
        RotateOutcome::Repeated { session, sealed_successor } => {
            let successor = open_successor(&old, &sealed_successor).ok_or_else(|| {
                log::error!("sealed successor of session {} does not open", session.id.log_tag());
                ApiError::ServerError
            })?;
            token_response(state, client, &session, &successor, now)
        }
        RotateOutcome::Refused(status) => {
            log::info!(
                "refresh refused: client={} session={} reason={status:?}",
                client.client_id,
                session_id.log_tag()
            );
            if status == SessionStatus::RefreshLimitExceeded {
                let user = session_user(state, &session_id).await;
                state.audit.record(event(AuditKind::RefreshLimitReached).with_user(user));
            }
            Err(status.end().map_or_else(invalid, ApiError::RefreshRefused))
        }
        RotateOutcome::ReuseDetected => {
            log::warn!(
                "refresh token reuse detected: client={} session={} revoked",
                client.client_id,
                session_id.log_tag()
            );
            let user = session_user(state, &session_id).await;
            state.audit.record(event(AuditKind::RefreshTokenReuseDetected).with_user(user));
            Err(ApiError::RefreshTokenReused)
        }
        RotateOutcome::Invalid => Err(invalid()),
    }
}

/// RFC 8693 token exchange: a resource server in front of the gateway (an MCP server: a confidential client with
/// `token_exchange_resource`) presents an access token its own client got for it (`aud` = that resource) and gets
/// a short-lived access token for the gateway bound to the same session — same `sid`, limits and revocation —
/// with a scope no wider than the presented token's, no longer-lived than it, and no refresh token. So the MCP
/// server never passes its client's token through (the MCP specification forbids it).
async fn exchange(state: &AppState, request: &Request, client: &Client, form: &Params) -> Result<Reply, ApiError> {
    let Some(served) = client.exchange_resource.as_ref().filter(|_| !client.is_public()) else {
        return Err(ApiError::UnauthorizedClient("This client may not exchange tokens".into()));
    };
    let subject = form.required("subject_token")?;
    if form.required("subject_token_type")? != ACCESS_TOKEN_TYPE {
        return Err(ApiError::InvalidRequest(format!("subject_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    if form.get("requested_token_type")?.is_some_and(|requested| requested != ACCESS_TOKEN_TYPE) {
        return Err(ApiError::InvalidRequest(format!("requested_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    if form.get("actor_token")?.is_some() || form.get("actor_token_type")?.is_some() {
        return Err(ApiError::InvalidRequest("actor_token is not supported".into()));
    }
    if form.get("audience")?.is_some() {
        return Err(ApiError::InvalidTarget("audience is not supported; name the gateway with resource".into()));
    }
    let resource = match requested_resource(state, form.get("resource")?)? {
        Some(resource) if !state.resources.is_own(&resource) => {
            return Err(ApiError::InvalidTarget("a token exchange issues tokens for this gateway only".into()))
        }
        Some(resource) => resource,
        None => state.resources.default_resource().to_string(),
    };
    let now = now_unix();
    let invalid = || ApiError::InvalidRequest("subject_token is not a valid access token for this client".into());
    let verified = access_token::verify(&state.keys, &state.config, Audience::Exactly(served.as_str()), subject, now);
    let subject = match verified {
        Ok(access_token::Verified::Valid(claims)) => claims,
        _ => return Err(invalid()),
    };
    let session_id = subject.session_id().ok_or_else(invalid)?;
    let session = state.store.get_session(&session_id).await?.ok_or_else(invalid)?;
    if let Some(end) = rules::access_status(&session, now, &Limits::from(state.config.as_ref())).end() {
        return Err(ApiError::InvalidRequest(format!("subject_token's session is over: {}", end.description())));
    }
    let granted: Vec<&str> = subject.scope.split(' ').filter(|s| !s.is_empty()).collect();
    let scope = match form.get("scope")? {
        Some(asked) => {
            let asked: Vec<&str> = asked.split(' ').filter(|s| !s.is_empty()).collect();
            if asked.iter().any(|s| !granted.contains(s)) {
                return Err(ApiError::InvalidScope("A token exchange cannot widen the scope".into()));
            }
            asked.join(" ")
        }
        None => granted.join(" "),
    };
    let exp = rules::access_token_expiry(&session, now, state.config.tokens.access_token_ttl_seconds).min(subject.exp);
    let to = access_token::TokenFor { aud: resource, client_id: client.client_id.clone(), scope: scope.clone(), exp };
    let (access_token, exp) = access_token::issue_as(&state.keys, &state.config, &session, now, to).map_err(|e| {
        log::error!("{e}");
        ApiError::ServerError
    })?;
    log::info!("token exchanged: client={} session={}", client.client_id, session.id.log_tag());
    state.metrics.tokens_issued.with_label_values(&["token_exchange"]).inc();
    state.audit.record(
        AuditEvent::new(AuditKind::TokenExchanged)
            .client(&client.client_id)
            .user(&session.grant.user.uuid)
            .session(&session.id)
            .request(request),
    );
    Ok(Reply::json(
        200,
        &serde_json::json!({
            "access_token": access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": exp.saturating_sub(now),
            "scope": scope,
        }),
    ))
}

/// A `resource` sent to `/token` (already one of the gateway's) must be the one the grant was made for: the
/// resource it names, or the gateway itself when it named none.
fn check_resource(state: &AppState, requested: Option<&str>, grant: &SessionGrant) -> Result<(), ApiError> {
    let Some(requested) = requested else { return Ok(()) };
    let granted = grant.resource.as_deref().unwrap_or(state.resources.default_resource().as_str());
    if requested == granted {
        Ok(())
    } else {
        Err(ApiError::InvalidTarget("resource is not the one this grant was made for".into()))
    }
}

/// The IB user of a session, for an audit event of a refused refresh (whose outcome carries no session).
/// One more store read, on a rare path; a failed read leaves the user out rather than fail the answer.
pub(super) async fn session_user(state: &AppState, session_id: &SessionId) -> Option<String> {
    match state.store.get_session(session_id).await {
        Ok(session) => session.map(|session| session.grant.user.uuid.clone()),
        Err(e) => {
            log::warn!("could not read session {} for its audit event: {e}", session_id.log_tag());
            None
        }
    }
}

fn token_response(
    state: &AppState,
    client: &Client,
    session: &Session,
    refresh: &RefreshToken,
    now: u64,
) -> Result<Reply, ApiError> {
    let (access_token, exp) = access_token::issue(&state.keys, &state.config, session, now).map_err(|e| {
        log::error!("{e}");
        ApiError::ServerError
    })?;
    let mut body = serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": exp.saturating_sub(now),
        "refresh_token": refresh.expose(),
        "scope": session.grant.scope,
    });
    if client.ib_session_in_token_response {
        let grant = &session.grant;
        let extra = serde_json::json!({
            "sid": grant.sid.expose(),
            "clientid": grant.ib_client_id,
            "apiV3url": grant.api_v3_url,
            "logintimeoutperiod": (session.sid_expiry - session.sid_created_at) / 3_600,
            "sidExpiry": session.sid_expiry,
            "sidCreatedAt": session.sid_created_at,
            "platform_url": grant.api_v3_url,
            "client_id": grant.ib_client_id,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
    }
    Ok(Reply::json(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn pkce_rfc7636_appendix_b_example_verifies() {
        assert!(verify_pkce(Some(CHALLENGE), Some(VERIFIER)).is_ok());
    }

    #[test]
    fn pkce_downgrade_and_mismatch_are_refused() {
        assert!(verify_pkce(None, Some(VERIFIER)).is_err());
        assert!(verify_pkce(Some(CHALLENGE), None).is_err());
        assert!(verify_pkce(Some(CHALLENGE), Some(&VERIFIER.replace('d', "e"))).is_err());
        assert!(verify_pkce(Some(CHALLENGE), Some("short")).is_err());
    }
}
