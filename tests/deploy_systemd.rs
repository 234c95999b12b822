//! The systemd unit works when its documented install steps are followed. There is no systemd PID 1 here, so
//! the test does what the steps and systemd would: it runs the unit's install steps (from its header comment,
//! as written) into a temporary root, hands the credentials over the way `LoadCredential=` does, and checks that
//! every path the unit and the installed configuration load, write or name exists under the name the steps
//! produce, that every path the gateway writes is one the unit makes writable (`ProtectSystem=strict`, a
//! dynamic user), and that `check-config` accepts the installed configuration with those credentials. When
//! `systemd-analyze` is installed (required with `IBGW_REQUIRE_SYSTEMD_ANALYZE=1`), `systemd-analyze verify`
//! checks the installed unit in that root.

mod common;

use common::BIN;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNIT: &str = "deploy/systemd/ib-oauth-gateway.service";
const UNIT_NAME: &str = "ib-oauth-gateway.service";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `NAME=value` of the unit, in order (a setting may repeat).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn values<'a>(settings: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    settings.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

/// The commands of the header's "Install" block, trailing comments removed.
fn install_steps(unit: &str) -> Vec<String> {
    let block = unit.split("\n# Install").nth(1).expect("the unit documents its install steps");
    block
        .lines()
        .skip_while(|line| !line.starts_with("#   "))
        .map_while(|line| line.strip_prefix("#   "))
        .map(|step| step.split("   #").next().unwrap().trim().to_string())
        .collect()
}

/// Runs one documented step with its absolute paths moved into `root`. Building and `systemctl` need a real
/// machine: the build is the test's own binary, and the enabling is what `systemd-analyze verify` checks.
fn perform(step: &str, root: &Path) {
    if step.starts_with("cargo build") || step.starts_with("systemctl ") {
        return;
    }
    let root_text = root.display().to_string();
    // The binary cargo built (target/PROFILE/ib-oauth-gateway) is the test's own.
    let mut command: String = step
        .split(' ')
        .map(|word| if word.starts_with("target/") && word.ends_with("/ib-oauth-gateway") { BIN } else { word })
        .collect::<Vec<_>>()
        .join(" ");
    for prefix in [" /etc/", " /usr/local/bin"] {
        command = command.replace(prefix, &format!(" {root_text}{}", prefix.trim_start()));
    }
    let known = ["install ", "ib-oauth-gateway "];
    assert!(known.iter().any(|k| command.starts_with(k)), "{UNIT}: an install step this test cannot perform: {step}");
    let path = format!("{root_text}/usr/local/bin:{}", std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &command])
        .current_dir(repository())
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(output.status.success(), "install step `{step}` failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// `root` joined with an absolute path.
fn inside(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

/// What `LoadCredential=ID:PATH` hands over: `ID` for a file; for a directory, every file in it (recursively,
/// symlinks ignored) as `ID_NAME` (systemd.exec(5)). `(credential name, source file)`.
fn credentials(root: &Path, load_credential: &str) -> Vec<(String, PathBuf)> {
    let (id, source) = load_credential.split_once(':').expect("LoadCredential=ID:PATH");
    let source = inside(root, source);
    assert!(source.exists(), "LoadCredential={load_credential}: the install steps made no such file or directory");
    if source.is_file() {
        return vec![(id.to_string(), source)];
    }
    let mut found = Vec::new();
    let mut pending = vec![source.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let name = path.strip_prefix(&source).unwrap().display().to_string().replace('/', "_");
                found.push((format!("{id}_{name}"), path));
            }
        }
    }
    found
}

/// The directories the unit lets the service write despite `ProtectSystem=strict`.
fn writable_directories(settings: &[(String, String)]) -> Vec<String> {
    let mut dirs = Vec::new();
    for (setting, base) in [
        ("RuntimeDirectory", "/run"),
        ("LogsDirectory", "/var/log"),
        ("StateDirectory", "/var/lib"),
        ("CacheDirectory", "/var/cache"),
    ] {
        for value in values(settings, setting) {
            dirs.extend(value.split_whitespace().map(|name| format!("{base}/{name}")));
        }
    }
    for value in values(settings, "ReadWritePaths") {
        dirs.extend(value.split_whitespace().map(|p| p.trim_start_matches('-').to_string()));
    }
    if values(settings, "PrivateTmp") == ["yes"] {
        dirs.push("/tmp".to_string());
    }
    dirs
}

/// Every `{file: PATH}` secret of a configuration.
fn secret_files(value: &serde_norway::Value, out: &mut Vec<String>) {
    match value {
        serde_norway::Value::Mapping(map) => {
            if let (1, Some(file)) = (map.len(), map.get("file").and_then(|f| f.as_str())) {
                out.push(file.to_string());
                return;
            }
            map.values().for_each(|child| secret_files(child, out));
        }
        serde_norway::Value::Sequence(items) => items.iter().for_each(|child| secret_files(child, out)),
        _ => {}
    }
}

/// The unit's install steps, performed in a temporary root.
struct Installed {
    root: tempfile::TempDir,
    unit: String,
    settings: Vec<(String, String)>,
}

fn install() -> Installed {
    let unit = std::fs::read_to_string(repository().join(UNIT)).unwrap();
    let root = tempfile::tempdir().unwrap();
    // What any Debian system has before the steps.
    for dir in ["/usr/local/bin", "/etc/systemd/system", "/run", "/var/log"] {
        std::fs::create_dir_all(inside(root.path(), dir)).unwrap();
    }
    let steps = install_steps(&unit);
    assert!(steps.len() >= 5, "{UNIT}: install steps {steps:?}");
    for step in &steps {
        perform(step, root.path());
    }
    let installed = inside(root.path(), &format!("/etc/systemd/system/{UNIT_NAME}"));
    let unit = std::fs::read_to_string(&installed).expect("the install steps install the unit");
    let settings = unit_settings(&unit);
    Installed { root, unit, settings }
}

/// The configuration file `ExecStart=` runs with.
fn config_path(settings: &[(String, String)]) -> String {
    let exec = values(settings, "ExecStart");
    let words: Vec<&str> = exec.first().expect("ExecStart").split_whitespace().collect();
    let at = words.iter().position(|w| *w == "--config").expect("ExecStart ... --config FILE");
    words[at + 1].to_string()
}

#[test]
fn every_path_the_unit_names_exists_after_the_documented_install_steps() {
    let Installed { root, settings, .. } = install();
    let root = root.path();
    for setting in ["ExecStartPre", "ExecStart", "ExecReload"] {
        for exec in values(&settings, setting) {
            let program = exec.split_whitespace().next().unwrap().trim_start_matches(['-', '@', '+', '!', ':']);
            // The operating system's own programs (/bin/kill) are not installed by the steps.
            let path = if program.starts_with("/usr/local/") { inside(root, program) } else { PathBuf::from(program) };
            assert!(path.is_file(), "{setting}={exec}: {program} does not exist after the install steps");
            for argument in exec.split_whitespace().skip(1).filter(|a| a.starts_with("/etc/")) {
                assert!(inside(root, argument).is_file(), "{setting}: {argument} does not exist");
            }
        }
    }
    for file in values(&settings, "EnvironmentFile") {
        let optional = file.starts_with('-');
        let exists = inside(root, file.trim_start_matches('-')).is_file();
        assert!(optional || exists, "EnvironmentFile={file}: the install steps do not create it");
    }
    let loads = values(&settings, "LoadCredential");
    assert!(!loads.is_empty(), "the signing key reaches the dynamic user through LoadCredential=");
    for load in loads {
        assert!(!credentials(root, load).is_empty(), "LoadCredential={load} hands nothing over");
    }
}

#[test]
fn the_installed_configuration_reads_only_credentials_and_writes_only_where_the_unit_allows() {
    let Installed { root, settings, .. } = install();
    let root = root.path();
    let config_file = config_path(&settings);
    let text = std::fs::read_to_string(inside(root, &config_file)).expect("the installed configuration");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    assert!(values(&settings, "DynamicUser") == ["yes"] && values(&settings, "ProtectSystem") == ["strict"]);

    // systemd copies each credential to /run/credentials/UNIT/NAME: do the same under the root.
    let credentials_dir = format!("/run/credentials/{UNIT_NAME}/");
    std::fs::create_dir_all(inside(root, &credentials_dir)).unwrap();
    let mut handed_over = Vec::new();
    for load in values(&settings, "LoadCredential") {
        for (name, source) in credentials(root, load) {
            std::fs::copy(&source, inside(root, &format!("{credentials_dir}{name}"))).unwrap();
            handed_over.push(name);
        }
    }
    let mut files = Vec::new();
    secret_files(&yaml, &mut files);
    assert!(!files.is_empty(), "{config_file}: the installed configuration names its signing key");
    for file in &files {
        let name = file.strip_prefix(&credentials_dir).unwrap_or_else(|| {
            panic!("{config_file} reads {file}, which the dynamic user cannot read: use a credential")
        });
        assert!(handed_over.iter().any(|n| n == name), "{config_file} reads {file}; credentials are {handed_over:?}");
    }

    // Everything the gateway writes is in a directory the unit makes writable.
    let writable = writable_directories(&settings);
    let mut written = vec![
        yaml["server"]["upgrade_sock"].as_str().expect("server.upgrade_sock").to_string(),
        yaml["server"]["pid_file"].as_str().expect("server.pid_file").to_string(),
    ];
    let audit = yaml["logging"]["audit"].as_str().unwrap_or("stderr");
    if let Some(path) = audit.strip_prefix("file ") {
        written.push(path.trim().to_string());
    }
    for path in &written {
        assert!(
            writable.iter().any(|dir| Path::new(path).starts_with(dir)),
            "{config_file}: {path} is not writable under ProtectSystem=strict ({writable:?})"
        );
    }

    // check-config accepts it as the service would see it: credentials and written paths under the root.
    let moved_credentials = format!("{}/", inside(root, credentials_dir.trim_end_matches('/')).display());
    let mut mapped = text.replace(&credentials_dir, &moved_credentials);
    for path in &written {
        let moved = inside(root, path);
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        mapped = mapped.replace(path.as_str(), &moved.display().to_string());
    }
    let mapped_file = root.join("gateway-as-the-service-sees-it.yaml");
    std::fs::write(&mapped_file, mapped).unwrap();
    let output = Command::new(BIN).arg("check-config").arg(&mapped_file).output().unwrap();
    assert!(output.status.success(), "check-config: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_documented_audit_log_file_is_writable_under_the_unit() {
    let settings = unit_settings(&std::fs::read_to_string(repository().join(UNIT)).unwrap());
    let operations = std::fs::read_to_string(repository().join("docs/operations.md")).unwrap();
    let documented = operations
        .split("`file /")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(|path| format!("/{path}"))
        .expect("docs/operations.md documents an audit log file");
    let writable = writable_directories(&settings);
    assert!(
        writable.iter().any(|dir| Path::new(&documented).starts_with(dir)),
        "logging.audit: file {documented} (docs/operations.md) cannot be opened under {UNIT}: writable are {writable:?}"
    );
}

#[test]
fn systemd_analyze_verifies_the_installed_unit() {
    let available = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available {
        assert_ne!(
            std::env::var("IBGW_REQUIRE_SYSTEMD_ANALYZE").as_deref(),
            Ok("1"),
            "IBGW_REQUIRE_SYSTEMD_ANALYZE=1 but systemd-analyze is not on PATH (Debian: apt-get install systemd)"
        );
        eprintln!("systemd-analyze is not on PATH: the unit is not verified (IBGW_REQUIRE_SYSTEMD_ANALYZE=1 fails)");
        return;
    }
    let Installed { root, unit, .. } = install();
    let root = root.path();
    // `--root` resolves everything in the root: the units the service depends on and the operating system's
    // programs it runs (/bin/kill) come from this machine, the rest from the install steps.
    let system_units = Path::new("/usr/lib/systemd/system");
    std::fs::create_dir_all(inside(root, "/usr/lib/systemd")).unwrap();
    let copied = Command::new("cp").arg("-a").arg(system_units).arg(inside(root, "/usr/lib/systemd/")).status();
    assert!(copied.is_ok_and(|s| s.success()), "cannot copy {}", system_units.display());
    for exec in values(&unit_settings(&unit), "ExecReload") {
        let program = exec.split_whitespace().next().unwrap();
        std::fs::create_dir_all(inside(root, program).parent().unwrap()).unwrap();
        std::fs::copy(program, inside(root, program)).unwrap();
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg(format!("/etc/systemd/system/{UNIT_NAME}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
