//! New signing keys: a key pair generated for the `keygen` command, written as `DIR/KID.key` (PKCS#8 PEM,
//! mode 0600) and `DIR/KID.pub` (SPKI PEM), and the YAML to configure them. Never prints or logs the private
//! key; never overwrites a file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::material::PrivateKey;
use super::{default_kid, KeyError};
use crate::config::SigningAlgorithm;

/// Why `keygen` could not write its files, or the kid it was given cannot name one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeygenError {
    #[error("--kid `{0}`: must be 1 to 64 of A-Z a-z 0-9 . _ -, not starting with .")]
    Kid(String),
    #[error("cannot create directory {path}: {reason}")]
    CreateDirectory { path: String, reason: String },
    #[error("cannot resolve {path}: {reason}")]
    Resolve { path: String, reason: String },
    #[error("refusing to overwrite {0}")]
    Exists(String),
    #[error("{0} is not a UTF-8 path")]
    NotUtf8(String),
    #[error("cannot create {path}: {reason}")]
    Create { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Encode(super::KeyProblem),
}

/// Generates a key pair as (PKCS#8 private PEM, SPKI public PEM). RS256 keys have 2048 bits.
pub fn generate_pem(algorithm: SigningAlgorithm) -> Result<(String, String), KeyError> {
    let pems = || -> Result<(String, String), super::KeyProblem> {
        let private = PrivateKey::generate(algorithm)?;
        Ok((private.to_pkcs8_pem()?.to_string(), private.public().to_spki_pem()?))
    };
    pems().map_err(KeyError::Crypto)
}

/// The `keygen` command: writes `DIR/KID.key` (PKCS#8 PEM, mode 0600) and `DIR/KID.pub` (SPKI PEM), creating
/// DIR if needed, and returns what to print: the kid, both paths and the YAML to put under `signing:`. Never
/// the private key. Refuses to overwrite existing files. Without `kid`, the kid is the key's RFC 7638
/// thumbprint truncated to 16 characters.
pub fn keygen(algorithm: SigningAlgorithm, out_dir: &Path, kid: Option<&str>) -> Result<String, KeyError> {
    if let Some(kid) = kid {
        check_file_kid(kid).map_err(KeyError::Files)?;
    }
    let private = PrivateKey::generate(algorithm).map_err(KeyError::Crypto)?;
    write_key_pair(algorithm, &private, out_dir, kid).map_err(KeyError::Files)
}

fn write_key_pair(
    algorithm: SigningAlgorithm,
    private: &PrivateKey,
    out_dir: &Path,
    kid: Option<&str>,
) -> Result<String, KeygenError> {
    let public = private.public();
    let kid = kid.map_or_else(|| default_kid(&public), str::to_string);

    let shown = || out_dir.display().to_string();
    std::fs::create_dir_all(out_dir)
        .map_err(|e| KeygenError::CreateDirectory { path: shown(), reason: e.to_string() })?;
    let dir =
        std::fs::canonicalize(out_dir).map_err(|e| KeygenError::Resolve { path: shown(), reason: e.to_string() })?;
    let key_path = dir.join(format!("{kid}.key"));
    let pub_path = dir.join(format!("{kid}.pub"));
    for path in [&key_path, &pub_path] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(KeygenError::Exists(path.display().to_string()));
        }
    }
    let key_file = utf8_path(&key_path)?;
    let pub_file = utf8_path(&pub_path)?;

    write_new_file(&key_path, private.to_pkcs8_pem().map_err(KeygenError::Encode)?.as_bytes(), 0o600)?;
    let public_pem = public.to_spki_pem().map_err(KeygenError::Encode);
    if let Err(e) = public_pem.and_then(|pem| write_new_file(&pub_path, pem.as_bytes(), 0o644)) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }

    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    Ok(format!(
        "Generated an {algorithm:?} signing key with kid {kid_q}.\n\
         Private key: {key_file} (mode 0600; keep it secret)\n\
         Public key:  {pub_file}\n\
         \n\
         Configuration (merge into an existing `signing:` section):\n\
         \n\
         signing:\n  algorithm: {algorithm:?}\n  current:\n    kid: {kid_q}\n    private_key: {{file: {key_q}}}\n\
         \n\
         When a newer key replaces this one, keep its tokens valid until they expire by listing it under\n\
         `signing.previous`:\n\
         \n  previous:\n    - kid: {kid_q}\n      algorithm: {algorithm:?}\n      public_key: {{file: {pub_q}}}\n",
        kid_q = q(&kid),
        key_q = q(key_file),
        pub_q = q(pub_file),
    ))
}

fn utf8_path(path: &Path) -> Result<&str, KeygenError> {
    path.to_str().ok_or_else(|| KeygenError::NotUtf8(path.display().to_string()))
}

/// Creates `path` with `mode`, failing if anything (even a dangling symlink) is already there.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeygenError> {
    let shown = path.display().to_string();
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeygenError::Exists(shown.clone()),
            _ => KeygenError::Create { path: shown.clone(), reason: e.to_string() },
        })?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| {
        let _ = std::fs::remove_file(path);
        KeygenError::Write { path: shown, reason: e.to_string() }
    })
}

/// A kid that becomes a file name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`. Every default kid
/// (base64url) qualifies.
pub(super) fn check_file_kid(kid: &str) -> Result<(), KeygenError> {
    let ok = (1..=64).contains(&kid.len())
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !kid.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(KeygenError::Kid(kid.to_string()))
    }
}
