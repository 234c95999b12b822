//! Every file in `conf/` is a valid configuration (its secret files and variables given local values), and the
//! one for several instances names a shared signing key and an admin token; `check-config` refuses a broken one
//! with one line per problem, each naming its key, and exit code 2; `print-config` shows the effective configuration without a secret;
//! `IBGW_CONFIG` names the file when no argument does.

mod common;

use common::secrets::{with_local_secrets, ENV_SECRET};
use common::BIN;
use std::process::Command;

fn conf_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("conf/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    files
}

/// A shipped file as it runs: its secrets given local values, nothing else changed. The directory holds them.
fn with_secrets(file: &std::path::Path) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let (local, env) = with_local_secrets(&text, dir.path());
    let path = dir.path().join(file.file_name().unwrap());
    std::fs::write(&path, local).unwrap();
    (dir, path, env)
}

#[test]
fn every_file_in_conf_loads() {
    let files = conf_files();
    assert!(files.iter().any(|f| f.ends_with("gateway.yaml")), "conf/gateway.yaml is shipped");
    for file in files {
        let (_dir, local, env) = with_secrets(&file);
        for name in &env {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, ENV_SECRET);
            }
        }
        if let Err(e) = ib_oauth_gateway::config::load(&local.display().to_string()) {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn shipped_gateway_yaml_uses_the_memory_store() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/gateway.yaml");
    let config = ib_oauth_gateway::config::load(path).unwrap();
    assert_eq!(config.store.backend, ib_oauth_gateway::config::StoreBackend::Memory);
    assert!(!config.platforms.allow_insecure_loopback, "production-shaped config keeps the dev switch off");
}

#[test]
fn check_config_accepts_every_shipped_file() {
    for file in conf_files() {
        let (_dir, local, env) = with_secrets(&file);
        let mut command = Command::new(BIN);
        command.arg("check-config").arg(&local);
        for name in &env {
            command.env(name, ENV_SECRET);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    }
}

/// Several instances work only with one signing key for all (else each makes its own and refuses the others'
/// tokens), and an admin port open beyond the host needs the admin token.
#[test]
fn a_shipped_multi_instance_file_names_a_shared_signing_key_and_an_admin_token() {
    let mut multi_instance = 0;
    for file in conf_files() {
        let name = file.display().to_string();
        let yaml: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        if yaml["store"]["backend"] != "redis" {
            continue;
        }
        multi_instance += 1;
        let key = &yaml["signing"]["current"]["private_key"];
        assert!(key["file"].is_string() || key["env"].is_string(), "{name}: no shared signing.current key file");
        let admin_listen = yaml["server"]["admin_listen"].as_str().unwrap_or("127.0.0.1:9090");
        if !admin_listen.starts_with("127.") && !admin_listen.starts_with("[::1]") {
            let token = &yaml["admin"]["token"];
            assert!(
                token["file"].is_string() || token["env"].is_string(),
                "{name}: {admin_listen} without admin.token"
            );
        }
    }
    assert!(multi_instance > 0, "conf/ has a configuration for several instances (store.backend: redis)");
}

fn check_broken(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(BIN).arg("check-config").arg(&path).output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).trim_end().to_string())
}

/// `check-config` refuses `yaml` with exit code 2 and a single line naming `key`.
#[track_caller]
fn assert_refused_naming(yaml: &str, key: &str) {
    let (code, stderr) = check_broken(yaml);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(key), "{stderr}");
}

#[test]
fn check_config_rejects_a_broken_file_with_one_line_naming_the_key() {
    let yaml = "server:\n  public_url: https://a.example\ntokens:\n  max_refresh_count: -3\n";
    assert_refused_naming(yaml, "tokens.max_refresh_count");
}

#[test]
fn check_config_rejects_a_semantic_error_naming_the_key() {
    assert_refused_naming("server:\n  public_url: https://a.example\n  listen: ['nonsense']\n", "server.listen[0]");
}

#[test]
fn check_config_rejects_invalid_yaml_without_panicking() {
    let (code, stderr) = check_broken("server: [unclosed\n");
    assert_eq!(code, 2);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_missing_file_is_named_once_in_one_line() {
    let output = Command::new(BIN).args(["check-config", "/nonexistent/gateway.yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("/nonexistent/gateway.yaml").count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: /nonexistent/gateway.yaml: cannot read file"), "{stderr}");
}

#[test]
fn check_config_reports_every_problem_one_line_each() {
    let (code, stderr) = check_broken(
        "server:\n  public_url: https://a.example\n  listen: ['nonsense']\n  threads: 0\n\
         tokens:\n  authorization_code_ttl_seconds: 601\n\
         cors:\n  allowed_origins: ['https://app.example.com/']\n",
    );
    assert_eq!(code, 2, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    for (line, key) in lines.iter().zip([
        "server.listen[0]",
        "server.threads",
        "tokens.authorization_code_ttl_seconds",
        "cors.allowed_origins[0]",
    ]) {
        assert!(line.starts_with("error: ") && line.contains(&format!(": {key}: ")), "{line}");
    }
}

/// A configuration with every kind of secret inline, which `print-config` must not print.
const INLINE_SECRETS: &str = "server:\n  public_url: https://a.example\n\
    store:\n  backend: redis\n  redis:\n    urls: ['redis://127.0.0.1:6379']\n    password: redis-password-value-1234\n\
    oauth:\n  clients:\n    - client_id: reporting\n      client_secret: client-secret-value-5678\n      redirect_uris: ['https://r.example/cb']\n";

#[test]
fn print_config_shows_every_default_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, _) =
        ib_oauth_gateway::keys::generate_pem(ib_oauth_gateway::config::SigningAlgorithm::EdDSA).unwrap();
    let key_body = private_pem.lines().nth(1).unwrap().to_string();
    let mut yaml: serde_norway::Value = serde_norway::from_str(INLINE_SECRETS).unwrap();
    yaml["signing"] = serde_norway::from_str("{current: {kid: k1}}").unwrap();
    yaml["signing"]["current"]["private_key"] = serde_norway::Value::String(private_pem);
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, serde_norway::to_string(&yaml).unwrap()).unwrap();

    let output = Command::new(BIN).arg("print-config").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for secret in ["redis-password-value-1234", "client-secret-value-5678", key_body.as_str(), "PRIVATE KEY"] {
        assert!(!stdout.contains(secret), "print-config printed a secret:\n{stdout}");
    }
    let printed: serde_norway::Value = serde_norway::from_str(&stdout).expect("print-config prints YAML");
    assert_eq!(printed["store"]["redis"]["password"].as_str(), Some("***"));
    assert_eq!(printed["oauth"]["clients"][0]["client_secret"].as_str(), Some("***"));
    assert_eq!(printed["signing"]["current"]["private_key"].as_str(), Some("***"));
    // The defaults are filled in.
    assert_eq!(printed["tokens"]["max_refresh_count"].as_u64(), Some(120));
    assert_eq!(printed["server"]["admin_listen"].as_str(), Some("127.0.0.1:9090"));
}

#[test]
fn print_config_names_where_a_secret_comes_from() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("redis-password");
    std::fs::write(&secret_file, "file-secret-value-9012\n").unwrap();
    let path = dir.path().join("gateway.yaml");
    let text = format!(
        "server:\n  public_url: https://a.example\nstore:\n  backend: redis\n  redis:\n    urls: ['redis://127.0.0.1:6379']\n    password: {{file: {}}}\n",
        secret_file.display()
    );
    std::fs::write(&path, text).unwrap();
    let output = Command::new(BIN).arg("print-config").arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.contains("file-secret-value-9012"), "{stdout}");
    assert!(stdout.contains(&format!("file:{}", secret_file.display())), "{stdout}");
}

#[test]
fn print_config_refuses_a_broken_file_like_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, "server:\n  public_url: https://a.example\n  threads: 0\n").unwrap();
    let output = Command::new(BIN).arg("print-config").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.threads"));
}

#[test]
fn ibgw_config_names_the_file_when_no_argument_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.yaml");
    std::fs::write(&path, "server:\n  public_url: https://from-env.example\n").unwrap();
    for command in ["check-config", "print-config"] {
        let output = Command::new(BIN).arg(command).env("IBGW_CONFIG", &path).current_dir(dir.path()).output().unwrap();
        assert!(output.status.success(), "{command}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let expected = if command == "check-config" { "from-env.yaml: ok" } else { "https://from-env.example" };
        assert!(stdout.contains(expected), "{command}: {stdout}");
    }
    // An argument wins over the variable.
    let output =
        Command::new(BIN).args(["check-config", "/nonexistent/other.yaml"]).env("IBGW_CONFIG", &path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/other.yaml"));
    // Running: a broken file named by the variable is what the gateway refuses.
    std::fs::write(dir.path().join("broken.yaml"), "server: {}\n").unwrap();
    let output = Command::new(BIN).env("IBGW_CONFIG", dir.path().join("broken.yaml")).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("broken.yaml"));
}

#[test]
fn running_with_a_broken_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, "server: {}\n").unwrap();
    let output = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("public_url"));
}
