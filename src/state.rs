//! What every request handler shares: the configuration, keys, store, IntelligenceBank client, the one
//! authentication path, OAuth clients, CORS and rate limits, the metric handles and the audit log. Built once at start-up
//! by [`AppState::new`]; the OAuth handlers and the gateway read it, nothing below them knows it exists.

use pingora_limits::rate::Rate;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::clients::ClientRegistry;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::exchange::cors::Cors;
use crate::ib::IbClient;
use crate::keys::SigningKeys;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::store::TokenStore;

pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<SigningKeys>,
    pub ib: IbClient,
    pub clients: ClientRegistry,
    pub auth: Authenticator,
    pub cors: Cors,
    /// Registrations per client IP per hour (RFC 7591 endpoint).
    pub registration_limiter: Rate,
    pub rate_limits: RateLimits,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Arc<Metrics>,
    /// Security events, from the handlers and the gateway that know of them.
    pub audit: AuditLog,
}

/// Why the shared state could not be built (a start-up failure; the message names the setting).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Ib(#[from] crate::ib::IbSetupError),
    #[error(transparent)]
    Clients(#[from] crate::auth::clients::ClientError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditSetupError),
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        keys: Arc<SigningKeys>,
        store: Arc<dyn TokenStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StateError> {
        Ok(AppState {
            ib: IbClient::new(&config)?,
            audit: AuditLog::start(&config.logging, &metrics)?,
            clients: ClientRegistry::from_config(&config.oauth.clients)?,
            auth: Authenticator::new(config.clone(), keys.clone(), store.clone()),
            cors: Cors::new(&config.cors),
            registration_limiter: Rate::new(std::time::Duration::from_secs(3_600)),
            rate_limits: RateLimits::new(&config.rate_limits),
            trusted_proxies: config
                .server
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_network(p))
                .collect(),
            config,
            keys,
            store,
            metrics,
        })
    }
}
