//! Live reload: `SIGHUP` and `POST /admin/reload` read the configuration file the process started with,
//! validate it as start-up does, and swap in what can change live (`config::live::LIVE_KEYS`: OAuth clients,
//! CORS, rate limits, the platform allowlist, upstream timeouts, the log level, the admin token). Keys that
//! need a restart keep their running value and are named (logged at `warn`, listed in the answer); so does
//! `platforms.extra_ca_file` when only the file's content changed (the CAs read at start-up stay trusted).
//!
//! All or nothing: if anything is invalid, nothing changes and the errors are logged and returned. The new
//! state shares the store, keys, metrics and every limit's counters with the old one, and requests in flight
//! finish on the state they started with. A SIGHUP never ends the process: [`ignore_hangup_until_ready`]
//! takes the signal from its default action before anything else runs.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::admin::auth::AdminAuth;
use crate::config::{self, ConfigError, ConfigErrors};
use crate::settings::Settings;
use crate::state::{AppState, LiveState, StateError};
use crate::store::now_unix;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The live keys of the file are in force. `changed`: the live keys whose value changed;
    /// `restart_required`: keys that changed but keep their running value until a restart (`-u` upgrade).
    Reloaded { changed: Vec<String>, restart_required: Vec<String> },
    /// The file is unreadable or invalid: nothing changed.
    Refused(Vec<ConfigError>),
}

/// Reloads the configuration into the running gateway, one reload at a time.
pub struct Reloader {
    /// The file the process started with; absolute, since `-d` changes the working directory.
    path: PathBuf,
    live: Arc<LiveState>,
    admin: Arc<ArcSwap<AdminAuth>>,
    one_at_a_time: Mutex<()>,
}

impl Reloader {
    pub fn new(path: &str, live: Arc<LiveState>, admin: Arc<ArcSwap<AdminAuth>>) -> Self {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        Reloader { path, live, admin, one_at_a_time: Mutex::new(()) }
    }

    /// The state new requests start on.
    pub fn state(&self) -> Arc<AppState> {
        self.live.load_full()
    }

    /// Reads, validates and applies the configuration file; `trigger` (`SIGHUP`, `POST /admin/reload`) is
    /// for the log. Counts the result in `ibgw_config_reloads_total`.
    pub fn reload(&self, trigger: &str) -> ReloadOutcome {
        let _one = self.one_at_a_time.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.path.display().to_string();
        let running = self.live.load_full();
        let outcome = match self.prepare(&path, &running) {
            Ok(next) => {
                if next.changed.iter().any(|key| key == "logging.level") {
                    let change = crate::logging::set_level(&next.state.config.logging);
                    if change == crate::logging::LevelChange::OverriddenByRustLog {
                        log::warn!("logging.level changed, but RUST_LOG overrides it: the log filter stays");
                    }
                }
                self.live.store(Arc::new(next.state));
                self.admin.store(Arc::new(next.admin));
                ReloadOutcome::Reloaded { changed: next.changed, restart_required: next.restart_required }
            }
            Err(errors) => ReloadOutcome::Refused(errors.iter().cloned().collect()),
        };
        let metrics = &running.metrics;
        match &outcome {
            ReloadOutcome::Reloaded { changed, restart_required } => {
                metrics.config_reloaded(true);
                metrics.config_loaded(now_unix());
                log::info!("configuration reloaded from {path} ({trigger}); changed: {}", listed(changed));
                if !restart_required.is_empty() {
                    log::warn!(
                        "configuration reload ({trigger}): {} changed but need a restart (-u upgrade) to apply; \
                         their running values stay",
                        listed(restart_required)
                    );
                }
            }
            ReloadOutcome::Refused(errors) => {
                metrics.config_reloaded(false);
                for error in errors {
                    log::error!("configuration reload ({trigger}) refused, the running configuration stays: {error}");
                }
            }
        }
        outcome
    }

    /// Everything a reload checks before it changes anything: the file as start-up checks it (read into
    /// [`Settings`]: keys, secrets, the admin token, the CA file), then the new state built from it.
    fn prepare(&self, path: &str, running: &AppState) -> Result<Prepared, ConfigErrors> {
        let new = Settings::try_from(config::load_all(path)?)?;
        let plan = config::live::reconfigure(&running.config, &new.config);
        let mut restart_required = plan.restart_required;
        if extra_cas_changed(running, &new) && !restart_required.iter().any(|key| key == "platforms.extra_ca_file") {
            restart_required.push("platforms.extra_ca_file".into());
        }
        let admin = AdminAuth::new(new.admin_token.as_ref(), plan.config.admin.protect_metrics);
        let next = Settings { config: Arc::new(plan.config), ..new };
        let state = running.reconfigured(next).map_err(|e| {
            let key = match &e {
                StateError::Ib(_) => "platforms",
                StateError::Audit(_) => "logging.audit",
                StateError::ExchangeResourceIsOwn(_) => "oauth.clients",
            };
            ConfigErrors::one(ConfigError { key: key.into(), message: e.to_string() })
        })?;
        Ok(Prepared { state, admin, changed: plan.changed, restart_required })
    }
}

/// Does the file `platforms.extra_ca_file` names now hold other CAs than those read at start-up? The CAs read
/// then stay in force, for the login client and Pingora's upstream TLS alike, until a restart.
fn extra_cas_changed(running: &AppState, new: &Settings) -> bool {
    let pem = |cas: Option<&crate::ib::ExtraCas>| cas.map(|cas| cas.pem.clone());
    pem(running.extra_cas.as_ref()) != pem(new.extra_cas.as_ref())
}

/// A reload checked and built, not yet in force.
struct Prepared {
    state: AppState,
    admin: AdminAuth,
    changed: Vec<String>,
    restart_required: Vec<String>,
}

fn listed(keys: &[String]) -> String {
    if keys.is_empty() {
        "nothing".into()
    } else {
        keys.join(", ")
    }
}

/// Takes SIGHUP from its default action (ending the process) at once, before the configuration is read:
/// tokio's handler, once installed, stays for the life of the process (and of a daemonized child), and a
/// SIGHUP with nobody listening is dropped. [`HangupListener`] listens once the server runs. Idempotent.
pub fn ignore_hangup_until_ready() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build();
    let installed = runtime.map_err(|e| e.to_string()).and_then(|runtime| {
        runtime.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map(drop).map_err(|e| e.to_string())
        })
    });
    if let Err(e) = installed {
        log::error!("cannot install the SIGHUP handler: a SIGHUP would end the process: {e}");
    }
}

/// A background service of the server: each SIGHUP reloads the configuration.
pub struct HangupListener {
    pub reloader: Arc<Reloader>,
}

#[async_trait]
impl BackgroundService for HangupListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(e) => {
                log::error!("cannot listen for SIGHUP, reload only through POST /admin/reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() {
                        return;
                    }
                    let reloader = self.reloader.clone();
                    // The file is read and the state built off the runtime's thread.
                    let reloaded = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
                    if let Err(e) = reloaded {
                        log::error!("configuration reload (SIGHUP) failed: {e}");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
