//! Discovery documents: RFC 8414 authorization-server metadata and RFC 9728 protected-resource metadata.

use serde_json::{json, Value};

use crate::config::Config;

fn base(config: &Config) -> String {
    config.server.public_url.trim_end_matches('/').to_string()
}

pub fn resource_metadata_url(config: &Config) -> String {
    format!("{}/.well-known/oauth-protected-resource", base(config))
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
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": config.oauth.scopes_supported,
        "authorization_response_iss_parameter_supported": true,
    });
    if config.oauth.registration.enabled {
        document["registration_endpoint"] = json!(format!("{base}/register"));
    }
    document
}

pub fn protected_resource(config: &Config) -> Value {
    let base = base(config);
    json!({
        "resource": base,
        "authorization_servers": [base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": config.oauth.scopes_supported,
        "resource_name": "IntelligenceBank API via ib-oauth-gateway",
    })
}
