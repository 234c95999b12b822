//! Opaque secrets the gateway hands out: refresh tokens, authorization codes and poll tokens.
//!
//! All come from the operating system's CSPRNG (via `rand`'s thread RNG, reseeded from it) with 256 bits of
//! entropy, and are stored only as SHA-256 hashes. A refresh token is `<session id>.<secret>` so the store
//! finds its session in O(1) and Redis Cluster keeps all of a session's keys in one slot. Nothing here logs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::session::SessionId;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 256 random bits, base64url (43 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    b64(&bytes)
}

/// SHA-256 of a token: what the store keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// base64url form, used in store keys and fields.
    pub fn encoded(&self) -> String {
        b64(&self.0)
    }

    pub fn from_encoded(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }

    /// Constant-time equality.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A hash of a high-entropy token reveals nothing, but a prefix is enough to correlate.
        write!(f, "TokenHash({}…)", &self.encoded()[..8])
    }
}

/// A refresh token as handed to the client. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    pub fn generate(session: &SessionId) -> Self {
        RefreshToken(format!("{}.{}", session.as_str(), random_secret()))
    }

    /// Splits a presented token into its session and the whole token; `None` when it has the wrong shape.
    pub fn parse(text: &str) -> Option<(SessionId, RefreshToken)> {
        let (session, secret) = text.split_once('.')?;
        let well_formed = secret.len() == 43 && URL_SAFE_NO_PAD.decode(secret).is_ok();
        well_formed.then_some(())?;
        Some((SessionId::parse(session)?, RefreshToken(text.to_string())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(***)")
    }
}

/// The key that seals a rotation's successor, derived from the token being rotated. The store only has the
/// token's SHA-256, so a dump of the store cannot open the sealed successor.
fn successor_key(old: &RefreshToken) -> Key {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(old.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(b"ib-oauth-gateway successor v1");
    Key::clone_from_slice(&mac.finalize().into_bytes())
}

/// Encrypts the successor so that only a holder of the old token can read it back during the grace window.
pub fn seal_successor(old: &RefreshToken, successor: &RefreshToken) -> String {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let cipher = ChaCha20Poly1305::new(&successor_key(old));
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), successor.expose().as_bytes())
        .expect("ChaCha20Poly1305 encryption of a short message cannot fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    b64(&out)
}

pub fn open_successor(old: &RefreshToken, sealed: &str) -> Option<RefreshToken> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < 12 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(12);
    let plain = ChaCha20Poly1305::new(&successor_key(old)).decrypt(Nonce::from_slice(nonce), ciphertext).ok()?;
    let text = String::from_utf8(plain).ok()?;
    RefreshToken::parse(&text).map(|(_, token)| token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_token_round_trips_through_parse() {
        let session = SessionId::generate();
        let token = RefreshToken::generate(&session);
        let (parsed_session, parsed) = RefreshToken::parse(token.expose()).unwrap();
        assert_eq!(parsed_session, session);
        assert_eq!(parsed, token);
    }

    #[test]
    fn malformed_refresh_tokens_are_refused() {
        let wrong_alphabet = "x".repeat(22) + "." + &"!".repeat(43);
        for bad in ["", ".", "abc", "a.b", wrong_alphabet.as_str(), "../../etc.passwd"] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_distinct_and_long() {
        let a = random_secret();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_secret());
    }

    #[test]
    fn sealed_successor_opens_only_with_the_old_token() {
        let session = SessionId::generate();
        let old = RefreshToken::generate(&session);
        let new = RefreshToken::generate(&session);
        let sealed = seal_successor(&old, &new);
        assert_eq!(open_successor(&old, &sealed), Some(new.clone()));
        assert_eq!(open_successor(&new, &sealed), None);
        assert!(!sealed.contains(new.expose()));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let token = RefreshToken::generate(&SessionId::generate());
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn hash_round_trips_and_compares() {
        let h = TokenHash::of("abc");
        assert!(TokenHash::from_encoded(&h.encoded()).unwrap().matches(&h));
        assert!(!h.matches(&TokenHash::of("abd")));
    }
}
