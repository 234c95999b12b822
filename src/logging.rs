//! Log set-up: `env_logger` with the configured filter (`RUST_LOG` overrides it), as text or one JSON
//! object per line. Our code never passes a token, code, sid or secret to a log macro; libraries that print
//! headers at debug level are capped at `info` by [`Capped`], which sits in front of the filter, so that no
//! filter (not even a more specific `RUST_LOG` target such as `pingora_proxy::proxy_h1=trace`) can lift the
//! cap. The log-redaction tests check the result at the most verbose setting. A live reload may change the
//! filter ([`set_level`]), never the caps.
//!
//! [`LineWriter`] is the thread the access log and the audit log hand their records to: a request never waits
//! for a line to be written.

use prometheus::IntCounter;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{LogFormat, LoggingConfig};

/// Libraries whose debug and trace output prints request headers (`Authorization`, `sid`, cookies) or
/// command arguments: capped at `info` whatever the configured level. A target is capped when its crate (the
/// first path segment) is one of these, or any `pingora*` crate.
const CAPPED_AT_INFO: &[&str] =
    &["hyper", "hyper_rustls", "tokio_rustls", "hyper_util", "h2", "reqwest", "rustls", "redis"];

/// Is a record of this target and level above its library's cap?
fn over_the_cap(metadata: &log::Metadata) -> bool {
    if metadata.level() <= log::Level::Info {
        return false;
    }
    let krate = metadata.target().split("::").next().unwrap_or_default();
    krate.starts_with("pingora") || CAPPED_AT_INFO.contains(&krate)
}

/// The configured logger, behind the library caps. The logger behind the caps is swapped whole when a reload
/// changes `logging.level` ([`set_level`]); the caps stay.
struct Capped {
    logger: arc_swap::ArcSwap<env_logger::Logger>,
    format: LogFormat,
    /// `RUST_LOG` was set at start: it overrides `logging.level`, at start and on every reload.
    overridden: bool,
}

/// The logger [`init`] installed, for [`set_level`].
static INSTALLED: std::sync::OnceLock<&'static Capped> = std::sync::OnceLock::new();

impl log::Log for Capped {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        !over_the_cap(metadata) && self.logger.load().enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !over_the_cap(record.metadata()) {
            self.logger.load().log(record);
        }
    }

    fn flush(&self) {
        self.logger.load().flush();
    }
}

fn build(filter: &str, format: LogFormat) -> env_logger::Logger {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(filter);
    if format == LogFormat::Json {
        builder.format(|out, record| {
            let line = serde_json::json!({
                "ts": humantime_now(),
                "level": record.level().as_str(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(out, "{line}")
        });
    }
    builder.build()
}

pub fn init(config: &LoggingConfig) {
    // A second init (tests) keeps the first logger.
    if INSTALLED.get().is_some() {
        return;
    }
    // An empty `RUST_LOG` overrides nothing (it would silence everything but errors).
    let rust_log = std::env::var("RUST_LOG").ok().filter(|value| !value.trim().is_empty());
    let filter = rust_log.clone().unwrap_or_else(|| config.level.clone());
    let logger = build(&filter, config.format);
    let max_level = logger.filter();
    let capped: &'static Capped = Box::leak(Box::new(Capped {
        logger: arc_swap::ArcSwap::from_pointee(logger),
        format: config.format,
        overridden: rust_log.is_some(),
    }));
    if log::set_logger(capped).is_ok() {
        log::set_max_level(max_level);
        let _ = INSTALLED.set(capped);
    }
}

/// What [`set_level`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelChange {
    /// The new filter is in force.
    Applied,
    /// `RUST_LOG` overrides `logging.level`: the filter stays.
    OverriddenByRustLog,
    /// No logger of ours is installed (a library user, a test).
    NotInstalled,
}

/// Applies a reloaded `logging.level` (the format stays as it started), unless `RUST_LOG` overrides it.
pub fn set_level(config: &LoggingConfig) -> LevelChange {
    let Some(capped) = INSTALLED.get() else {
        return LevelChange::NotInstalled;
    };
    if capped.overridden {
        return LevelChange::OverriddenByRustLog;
    }
    let logger = build(&config.level, capped.format);
    let max_level = logger.filter();
    capped.logger.store(std::sync::Arc::new(logger));
    log::set_max_level(max_level);
    LevelChange::Applied
}

/// Records queued for a [`LineWriter`] at most; past this a burst loses lines rather than slowing requests.
const QUEUE: usize = 16_384;
/// A [`LineWriter`] wakes this often, writes what has queued up and flushes. It never blocks on the queue, so a
/// thread handing over a record never has to wake it (a profile showed those wake-ups as context switches).
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Turns a record into its line, newline included (on the writer thread, off the request path).
pub type LineFormat<R> = Box<dyn Fn(&R) -> String + Send>;

/// What the writer thread takes with it when it starts.
struct Unstarted<R> {
    receiver: Receiver<R>,
    out: Box<dyn Write + Send>,
    format: LineFormat<R>,
}

/// A thread of its own that writes records as lines, fed through a bounded queue: [`LineWriter::record`] never
/// blocks; when the queue is full the record is dropped and counted in `dropped`. The thread starts with the
/// first record, in the process that records it: a thread started before Pingora daemonizes (`-d` forks)
/// would not exist in the daemon.
pub struct LineWriter<R: Send + 'static> {
    name: &'static str,
    sender: SyncSender<R>,
    started: AtomicBool,
    unstarted: Mutex<Option<Unstarted<R>>>,
    dropped: IntCounter,
}

impl<R: Send + 'static> LineWriter<R> {
    /// A writer named `name` (its thread's name) of lines `format` makes, to `out`.
    pub fn new(name: &'static str, out: Box<dyn Write + Send>, format: LineFormat<R>, dropped: IntCounter) -> Self {
        let (sender, receiver) = sync_channel(QUEUE);
        LineWriter {
            name,
            sender,
            started: AtomicBool::new(false),
            unstarted: Mutex::new(Some(Unstarted { receiver, out, format })),
            dropped,
        }
    }

    /// Hands a record to the writer; never blocks.
    pub fn record(&self, record: R) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.sender.try_send(record) {
            self.dropped.inc();
        }
        if !self.started.load(Ordering::Acquire) {
            self.start();
        }
    }

    fn start(&self) {
        let mut unstarted = self.unstarted.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(Unstarted { receiver, out, format }) = unstarted.take() else { return };
        let spawned = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || write_lines(&receiver, &format, &mut std::io::BufWriter::with_capacity(64 * 1024, out)));
        if let Err(e) = spawned {
            // The queue fills and every later record is counted as dropped.
            log::error!("cannot start the {} writer: {e}", self.name);
        }
        self.started.store(true, Ordering::Release);
    }
}

fn write_lines<R>(receiver: &Receiver<R>, format: &LineFormat<R>, out: &mut impl Write) {
    loop {
        std::thread::sleep(DRAIN_EVERY);
        loop {
            match receiver.try_recv() {
                Ok(record) => {
                    let _ = out.write_all(format(&record).as_bytes());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        let _ = out.flush();
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
fn humantime_now() -> String {
    rfc3339(std::time::SystemTime::now())
}

/// `at` as an RFC 3339 UTC timestamp with milliseconds (truncated); a clock before 1970 reads as 1970.
pub fn rfc3339(at: std::time::SystemTime) -> String {
    let at = at.max(std::time::UNIX_EPOCH);
    let timestamp = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::MAX);
    format!("{timestamp:.3}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn library_debug_output_is_capped_whatever_the_target() {
        fn at(target: &'static str, level: log::Level) -> log::Metadata<'static> {
            log::MetadataBuilder::new().target(target).level(level).build()
        }
        assert!(super::over_the_cap(&at("pingora_proxy::proxy_h1", log::Level::Debug)));
        assert!(super::over_the_cap(&at("pingora_core::protocols::http::v1::client", log::Level::Trace)));
        assert!(super::over_the_cap(&at("hyper_util::client::legacy", log::Level::Debug)));
        assert!(super::over_the_cap(&at("redis", log::Level::Trace)));
        assert!(!super::over_the_cap(&at("pingora_proxy", log::Level::Info)));
        assert!(!super::over_the_cap(&at("ib_oauth_gateway::gateway", log::Level::Debug)));
        assert!(!super::over_the_cap(&at("hyperion", log::Level::Debug)), "a crate, not a prefix of a name");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |secs: u64, nanos: u32| super::rfc3339(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_767_225_600, 999_999_999), "2026-01-01T00:00:00.999Z", "truncated, not rounded");
        assert_eq!(at(951_782_400 + 86_399, 5_000_000), "2000-02-29T23:59:59.005Z");
        assert_eq!(super::rfc3339(UNIX_EPOCH - Duration::from_secs(1)), "1970-01-01T00:00:00.000Z");
    }
}
