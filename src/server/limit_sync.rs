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

impl LimitSync {
    /// One sync: every tally of the current window, concurrently (each counter is its own key and slot).
    async fn sync(&self) {
        let state = self.live.load_full();
        let (window, _) = limits::window(now_unix());
        let pending = self.counts.to_sync(window);
        let adds = pending.iter().filter_map(|(id, window, add)| {
            let session = SessionId::parse(id)?;
            let store = state.store.clone();
            Some(async move {
                let total = store.add_to_meter(&session, *window, *add, limits::WINDOW_SECONDS).await;
                (id, *window, *add, total)
            })
        });
        for (id, window, sent, total) in futures_util::future::join_all(adds).await {
            match total {
                Ok(total) => self.counts.synced(id, window, sent, total),
                // Kept pending: the next sync adds them.
                Err(e) => log::warn!("rate-limit sync: {e}"),
            }
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
