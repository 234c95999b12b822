//! Live reload, decided: which keys of a changed configuration a running gateway takes at once, and which
//! wait for a restart (`-u` upgrade). Pure: two validated configurations in, the one to run on and the
//! keys that changed out. Never reads a file and never resolves a secret.

use serde_norway::Value;

use super::Config;

/// The keys (dotted, as docs/operations.md names them) whose new value applies to a running gateway. Every
/// other key keeps its running value until a restart. A section named here applies whole, except
/// `oauth.resources` (the audiences access tokens are checked against; [`reconfigure`] keeps it).
pub const LIVE_KEYS: &[&str] = &[
    "oauth",
    "cors",
    "rate_limits.per_session_per_minute",
    "rate_limits.per_ip_per_minute",
    "platforms.allowed_host_suffixes",
    "platforms.allow_insecure_loopback",
    "upstream.connect_timeout_ms",
    "upstream.read_timeout_ms",
    "upstream.write_timeout_ms",
    "upstream.idle_timeout_seconds",
    "upstream.http2",
    "logging.level",
    "admin",
];

/// What a reload does with a new configuration.
#[derive(Debug, Clone)]
pub struct Reconfiguration {
    /// The configuration to run on: the running one with every [`LIVE_KEYS`] value taken from the new one.
    pub config: Config,
    /// Live keys whose value changed: they apply now.
    pub changed: Vec<String>,
    /// Keys whose value changed but that apply only after a restart; their running value stays.
    pub restart_required: Vec<String>,
}

/// Takes the live keys of `new` into (a copy of) `running`, and names what changed. Secret values are not
/// compared (only where they are read from): a changed inline secret applies, if its key is live, unnamed.
pub fn reconfigure(running: &Config, new: &Config) -> Reconfiguration {
    let mut config = running.clone();
    config.oauth = new.oauth.clone();
    config.oauth.resources = running.oauth.resources.clone();
    config.cors = new.cors.clone();
    config.rate_limits.per_session_per_minute = new.rate_limits.per_session_per_minute;
    config.rate_limits.per_ip_per_minute = new.rate_limits.per_ip_per_minute;
    config.platforms.allowed_host_suffixes = new.platforms.allowed_host_suffixes.clone();
    config.platforms.allow_insecure_loopback = new.platforms.allow_insecure_loopback;
    config.upstream.connect_timeout_ms = new.upstream.connect_timeout_ms;
    config.upstream.read_timeout_ms = new.upstream.read_timeout_ms;
    config.upstream.write_timeout_ms = new.upstream.write_timeout_ms;
    config.upstream.idle_timeout_seconds = new.upstream.idle_timeout_seconds;
    config.upstream.http2 = new.upstream.http2.clone();
    config.logging.level = new.logging.level.clone();
    config.admin = new.admin.clone();
    let (running_value, applied_value, new_value) = (as_value(running), as_value(&config), as_value(new));
    let mut changed = Vec::new();
    differences("", &running_value, &applied_value, &mut changed);
    let mut restart_required = Vec::new();
    differences("", &applied_value, &new_value, &mut restart_required);
    Reconfiguration { config, changed, restart_required }
}

/// The configuration as the YAML tree `print-config` shows (secrets as where they come from).
fn as_value(config: &Config) -> Value {
    serde_norway::to_value(config).unwrap_or(Value::Null)
}

/// The dotted keys at which `a` and `b` differ: mappings are compared key by key, anything else (a list, a
/// value) whole.
fn differences(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Mapping(a_map), Value::Mapping(b_map)) => {
            let keys = a_map.keys().chain(b_map.keys().filter(|k| !a_map.contains_key(*k)));
            for key in keys {
                let name = key.as_str().unwrap_or_default();
                let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
                let missing = Value::Null;
                differences(&path, a_map.get(key).unwrap_or(&missing), b_map.get(key).unwrap_or(&missing), out);
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const RUNNING: &str = "server:\n  public_url: https://a.example\n  listen: ['127.0.0.1:8080']\n";

    fn reload(extra: &str) -> Reconfiguration {
        let running = load_str(RUNNING).unwrap();
        reconfigure(&running, &load_str(&format!("{RUNNING}{extra}")).unwrap())
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let outcome = reload("");
        assert!(outcome.changed.is_empty() && outcome.restart_required.is_empty(), "{outcome:?}");
    }

    #[test]
    fn live_keys_apply_and_are_named() {
        let outcome = reload(
            "cors:\n  allowed_origins: ['https://app.example.com']\nrate_limits:\n  per_session_per_minute: 5\n\
             upstream:\n  read_timeout_ms: 10\nlogging:\n  level: debug\nplatforms:\n  allowed_host_suffixes: [.example.com]\n\
             oauth:\n  clients:\n    - {client_id: a, redirect_uris: ['https://a.example/cb']}\n",
        );
        assert_eq!(
            outcome.changed,
            [
                "platforms.allowed_host_suffixes",
                "upstream.read_timeout_ms",
                "oauth.clients",
                "cors.allowed_origins",
                "rate_limits.per_session_per_minute",
                "logging.level"
            ]
        );
        assert!(outcome.restart_required.is_empty(), "{outcome:?}");
        assert_eq!(outcome.config.cors.allowed_origins, ["https://app.example.com"]);
        assert_eq!(outcome.config.rate_limits.per_session_per_minute, 5);
        assert_eq!(outcome.config.oauth.clients[0].client_id, "a");
    }

    #[test]
    fn other_keys_keep_their_running_value_and_are_named_as_needing_a_restart() {
        let outcome = reload(
            "  admin_listen: '127.0.0.1:9999'\ntokens:\n  access_token_ttl_seconds: 60\nrate_limits:\n  per_ip_per_minute: 7\n\
             upstream:\n  pool_size: 3\n",
        );
        assert_eq!(
            outcome.restart_required,
            ["server.admin_listen", "tokens.access_token_ttl_seconds", "upstream.pool_size"]
        );
        assert_eq!(outcome.changed, ["rate_limits.per_ip_per_minute"]);
        assert_eq!(outcome.config.server.admin_listen.to_string(), "127.0.0.1:9090", "the running value stays");
        assert_eq!(outcome.config.tokens.access_token_ttl_seconds, 3_600);
        assert_eq!(outcome.config.upstream.pool_size, 256);
    }

    #[test]
    fn every_live_key_is_a_key_of_the_schema() {
        let value = as_value(&load_str(RUNNING).unwrap());
        for key in LIVE_KEYS {
            let found = key.split('.').try_fold(&value, |v, k| v.get(k));
            assert!(found.is_some(), "{key} is not a configuration key");
        }
    }
}
