//! Access tokens: JWTs signed with the configured key (RFC 9068 shape). They carry our session id (`sid`
//! is deliberately NOT the IB session: `ses` names our session, the IB `sid` never leaves the store), and
//! expire no later than the IB session.

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::config::Config;
use crate::keys::SigningKeys;
use crate::resource::Resources;
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
    let grant = &session.grant;
    // RFC 8707: the resource the grant was made for (checked against this gateway's resources when it was asked
    // for), else the gateway itself.
    let aud = grant.resource.clone().unwrap_or_else(|| audience(config));
    let exp = rules::access_token_expiry(session, now, config.tokens.access_token_ttl_seconds);
    issue_as(
        keys,
        config,
        session,
        now,
        TokenFor { aud, client_id: grant.oauth_client_id.clone(), scope: grant.scope.clone(), exp },
    )
}

/// Who a token is for when it is not the grant's own: a token exchange's (RFC 8693) audience, client, scope and
/// expiry.
pub struct TokenFor {
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub exp: u64,
}

/// A token of `session` for `to`.
pub fn issue_as(
    keys: &SigningKeys,
    config: &Config,
    session: &Session,
    now: u64,
    to: TokenFor,
) -> Result<(String, u64), crate::keys::KeyError> {
    let claims = AccessClaims {
        iss: audience(config),
        aud: to.aud,
        sub: session.grant.user.uuid.clone(),
        client_id: to.client_id,
        scope: to.scope,
        jti: random_secret(),
        iat: now,
        exp: to.exp,
        ses: session.id.to_string(),
    };
    Ok((keys.sign(&claims)?, to.exp))
}

/// Which `aud` a token may carry to be accepted.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// The gateway itself or one of its own resources: what the proxy, `/userinfo` and introspection accept.
    Own(&'a Resources),
    /// Anything the gateway issues tokens for, its own resources or the resource servers in front of it
    /// (revocation: a client may revoke a token it got for an MCP server).
    Issued(&'a Resources),
    /// Exactly this resource: the subject token of a token exchange, for the exchanging resource server.
    Exactly(&'a str),
}

impl Audience<'_> {
    fn accepts(self, aud: &str, config: &Config) -> bool {
        match self {
            Audience::Own(resources) => aud == audience(config) || resources.is_own(aud),
            Audience::Issued(resources) => aud == audience(config) || resources.accepts(aud).is_some(),
            Audience::Exactly(resource) => aud == resource,
        }
    }
}

/// Verifies signature (pinned algorithm of the key named by `kid`), issuer, audience (as `accepted` says) and
/// expiry.
pub fn verify(
    keys: &SigningKeys,
    config: &Config,
    accepted: Audience<'_>,
    token: &str,
    now: u64,
) -> Result<Verified, Invalid> {
    let header = decode_header(token).map_err(|_| Invalid)?;
    let kid = header.kid.ok_or(Invalid)?;
    let (key, algorithm) = keys.verifier(&kid).ok_or(Invalid)?;
    if header.alg != algorithm {
        return Err(Invalid);
    }
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[audience(config)]);
    // The audience is checked below, against every resource of the gateway.
    validation.validate_aud = false;
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
    if !accepted.accepts(&claims.aud, config) {
        return Err(Invalid);
    }
    if claims.iat > now + config.tokens.leeway_seconds {
        return Err(Invalid);
    }
    if now >= claims.exp + config.tokens.leeway_seconds {
        return Ok(Verified::Expired(Arc::new(claims)));
    }
    Ok(Verified::Valid(Arc::new(claims)))
}
