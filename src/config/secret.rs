//! Secrets in the configuration: inline, from a file, or from an environment variable.
//!
//! A resolved [`Secret`] never prints its value (`Debug` shows `Secret(***)`), and the memory is zeroed on drop.

use serde::Deserialize;
use zeroize::Zeroizing;

/// How a secret is given in YAML: `key: "inline"`, `key: {file: /run/secrets/x}` or `key: {env: VAR}`.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
enum Origin {
    Inline(String),
    File { file: String },
    Env { env: String },
}

/// A secret of the configuration: where it comes from, and its value, read once — the first time anything asks
/// (loading the file does, to check it) — and kept: everything downstream gets that value, nothing reads the
/// file or the environment again. A reload loads a new configuration, which reads it anew.
#[derive(Clone, Deserialize)]
#[serde(from = "Origin")]
pub struct SecretSource {
    origin: Origin,
    read: std::sync::OnceLock<Result<Secret, SecretError>>,
}

impl From<Origin> for SecretSource {
    fn from(origin: Origin) -> Self {
        SecretSource { origin, read: std::sync::OnceLock::new() }
    }
}

impl SecretSource {
    /// A secret given in the file itself.
    pub fn inline(value: impl Into<String>) -> Self {
        Origin::Inline(value.into()).into()
    }

    /// A secret read from a file (a trailing newline dropped).
    pub fn file(path: impl Into<String>) -> Self {
        Origin::File { file: path.into() }.into()
    }

    /// A secret read from an environment variable.
    pub fn env(name: impl Into<String>) -> Self {
        Origin::Env { env: name.into() }.into()
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Origin::Inline(_) => f.write_str("Inline(***)"),
            Origin::File { file } => write!(f, "File({file})"),
            Origin::Env { env } => write!(f, "Env({env})"),
        }
    }
}

/// Serialized (e.g. for an effective-config dump) as where it comes from, never its value.
impl serde::Serialize for SecretSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.origin {
            Origin::Inline(_) => serializer.serialize_str("***"),
            Origin::File { file } => serializer.serialize_str(&format!("file:{file}")),
            Origin::Env { env } => serializer.serialize_str(&format!("env:{env}")),
        }
    }
}

/// Why a secret could not be read. `Display` says where it looked, never what it found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {file}: {reason}")]
    FileUnreadable { file: String, reason: String },
    #[error("environment variable {env} is not set")]
    EnvUnset { env: String },
    #[error("secret is empty")]
    Empty,
}

impl SecretSource {
    /// The secret's value: read the first time, the same value (or the same error) every time after.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        self.read.get_or_init(|| self.read_once()).clone()
    }

    fn read_once(&self) -> Result<Secret, SecretError> {
        let value = match &self.origin {
            Origin::Inline(value) => value.clone(),
            Origin::File { file } => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| SecretError::FileUnreadable { file: file.clone(), reason: e.to_string() })?;
                // A trailing newline from `echo x > file` is not part of the secret.
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            Origin::Env { env } => std::env::var(env).map_err(|_| SecretError::EnvUnset { env: env.clone() })?,
        };
        if value.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Secret(Zeroizing::new(value)))
    }
}

/// A resolved secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Is `presented` this secret? Compared as SHA-256 digests in constant time: the time taken does not
    /// depend on where the two differ, nor on their lengths (a plain comparison returns at once on a
    /// length mismatch, telling an attacker the secret's length).
    pub fn matches(&self, presented: &str) -> bool {
        digests_match(&digest(presented), &digest(self.expose()))
    }
}

/// The SHA-256 digest a secret is compared by (see [`Secret::matches`]); keep it, not the secret, where only
/// comparisons are needed.
pub fn digest(value: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).into()
}

/// Two digests of [`digest`], compared in constant time.
pub fn digests_match(presented: &[u8; 32], expected: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    presented.ct_eq(expected).into()
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_value() {
        let secret = SecretSource::inline("hunter2").resolve().unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{:?}", SecretSource::inline("hunter2")).contains("hunter2"));
    }

    #[test]
    fn a_secret_matches_itself_only_whatever_the_presented_length() {
        let secret = Secret::new("s3cret-value");
        assert!(secret.matches("s3cret-value"));
        for wrong in ["", "s", "s3cret-valu", "s3cret-value ", "S3cret-value", &"s3cret-value".repeat(100)] {
            assert!(!secret.matches(wrong), "{wrong:?}");
        }
        assert!(Secret::new("").matches(""));
        assert_eq!(digest("a").len(), digest(&"a".repeat(10_000)).len(), "fixed-size digests are compared");
    }

    #[test]
    fn a_file_secret_is_read_once_and_the_same_value_given_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "first\n").unwrap();
        let source = SecretSource::file(path.display().to_string());
        assert_eq!(source.resolve().unwrap().expose(), "first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(source.resolve().unwrap().expose(), "first", "not read again");
        assert_eq!(source.clone().resolve().unwrap().expose(), "first", "a clone of the configuration too");
        assert_eq!(SecretSource::file(path.display().to_string()).resolve().unwrap().expose(), "second");
    }

    #[test]
    fn file_secret_drops_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\n").unwrap();
        let source = SecretSource::file(path.display().to_string());
        assert_eq!(source.resolve().unwrap().expose(), "abc");
    }

    #[test]
    fn missing_env_secret_names_the_variable() {
        let err = SecretSource::env("IBGW_TEST_SURELY_UNSET").resolve().unwrap_err();
        assert_eq!(err, SecretError::EnvUnset { env: "IBGW_TEST_SURELY_UNSET".into() });
        assert!(err.to_string().contains("IBGW_TEST_SURELY_UNSET"));
    }
}
