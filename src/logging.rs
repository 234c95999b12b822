//! Log set-up: `env_logger` with the configured filter (`RUST_LOG` overrides it), as text or one JSON
//! object per line. Our code never passes a token, code, sid or secret to a log macro; libraries that print
//! headers at debug level are capped at `info` here. The log-redaction tests check the result.

use std::io::Write;

use crate::config::{LogFormat, LoggingConfig};

/// Libraries whose debug and trace output prints request headers (`Authorization`, `sid`, cookies) or
/// command arguments: capped at `info` whatever the configured level.
const CAPPED_AT_INFO: &[&str] = &[
    "pingora",
    "pingora_core",
    "pingora_proxy",
    "pingora_http",
    "pingora_pool",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "redis",
];

pub fn init(config: &LoggingConfig) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.level.clone());
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter);
    for module in CAPPED_AT_INFO {
        builder.filter_module(module, log::LevelFilter::Info);
    }
    if config.format == LogFormat::Json {
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
    // A second init (tests, reload) keeps the first logger.
    let _ = builder.try_init();
}

/// RFC 3339 UTC timestamp with milliseconds.
fn humantime_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
