//! The approximate rate-limit backend's sync (`rate_limits.backend: approximate`): every
//! `rate_limits.sync_interval_ms`, this instance adds the requests it counted to the sessions' counters in
//! Redis — the counters the exact backend increments per request — and learns the deployment's counts in the
//! same step. Requests never wait for it; a failed sync keeps the pending counts for the next one.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::{self, SharedCounts};
use crate::session::SessionId;
use crate::state::LiveState;
use crate::store::now_unix;

pub struct LimitSync {
    pub live: Arc<LiveState>,
    pub counts: Arc<SharedCounts>,
    pub every: Duration,
}

/// Sessions per script call (per batch; the batches run concurrently): a sync is a handful of round trips,
/// whatever the number of sessions, without holding Redis for long in one script.
const SYNC_BATCH: usize = 256;

impl LimitSync {
    /// One sync: the sessions counted since the last one, in batches of [`SYNC_BATCH`].
    async fn sync(&self) {
        let state = self.live.load_full();
        let (window, pending) = self.counts.to_sync(limits::window(now_unix()).0);
        if pending.is_empty() {
            return;
        }
        // Ids come from requests that found their session, so all parse; one that did not would be dropped.
        let adds: Vec<(SessionId, u64)> =
            pending.iter().filter_map(|(id, add)| Some((SessionId::parse(id)?, *add))).collect();
        let batches = adds.chunks(SYNC_BATCH).map(|batch| {
            let store = state.store.clone();
            async move { (batch, store.add_to_meters(window, batch, limits::WINDOW_SECONDS).await) }
        });
        let mut failure = None;
        for (batch, totals) in futures_util::future::join_all(batches).await {
            let mut synced = Vec::with_capacity(batch.len());
            let mut unsent = Vec::new();
            for ((id, sent), total) in batch.iter().zip(totals) {
                match total {
                    Ok(total) => synced.push((id.as_str(), *sent, total)),
                    Err(e) => {
                        unsent.push(id.as_str());
                        failure.get_or_insert(e);
                    }
                }
            }
            self.counts.synced(window, synced);
            // Kept pending: the next sync adds them.
            self.counts.unsent(window, unsent);
        }
        if let Some(e) = failure {
            log::warn!("rate-limit sync: {e}");
        }
    }
}

#[async_trait]
impl BackgroundService for LimitSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sync().await,
                _ = shutdown.changed() => {
                    // What this instance counted since the last sync still reaches the others.
                    self.sync().await;
                    return;
                }
            }
        }
    }
}
