//! Key material: private and public keys of the three algorithms, parsed from PEM and checked (RSA of at least
//! 2048 bits), encoded for jsonwebtoken and as JWKs, and — for a PEM that does not parse — what it is instead,
//! without a byte of it. Never formats key material into an error.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use serde_json::Value;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::config::{SecretError, SigningAlgorithm};

/// RSA keys shorter than this are refused (RFC 7518 section 3.3 requires 2048 bits for RS256).
pub(super) const MIN_RSA_BITS: usize = 2048;

/// What is wrong with a key (or its kid). `Display` is one line and never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("cannot generate an RSA key: {0}")]
    Generate(String),
    #[error("not a PKCS#8 PEM {kind} key ({found})")]
    NotPrivateKey { kind: &'static str, found: String },
    #[error("not an SPKI PEM {kind} public key ({found})")]
    NotPublicKey { kind: &'static str, found: String },
    #[error("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required")]
    RsaTooShort { bits: usize },
    #[error("cannot encode the {half} key: {reason}")]
    Encode { half: &'static str, reason: String },
    #[error("internal error: a JWK is not an object")]
    Jwk,
    #[error("self-test failed: {0}")]
    SelfTest(String),
    #[error("cannot sign a token: {0}")]
    Sign(String),
    #[error("must not be empty")]
    EmptyKid,
    #[error("must be at most 128 characters, none of them control characters")]
    UnusableKid,
    #[error("kid `{0}` is used twice")]
    KidUsedTwice(String),
    #[error("{0}")]
    Secret(SecretError),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a key is for, in error messages.
pub(super) fn key_name(algorithm: SigningAlgorithm) -> &'static str {
    match algorithm {
        SigningAlgorithm::EdDSA => "Ed25519",
        SigningAlgorithm::ES256 => "P-256",
        SigningAlgorithm::RS256 => "RSA",
    }
}

/// A private signing key, parsed and checked.
pub(super) enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A public verification key, parsed and checked.
pub(super) enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::PublicKey),
    Rsa(rsa::RsaPublicKey),
}

impl PrivateKey {
    pub(super) fn generate(algorithm: SigningAlgorithm) -> Result<PrivateKey, KeyProblem> {
        Ok(match algorithm {
            SigningAlgorithm::EdDSA => PrivateKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            SigningAlgorithm::ES256 => PrivateKey::P256(p256::SecretKey::random(&mut OsRng)),
            SigningAlgorithm::RS256 => PrivateKey::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut OsRng, MIN_RSA_BITS).map_err(|e| KeyProblem::Generate(e.to_string()))?,
            )),
        })
    }

    /// Parses a PKCS#8 PEM private key of `algorithm`. `setting` says where the algorithm comes from, for
    /// the error when the key is of another algorithm.
    pub(super) fn from_pem(algorithm: SigningAlgorithm, pem: &str, setting: &str) -> Result<PrivateKey, KeyProblem> {
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
            return Err(KeyProblem::NotPrivateKey { kind: key_name(algorithm), found });
        };
        if let PrivateKey::Rsa(rsa) = &key {
            check_rsa_size(rsa.n().bits())?;
        }
        Ok(key)
    }

    pub(super) fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            PrivateKey::P256(key) => PublicKey::P256(key.public_key()),
            PrivateKey::Rsa(key) => PublicKey::Rsa(key.to_public_key()),
        }
    }

    pub(super) fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyProblem> {
        match self {
            PrivateKey::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::Rsa(key) => key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|e| KeyProblem::Encode { half: "private", reason: e.to_string() })
    }

    /// jsonwebtoken's key: PKCS#8 DER for Ed25519 and P-256, PKCS#1 DER for RSA (what its signers parse).
    pub(super) fn encoding_key(&self) -> Result<EncodingKey, KeyProblem> {
        let fail = |e: &dyn fmt::Display| KeyProblem::Encode { half: "private", reason: e.to_string() };
        Ok(match self {
            PrivateKey::Ed25519(key) => EncodingKey::from_ed_der(key.to_pkcs8_der().map_err(|e| fail(&e))?.as_bytes()),
            PrivateKey::P256(key) => EncodingKey::from_ec_der(key.to_pkcs8_der().map_err(|e| fail(&e))?.as_bytes()),
            PrivateKey::Rsa(key) => EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|e| fail(&e))?.as_bytes()),
        })
    }
}

impl PublicKey {
    /// Parses an SPKI PEM public key of `algorithm`; `setting` as in [`PrivateKey::from_pem`].
    pub(super) fn from_pem(algorithm: SigningAlgorithm, pem: &str, setting: &str) -> Result<PublicKey, KeyProblem> {
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
            return Err(KeyProblem::NotPublicKey { kind: key_name(algorithm), found });
        };
        if let PublicKey::Rsa(rsa) = &key {
            check_rsa_size(rsa.n().bits())?;
        }
        Ok(key)
    }

    pub(super) fn to_spki_pem(&self) -> Result<String, KeyProblem> {
        match self {
            PublicKey::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::P256(key) => key.to_public_key_pem(LineEnding::LF),
            PublicKey::Rsa(key) => key.to_public_key_pem(LineEnding::LF),
        }
        .map_err(|e| KeyProblem::Encode { half: "public", reason: e.to_string() })
    }

    /// jsonwebtoken's key: the raw 32 bytes (Ed25519), the uncompressed SEC1 point (P-256), or n and e (RSA).
    pub(super) fn decoding_key(&self) -> DecodingKey {
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

    pub(super) fn jwk_members(&self) -> Value {
        Value::Object(self.required_members().into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect())
    }

    /// RFC 7638: SHA-256 over the required members as JSON, without whitespace, in lexicographic order.
    pub(super) fn thumbprint(&self) -> String {
        let members: Vec<String> = self
            .required_members()
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{}", serde_json::to_string(&v).unwrap_or_default()))
            .collect();
        b64(&Sha256::digest(format!("{{{}}}", members.join(",")).as_bytes()))
    }
}

fn check_rsa_size(bits: usize) -> Result<(), KeyProblem> {
    if bits < MIN_RSA_BITS {
        return Err(KeyProblem::RsaTooShort { bits });
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
