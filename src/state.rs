//! What every request handler shares: the configuration, keys, store, IntelligenceBank client, the one
//! authentication path, OAuth clients, CORS and rate limits, the metric handles and the audit log. Built at start-up by
//! [`AppState::new`]; a live reload builds the next one with [`AppState::reconfigured`] and swaps it into the
//! [`LiveState`]. The OAuth handlers and the gateway read it, nothing below them knows it exists.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::clients::ClientRegistry;
use crate::auth::Authenticator;
use crate::cimd::ClientMetadataResolver;
use crate::config::Config;
use crate::exchange::cors::Cors;
use crate::ib::{ExtraCas, IbClient};
use crate::keys::SigningKeys;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::resource::Resources;
use crate::settings::{MetadataDocuments, Settings};
use crate::store::TokenStore;

/// The state new requests start on. A reload swaps it whole; a request keeps the [`AppState`] it loaded
/// first until it ends, so it never sees half of one configuration and half of another.
pub type LiveState = arc_swap::ArcSwap<AppState>;

pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<SigningKeys>,
    pub ib: IbClient,
    pub clients: ClientRegistry,
    /// Shared by every state a reload makes (with its verified-token cache): what it reads of the
    /// configuration (issuer, lifetimes, leeway, session rules) needs a restart to change.
    pub auth: Arc<Authenticator>,
    pub cors: Cors,
    pub rate_limits: RateLimits,
    /// The RFC 8707 resources tokens are issued for (`server.public_url`, `oauth.resources`).
    pub resources: Arc<Resources>,
    /// `server.trusted_proxies` (parsed when the file was read).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub store: Arc<dyn TokenStore>,
    pub metrics: Arc<Metrics>,
    /// Security events, from the handlers and the gateway that know of them. Shared across reloads (its
    /// destination, `logging.audit`, needs a restart to change; its failure counts survive a reload).
    pub audit: Arc<AuditLog>,
    /// `platforms.extra_ca_file` as read at start-up: the login client and Pingora's upstream TLS trust these
    /// until a restart, whatever the file holds by the time of a reload.
    pub extra_cas: Option<ExtraCas>,
}

/// Why the shared state could not be built (a start-up or reload failure; the message names the setting).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Ib(#[from] crate::ib::IbSetupError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditSetupError),
    #[error("oauth.clients[].token_exchange_resource: `{0}` is one of the gateway's own resources")]
    ExchangeResourceIsOwn(String),
}

/// What every state a process builds shares: a reload makes a new [`AppState`] around the same ones.
struct Shared {
    keys: Arc<SigningKeys>,
    store: Arc<dyn TokenStore>,
    metrics: Arc<Metrics>,
    auth: Arc<Authenticator>,
    audit: Arc<AuditLog>,
    extra_cas: Option<ExtraCas>,
    resources: Arc<Resources>,
}

fn resolver(documents: MetadataDocuments, metrics: &Arc<Metrics>) -> ClientMetadataResolver {
    ClientMetadataResolver::new(documents.fetcher, documents.settings, Some(metrics.clone()))
}

impl AppState {
    /// The first state, from the settings the process starts with.
    pub fn new(settings: Settings, store: Arc<dyn TokenStore>, metrics: Arc<Metrics>) -> Result<Self, StateError> {
        let Settings { config, keys, clients, extra_cas, resources, metadata_documents, .. } = settings;
        let auth = Arc::new(Authenticator::new(config.clone(), keys.clone(), store.clone(), resources.clone()));
        let rate_limits = RateLimits::new(&config.rate_limits);
        let audit = Arc::new(AuditLog::start(&config.logging, &metrics)?);
        let resolver = metadata_documents.map(|documents| resolver(documents, &metrics));
        let shared = Shared { keys, store, metrics, auth, audit, extra_cas, resources };
        Self::assemble(config, clients, resolver, shared, rate_limits)
    }

    /// The state for reloaded settings (their configuration as `config::live` planned it): clients, CORS,
    /// limits, the platform policy and upstream timeouts from `settings`; the keys, store, metrics,
    /// authenticator, extra CAs and every limit's counters shared with this one, so a reload drops no stored
    /// state and resets no count.
    pub fn reconfigured(&self, settings: Settings) -> Result<Self, StateError> {
        let Settings { config, clients, metadata_documents, .. } = settings;
        // The resolver (its kept documents and fetch limits) carries on when its settings did not change.
        let unchanged = config.oauth.client_id_metadata_documents == self.config.oauth.client_id_metadata_documents;
        let resolver = match (metadata_documents, self.clients.metadata_resolver()) {
            (Some(_), Some(running)) if unchanged => Some(running.clone()),
            (documents, _) => documents.map(|documents| resolver(documents, &self.metrics)),
        };
        let shared = Shared {
            keys: self.keys.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            auth: self.auth.clone(),
            audit: self.audit.clone(),
            extra_cas: self.extra_cas.clone(),
            // The gateway's own resources need a restart to change; the resource servers come with the clients.
            resources: Arc::new(
                (*self.resources)
                    .clone()
                    .with_servers(clients.exchange_resources())
                    .map_err(|own| StateError::ExchangeResourceIsOwn(own.to_string()))?,
            ),
        };
        let rate_limits = self.rate_limits.reconfigured(&config.rate_limits);
        Self::assemble(config, clients, resolver, shared, rate_limits)
    }

    fn assemble(
        config: Arc<Config>,
        clients: ClientRegistry,
        resolver: Option<ClientMetadataResolver>,
        shared: Shared,
        rate_limits: RateLimits,
    ) -> Result<Self, StateError> {
        let clients = match resolver {
            Some(resolver) => {
                clients.resolving_metadata_documents(resolver, config.oauth.dynamic_client_scopes().to_vec())
            }
            None => clients,
        };
        Ok(AppState {
            ib: IbClient::with_extra_cas(&config, shared.extra_cas.as_ref())?,
            clients,
            resources: shared.resources,
            cors: Cors::new(&config.cors),
            trusted_proxies: config.server.trusted_proxies.iter().map(|network| network.0).collect(),
            rate_limits,
            config,
            keys: shared.keys,
            store: shared.store,
            metrics: shared.metrics,
            auth: shared.auth,
            audit: shared.audit,
            extra_cas: shared.extra_cas,
        })
    }
}
