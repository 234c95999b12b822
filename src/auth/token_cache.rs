//! Access tokens already verified by this instance. A signature check costs tens of microseconds while a
//! whole proxied request costs about as much, so each token is verified once and kept (bounded, S3-FIFO)
//! until its `exp`. The cache key is a keyed hash of the token; the entry keeps the token itself and is used
//! only when it matches byte for byte. Nothing here logs a token.

use pingora_memory_cache::MemoryCache;
use std::sync::Arc;
use std::time::Duration;

use super::access_token::{self, AccessClaims, Audience, Invalid, Verified};
use crate::config::Config;
use crate::keys::SigningKeys;
use crate::resource::Resources;

struct Entry {
    token: Box<str>,
    claims: Arc<AccessClaims>,
}

pub struct VerifiedTokens {
    cache: MemoryCache<String, Arc<Entry>>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens { cache: MemoryCache::new(capacity) }
    }

    pub fn verify(
        &self,
        keys: &SigningKeys,
        config: &Config,
        resources: &Resources,
        token: &str,
        now: u64,
    ) -> Result<Verified, Invalid> {
        let leeway = config.tokens.leeway_seconds;
        if let (Some(entry), _) = self.cache.get(token) {
            if &*entry.token == token {
                if now < entry.claims.exp + leeway {
                    return Ok(Verified::Valid(entry.claims.clone()));
                }
                return Ok(Verified::Expired(entry.claims.clone()));
            }
        }
        let verified = access_token::verify(keys, config, Audience::Own(resources), token, now)?;
        if let Verified::Valid(claims) = &verified {
            let ttl = Duration::from_secs((claims.exp + leeway).saturating_sub(now));
            self.cache.put(token, Arc::new(Entry { token: token.into(), claims: Arc::clone(claims) }), Some(ttl));
        }
        Ok(verified)
    }
}
