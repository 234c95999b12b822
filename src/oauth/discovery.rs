//! Discovery documents: RFC 8414 authorization-server metadata and RFC 9728 protected-resource metadata.

use serde_json::{json, Value};

use crate::config::Config;

fn base(config: &Config) -> String {
    config.server.public_url.trim_end_matches('/').to_string()
}

pub fn resource_metadata_url(config: &Config) -> String {
    format!("{}/.well-known/oauth-protected-resource", base(config))
}

/// The grant types `/token` answers: token exchange only when a resource server is configured for it.
fn grant_types(config: &Config) -> Vec<&'static str> {
    let mut grants = vec!["authorization_code", "refresh_token"];
    if config.oauth.clients.iter().any(|client| client.token_exchange_resource.is_some()) {
        grants.push(super::token::TOKEN_EXCHANGE);
    }
    grants
}

pub fn authorization_server(config: &Config) -> Value {
    let base = base(config);
    let mut document = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "revocation_endpoint": format!("{base}/revoke"),
        "introspection_endpoint": format!("{base}/introspect"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types(config),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": config.oauth.scopes_supported,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": config.oauth.client_id_metadata_documents.enabled,
    });
    if config.oauth.registration.enabled {
        document["registration_endpoint"] = json!(format!("{base}/register"));
    }
    document
}

/// The RFC 9728 document of `resource` (one of the gateway's resources; the gateway itself when `None`).
pub fn protected_resource(config: &Config, resource: Option<&str>) -> Value {
    let base = base(config);
    json!({
        "resource": resource.unwrap_or(&base),
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": config.oauth.scopes_supported,
        "resource_name": "IntelligenceBank API via ib-oauth-gateway",
    })
}
