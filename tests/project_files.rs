//! The project's own files tell the truth: `rust-version` in Cargo.toml is the oldest Rust the locked
//! dependencies build with, `rust-toolchain.toml` pins a toolchain at least that new with the lint tools, and
//! the build scripts refuse an older Rust naming the version needed; the licence, changelog and security policy
//! exist and agree with Cargo.toml; `make release` builds what the README tells an operator to verify.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The quoted value of `key = "..."` on a line of its own in a TOML text (enough for our flat files).
fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
        Some(rest.strip_prefix('"')?.split('"').next()?.to_string())
    })
}

fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text.split('.').map(|p| p.parse().unwrap_or_else(|_| panic!("version {text}"))).collect();
    parts.resize(3, 0);
    parts
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"))
}

/// `(name, version)` of every crates.io package in Cargo.lock.
fn locked_registry_packages() -> Vec<(String, String)> {
    let lock = read("Cargo.lock");
    lock.split("[[package]]")
        .filter(|block| block.contains("source = \"registry+"))
        .filter_map(|block| Some((toml_string(block, "name")?, toml_string(block, "version")?)))
        .collect()
}

#[test]
fn rust_version_is_the_newest_rust_version_among_the_locked_crates() {
    let declared = toml_string(&read("Cargo.toml"), "rust-version").expect("Cargo.toml has rust-version");
    let sources: Vec<PathBuf> = std::fs::read_dir(cargo_home().join("registry/src"))
        .expect("the registry sources cargo unpacked for this build")
        .map(|entry| entry.unwrap().path())
        .collect();
    let packages = locked_registry_packages();
    let mut newest: Option<(Vec<u64>, String)> = None;
    let mut found = 0;
    // Crates for other platforms (Windows, wasm) are locked but never unpacked here: they are skipped.
    for (name, version_text) in &packages {
        let Some(manifest) =
            sources.iter().map(|dir| dir.join(format!("{name}-{version_text}/Cargo.toml"))).find(|p| p.is_file())
        else {
            continue;
        };
        found += 1;
        let text = std::fs::read_to_string(&manifest).unwrap();
        let Some(needed) = toml_string(&text, "rust-version") else { continue };
        if newest.as_ref().is_none_or(|(v, _)| version(&needed) > *v) {
            newest = Some((version(&needed), format!("{name} {version_text} needs {needed}")));
        }
    }
    assert!(
        found * 2 > packages.len(),
        "only {found} of {} locked crates found under {}",
        packages.len(),
        cargo_home().display()
    );
    let (newest, which) = newest.expect("some locked crate declares a rust-version");
    assert_eq!(version(&declared), newest, "Cargo.toml says rust-version {declared}, but {which}");
}

#[test]
fn rust_toolchain_pins_at_least_rust_version_with_the_lint_tools() {
    let toolchain = read("rust-toolchain.toml");
    let channel = toml_string(&toolchain, "channel").expect("rust-toolchain.toml has channel");
    let declared = toml_string(&read("Cargo.toml"), "rust-version").unwrap();
    assert!(version(&channel) >= version(&declared), "toolchain {channel} is older than rust-version {declared}");
    let components = toolchain.lines().find(|l| l.trim().starts_with("components")).expect("components");
    for component in ["\"rustfmt\"", "\"clippy\""] {
        assert!(components.contains(component), "rust-toolchain.toml: {component} missing from {components}");
    }
}

/// Runs `ensure_rust_version` from scripts/lib.sh with fake `cargo` and `rustc` that report `reported`.
fn ensure_rust_version_with(reported: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for (tool, line) in
        [("cargo", format!("cargo {reported}")), ("rustc", format!("rustc {reported} (0000000 2025-01-01)"))]
    {
        let path = dir.path().join(tool);
        std::fs::write(&path, format!("#!/bin/sh\necho '{line}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .args(["-c", "set -euo pipefail; . scripts/lib.sh; ensure_rust_version"])
        .current_dir(root())
        .env("PATH", path)
        .output()
        .unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn build_scripts_refuse_an_older_rust_naming_the_version_needed() {
    let declared = toml_string(&read("Cargo.toml"), "rust-version").unwrap();
    let (ok, stderr) = ensure_rust_version_with("1.85.0");
    assert!(!ok, "Rust 1.85.0 was accepted");
    assert!(stderr.contains(&format!("Rust {declared} or later is needed")), "{stderr}");
    assert!(stderr.contains("rustup toolchain install"), "{stderr}");
    let (ok, stderr) = ensure_rust_version_with(&format!("{declared}.0"));
    assert!(ok, "Rust {declared}.0 was refused: {stderr}");
}

#[test]
fn license_is_the_apache_2_0_text_cargo_toml_declares() {
    assert_eq!(toml_string(&read("Cargo.toml"), "license").as_deref(), Some("Apache-2.0"));
    let license = read("LICENSE");
    assert!(license.contains("Apache License\n                           Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    assert_eq!(license.lines().count(), 202, "the complete Apache 2.0 text");
}

#[test]
fn changelog_has_an_unreleased_section_and_the_current_version() {
    let changelog = read("CHANGELOG.md");
    let version = toml_string(&read("Cargo.toml"), "version").unwrap();
    assert!(changelog.contains("keepachangelog.com"), "Keep a Changelog format");
    assert!(changelog.contains("## [Unreleased]"), "an Unreleased section");
    assert!(changelog.contains(&format!("## [{version}]")), "a section for {version}");
    let unreleased = changelog.find("## [Unreleased]").unwrap();
    assert!(unreleased < changelog.find(&format!("## [{version}]")).unwrap(), "newest first");
}

#[test]
fn security_policy_says_how_to_report_and_what_is_in_scope() {
    let policy = read("SECURITY.md");
    for section in ["## Reporting a vulnerability", "## Supported versions", "## Scope"] {
        assert!(policy.contains(section), "SECURITY.md: {section}");
    }
    assert!(policy.contains("mock platform"), "the mock platform is named out of scope");
}

#[test]
fn readme_lists_every_top_level_project_file() {
    let readme = read("README.md");
    for file in ["LICENSE", "CHANGELOG.md", "SECURITY.md", "rust-toolchain.toml", "scripts/demo.sh"] {
        assert!(Path::new(&root().join(file)).exists(), "{file} is missing");
        assert!(readme.contains(&format!("`{file}`")), "README's \"What is here\" does not list {file}");
    }
}

#[test]
fn make_release_builds_the_stripped_production_binary_its_sbom_and_sums_after_cargo_deny() {
    assert!(read("Makefile").contains("release:\n\t./scripts/release.sh"), "make release runs scripts/release.sh");
    let script = read("scripts/release.sh");
    for step in [
        "cargo deny --all-features check licenses bans sources",
        "IBGW_GIT_SHA=\"$sha\" cargo build --profile dist --locked --no-default-features",
        "cargo cyclonedx --format json --no-default-features",
        "sha256sum",
        "ensure_cargo_tool cargo-deny",
        "ensure_cargo_tool cargo-cyclonedx",
    ] {
        assert!(script.contains(step), "scripts/release.sh does not run `{step}`");
    }
    let deny = read("deny.toml");
    for section in ["[licenses]", "[bans]", "[sources]"] {
        assert!(deny.contains(section), "deny.toml: {section}");
    }
    // The licence this crate ships under is one the policy allows.
    let license = toml_string(&read("Cargo.toml"), "license").unwrap();
    assert!(deny.contains(&format!("\"{license}\"")), "deny.toml does not allow {license}");
    assert!(read(".gitignore").lines().any(|l| l == "/dist/"), "dist/ is not committed");
    let readme = read("README.md");
    for needed in ["sha256sum -c SHA256SUMS", ".cdx.json", "make release", "cargo deny check advisories"] {
        assert!(readme.contains(needed), "README.md does not say how to verify a release: {needed}");
    }
}
