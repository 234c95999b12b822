//! Shipped configurations name their secrets by path (`{file: /etc/...}`) or variable (`{env: NAME}`), which do
//! not exist on a test machine. [`with_local_secrets`] gives each one a value here, changing nothing else.

use serde_norway::Value as Yaml;
use std::path::Path;

/// Every `{file: ...}` and `{env: ...}` secret of a configuration: `(files, variables)`.
pub fn secret_references(value: &Yaml) -> (Vec<String>, Vec<String>) {
    fn walk(value: &Yaml, files: &mut Vec<String>, env: &mut Vec<String>) {
        if let Some(map) = value.as_mapping() {
            if map.len() == 1 {
                if let Some(file) = map.get("file").and_then(Yaml::as_str) {
                    files.push(file.to_string());
                    return;
                }
                if let Some(name) = map.get("env").and_then(Yaml::as_str) {
                    env.push(name.to_string());
                    return;
                }
            }
            map.values().for_each(|child| walk(child, files, env));
        } else if let Some(items) = value.as_sequence() {
            items.iter().for_each(|child| walk(child, files, env));
        }
    }
    let (mut files, mut env) = (Vec::new(), Vec::new());
    walk(value, &mut files, &mut env);
    (files, env)
}

/// A configuration text whose secret files are files in `dir` (a private key of the configured algorithm for
/// `.key`, its public half for `.pub`, a 64-character token otherwise), and the variables it reads, which the
/// caller sets on the process it runs. Only the paths change.
pub fn with_local_secrets(text: &str, dir: &Path) -> (String, Vec<String>) {
    use ib_oauth_gateway::config::SigningAlgorithm;
    let yaml: Yaml = serde_norway::from_str(text).expect("a YAML configuration");
    let algorithm = match yaml["signing"]["algorithm"].as_str() {
        None | Some("EdDSA") => SigningAlgorithm::EdDSA,
        Some("ES256") => SigningAlgorithm::ES256,
        Some("RS256") => SigningAlgorithm::RS256,
        Some(other) => panic!("unknown signing.algorithm {other}"),
    };
    let (private_pem, public_pem) = ib_oauth_gateway::keys::generate_pem(algorithm).expect("a key pair");
    let (files, env) = secret_references(&yaml);
    let mut local = text.to_string();
    for (n, file) in files.iter().enumerate() {
        let contents = match Path::new(file).extension().and_then(|e| e.to_str()) {
            Some("key") => private_pem.clone(),
            Some("pub") => public_pem.clone(),
            _ => "0123456789abcdef".repeat(4),
        };
        let substitute = dir.join(format!("secret-{n}"));
        std::fs::write(&substitute, contents).expect("a temporary secret file");
        local = local.replace(file.as_str(), &substitute.display().to_string());
    }
    (local, env)
}

/// A value for a secret read from the environment.
pub const ENV_SECRET: &str = "a-secret-of-at-least-sixteen-characters";
