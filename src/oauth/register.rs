//! `POST /register`: RFC 7591 dynamic registration of public clients (MCP clients such as Claude use it).
//! Redirect URIs must be https or loopback http; registrations live in the store with a TTL; the endpoint
//! is rate-limited per client IP.

use serde::Deserialize;

use crate::audit::{AuditEvent, AuditKind};
use crate::auth::clients::Client;
use crate::config::check_redirect_uri;
use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::state::AppState;
use crate::store::{now_unix, RecordKind};
use crate::tokens::random_secret;

#[derive(Deserialize)]
struct Metadata {
    redirect_uris: Option<Vec<String>>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    scope: Option<String>,
}

fn metadata_error(description: impl Into<String>) -> ApiError {
    ApiError::InvalidClientMetadata { error: "invalid_client_metadata", description: description.into() }
}

pub(super) async fn register(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let registration = &state.config.oauth.registration;
    if !registration.enabled {
        return Err(ApiError::NotFound);
    }
    state.rate_limits.registration(request.client_ip, registration.per_ip_per_hour)?;
    let content_type = request.header("content-type").unwrap_or_default();
    if !content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType("application/json"));
    }
    let metadata: Metadata =
        serde_json::from_slice(&request.body).map_err(|_| metadata_error("Body is not valid client metadata JSON"))?;
    let redirect_uris = metadata.redirect_uris.unwrap_or_default();
    if redirect_uris.is_empty() || redirect_uris.len() > 10 {
        return Err(ApiError::InvalidClientMetadata {
            error: "invalid_redirect_uri",
            description: "Between 1 and 10 redirect_uris are required".into(),
        });
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri).map_err(|e| ApiError::InvalidClientMetadata {
            error: "invalid_redirect_uri",
            description: format!("redirect_uri {e}"),
        })?;
    }
    match metadata.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(_) => return Err(metadata_error("Only public clients (token_endpoint_auth_method none) can register")),
    }
    let grant_types = metadata.grant_types.unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if grant_types.iter().any(|g| g != "authorization_code" && g != "refresh_token") {
        return Err(metadata_error("grant_types may only be authorization_code and refresh_token"));
    }
    let response_types = metadata.response_types.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(metadata_error("response_types may only be code"));
    }
    // The scopes the operator's policy gives clients that are not configured (`oauth.dynamic_client_scopes`).
    let allowed = state.config.oauth.dynamic_client_scopes();
    let scopes: Vec<String> = match &metadata.scope {
        Some(scope) => scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        None => allowed.to_vec(),
    };
    if scopes.is_empty() || scopes.iter().any(|s| !allowed.contains(s)) {
        return Err(metadata_error("scope must be drawn from scopes_supported"));
    }
    let client_name = metadata.client_name.map(|name| name.chars().filter(|c| !c.is_control()).take(100).collect());
    let now = now_unix();
    let client = Client {
        client_id: format!("dyn-{}", &random_secret()[..32]),
        secret: None,
        redirect_uris: redirect_uris.clone(),
        redirect_uri_patterns: Vec::new(),
        scopes: scopes.clone(),
        ib_session_in_token_response: true,
        client_name: client_name.clone(),
        dynamic: true,
        registered_at: now,
        metadata_host: None,
        exchange_resource: None,
    };
    let record = serde_json::to_vec(&client).map_err(|_| ApiError::ServerError)?;
    state.store.put_record(RecordKind::Client, &client.client_id, &record, registration.client_ttl_seconds).await?;
    log::info!("client registered: {}", client.client_id);
    state.audit.record(AuditEvent::new(AuditKind::ClientRegistered).client(&client.client_id).request(request));
    let mut body = serde_json::json!({
        "client_id": client.client_id,
        "client_id_issued_at": now,
        "redirect_uris": redirect_uris,
        "grant_types": grant_types,
        "response_types": response_types,
        "token_endpoint_auth_method": "none",
        "scope": scopes.join(" "),
    });
    if let Some(name) = client_name {
        body["client_name"] = serde_json::json!(name);
    }
    Ok(Reply::json(201, &body))
}
