//! Prometheus metrics: one registry, one prefix (`ibgw_`), names that say what they count. Every label has
//! a small fixed set of values: never a token, sid, user, client id or a path with ids in it.
//!
//! This module only holds the handles: others observe into them (the store times its operations, the
//! gateway counts each refusal where it becomes a response, the admin service refreshes the gauges before
//! a scrape). It reads nothing itself, but for the process collector (Linux): resident memory, CPU seconds,
//! open and maximum file descriptors, threads and start time, read from `/proc/self` at each scrape and
//! exported with the registry's prefix (`ibgw_process_resident_memory_bytes`, ...).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// Latency buckets from 0.5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Statuses below this have their request counter resolved once per route (others: a label look-up each time).
const RESOLVED_STATUSES: usize = 600;

/// Handles of a labelled metric, resolved once per set of label values: the metrics of every request cost no
/// label hashing and no allocation. Keys are `&'static str` label values from small fixed sets, so the list is
/// short and a linear search beats a hash.
struct Resolved<K, H> {
    entries: parking_lot::RwLock<Vec<(K, H)>>,
}

impl<K: PartialEq + Copy, H> Resolved<K, H> {
    fn new() -> Self {
        Resolved { entries: parking_lot::RwLock::new(Vec::new()) }
    }

    /// Runs `use_handle` on the handle of `key`, made by `make` the first time.
    fn with(&self, key: K, make: impl FnOnce() -> H, use_handle: impl FnOnce(&H)) {
        if let Some((_, handle)) = self.entries.read().iter().find(|(k, _)| *k == key) {
            return use_handle(handle);
        }
        let mut entries = self.entries.write();
        let at = match entries.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                entries.push((key, make()));
                entries.len() - 1
            }
        };
        use_handle(&entries[at].1);
    }
}

/// One route class's request metrics.
struct RouteHandles {
    duration: Histogram,
    /// `ibgw_http_requests_total{route, status}` by status, resolved at the status's first request.
    by_status: Box<[std::sync::OnceLock<prometheus::IntCounter>]>,
}

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// Resolved handles of `http_requests` and `http_duration`, one entry per route class seen.
    routes: Resolved<&'static str, RouteHandles>,
    pub upstream_duration: Histogram,
    pub upstream_errors: IntCounterVec,
    pub token_refreshes: IntCounterVec,
    pub session_timeouts: IntCounterVec,
    pub tokens_issued: IntCounterVec,
    pub logins: IntCounterVec,
    pub auth_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub store_duration: HistogramVec,
    /// Resolved handles of `store_duration`, by operation and backend.
    store_operations: Resolved<(&'static str, &'static str), Histogram>,
    pub store_errors: IntCounterVec,
    /// Lines the access or audit log lost because its writer could not keep up (`log`: `access`, `audit`).
    pub log_lines_dropped: IntCounterVec,
    /// Failed authentications the `repeated_auth_failures` table could not follow (full even at its widest
    /// networks): a flood from many networks at once.
    pub audit_failures_unfollowed: prometheus::IntCounter,
    /// Client ID Metadata Document fetches, by result (`ok`, `invalid_document`, `rate_limited`, a fetch failure).
    client_metadata_fetches: IntCounterVec,
    store_up: IntGauge,
    active_sessions: IntGauge,
    requests_in_flight: IntGauge,
    config_reloads: IntCounterVec,
    config_last_reload_success: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
    registry.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("static metric definition");
    registry.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

fn unlabelled_counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let metric = prometheus::IntCounter::new(name, help).expect("static metric definition");
    registry.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("static metric definition");
    registry.register(Box::new(metric.clone())).expect("each metric is registered once");
    metric
}

impl Metrics {
    pub fn new(store_backend: &str) -> Self {
        let registry = Registry::new_custom(Some("ibgw".into()), None).expect("the prefix is a valid metric name");
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Version, commit and store backend of the running gateway (always 1)"),
            &["version", "git_sha", "store_backend"],
        )
        .expect("static metric definition");
        registry.register(Box::new(build_info.clone())).expect("each metric is registered once");
        // IBGW_GIT_SHA is set by build.rs (`unknown` when the build had no git).
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("IBGW_GIT_SHA"), store_backend]).set(1);
        // The process collector reads /proc, so it exists on Linux only; its names take the `ibgw_` prefix.
        #[cfg(target_os = "linux")]
        registry.register(Box::new(process::ThisProcess::new())).expect("each metric is registered once");
        let r = &registry;
        Metrics {
            http_requests: counter(
                r,
                "http_requests_total",
                "Requests answered, by route class and status",
                &["route", "status"],
            ),
            http_duration: histogram(
                r,
                "http_request_duration_seconds",
                "Time from request to end of response, by route class",
                &["route"],
            ),
            routes: Resolved::new(),
            upstream_duration: {
                let opts = HistogramOpts::new(
                    "upstream_duration_seconds",
                    "Time from sending a request to IntelligenceBank to its response header",
                )
                .buckets(LATENCY_BUCKETS.to_vec());
                let metric = Histogram::with_opts(opts).expect("static metric definition");
                r.register(Box::new(metric.clone())).expect("each metric is registered once");
                metric
            },
            upstream_errors: counter(
                r,
                "upstream_errors_total",
                "Failed or 5xx IntelligenceBank answers, by kind",
                &["kind"],
            ),
            token_refreshes: counter(r, "token_refreshes_total", "Refresh-token grants, by result", &["result"]),
            session_timeouts: counter(
                r,
                "session_timeouts_total",
                "Requests refused because their session is over, by reason",
                &["reason"],
            ),
            tokens_issued: counter(r, "tokens_issued_total", "Access tokens issued, by grant type", &["grant_type"]),
            logins: counter(r, "logins_total", "IntelligenceBank logins, by result", &["result"]),
            auth_failures: counter(r, "auth_failures_total", "Refused credentials, by reason", &["reason"]),
            rate_limited: counter(r, "rate_limited_total", "Requests refused with 429, by limit", &["scope"]),
            store_duration: histogram(
                r,
                "store_operation_duration_seconds",
                "Token store operations, by operation and backend",
                &["operation", "backend"],
            ),
            store_operations: Resolved::new(),
            store_errors: counter(r, "store_errors_total", "Failed token store operations", &["operation", "backend"]),
            log_lines_dropped: counter(
                r,
                "log_lines_dropped_total",
                "Log lines lost because the log's writer could not keep up, by log",
                &["log"],
            ),
            audit_failures_unfollowed: unlabelled_counter(
                r,
                "audit_auth_failures_unfollowed_total",
                "Failed authentications not followed for repeated_auth_failures (its table was full)",
            ),
            client_metadata_fetches: counter(
                r,
                "client_metadata_fetches_total",
                "Client ID Metadata Document fetches, by result",
                &["result"],
            ),
            store_up: gauge(r, "store_up", "1 when the token store answered the last check, else 0"),
            active_sessions: gauge(
                r,
                "active_sessions",
                "Active sessions not past sid_expiry (memory: exact; redis: estimate from the session index)",
            ),
            requests_in_flight: gauge(
                r,
                "requests_in_flight",
                "Requests on the public listeners received and not yet answered to the end",
            ),
            config_reloads: {
                let metric = counter(r, "config_reloads_total", "Configuration reloads, by result", &["result"]);
                // Both series exist from the start, so that a first failure is an increase from 0.
                for result in ["success", "failure"] {
                    metric.with_label_values(&[result]);
                }
                metric
            },
            config_last_reload_success: gauge(
                r,
                "config_last_reload_success_timestamp_seconds",
                "When the configuration in force was loaded (start-up or the last successful reload), Unix seconds",
            ),
            registry,
        }
    }

    pub fn observe_store(&self, operation: &'static str, backend: &'static str, elapsed: Duration, ok: bool) {
        let make = || self.store_duration.with_label_values(&[operation, backend]);
        self.store_operations.with((operation, backend), make, |histogram| histogram.observe(elapsed.as_secs_f64()));
        if !ok {
            self.store_errors.with_label_values(&[operation, backend]).inc();
        }
    }

    /// Counts one refusal by its labels: the `reason` of an authentication failure, the `reason` a session
    /// ended, the `scope` of a rate limit (each when the refusal is one).
    pub fn refused(&self, auth_failure: Option<&str>, session_end: Option<&str>, limit_scope: Option<&str>) {
        if let Some(reason) = auth_failure {
            self.auth_failures.with_label_values(&[reason]).inc();
        }
        if let Some(reason) = session_end {
            self.session_timeouts.with_label_values(&[reason]).inc();
        }
        if let Some(scope) = limit_scope {
            self.rate_limited.with_label_values(&[scope]).inc();
        }
    }

    /// One Client ID Metadata Document fetch (or one refused by the fetch limits); `result` is a fixed label.
    pub fn client_metadata_fetched(&self, result: &'static str) {
        self.client_metadata_fetches.with_label_values(&[result]).inc();
    }

    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// `ibgw_active_sessions`, as the admin service last read it from the store.
    pub fn set_active_sessions(&self, count: u64) {
        self.active_sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// A request on a public listener has started: `ibgw_requests_in_flight` goes up until
    /// [`Metrics::request_finished`].
    pub fn request_started(&self) {
        self.requests_in_flight.inc();
    }

    /// A request of route class `route` was answered with `status` (0 when nothing was) after `seconds`:
    /// `ibgw_http_requests_total` and `ibgw_http_request_duration_seconds`.
    pub fn request_answered(&self, route: &'static str, status: u16, seconds: f64) {
        let make = || RouteHandles {
            duration: self.http_duration.with_label_values(&[route]),
            by_status: (0..RESOLVED_STATUSES).map(|_| std::sync::OnceLock::new()).collect(),
        };
        self.routes.with(route, make, |handles| {
            handles.duration.observe(seconds);
            let labelled = || self.http_requests.with_label_values(&[route, &status.to_string()]);
            match handles.by_status.get(usize::from(status)) {
                Some(counter) => counter.get_or_init(labelled).inc(),
                None => labelled().inc(),
            }
        });
    }

    /// The request counted by [`Metrics::request_started`] is over (answered, failed or abandoned).
    pub fn request_finished(&self) {
        self.requests_in_flight.dec();
    }

    /// The configuration in force was loaded at `unix_seconds` (start-up, or a successful reload).
    pub fn config_loaded(&self, unix_seconds: u64) {
        self.config_last_reload_success.set(i64::try_from(unix_seconds).unwrap_or(i64::MAX));
    }

    /// A reload ended: `ibgw_config_reloads_total{result="success"|"failure"}`.
    pub fn config_reloaded(&self, success: bool) {
        self.config_reloads.with_label_values(&[if success { "success" } else { "failure" }]).inc();
    }

    /// Requests started and not yet finished (see [`Metrics::request_started`]).
    pub fn requests_in_flight(&self) -> i64 {
        self.requests_in_flight.get()
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(target_os = "linux")]
mod process {
    use prometheus::core::{Collector, Desc};
    use prometheus::process_collector::{pid_t, ProcessCollector};
    use prometheus::proto::MetricFamily;
    use std::sync::Mutex;

    /// The prometheus crate's process collector, for the process that is scraped. The registry is made before
    /// Pingora daemonizes (`-d` forks), and `ProcessCollector::for_self` keeps the pid and start time of the
    /// process that made it: this one makes a new collector whenever the pid is no longer the one it reads.
    pub(super) struct ThisProcess {
        descs: Vec<Desc>,
        current: Mutex<(pid_t, ProcessCollector)>,
    }

    fn this_pid() -> pid_t {
        pid_t::try_from(std::process::id()).unwrap_or(pid_t::MAX)
    }

    impl ThisProcess {
        pub(super) fn new() -> Self {
            let pid = this_pid();
            let collector = ProcessCollector::new(pid, "");
            ThisProcess {
                descs: collector.desc().into_iter().cloned().collect(),
                current: Mutex::new((pid, collector)),
            }
        }
    }

    impl Collector for ThisProcess {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let pid = this_pid();
            if current.0 != pid {
                *current = (pid, ProcessCollector::new(pid, ""));
            }
            current.1.collect()
        }
    }
}
