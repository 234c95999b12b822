//! Assembles the Pingora server: the public gateway service, the admin service, and the state they share.
//!
//! Pingora's process model is kept: `-d` daemonizes, `-u` takes the listening sockets from a running
//! instance (zero-downtime upgrade), `-t` checks and exits, SIGTERM drains within the grace period. SIGHUP
//! reloads the configuration file (see [`reload`]).

pub mod admin;
pub mod limit_sync;
pub mod reload;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::protocols::http::v2::server::default_h2_options;
use pingora::server::configuration::{Opt, ServerConf};
use std::sync::Arc;

use crate::config::{Config, StoreBackend};
use crate::gateway::Gateway;
use crate::ib::ExtraCas;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::{AppState, LiveState};
use crate::store::{self, SharedStore, TokenStore};
use crate::trace;

/// Exports the spans still queued when the gateway stops: once the requests in flight have finished (their
/// spans are recorded before they count as finished), or at the end of the grace period, when Pingora drops
/// what is left. It waits in a blocking task from the start, because at shutdown Pingora waits for running
/// blocking tasks (up to `graceful_shutdown_timeout_seconds`) but drops a runtime's futures at once.
struct FlushSpans {
    metrics: Arc<Metrics>,
    grace: std::time::Duration,
    timeout: std::time::Duration,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for FlushSpans {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let (metrics, grace, timeout) = (self.metrics.clone(), self.grace, self.timeout);
        let runtime = tokio::runtime::Handle::current();
        let flush = tokio::task::spawn_blocking(move || {
            let _ = runtime.block_on(shutdown.changed());
            let deadline = std::time::Instant::now() + grace;
            while metrics.requests_in_flight() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            trace::export::shutdown(timeout);
        });
        let _ = flush.await;
    }
}

/// Why the gateway could not start. `Display` is the one line `main` prints after `error: `; it names the
/// setting at fault where there is one.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot read the system CA roots: {0}")]
    SystemRoots(String),
    #[error("cannot write the upstream CA bundle: {0}")]
    CaBundle(std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("server.tls: cannot use certificate or key: {0}")]
    Tls(String),
    #[error("a store given to the gateway must be served with store.backend: memory")]
    StoreNotMemory,
}

/// Pingora's upstream TLS trusts one CA file instead of the system roots; with `platforms.extra_ca_file`
/// we give it the system roots plus the extra CAs (as the state read them: the login client trusts the same),
/// written once at start-up.
fn upstream_ca_bundle(extra: Option<&ExtraCas>) -> Result<Option<String>, StartError> {
    let Some(extra) = extra else {
        return Ok(None);
    };
    let extra_pem = String::from_utf8_lossy(&extra.pem);
    let mut bundle = String::new();
    let native = pingora::tls::load_native_certs().map_err(|e| StartError::SystemRoots(e.to_string()))?;
    for cert in native {
        bundle.push_str(&certificate_pem(cert.as_ref()));
    }
    bundle.push_str(&extra_pem);
    let path = std::env::temp_dir().join(format!("ib-oauth-gateway-ca-{}.pem", std::process::id()));
    std::fs::write(&path, bundle).map_err(StartError::CaBundle)?;
    Ok(Some(path.display().to_string()))
}

/// One DER certificate as PEM: 64-column base64 between the CERTIFICATE lines, `\n` line ends.
fn certificate_pem(der: &[u8]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), lf)
}

/// Pingora's process settings, from our one config file.
pub fn server_conf(config: &Config, opt: &Opt) -> ServerConf {
    let mut conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        upgrade_sock: config.server.upgrade_sock.clone(),
        pid_file: config.server.pid_file.clone(),
        upstream_keepalive_pool_size: config.upstream.pool_size,
        ..ServerConf::default()
    };
    conf.daemon = opt.daemon;
    conf
}

/// Checks at start-up that the configured store answers, so a misconfigured gateway stops at once.
/// (The serving connection is made later, inside Pingora's runtime: a runtime made here would not survive
/// daemonizing.)
fn check_store(config: &Config) -> Result<(), StartError> {
    if config.store.backend != StoreBackend::Redis {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(StartError::Runtime)?;
    runtime.block_on(async {
        let store = store::from_config(config).await?;
        Ok(store.ping().await?)
    })
}

/// Runs the gateway until it is told to stop. `config_path` is the file `settings` were read from, read again
/// by a reload.
pub fn run(settings: Settings, config_path: &str, opt: Opt) -> Result<(), StartError> {
    serve(settings, config_path, opt, |config, metrics| Arc::new(SharedStore::new(config, metrics)))
}

/// [`run`], serving `store` instead of the one `store:` configures: a memory store that
/// `examples/session_loader.rs` filled with many sessions, so the bench measures a memory-store gateway that
/// holds them (a running gateway's memory cannot be reached from outside). `store.backend` must then be
/// `memory`. Not in production builds (feature `test-support`).
#[cfg(feature = "test-support")]
pub fn run_with_store(
    settings: Settings,
    config_path: &str,
    opt: Opt,
    store: Arc<dyn TokenStore>,
) -> Result<(), StartError> {
    if settings.config.store.backend != StoreBackend::Memory {
        return Err(StartError::StoreNotMemory);
    }
    serve(settings, config_path, opt, |config, metrics| Arc::new(SharedStore::around(store, config, metrics)))
}

/// Runs the gateway on the store `store` makes (from the configuration and the metrics).
fn serve(
    settings: Settings,
    config_path: &str,
    opt: Opt,
    store: impl FnOnce(Arc<Config>, Arc<Metrics>) -> Arc<dyn TokenStore>,
) -> Result<(), StartError> {
    reload::ignore_hangup_until_ready();
    check_store(&settings.config)?;
    let config = settings.config.clone();
    let backend = match config.store.backend {
        StoreBackend::Memory => "memory",
        StoreBackend::Redis => "redis",
    };
    let metrics = Arc::new(Metrics::new(backend));
    trace::export::install(&config.tracing);
    let store = store(config.clone(), metrics.clone());
    if settings.ephemeral_key {
        log::warn!(
            "NO SIGNING KEY CONFIGURED (signing.current): using an ephemeral {:?} key. Access tokens will NOT \
             survive a restart and will NOT be accepted by other gateway instances. Generate a key with \
             `ib-oauth-gateway keygen` for anything but a single development instance.",
            config.signing.algorithm
        );
    }
    let auth = admin::auth::AdminAuth::new(settings.admin_token.as_ref(), config.admin.protect_metrics);
    let state = AppState::new(settings, store, metrics.clone())?;
    let ca_file = upstream_ca_bundle(state.extra_cas.as_ref())?;
    let live = Arc::new(LiveState::from_pointee(state));
    metrics.config_loaded(store::now_unix());
    if !auth.enabled() {
        log::info!("no admin.token configured: the admin API (/admin/...) is off");
    }
    let auth = Arc::new(arc_swap::ArcSwap::from_pointee(auth));
    let reloader = Arc::new(reload::Reloader::new(config_path, live.clone(), auth.clone()));

    let mut conf = server_conf(&config, &opt);
    conf.ca_file = ca_file;
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut gateway =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, Gateway::new(live.clone()), "gateway");
    let http2 = &config.server.http2;
    if let Some(proxy) = gateway.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = http2.h2c;
        proxy.server_options = Some(options);
        let mut h2 = default_h2_options();
        h2.max_concurrent_streams(http2.max_concurrent_streams).max_header_list_size(http2.max_header_list_size);
        proxy.h2_options = Some(h2);
    }
    for addr in &config.server.listen {
        gateway.add_tcp(addr.as_str());
    }
    if let Some(tls) = &config.server.tls {
        for addr in &tls.listen {
            // Pingora's intermediate settings (Mozilla's intermediate profile), with `h2` offered first by ALPN.
            let mut settings =
                TlsSettings::intermediate(&tls.cert_file, &tls.key_file).map_err(|e| StartError::Tls(e.to_string()))?;
            if http2.enabled {
                settings.enable_h2();
            }
            gateway.add_tls_with_settings(addr.as_str(), None, settings);
        }
    }
    server.add_service(gateway);

    if trace::export::enabled() {
        let flush = FlushSpans {
            metrics: metrics.clone(),
            grace: std::time::Duration::from_secs(config.server.grace_period_seconds),
            timeout: std::time::Duration::from_millis(config.tracing.export_timeout_ms)
                .min(std::time::Duration::from_secs(config.server.graceful_shutdown_timeout_seconds)),
        };
        server.add_service(pingora::services::background::background_service("trace export", flush));
    }

    let app = admin::AdminApp { reloader: reloader.clone(), auth };
    let mut admin = pingora::services::listening::Service::new("admin".into(), app);
    admin.add_tcp(config.server.admin_listen.as_str());
    server.add_service(admin);
    server.add_service(background_service("config reload", reload::HangupListener { reloader }));
    if let Some(counts) = live.load().rate_limits.shared_counts() {
        let every = std::time::Duration::from_millis(config.rate_limits.sync_interval_ms);
        server.add_service(background_service("rate-limit sync", limit_sync::LimitSync { live, counts, every }));
    }

    log::info!(
        "ib-oauth-gateway {} listening on {:?}, admin on {}, store {:?}",
        env!("CARGO_PKG_VERSION"),
        config.server.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        config.server.admin_listen,
        config.store.backend
    );
    server.run_forever()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_certificate_is_pem_with_64_column_lines() {
        let der: Vec<u8> = (0..=60).collect();
        let base64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
        assert_eq!(
            super::certificate_pem(&der),
            format!("-----BEGIN CERTIFICATE-----\n{}\n{}\n-----END CERTIFICATE-----\n", &base64[..64], &base64[64..])
        );
    }
}
