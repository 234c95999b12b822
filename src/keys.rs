//! Access-token signing keys.
//!
//! [`SigningKeys`] holds the current key, which signs new access tokens (JWTs with `typ: at+jwt`, RFC 9068),
//! and the public keys that verify them by `kid`: the current key's own public half and the public keys of
//! earlier keys (`signing.previous`), still accepted until their tokens have expired. It also renders the
//! RFC 7517 JWK Set of those public keys for the JWKS endpoint. [`keygen`] writes a new key pair for the
//! `keygen` command.
//!
//! Keys are PKCS#8 PEM (private) and SPKI PEM (public), for EdDSA (Ed25519), ES256 (P-256) or RS256 (RSA
//! of at least 2048 bits). Each key is pinned to one algorithm: a token is verified only with the algorithm
//! of the key its `kid` names, never with the one its header claims.
//!
//! This module never logs, prints or formats key material. Errors name the configuration key and what kind
//! of key was found, never its bytes; `Debug` shows kids and algorithms only; the JWK Set carries public
//! members only; [`keygen`] writes the private key to a mode 0600 file and does not echo it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Once;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::{SigningAlgorithm, SigningConfig};

/// RSA keys shorter than this are refused (RFC 7518 section 3.3 requires 2048 bits for RS256).
const MIN_RSA_BITS: usize = 2048;
/// Length of a default kid: the RFC 7638 thumbprint (43 characters) truncated to 96 bits.
const DEFAULT_KID_LEN: usize = 16;
/// `typ` of an OAuth 2.0 JWT access token (RFC 9068 section 2.1).
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Why a key could not be loaded, made or used. Between modules this is the only error type of `keys`;
/// `Display` is one line and never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A configured key is unusable; `setting` is the configuration key (e.g. `signing.current.private_key`).
    #[error("{setting}: {problem}")]
    Setting { setting: String, problem: String },
    /// The crypto backend failed: generating, signing, or the start-up self-test.
    #[error("{0}")]
    Crypto(String),
    /// `keygen` could not write its files (or was given an unusable `--kid`).
    #[error("{0}")]
    Files(String),
}

fn setting(at: impl Into<String>) -> impl FnOnce(String) -> KeyError {
    let setting = at.into();
    move |problem| KeyError::Setting { setting, problem }
}

/// The current signing key and every key that still verifies tokens, by `kid`.
pub struct SigningKeys {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
    header: Header,
    /// The current key's public half first, then `signing.previous` in configuration order.
    verifiers: Vec<VerificationKey>,
}

/// One public key that verifies tokens carrying its `kid`, pinned to one algorithm.
struct VerificationKey {
    kid: String,
    algorithm: Algorithm,
    key: DecodingKey,
    /// The public JWK, with `kid`, `alg` and `use`.
    jwk: Value,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verifiers: Vec<String> = self.verifiers.iter().map(|v| format!("{} ({:?})", v.kid, v.algorithm)).collect();
        f.debug_struct("SigningKeys")
            .field("algorithm", &self.algorithm)
            .field("current_kid", &self.kid)
            .field("verifiers", &verifiers)
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// From config. With no `current` key: generates an ephemeral key of the configured algorithm and returns
    /// `ephemeral = true` (the caller warns loudly: tokens die with the process and other replicas reject
    /// them). Errors are one line and name the configuration key, e.g.
    /// `signing.current.private_key: not a PKCS#8 PEM Ed25519 key (...)`.
    pub fn from_config(config: &SigningConfig) -> Result<(SigningKeys, bool), KeyError> {
        let (mut keys, ephemeral) = match &config.current {
            Some(current) => {
                check_kid(&current.kid).map_err(setting("signing.current.kid"))?;
                let at = "signing.current.private_key";
                let pem = current.private_key.resolve().map_err(|e| setting(at)(e.to_string()))?;
                let what = format!("signing.algorithm is {:?}", config.algorithm);
                let private = PrivateKey::from_pem(config.algorithm, pem.expose(), &what).map_err(setting(at))?;
                let keys = SigningKeys::new(config.algorithm, current.kid.clone(), &private).map_err(setting(at))?;
                (keys, false)
            }
            None => (SigningKeys::ephemeral(config.algorithm)?, true),
        };
        for (i, previous) in config.previous.iter().enumerate() {
            let at = format!("signing.previous[{i}]");
            check_kid(&previous.kid).map_err(setting(format!("{at}.kid")))?;
            if keys.verifiers.iter().any(|v| v.kid == previous.kid) {
                return Err(setting(format!("{at}.kid"))(format!("kid `{}` is used twice", previous.kid)));
            }
            let algorithm = previous.algorithm.unwrap_or(config.algorithm);
            let what = match previous.algorithm {
                Some(a) => format!("{at}.algorithm is {a:?}"),
                None => format!("{at}.algorithm defaults to signing.algorithm, {algorithm:?}"),
            };
            let at = format!("{at}.public_key");
            let pem = previous.public_key.resolve().map_err(|e| setting(&at)(e.to_string()))?;
            let public = PublicKey::from_pem(algorithm, pem.expose(), &what).map_err(setting(&at))?;
            let verifier = VerificationKey::new(previous.kid.clone(), jwt_algorithm(algorithm), &public);
            keys.verifiers.push(verifier.map_err(setting(&at))?);
        }
        Ok((keys, ephemeral))
    }

    /// A freshly generated key that lives as long as the process (development only). Its kid is
    /// `ephemeral-` followed by the key's truncated thumbprint.
    pub fn ephemeral(algorithm: SigningAlgorithm) -> Result<SigningKeys, KeyError> {
        let private = PrivateKey::generate(algorithm).map_err(KeyError::Crypto)?;
        let kid = format!("ephemeral-{}", default_kid(&private.public()));
        SigningKeys::new(algorithm, kid, &private).map_err(KeyError::Crypto)
    }

    fn new(algorithm: SigningAlgorithm, kid: String, private: &PrivateKey) -> Result<SigningKeys, String> {
        install_crypto_provider();
        let public = private.public();
        let mut header = Header::new(jwt_algorithm(algorithm));
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(kid.clone());
        let keys = SigningKeys {
            algorithm: jwt_algorithm(algorithm),
            encoding: private.encoding_key()?,
            header,
            verifiers: vec![VerificationKey::new(kid.clone(), jwt_algorithm(algorithm), &public)?],
            kid,
        };
        keys.self_test()?;
        Ok(keys)
    }

    /// Signs a probe and verifies it with the current key's public half, so that a broken key or crypto
    /// backend is a startup error rather than a failure (or panic) on the first token request.
    fn self_test(&self) -> Result<(), String> {
        let probe = json!({ "probe": true });
        let token = self.sign(&probe).map_err(|e| format!("self-test failed: {e}"))?;
        let (key, algorithm) = self.verifier(&self.kid).ok_or("self-test failed: no verifier for the current kid")?;
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, key, &validation)
            .map(|_| ())
            .map_err(|e| format!("self-test failed: the key's own signature does not verify: {e}"))
    }

    /// The algorithm of the current key, which signs new tokens.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn current_kid(&self) -> &str {
        &self.kid
    }

    /// Every kid that verifies tokens: the current one first, then the previous ones.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.iter().map(|v| v.kid.as_str())
    }

    /// Signs claims with the current key; the JWT header carries `alg`, `kid` and `typ: at+jwt` (RFC 9068).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|e| KeyError::Crypto(format!("cannot sign a token: {e}")))
    }

    /// The decoding key and pinned algorithm for a `kid` (current or previous); None for unknown kids.
    /// Verify with `Validation::new(algorithm)`, never with the algorithm the token's header names.
    pub fn verifier(&self, kid: &str) -> Option<(&DecodingKey, Algorithm)> {
        self.verifiers.iter().find(|v| v.kid == kid).map(|v| (&v.key, v.algorithm))
    }

    /// RFC 7517 JWK Set of the current and previous public keys: each with `kty`, `crv`/`x`/`y` or `n`/`e`,
    /// `kid`, `alg` and `use: "sig"`. Never private members.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.verifiers.iter().map(|v| v.jwk.clone()).collect::<Vec<_>>() })
    }
}

impl VerificationKey {
    fn new(kid: String, algorithm: Algorithm, public: &PublicKey) -> Result<VerificationKey, String> {
        let mut jwk = public.jwk_members();
        let members = jwk.as_object_mut().ok_or("internal error: a JWK is not an object")?;
        members.insert("kid".into(), Value::String(kid.clone()));
        members.insert("alg".into(), Value::String(format!("{algorithm:?}")));
        members.insert("use".into(), Value::String("sig".into()));
        Ok(VerificationKey { kid, algorithm, key: public.decoding_key(), jwk })
    }
}

/// Generates a key pair as (PKCS#8 private PEM, SPKI public PEM). RS256 keys have 2048 bits.
pub fn generate_pem(algorithm: SigningAlgorithm) -> Result<(String, String), KeyError> {
    let pems = || -> Result<(String, String), String> {
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
) -> Result<String, String> {
    let public = private.public();
    let kid = kid.map_or_else(|| default_kid(&public), str::to_string);

    std::fs::create_dir_all(out_dir).map_err(|e| format!("cannot create directory {}: {e}", out_dir.display()))?;
    let dir = std::fs::canonicalize(out_dir).map_err(|e| format!("cannot resolve {}: {e}", out_dir.display()))?;
    let key_path = dir.join(format!("{kid}.key"));
    let pub_path = dir.join(format!("{kid}.pub"));
    for path in [&key_path, &pub_path] {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(format!("refusing to overwrite {}", path.display()));
        }
    }
    let key_file = utf8_path(&key_path)?;
    let pub_file = utf8_path(&pub_path)?;

    write_new_file(&key_path, private.to_pkcs8_pem()?.as_bytes(), 0o600)?;
    if let Err(e) = public.to_spki_pem().and_then(|pem| write_new_file(&pub_path, pem.as_bytes(), 0o644)) {
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

fn utf8_path(path: &Path) -> Result<&str, String> {
    path.to_str().ok_or_else(|| format!("{} is not a UTF-8 path", path.display()))
}

/// Creates `path` with `mode`, failing if anything (even a dangling symlink) is already there.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!("refusing to overwrite {}", path.display()),
            _ => format!("cannot create {}: {e}", path.display()),
        })?;
    file.write_all(contents).and_then(|()| file.sync_all()).map_err(|e| {
        let _ = std::fs::remove_file(path);
        format!("cannot write {}: {e}", path.display())
    })
}

fn check_kid(kid: &str) -> Result<(), String> {
    if kid.is_empty() {
        return Err("must not be empty".into());
    }
    if kid.len() > 128 || kid.chars().any(char::is_control) {
        return Err("must be at most 128 characters, none of them control characters".into());
    }
    Ok(())
}

/// A kid that becomes a file name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`. Every default kid
/// (base64url) qualifies.
fn check_file_kid(kid: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&kid.len())
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !kid.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!("--kid `{kid}`: must be 1 to 64 of A-Z a-z 0-9 . _ -, not starting with ."))
    }
}

fn jwt_algorithm(algorithm: SigningAlgorithm) -> Algorithm {
    match algorithm {
        SigningAlgorithm::EdDSA => Algorithm::EdDSA,
        SigningAlgorithm::ES256 => Algorithm::ES256,
        SigningAlgorithm::RS256 => Algorithm::RS256,
    }
}

/// jsonwebtoken 11 signs through a process-wide `CryptoProvider`. With exactly one backend feature it picks
/// that one by itself; installing ours explicitly keeps signing working (instead of panicking) should
/// another crate ever enable the `aws_lc_rs` feature too. If a provider is already installed, it stays.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

/// The RFC 7638 JWK thumbprint (SHA-256, base64url) truncated to [`DEFAULT_KID_LEN`] characters.
fn default_kid(public: &PublicKey) -> String {
    let mut thumbprint = public.thumbprint();
    thumbprint.truncate(DEFAULT_KID_LEN);
    thumbprint
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a key is for, in error messages.
fn key_name(algorithm: SigningAlgorithm) -> &'static str {
    match algorithm {
        SigningAlgorithm::EdDSA => "Ed25519",
        SigningAlgorithm::ES256 => "P-256",
        SigningAlgorithm::RS256 => "RSA",
    }
}

/// A private signing key, parsed and checked.
enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A public verification key, parsed and checked.
enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::PublicKey),
    Rsa(rsa::RsaPublicKey),
}

impl PrivateKey {
    fn generate(algorithm: SigningAlgorithm) -> Result<PrivateKey, String> {
        Ok(match algorithm {
            SigningAlgorithm::EdDSA => PrivateKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            SigningAlgorithm::ES256 => PrivateKey::P256(p256::SecretKey::random(&mut OsRng)),
            SigningAlgorithm::RS256 => PrivateKey::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut OsRng, MIN_RSA_BITS)
                    .map_err(|e| format!("cannot generate an RSA key: {e}"))?,
            )),
        })
    }

    /// Parses a PKCS#8 PEM private key of `algorithm`. `setting` says where the algorithm comes from, for
    /// the error when the key is of another algorithm.
    fn from_pem(algorithm: SigningAlgorithm, pem: &str, setting: &str) -> Result<PrivateKey, String> {
        let pem = pem.trim();
        let parsed = match algorithm {
            SigningAlgorithm::EdDSA => ed25519_dalek::SigningKey::from_pkcs8_pem(pem).ok().map(PrivateKey::Ed25519),
            SigningAlgorithm::ES256 => p256::SecretKey::from_pkcs8_pem(pem).ok().map(PrivateKey::P256),
            SigningAlgorithm::RS256 => {
                rsa::RsaPrivateKey::from_pkcs8_pem(pem).ok().map(|k| PrivateKey::Rsa(Box::new(k)))
            }
        };
        let Some(key) = parsed else {
            let found = explain(sniff_private(pem), setting);
            return Err(format!("not a PKCS#8 PEM {} key ({found})", key_name(algorithm)));
        };
        if let PrivateKey::Rsa(rsa) = &key {
            check_rsa_size(rsa.n().bits())?;
        }
        Ok(key)
    }

    fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            PrivateKey::P256(key) => PublicKey::P256(key.public_key()),
            PrivateKey::Rsa(key) => PublicKey::Rsa(key.to_public_key()),
        }
    }

    fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, String> {
        match self {
            PrivateKey::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| format!("cannot encode the private key: {e}"))
    }

    /// jsonwebtoken's key: PKCS#8 DER for Ed25519 and P-256, PKCS#1 DER for RSA (what its signers parse).
    fn encoding_key(&self) -> Result<EncodingKey, String> {
        let fail = |e: &dyn fmt::Display| format!("cannot encode the private key: {e}");
        Ok(match self {
            PrivateKey::Ed25519(key) => EncodingKey::from_ed_der(key.to_pkcs8_der().map_err(|e| fail(&e))?.as_bytes()),
            PrivateKey::P256(key) => EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|e| fail(&e))?.as_bytes()),
            PrivateKey::Rsa(key) => EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|e| fail(&e))?.as_bytes()),
        })
    }
}

impl PublicKey {
    /// Parses an SPKI PEM public key of `algorithm`; `setting` as in [`PrivateKey::from_pem`].
    fn from_pem(algorithm: SigningAlgorithm, pem: &str, setting: &str) -> Result<PublicKey, String> {
        let pem = pem.trim();
        let parsed = match algorithm {
            SigningAlgorithm::EdDSA => {
                ed25519_dalek::VerifyingKey::from_public_key_pem(pem).ok().map(PublicKey::Ed25519)
            }
            SigningAlgorithm::ES256 => p256::PublicKey::from_public_key_pem(pem).ok().map(PublicKey::P256),
            SigningAlgorithm::RS256 => rsa::RsaPublicKey::from_public_key_pem(pem).ok().map(PublicKey::Rsa),
        };
        let Some(key) = parsed else {
            let found = explain(sniff_public(pem), setting);
            return Err(format!("not an SPKI PEM {} public key ({found})", key_name(algorithm)));
        };
        if let PublicKey::Rsa(rsa) = &key {
            check_rsa_size(rsa.n().bits())?;
        }
        Ok(key)
    }

    fn to_spki_pem(&self) -> Result<String, String> {
        match self {
            PublicKey::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::P256(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::Rsa(key) => key.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| format!("cannot encode the public key: {e}"))
    }

    /// jsonwebtoken's key: the raw 32 bytes (Ed25519), the uncompressed SEC1 point (P-256), or n and e (RSA).
    fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicKey::Ed25519(key) => DecodingKey::from_ed_der(key.as_bytes()),
            PublicKey::P256(key) => DecodingKey::from_ec_der(key.to_encoded_point(false).as_bytes()),
            PublicKey::Rsa(key) => DecodingKey::from_rsa_raw_components(&key.n().to_bytes_be(), &key.e().to_bytes_be()),
        }
    }

    /// The key's RFC 7638 required members, base64url-encoded, in lexicographic order.
    fn required_members(&self) -> Vec<(&'static str, String)> {
        match self {
            PublicKey::Ed25519(key) => {
                vec![("crv", "Ed25519".into()), ("kty", "OKP".into()), ("x", b64(key.as_bytes()))]
            }
            PublicKey::P256(key) => {
                let point = key.to_encoded_point(false);
                let (x, y) = (point.x().map(|x| b64(x)), point.y().map(|y| b64(y)));
                vec![
                    ("crv", "P-256".into()),
                    ("kty", "EC".into()),
                    ("x", x.unwrap_or_default()),
                    ("y", y.unwrap_or_default()),
                ]
            }
            PublicKey::Rsa(key) => {
                vec![("e", b64(&key.e().to_bytes_be())), ("kty", "RSA".into()), ("n", b64(&key.n().to_bytes_be()))]
            }
        }
    }

    fn jwk_members(&self) -> Value {
        Value::Object(self.required_members().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect())
    }

    /// RFC 7638: SHA-256 over the required members as JSON, without whitespace, in lexicographic order.
    fn thumbprint(&self) -> String {
        let members: Vec<String> = self
            .required_members()
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{}", serde_json::to_string(&v).unwrap_or_default()))
            .collect();
        b64(&Sha256::digest(format!("{{{}}}", members.join(",")).as_bytes()))
    }
}

fn check_rsa_size(bits: usize) -> Result<(), String> {
    if bits < MIN_RSA_BITS {
        return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
    }
    Ok(())
}

/// For a key that did not parse: "it is a P-256 key, for ES256; <setting>" when it is a good key of another
/// algorithm, else what else it is.
fn explain(sniffed: Result<SigningAlgorithm, String>, setting: &str) -> String {
    match sniffed {
        Ok(algorithm) => {
            let article = if algorithm == SigningAlgorithm::ES256 { "a" } else { "an" };
            format!("it is {article} {} key, for {algorithm:?}; {setting}", key_name(algorithm))
        }
        Err(what) => what,
    }
}

/// What a PEM that did not parse as the expected private key is, without a byte of it: `Ok` with the
/// algorithm if it is a good key of one, else a description.
fn sniff_private(pem: &str) -> Result<SigningAlgorithm, String> {
    if ed25519_dalek::SigningKey::from_pkcs8_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::EdDSA);
    }
    if p256::SecretKey::from_pkcs8_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::ES256);
    }
    if rsa::RsaPrivateKey::from_pkcs8_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::RS256);
    }
    const CONVERT: &str = "convert it with `openssl pkcs8 -topk8 -nocrypt`";
    Err(match rsa::pkcs8::der::pem::decode_label(pem.as_bytes()) {
        Ok("EC PRIVATE KEY") => format!("it is a SEC1 EC PRIVATE KEY; {CONVERT}"),
        Ok("RSA PRIVATE KEY") => format!("it is a PKCS#1 RSA PRIVATE KEY; {CONVERT}"),
        Ok("ENCRYPTED PRIVATE KEY") => "it is encrypted; decrypt it with `openssl pkey`".into(),
        Ok("PUBLIC KEY") => "it is a public key, not a private key".into(),
        Ok("PRIVATE KEY") => "it is a PKCS#8 key of another type, curve or size, or damaged".into(),
        Ok(_) => "it is PEM of another kind".into(),
        Err(_) => "it is not PEM".into(),
    })
}

/// As [`sniff_private`], for public keys.
fn sniff_public(pem: &str) -> Result<SigningAlgorithm, String> {
    if ed25519_dalek::VerifyingKey::from_public_key_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::EdDSA);
    }
    if p256::PublicKey::from_public_key_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::ES256);
    }
    if rsa::RsaPublicKey::from_public_key_pem(pem).is_ok() {
        return Ok(SigningAlgorithm::RS256);
    }
    Err(match rsa::pkcs8::der::pem::decode_label(pem.as_bytes()) {
        Ok("RSA PUBLIC KEY") => {
            "it is a PKCS#1 RSA PUBLIC KEY; convert it with `openssl rsa -RSAPublicKey_in -pubout`".into()
        }
        Ok("PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" | "ENCRYPTED PRIVATE KEY") => {
            "it is a private key; give the public key only (`openssl pkey -pubout`)".into()
        }
        Ok("CERTIFICATE") => "it is a certificate; extract the key with `openssl x509 -pubkey -noout`".into(),
        Ok("PUBLIC KEY") => "it is an SPKI key of another type, curve or size, or damaged".into(),
        Ok(_) => "it is PEM of another kind".into(),
        Err(_) => "it is not PEM".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretSource, SigningKeyConfig, VerificationKeyConfig};
    use serde::{Deserialize, Serialize};
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims { sub: "user-1".into(), exp: jsonwebtoken::get_current_timestamp() + 600 }
    }

    fn config(algorithm: SigningAlgorithm, kid: &str, private_pem: &str) -> SigningConfig {
        SigningConfig {
            algorithm,
            current: Some(SigningKeyConfig { kid: kid.into(), private_key: SecretSource::Inline(private_pem.into()) }),
            previous: vec![],
        }
    }

    fn previous(kid: &str, algorithm: Option<SigningAlgorithm>, public_pem: &str) -> VerificationKeyConfig {
        VerificationKeyConfig { kid: kid.into(), algorithm, public_key: SecretSource::Inline(public_pem.into()) }
    }

    /// Verifies through `verifier(kid)` the way the proxy will: kid from the header, algorithm pinned by the key.
    fn verify(keys: &SigningKeys, token: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        let (key, algorithm) = keys.verifier(&kid).ok_or("unknown kid")?;
        jsonwebtoken::decode::<Claims>(token, key, &Validation::new(algorithm))
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }

    fn round_trip(algorithm: SigningAlgorithm) {
        let (private_pem, _) = generate_pem(algorithm).unwrap();
        let (keys, ephemeral) = SigningKeys::from_config(&config(algorithm, "k1", &private_pem)).unwrap();
        assert!(!ephemeral);
        assert_eq!(keys.current_kid(), "k1");
        assert_eq!(keys.algorithm(), jwt_algorithm(algorithm));
        let claims = claims();
        let token = keys.sign(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jwt_algorithm(algorithm));
        assert_eq!(header.kid.as_deref(), Some("k1"));
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(verify(&keys, &token).unwrap(), claims);

        // A flipped signature byte does not verify.
        let mut tampered = token.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(verify(&keys, std::str::from_utf8(&tampered).unwrap()).is_err());
    }

    #[test]
    fn eddsa_round_trip() {
        round_trip(SigningAlgorithm::EdDSA);
    }

    #[test]
    fn es256_round_trip() {
        round_trip(SigningAlgorithm::ES256);
    }

    #[test]
    fn rs256_round_trip() {
        round_trip(SigningAlgorithm::RS256);
    }

    #[test]
    fn ephemeral_keys_sign_and_verify() {
        let config = SigningConfig { algorithm: SigningAlgorithm::ES256, current: None, previous: vec![] };
        let (keys, ephemeral) = SigningKeys::from_config(&config).unwrap();
        assert!(ephemeral);
        assert!(keys.current_kid().starts_with("ephemeral-"));
        let token = keys.sign(&claims()).unwrap();
        assert!(verify(&keys, &token).is_ok());
    }

    #[test]
    fn a_previous_key_still_verifies_its_tokens() {
        let (old_private, old_public) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let (new_private, _) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let (old_keys, _) = SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "old", &old_private)).unwrap();
        let old_token = old_keys.sign(&claims()).unwrap();

        let mut rotated = config(SigningAlgorithm::EdDSA, "new", &new_private);
        rotated.previous.push(previous("old", None, &old_public));
        let (keys, _) = SigningKeys::from_config(&rotated).unwrap();
        assert_eq!(keys.current_kid(), "new");
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["new", "old"]);
        assert!(verify(&keys, &old_token).is_ok());
        assert!(verify(&keys, &keys.sign(&claims()).unwrap()).is_ok());

        // The old token does not verify with the new key.
        let (new_key, algorithm) = keys.verifier("new").unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&old_token, new_key, &Validation::new(algorithm)).is_err());
    }

    #[test]
    fn a_previous_key_may_have_another_algorithm() {
        let (old_private, old_public) = generate_pem(SigningAlgorithm::ES256).unwrap();
        let (new_private, _) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let (old_keys, _) = SigningKeys::from_config(&config(SigningAlgorithm::ES256, "old", &old_private)).unwrap();
        let old_token = old_keys.sign(&claims()).unwrap();

        let mut rotated = config(SigningAlgorithm::EdDSA, "new", &new_private);
        rotated.previous.push(previous("old", Some(SigningAlgorithm::ES256), &old_public));
        let (keys, _) = SigningKeys::from_config(&rotated).unwrap();
        assert_eq!(keys.verifier("old").unwrap().1, Algorithm::ES256);
        assert!(verify(&keys, &old_token).is_ok());

        // Without `algorithm`, the previous key must be of signing.algorithm.
        rotated.previous[0].algorithm = None;
        let e = SigningKeys::from_config(&rotated).unwrap_err().to_string();
        assert!(e.starts_with("signing.previous[0].public_key: not an SPKI PEM Ed25519 public key"), "{e}");
        assert!(e.contains("P-256") && e.contains("signing.previous[0].algorithm"), "{e}");
    }

    #[test]
    fn unknown_kid_has_no_verifier() {
        let keys = SigningKeys::ephemeral(SigningAlgorithm::EdDSA).unwrap();
        assert!(keys.verifier("nope").is_none());
        assert!(keys.verifier("").is_none());
        assert!(keys.verifier(keys.current_kid()).is_some());
    }

    #[test]
    fn jwks_has_every_kid_and_no_private_member() {
        let (_, ed_public) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let (_, ec_public) = generate_pem(SigningAlgorithm::ES256).unwrap();
        let (private, _) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let mut config = config(SigningAlgorithm::EdDSA, "cur", &private);
        config.previous.push(previous("ed-old", None, &ed_public));
        config.previous.push(previous("ec-old", Some(SigningAlgorithm::ES256), &ec_public));
        let (keys, _) = SigningKeys::from_config(&config).unwrap();
        let jwks = keys.jwks();
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        assert_eq!(set.keys.len(), 3);
        for (jwk, (kid, alg, kty)) in jwks["keys"].as_array().unwrap().iter().zip([
            ("cur", "EdDSA", "OKP"),
            ("ed-old", "EdDSA", "OKP"),
            ("ec-old", "ES256", "EC"),
        ]) {
            assert_eq!(jwk["kid"], kid);
            assert_eq!(jwk["alg"], alg);
            assert_eq!(jwk["kty"], kty);
            assert_eq!(jwk["use"], "sig");
            for private_member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(jwk.get(private_member).is_none(), "{private_member} in {jwk}");
            }
        }
        assert_eq!(jwks["keys"][2]["crv"], "P-256");
        assert!(jwks["keys"][2]["y"].is_string());

        // The published JWK verifies what the current key signs.
        let token = keys.sign(&claims()).unwrap();
        let key = DecodingKey::from_jwk(set.find("cur").unwrap()).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &Validation::new(Algorithm::EdDSA)).is_ok());
    }

    #[test]
    fn rsa_jwk_has_n_and_e_only() {
        let keys = SigningKeys::ephemeral(SigningAlgorithm::RS256).unwrap();
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap().len(), 256);
        assert!(jwk.get("d").is_none());
    }

    #[test]
    fn thumbprint_matches_rfc_8037_example() {
        // RFC 8037 appendix A.3: the thumbprint of the Ed25519 key of appendix A.2.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = ed25519_dalek::VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(PublicKey::Ed25519(key).thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn thumbprint_matches_jsonwebtoken() {
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
            let keys = SigningKeys::ephemeral(algorithm).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys.jwks()["keys"][0].clone()).unwrap();
            let expected = jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256).unwrap();
            assert_eq!(keys.current_kid(), format!("ephemeral-{}", &expected[..DEFAULT_KID_LEN]));
        }
    }

    #[test]
    fn keygen_writes_a_private_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let printed = keygen(SigningAlgorithm::EdDSA, &out, None).unwrap();

        let names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 2);
        let key_name = names.iter().find(|n| n.ends_with(".key")).unwrap();
        let kid = key_name.trim_end_matches(".key");
        assert_eq!(kid.len(), DEFAULT_KID_LEN);
        let key_path = out.join(key_name);
        let pub_path = out.join(format!("{kid}.pub"));
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
        let private_pem = std::fs::read_to_string(&key_path).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(std::fs::read_to_string(&pub_path).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));

        // What is printed names the kid and the files, never the key.
        assert!(printed.contains(kid));
        assert!(printed.contains(key_path.canonicalize().unwrap().to_str().unwrap()));
        assert!(!printed.contains("PRIVATE KEY"));
        let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!printed.contains(&body[body.len() - 20..]));

        // The printed YAML loads and signs with the kid that keygen chose.
        let yaml = printed.split("\n\n").find(|p| p.starts_with("signing:")).unwrap();
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        let signing: SigningConfig = serde_norway::from_value(value["signing"].clone()).unwrap();
        let (keys, ephemeral) = SigningKeys::from_config(&signing).unwrap();
        assert!(!ephemeral);
        assert_eq!(keys.current_kid(), kid);
        assert!(verify(&keys, &keys.sign(&claims()).unwrap()).is_ok());

        // Same kid again: refused, and the existing files are untouched.
        let e = keygen(SigningAlgorithm::EdDSA, &out, Some(kid)).unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), private_pem);

        // Only the .pub is there: still refused, and no .key is left behind.
        std::fs::write(out.join("lone.pub"), "x").unwrap();
        assert!(keygen(SigningAlgorithm::ES256, &out, Some("lone"))
            .unwrap_err()
            .to_string()
            .contains("refusing to overwrite"));
        assert!(!out.join("lone.key").exists());

        // An explicit kid names the files; one that could escape the directory is refused.
        keygen(SigningAlgorithm::ES256, &out, Some("2025-06.es")).unwrap();
        assert!(out.join("2025-06.es.key").exists());
        assert!(keygen(SigningAlgorithm::EdDSA, &out, Some("../x")).is_err());
        assert!(keygen(SigningAlgorithm::EdDSA, &out, Some("")).is_err());
    }

    #[test]
    fn file_kids_are_safe_file_names() {
        for good in ["-abc", "_x", "2025-06.ed", "a".repeat(64).as_str()] {
            assert!(check_file_kid(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "../x", "a/b", "a b", "é", "a".repeat(65).as_str()] {
            assert!(check_file_kid(bad).is_err(), "{bad}");
        }
        for _ in 0..64 {
            let private = PrivateKey::generate(SigningAlgorithm::EdDSA).unwrap();
            assert!(check_file_kid(&default_kid(&private.public())).is_ok());
        }
    }

    #[test]
    fn garbage_pem_names_the_config_key() {
        let e = SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "k", "not a key")).unwrap_err().to_string();
        assert!(e.starts_with("signing.current.private_key: not a PKCS#8 PEM Ed25519 key"), "{e}");
        assert!(!e.contains('\n'));

        let damaged = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = SigningKeys::from_config(&config(SigningAlgorithm::ES256, "k", damaged)).unwrap_err().to_string();
        assert!(e.starts_with("signing.current.private_key: not a PKCS#8 PEM P-256 key"), "{e}");

        let (_, public) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let e = SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "k", &public)).unwrap_err().to_string();
        assert!(e.contains("public key, not a private key"), "{e}");

        let mut with_previous = config(SigningAlgorithm::EdDSA, "k", &generate_pem(SigningAlgorithm::EdDSA).unwrap().0);
        with_previous.previous.push(previous("p", None, "garbage"));
        let e = SigningKeys::from_config(&with_previous).unwrap_err().to_string();
        assert!(e.starts_with("signing.previous[0].public_key: not an SPKI PEM Ed25519 public key"), "{e}");
    }

    #[test]
    fn a_key_of_another_algorithm_is_refused() {
        let (es256_private, _) = generate_pem(SigningAlgorithm::ES256).unwrap();
        let e =
            SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "k", &es256_private)).unwrap_err().to_string();
        assert!(e.starts_with("signing.current.private_key: not a PKCS#8 PEM Ed25519 key"), "{e}");
        assert!(e.contains("it is a P-256 key, for ES256; signing.algorithm is EdDSA"), "{e}");

        let (ed_private, _) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let e = SigningKeys::from_config(&config(SigningAlgorithm::RS256, "k", &ed_private)).unwrap_err().to_string();
        assert!(e.contains("it is an Ed25519 key, for EdDSA; signing.algorithm is RS256"), "{e}");
    }

    #[test]
    fn sec1_and_short_rsa_keys_are_explained() {
        let sec1 = p256::SecretKey::random(&mut OsRng).to_sec1_pem(LineEnding::LF).unwrap();
        let e = SigningKeys::from_config(&config(SigningAlgorithm::ES256, "k", &sec1)).unwrap_err().to_string();
        assert!(e.contains("SEC1") && e.contains("openssl pkcs8 -topk8 -nocrypt"), "{e}");

        let short = rsa::RsaPrivateKey::new(&mut OsRng, 1024).unwrap().to_pkcs8_pem(LineEnding::LF).unwrap();
        let e = SigningKeys::from_config(&config(SigningAlgorithm::RS256, "k", &short)).unwrap_err().to_string();
        assert_eq!(e, "signing.current.private_key: the RSA key has 1024 bits; at least 2048 are required");
    }

    #[test]
    fn kids_are_checked() {
        let (private, public) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let e = SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "", &private)).unwrap_err().to_string();
        assert!(e.starts_with("signing.current.kid:"), "{e}");
        let mut twice = config(SigningAlgorithm::EdDSA, "k", &private);
        twice.previous.push(previous("k", None, &public));
        let e = SigningKeys::from_config(&twice).unwrap_err().to_string();
        assert!(e.starts_with("signing.previous[0].kid: kid `k` is used twice"), "{e}");
    }

    #[test]
    fn file_secrets_without_a_trailing_newline_parse() {
        // SecretSource::File drops the trailing newline; the PEM must still parse.
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate_pem(SigningAlgorithm::ES256).unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &private).unwrap();
        let config = SigningConfig {
            algorithm: SigningAlgorithm::ES256,
            current: Some(SigningKeyConfig {
                kid: "k".into(),
                private_key: SecretSource::File { file: path.display().to_string() },
            }),
            previous: vec![],
        };
        assert!(SigningKeys::from_config(&config).is_ok());
    }

    #[test]
    fn debug_shows_no_key_material() {
        let (private, _) = generate_pem(SigningAlgorithm::EdDSA).unwrap();
        let (keys, _) = SigningKeys::from_config(&config(SigningAlgorithm::EdDSA, "k1", &private)).unwrap();
        let debug = format!("{keys:?}");
        assert!(debug.contains("k1"));
        let x = keys.jwks()["keys"][0]["x"].as_str().unwrap().to_string();
        assert!(!debug.contains(&x));
        let body: String = private.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body[body.len() - 20..]));
    }

    #[test]
    fn signing_keys_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SigningKeys>();
    }

    /// Informative timings: `cargo test --release --lib keys::tests::timing -- --ignored --nocapture`.
    /// Per operation, the best of 5 batches; `raw` is the bare signature primitive on the same message.
    #[test]
    #[ignore = "informative timing; run in release with --nocapture"]
    fn timing() {
        use ed25519_dalek::Signer as _;
        use p256::ecdsa::signature::Verifier as _;
        fn best<R>(n: u32, mut op: impl FnMut() -> R) -> std::time::Duration {
            (0..5)
                .map(|_| {
                    let start = std::time::Instant::now();
                    for _ in 0..n {
                        std::hint::black_box(op());
                    }
                    start.elapsed() / n
                })
                .min()
                .unwrap()
        }
        let message = [7u8; 150];
        let ed = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let ed_signature = ed.sign(&message);
        let ec = p256::ecdsa::SigningKey::random(&mut OsRng);
        let ec_signature: p256::ecdsa::Signature = ec.sign(&message);
        for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
            let keys = SigningKeys::ephemeral(algorithm).unwrap();
            let claims = claims();
            let n = if algorithm == SigningAlgorithm::RS256 { 50 } else { 500 };
            let token = keys.sign(&claims).unwrap();
            let sign = best(n, || keys.sign(&claims).unwrap());
            let verify = best(n, || verify(&keys, &token).unwrap());
            let raw = match algorithm {
                SigningAlgorithm::EdDSA => format!(
                    "; raw sign {:?}, raw verify {:?}",
                    best(n, || ed.sign(&message)),
                    best(n, || ed.verifying_key().verify_strict(&message, &ed_signature).is_ok())
                ),
                SigningAlgorithm::ES256 => format!(
                    "; raw sign {:?}, raw verify {:?}",
                    best(n, || -> p256::ecdsa::Signature { ec.sign(&message) }),
                    best(n, || ec.verifying_key().verify(&message, &ec_signature).is_ok())
                ),
                SigningAlgorithm::RS256 => String::new(),
            };
            println!("{algorithm:?}: sign {sign:?}, verify {verify:?}{raw} (token {} bytes)", token.len());
        }
    }
}
