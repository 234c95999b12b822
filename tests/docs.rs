//! The docs cover the code: every configuration key in the schema is documented in docs/operations.md,
//! and every endpoint the gateway answers is in docs/api.md.

use std::collections::BTreeSet;

/// A configuration with every optional part present, so that serializing it shows every key.
const EVERYTHING: &str = r#"
server:
  public_url: https://gateway.example.com
  tls: {listen: ["0.0.0.0:8443"], cert_file: Cargo.toml, key_file: Cargo.toml}
store:
  backend: redis
  redis: {urls: ["redis://127.0.0.1:6379"], username: u, password: "x"}
signing:
  previous: []
oauth:
  clients:
    - client_id: c
      client_secret: "0123456789abcdef0123"
      redirect_uris: ["https://a.example/cb"]
platforms:
  extra_ca_file: Cargo.toml
"#;

fn collect(prefix: &str, value: &serde_yaml::Value, keys: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().unwrap();
                let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                keys.insert(path.clone());
                collect(&path, child, keys);
            }
        }
        serde_yaml::Value::Sequence(items) => {
            if let Some(first) = items.first().filter(|v| v.is_mapping()) {
                collect(&format!("{prefix}[]"), first, keys);
            }
        }
        _ => {}
    }
}

fn schema_keys() -> BTreeSet<String> {
    let config = ib_oauth_gateway::config::load_str(EVERYTHING).unwrap();
    let mut value = serde_yaml::to_value(&config).unwrap();
    // `signing.previous[]` entries: add one so that their keys are listed too.
    value["signing"]["previous"] = serde_yaml::from_str("[{kid: k, algorithm: EdDSA, public_key: x}]").unwrap();
    value["signing"]["current"] = serde_yaml::from_str("{kid: k, private_key: x}").unwrap();
    let mut keys = BTreeSet::new();
    collect("", &value, &mut keys);
    keys
}

#[test]
fn every_config_key_is_documented_in_operations_md() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let keys = schema_keys();
    assert!(keys.contains("store.redis.urls") && keys.contains("oauth.clients[].redirect_uri_patterns"));
    let missing: Vec<_> = keys.iter().filter(|key| !docs.contains(&format!("`{key}`"))).collect();
    assert!(missing.is_empty(), "config keys missing from docs/operations.md: {missing:?}");
}

#[test]
fn every_endpoint_is_documented_in_api_md() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    for endpoint in [
        "/authorize",
        "/authorize/poll",
        "/token",
        "/userinfo",
        "/revoke",
        "/introspect",
        "/register",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource",
        "/.well-known/jwks.json",
        "/proxy/{host}/",
        "/api/v3/",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(docs.contains(endpoint), "docs/api.md does not document {endpoint}");
    }
    for description in [
        "Session has expired",
        "Session refresh limit exceeded",
        "The access token has expired",
        "Invalid or expired access token",
    ] {
        assert!(docs.contains(description), "docs/api.md does not quote `{description}`");
    }
}
