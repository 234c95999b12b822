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

//!
//! The rooms: this file loads and uses keys ([`SigningKeys`]); `material` parses, checks and encodes key
//! material (and says what a PEM that does not parse is); `keygen` makes new key pairs and writes their files.

mod keygen;
mod material;

use std::fmt;
use std::sync::Once;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

use crate::config::{SigningAlgorithm, SigningConfig};
pub use keygen::{generate_pem, keygen, KeygenError};
pub use material::KeyProblem;
use material::{PrivateKey, PublicKey};

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
    Setting { setting: String, problem: KeyProblem },
    /// The crypto backend failed: generating, signing, or the start-up self-test.
    #[error("{0}")]
    Crypto(KeyProblem),
    /// `keygen` could not write its files (or was given an unusable `--kid`).
    #[error("{0}")]
    Files(KeygenError),
}

fn setting(at: impl Into<String>) -> impl FnOnce(KeyProblem) -> KeyError {
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
                let pem = current.private_key.resolve().map_err(|e| setting(at)(KeyProblem::Secret(e)))?;
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
                return Err(setting(format!("{at}.kid"))(KeyProblem::KidUsedTwice(previous.kid.clone())));
            }
            let algorithm = previous.algorithm.unwrap_or(config.algorithm);
            let what = match previous.algorithm {
                Some(a) => format!("{at}.algorithm is {a:?}"),
                None => format!("{at}.algorithm defaults to signing.algorithm, {algorithm:?}"),
            };
            let at = format!("{at}.public_key");
            let pem = previous.public_key.resolve().map_err(|e| setting(&at)(KeyProblem::Secret(e)))?;
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

    fn new(algorithm: SigningAlgorithm, kid: String, private: &PrivateKey) -> Result<SigningKeys, KeyProblem> {
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
    fn self_test(&self) -> Result<(), KeyProblem> {
        let probe = json!({ "probe": true });
        let token = self.sign(&probe).map_err(|e| KeyProblem::SelfTest(e.to_string()))?;
        let (key, algorithm) =
            self.verifier(&self.kid).ok_or_else(|| KeyProblem::SelfTest("no verifier for the current kid".into()))?;
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(&token, key, &validation)
            .map(|_| ())
            .map_err(|e| KeyProblem::SelfTest(format!("the key's own signature does not verify: {e}")))
    }

    /// The algorithm of the current key, which signs new tokens.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn current_kid(&self) -> &str {
        &self.kid
    }

    /// Every kid that verifies tokens: the current one first, then the previous ones.
    #[cfg(test)]
    fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.iter().map(|v| v.kid.as_str())
    }

    /// Signs claims with the current key; the JWT header carries `alg`, `kid` and `typ: at+jwt` (RFC 9068).
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|e| KeyError::Crypto(KeyProblem::Sign(e.to_string())))
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
    fn new(kid: String, algorithm: Algorithm, public: &PublicKey) -> Result<VerificationKey, KeyProblem> {
        let mut jwk = public.jwk_members();
        let members = jwk.as_object_mut().ok_or(KeyProblem::Jwk)?;
        members.insert("kid".into(), Value::String(kid.clone()));
        members.insert("alg".into(), Value::String(format!("{algorithm:?}")));
        members.insert("use".into(), Value::String("sig".into()));
        Ok(VerificationKey { kid, algorithm, key: public.decoding_key(), jwk })
    }
}

fn check_kid(kid: &str) -> Result<(), KeyProblem> {
    if kid.is_empty() {
        return Err(KeyProblem::EmptyKid);
    }
    if kid.len() > 128 || kid.chars().any(char::is_control) {
        return Err(KeyProblem::UnusableKid);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::keygen::check_file_kid;
    use super::*;
    use crate::config::{SecretSource, SigningKeyConfig, VerificationKeyConfig};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::rand_core::OsRng;
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
            current: Some(SigningKeyConfig { kid: kid.into(), private_key: SecretSource::inline(private_pem) }),
            previous: vec![],
        }
    }

    fn previous(kid: &str, algorithm: Option<SigningAlgorithm>, public_pem: &str) -> VerificationKeyConfig {
        VerificationKeyConfig { kid: kid.into(), algorithm, public_key: SecretSource::inline(public_pem) }
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
        // A file secret drops the trailing newline; the PEM must still parse.
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = generate_pem(SigningAlgorithm::ES256).unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &private).unwrap();
        let config = SigningConfig {
            algorithm: SigningAlgorithm::ES256,
            current: Some(SigningKeyConfig {
                kid: "k".into(),
                private_key: SecretSource::file(path.display().to_string()),
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
