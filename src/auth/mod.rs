//! Who is calling: the one Bearer check every protected endpoint shares (the proxy and `/userinfo`), the
//! access tokens it checks, and the OAuth clients.
//!
//! [`Authenticator::authenticate`] is the only path from an `Authorization` header to a usable session:
//! the access token is verified (signature, issuer, audience, expiry; a verified token is cached until its
//! `exp`), its session is read from the store (with the rate-limit count when the store keeps it), and the
//! session rules decide. A refusal says precisely why, in the words old clients match on. Nothing here logs
//! a token.

pub mod access_token;
pub mod clients;
pub mod token_cache;

use std::sync::Arc;

use crate::config::Config;
use crate::errors::{ApiError, ACCESS_TOKEN_EXPIRED, INVALID_ACCESS_TOKEN};
use crate::exchange::bearer_token;
use crate::keys::SigningKeys;
use crate::resource::Resources;
use crate::session::{rules, Limits, Session};
use crate::store::TokenStore;
use access_token::{AccessClaims, Verified};
use token_cache::VerifiedTokens;

/// Access tokens whose signature this instance has checked, kept until their `exp`.
const VERIFIED_TOKEN_CACHE_ENTRIES: usize = 100_000;

/// The rate-limit window a proxied request is counted in by the store, in the same round trip as the
/// session read (`rate_limits.backend: redis`).
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    pub window: u64,
    pub window_seconds: u64,
}

/// A caller whose token and session check out.
#[derive(Debug)]
pub struct Authenticated {
    pub claims: Arc<AccessClaims>,
    pub session: Session,
    /// This window's request count for the session, when a [`Meter`] was given.
    pub count: Option<u64>,
}

pub struct Authenticator {
    config: Arc<Config>,
    keys: Arc<SigningKeys>,
    store: Arc<dyn TokenStore>,
    verified: VerifiedTokens,
    limits: Limits,
    resources: Arc<Resources>,
}

impl Authenticator {
    pub fn new(
        config: Arc<Config>,
        keys: Arc<SigningKeys>,
        store: Arc<dyn TokenStore>,
        resources: Arc<Resources>,
    ) -> Self {
        let limits = Limits::from(config.as_ref());
        let verified = VerifiedTokens::new(VERIFIED_TOKEN_CACHE_ENTRIES);
        Authenticator { config, keys, store, verified, limits, resources }
    }

    /// The session behind the `Authorization` header, or the refusal a client should see: no header is
    /// `MissingToken`; a token that is not ours, or whose session is unknown, `invalid_token`; an ended
    /// session `SessionEnded` (why it ended); an expired token of a live session `The access token has
    /// expired` (a refresh helps).
    pub async fn authenticate(
        &self,
        authorization: Option<&http::HeaderValue>,
        now: u64,
        meter: Option<Meter>,
    ) -> Result<Authenticated, ApiError> {
        let token = bearer_token(authorization)?.ok_or(ApiError::MissingToken)?;
        self.authenticate_token(token, now, meter).await
    }

    /// [`Self::authenticate`] for a token that did not come in an `Authorization` header (RFC 7662
    /// introspection's `token` parameter): the same checks, the same verified-token cache.
    pub async fn authenticate_token(
        &self,
        token: &str,
        now: u64,
        meter: Option<Meter>,
    ) -> Result<Authenticated, ApiError> {
        let invalid = || ApiError::InvalidToken(INVALID_ACCESS_TOKEN);
        let verified =
            self.verified.verify(&self.keys, &self.config, &self.resources, token, now).map_err(|_| invalid())?;
        let session_id = verified.claims().session_id().ok_or_else(invalid)?;
        let (session, count) = match meter {
            Some(meter) => {
                let (session, count) =
                    self.store.get_session_metered(&session_id, meter.window, meter.window_seconds).await?;
                (session, Some(count))
            }
            None => (self.store.get_session(&session_id).await?, None),
        };
        let session = session.ok_or_else(invalid)?;
        // An expired token: tell "refresh and retry" apart from "log in again".
        let (claims, expired) = match verified {
            Verified::Valid(claims) => (claims, false),
            Verified::Expired(claims) => (claims, true),
        };
        let status = if expired {
            rules::refresh_status(&session, now, &self.limits)
        } else {
            rules::access_status(&session, now, &self.limits)
        };
        if let Some(end) = status.end() {
            return Err(ApiError::SessionEnded(end));
        }
        if expired {
            return Err(ApiError::InvalidToken(ACCESS_TOKEN_EXPIRED));
        }
        Ok(Authenticated { claims, session, count })
    }
}
