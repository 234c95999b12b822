//! Sets `IBGW_GIT_SHA` for `ibgw_build_info{git_sha}`: the `IBGW_GIT_SHA` of the build environment when set (a
//! build from a source archive can pass it), else `git rev-parse --short=12 HEAD`, else `unknown` (no git, or
//! no `.git`: the Docker build context leaves it out).

use std::path::{Path, PathBuf};
use std::process::Command;

/// One line of `git <args>` run in the package directory, if git is there and answers.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// A path git printed, relative to the package directory when it is not absolute.
fn git_path(args: &[&str]) -> Option<PathBuf> {
    let path = PathBuf::from(git(args)?);
    Some(if path.is_absolute() { path } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(path) })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=IBGW_GIT_SHA");
    let from_env = std::env::var("IBGW_GIT_SHA").ok().filter(|sha| !sha.trim().is_empty());
    let sha = match from_env {
        Some(sha) => sha.trim().to_string(),
        None if Path::new(env!("CARGO_MANIFEST_DIR")).join(".git").exists() => {
            // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it names (a commit) and packed-refs
            // (a branch whose ref was packed). In a worktree `.git` is a file and these live elsewhere.
            if let Some(git_dir) = git_path(&["rev-parse", "--git-dir"]) {
                println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
            }
            if let Some(common_dir) = git_path(&["rev-parse", "--git-common-dir"]) {
                if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    let file = common_dir.join(reference);
                    if file.exists() {
                        println!("cargo:rerun-if-changed={}", file.display());
                    }
                }
                let packed = common_dir.join("packed-refs");
                if packed.exists() {
                    println!("cargo:rerun-if-changed={}", packed.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
        None => "unknown".to_string(),
    };
    // A label value: keep it to what a commit id or a tag can hold.
    let sha: String =
        sha.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(40).collect();
    println!("cargo:rustc-env=IBGW_GIT_SHA={}", if sha.is_empty() { "unknown" } else { &sha });
}
