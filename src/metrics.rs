//! Prometheus metrics, one registry, one prefix (`ibgw_`). Labels have bounded values: never a token, sid,
//! user or path with ids in it.

use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

use crate::store::TokenStore;

pub struct Metrics {
    registry: Registry,
    store: Arc<dyn TokenStore>,
    sessions: IntGauge,
}

impl Metrics {
    pub fn new(store: Arc<dyn TokenStore>) -> Self {
        let registry = Registry::new_custom(Some("ibgw".into()), None).expect("the prefix is a valid metric name");
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Version of the running gateway (always 1)"),
            &["version", "store_backend"],
        )
        .expect("static metric definition");
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), store.backend()]).set(1);
        let sessions = IntGauge::new(
            "active_sessions",
            "Sessions stored and not expired (memory: exact; redis: estimate from the session index)",
        )
        .expect("static metric definition");
        for collector in [Box::new(build_info) as Box<dyn prometheus::core::Collector>, Box::new(sessions.clone())] {
            registry.register(collector).expect("each metric is registered once");
        }
        Metrics { registry, store, sessions }
    }

    /// The text exposition, with gauges that are read from the store refreshed first.
    pub async fn render(&self) -> Vec<u8> {
        if let Ok(count) = self.store.session_count().await {
            self.sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}
