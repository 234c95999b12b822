//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, as MCP 2025-11-25 profiles
//! it): a `client_id` that is an `https` URL with a path names a JSON document the client publishes; the
//! gateway fetches it, checks it and treats the client it describes as a public client.
//!
//! - [`client_id`]: which `client_id`s are metadata URLs ([`is_metadata_client_id`]).
//! - [`address`]: which IP addresses are public (the SSRF boundary).
//! - [`fetch`]: the fetch itself, under every SSRF defence (see there).
//! - [`document`]: the rules the document must keep ([`ClientMetadata`] is what survives).
//! - [`cache`]: how long outcomes are kept and how often hosts may be fetched.
//!
//! [`ClientMetadataResolver::resolve`] puts them together: a resolved document is kept for its
//! `Cache-Control: max-age`, clamped to the configured range (default 5 min – 24 h); a failure is kept for a
//! short time (default 60 s) so that a broken or hostile URL is not fetched on every request; at most
//! `max_entries` outcomes are kept. Concurrent resolutions of one URL share a single fetch. Fetches are
//! limited per host and overall (token buckets), so a flood of made-up URLs cannot turn the gateway into a
//! request amplifier: past the limit the answer is a refusal, never a queue.
//!
//! **Several gateway instances (Redis deployments)**: each instance fetches and keeps documents itself; they
//! are not shared through the store. The document is public and re-fetchable, the SSRF checks belong to the
//! fetch, and no store operation is needed on either backend. Two instances may therefore hold different
//! versions of a document that changed, for at most the clamped max-age (default at most 24 h), and disagree
//! about a failure for at most the failure time (60 s). A client that changes its redirect URIs must expect
//! that delay; an operator who cannot accept it lowers `max_cache`.
//!
//! Never logs a document body; never echoes a document's text in an error (errors name the rule). The
//! resolver changes nothing but its own cache: no store write.

pub mod address;
pub mod cache;
pub mod client_id;
pub mod document;
pub mod fetch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use self::cache::{document_ttl, FetchLimitSettings, FetchLimits, Kept};
use self::client_id::{ClientIdUrlError, MetadataUrl};
use crate::metrics::Metrics;

pub use self::client_id::is_metadata_client_id;
pub use self::document::{ClientMetadata, DocumentError};
pub use self::fetch::{DocumentFetcher, FetchError, FetchSetupError};

/// The resolver's settings (`oauth.client_id_metadata_documents`, once wired to the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CimdSettings {
    /// Only documents on these hosts (exact, lower-case) are fetched; `None`: any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// The shortest time a resolved document is kept, whatever its `max-age`.
    pub min_cache: Duration,
    /// The longest time a resolved document is kept, whatever its `max-age`.
    pub max_cache: Duration,
    /// How long a failed resolution is kept.
    pub failure_cache: Duration,
    /// The most outcomes kept at once.
    pub max_entries: usize,
    pub limits: FetchLimitSettings,
}

impl Default for CimdSettings {
    fn default() -> Self {
        CimdSettings {
            allowed_hosts: None,
            min_cache: Duration::from_secs(5 * 60),
            max_cache: Duration::from_secs(24 * 60 * 60),
            failure_cache: Duration::from_secs(60),
            max_entries: 1000,
            limits: FetchLimitSettings::default(),
        }
    }
}

/// Why a metadata `client_id` cannot be used. `Display` is the `invalid_client` description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientMetadataError {
    #[error(transparent)]
    Url(#[from] ClientIdUrlError),
    #[error("Client metadata document host is not on this gateway's list of allowed hosts")]
    HostNotAllowed,
    #[error("Too many client metadata document fetches; try again later")]
    RateLimited,
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The fetch task ended without an answer (it panicked); nothing about the client is known.
    #[error("Client metadata document could not be resolved")]
    Internal,
}

/// The `result` label of `ibgw_client_metadata_fetches_total` for a fetch that was made (or refused by the
/// fetch limits): `ok`, `rate_limited`, `invalid_document`, or the fetch failure ([`FetchError::label`]).
pub fn fetch_result_label(outcome: &Result<Arc<ClientMetadata>, ClientMetadataError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(ClientMetadataError::Fetch(error)) => error.label(),
        Err(ClientMetadataError::Document(_)) => "invalid_document",
        Err(ClientMetadataError::RateLimited) => "rate_limited",
        Err(ClientMetadataError::Url(_) | ClientMetadataError::HostNotAllowed) => "invalid_url",
        Err(ClientMetadataError::Internal) => "internal",
    }
}

type Outcome = Result<Arc<ClientMetadata>, ClientMetadataError>;

struct State {
    kept: Kept<Outcome>,
    running: HashMap<String, Shared<BoxFuture<'static, Outcome>>>,
    limits: FetchLimits,
}

struct Inner {
    fetcher: DocumentFetcher,
    settings: CimdSettings,
    state: Mutex<State>,
    metrics: Option<Arc<Metrics>>,
}

/// Resolves metadata `client_id`s to clients: kept outcomes, one fetch per URL at a time, fetch limits.
/// Cheap to clone (one shared state).
#[derive(Clone)]
pub struct ClientMetadataResolver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClientMetadataResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetadataResolver").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

/// Removes a URL's running fetch when the fetch task ends, however it ends.
struct RunningGuard {
    inner: Arc<Inner>,
    key: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.inner.state.lock().running.remove(&self.key);
    }
}

impl ClientMetadataResolver {
    /// `metrics`: where `ibgw_client_metadata_fetches_total` is counted (`None` in tests that do not look).
    pub fn new(fetcher: DocumentFetcher, settings: CimdSettings, metrics: Option<Arc<Metrics>>) -> Self {
        let now = Instant::now();
        let state = State {
            kept: Kept::new(settings.max_entries),
            running: HashMap::new(),
            limits: FetchLimits::new(settings.limits, now),
        };
        ClientMetadataResolver { inner: Arc::new(Inner { fetcher, settings, state: Mutex::new(state), metrics }) }
    }

    /// The client `client_id` names, from the kept outcome or a fetch. Must run inside a Tokio runtime.
    pub async fn resolve(&self, client_id: &str) -> Result<Arc<ClientMetadata>, ClientMetadataError> {
        let url = MetadataUrl::parse(client_id)?;
        if let Some(allowed) = &self.inner.settings.allowed_hosts {
            if !allowed.iter().any(|host| host.eq_ignore_ascii_case(url.host())) {
                return Err(ClientMetadataError::HostNotAllowed);
            }
        }
        let (running, fetch_here) = {
            let now = Instant::now();
            let mut state = self.inner.state.lock();
            if let Some(outcome) = state.kept.get(client_id, now) {
                return outcome;
            }
            if let Some(running) = state.running.get(client_id) {
                (running.clone(), None)
            } else if !state.limits.try_fetch(url.host(), now) {
                drop(state);
                let refused = Err(ClientMetadataError::RateLimited);
                self.inner.count(&refused);
                return refused;
            } else {
                let (answer, answered) = tokio::sync::oneshot::channel();
                let shared = async move { answered.await.unwrap_or(Err(ClientMetadataError::Internal)) };
                let shared = shared.boxed().shared();
                state.running.insert(client_id.to_string(), shared.clone());
                (shared, Some(answer))
            }
        };
        if let Some(answer) = fetch_here {
            // A task, not the callers, owns the fetch: it finishes (and is kept) even if every caller gives
            // up, and its guard clears the running entry however it ends. Spawned outside the lock: a runtime
            // that is shutting down drops the task at once, and the guard's drop takes the lock.
            let guard = RunningGuard { inner: self.inner.clone(), key: client_id.to_string() };
            tokio::spawn(async move {
                let (outcome, ttl) = guard.inner.fetch_and_check(&url).await;
                guard.inner.keep(&guard.key, &outcome, ttl);
                let _ = answer.send(outcome);
            });
        }
        running.await
    }
}

impl Inner {
    /// Fetches and checks the document; the outcome and how long to keep it.
    async fn fetch_and_check(&self, url: &MetadataUrl) -> (Outcome, Duration) {
        let failed = |error: ClientMetadataError| (Err(error), self.settings.failure_cache);
        let fetched = match self.fetcher.fetch(url).await {
            Ok(fetched) => fetched,
            Err(error) => return failed(error.into()),
        };
        match document::validate(url, &fetched.body) {
            Ok(client) => {
                let ttl = document_ttl(fetched.max_age, self.settings.min_cache, self.settings.max_cache);
                (Ok(Arc::new(client)), ttl)
            }
            Err(error) => failed(error.into()),
        }
    }

    /// Keeps `outcome` for `ttl` and counts the fetch.
    fn keep(&self, key: &str, outcome: &Outcome, ttl: Duration) {
        self.count(outcome);
        let now = Instant::now();
        self.state.lock().kept.insert(key.to_string(), outcome.clone(), now + ttl, now);
    }

    fn count(&self, outcome: &Outcome) {
        if let Some(metrics) = &self.metrics {
            metrics.client_metadata_fetched(fetch_result_label(outcome));
        }
    }
}
