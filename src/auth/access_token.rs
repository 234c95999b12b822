//! Access tokens: JWTs signed with the configured key (RFC 9068 shape). They carry our session id (`sid`
//! is deliberately NOT the IB session: `ses` names our session, the IB `sid` never leaves the store), and
//! expire no later than the IB session.

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::config::Config;
use crate::keys::SigningKeys;
use crate::session::{rules, Session, SessionId};
use crate::tokens::random_secret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The IntelligenceBank user uuid.
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    /// Our session id (not the IB sid).
    pub ses: String,
}

impl AccessClaims {
    pub fn session_id(&self) -> Option<SessionId> {
        SessionId::parse(&self.ses)
    }
}

/// A token whose signature, issuer and audience check out.
#[derive(Debug, Clone, PartialEq, Eq)]
/// The claims are shared (`Arc`): the verified-token cache hands them to every request without copying them.
pub enum Verified {
    Valid(Arc<AccessClaims>),
    /// Signed by us, but past `exp` (plus leeway). The claims are kept for the caller to tell "refresh"
    /// from "session over".
    Expired(Arc<AccessClaims>),
}

impl Verified {
    pub fn claims(&self) -> &AccessClaims {
        match self {
            Verified::Valid(claims) | Verified::Expired(claims) => claims,
        }
    }
}

/// Not our token: bad signature, unknown `kid`, wrong issuer or audience, malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// The audience of our access tokens: the gateway itself as a resource server.
pub fn audience(config: &Config) -> String {
    config.server.public_url.trim_end_matches('/').to_string()
}

pub fn issue(
    keys: &SigningKeys,
    config: &Config,
    session: &Session,
    now: u64,
) -> Result<(String, u64), crate::keys::KeyError> {
    let exp = rules::access_token_expiry(session, now, config.tokens.access_token_ttl_seconds);
    let claims = AccessClaims {
        iss: audience(config),
        aud: audience(config),
        sub: session.grant.user.uuid.clone(),
        client_id: session.grant.oauth_client_id.clone(),
        scope: session.grant.scope.clone(),
        jti: random_secret(),
        iat: now,
        exp,
        ses: session.id.to_string(),
    };
    Ok((keys.sign(&claims)?, exp))
}

/// Verifies signature (pinned algorithm of the key named by `kid`), issuer, audience and expiry.
pub fn verify(keys: &SigningKeys, config: &Config, token: &str, now: u64) -> Result<Verified, Invalid> {
    let header = decode_header(token).map_err(|_| Invalid)?;
    let kid = header.kid.ok_or(Invalid)?;
    let (key, algorithm) = keys.verifier(&kid).ok_or(Invalid)?;
    if header.alg != algorithm {
        return Err(Invalid);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[audience(config)]);
    validation.set_audience(&[audience(config)]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // Expiry is checked below against our clock (`now`), with the configured leeway.
    validation.validate_exp = false;
    validation.leeway = 0;
    let claims = decode::<AccessClaims>(token, key, &validation)
        .map_err(|e| {
            if !matches!(e.kind(), ErrorKind::InvalidSignature | ErrorKind::InvalidToken) {
                log::debug!("access token refused: {:?}", e.kind());
            }
            Invalid
        })?
        .claims;
    if claims.iat > now + config.tokens.leeway_seconds {
        return Err(Invalid);
    }
    if now >= claims.exp + config.tokens.leeway_seconds {
        return Ok(Verified::Expired(Arc::new(claims)));
    }
    Ok(Verified::Valid(Arc::new(claims)))
}
