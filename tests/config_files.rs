//! Every file in `conf/` is a valid configuration, and `check-config` refuses a broken one with a single
//! line naming the key and exit code 2.

mod common;

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

#[test]
fn every_file_in_conf_loads() {
    let files = conf_files();
    assert!(files.iter().any(|f| f.ends_with("gateway.yaml")), "conf/gateway.yaml is shipped");
    for file in files {
        let path = file.display().to_string();
        if let Err(e) = ib_oauth_gateway::config::load(&path) {
            panic!("{path}: {e}");
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
        let output = Command::new(BIN).arg("check-config").arg(&file).output().unwrap();
        assert!(output.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    }
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
fn a_missing_file_is_an_error_not_a_panic() {
    let output = Command::new(BIN).args(["check-config", "/nonexistent/gateway.yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/gateway.yaml"));
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
