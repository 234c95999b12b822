//! The bounds of metadata document resolution, as pure parts with the clock passed in: how long a resolved
//! document or a failure is kept, the bounded table of kept outcomes, and the token buckets that limit
//! fetches per host and overall. No I/O; [`super::ClientMetadataResolver`] drives them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a resolved document is kept: its `max-age` clamped to `[min, max]`; `min` when it gave none.
pub fn document_ttl(max_age: Option<Duration>, min: Duration, max: Duration) -> Duration {
    max_age.unwrap_or(min).clamp(min, max.max(min))
}

/// A token bucket: `burst` fetches at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(burst: u32, now: Instant) -> Self {
        TokenBucket { tokens: f64::from(burst), updated: now }
    }

    fn refill(&mut self, now: Instant, burst: u32, per_minute: u32) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(per_minute) / 60.0).min(f64::from(burst));
        self.updated = now;
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, burst: u32, per_minute: u32) -> bool {
        self.refill(now, burst, per_minute);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Is the bucket back to full (then it is the same as no bucket at all)?
    pub fn is_full(&mut self, now: Instant, burst: u32, per_minute: u32) -> bool {
        self.refill(now, burst, per_minute);
        self.tokens >= f64::from(burst)
    }
}

/// How many fetches: per host (a burst, then a rate), at most `max_hosts` hosts tracked, and overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimitSettings {
    pub host_burst: u32,
    pub host_per_minute: u32,
    pub overall_burst: u32,
    pub overall_per_minute: u32,
    pub max_hosts: usize,
}

impl Default for FetchLimitSettings {
    /// A client fetches its document once per cache period; these leave room for retries and many clients
    /// while keeping the gateway from becoming anyone's request amplifier.
    fn default() -> Self {
        FetchLimitSettings {
            host_burst: 5,
            host_per_minute: 10,
            overall_burst: 30,
            overall_per_minute: 120,
            max_hosts: 1000,
        }
    }
}

/// The fetch limits in force: one bucket per host, at most `max_hosts` of them, and one for all hosts.
#[derive(Debug)]
pub struct FetchLimits {
    settings: FetchLimitSettings,
    per_host: HashMap<String, TokenBucket>,
    overall: TokenBucket,
}

impl FetchLimits {
    pub fn new(settings: FetchLimitSettings, now: Instant) -> Self {
        FetchLimits { settings, per_host: HashMap::new(), overall: TokenBucket::full(settings.overall_burst, now) }
    }

    /// May the gateway fetch from `host` now? Takes a token from the host's bucket and the overall one.
    /// When the host table is full of hosts still being limited, a new host is refused (never forgotten
    /// limits: that would hand out fresh bursts).
    pub fn try_fetch(&mut self, host: &str, now: Instant) -> bool {
        let FetchLimitSettings { host_burst: burst, host_per_minute: per_minute, max_hosts, .. } = self.settings;
        if !self.per_host.contains_key(host) && self.per_host.len() >= max_hosts {
            self.per_host.retain(|_, bucket| !bucket.is_full(now, burst, per_minute));
            if self.per_host.len() >= max_hosts {
                return false;
            }
        }
        let bucket = self.per_host.entry(host.to_string()).or_insert_with(|| TokenBucket::full(burst, now));
        let mut trial = *bucket;
        if !trial.take(now, burst, per_minute) {
            *bucket = trial;
            return false;
        }
        if !self.overall.take(now, self.settings.overall_burst, self.settings.overall_per_minute) {
            return false;
        }
        *bucket = trial;
        true
    }
}

/// Outcomes kept until their expiry, at most `max_entries`: when full, the expired go first, then the one
/// that would expire soonest.
#[derive(Debug)]
pub struct Kept<V> {
    entries: HashMap<String, (V, Instant)>,
    max_entries: usize,
}

impl<V: Clone> Kept<V> {
    pub fn new(max_entries: usize) -> Self {
        Kept { entries: HashMap::new(), max_entries: max_entries.max(1) }
    }

    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        self.entries.get(key).filter(|(_, expires)| *expires > now).map(|(value, _)| value.clone())
    }

    pub fn insert(&mut self, key: String, value: V, expires: Instant, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.max_entries {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.max_entries {
                let soonest = self.entries.iter().min_by_key(|(_, (_, expires))| *expires).map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries.insert(key, (value, expires));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(86_400);

    #[test]
    fn max_age_is_clamped_to_the_configured_range() {
        assert_eq!(document_ttl(None, MIN, MAX), MIN);
        assert_eq!(document_ttl(Some(Duration::ZERO), MIN, MAX), MIN);
        assert_eq!(document_ttl(Some(Duration::from_secs(3600)), MIN, MAX), Duration::from_secs(3600));
        assert_eq!(document_ttl(Some(Duration::from_secs(u64::MAX)), MIN, MAX), MAX);
        // A range written the wrong way round never panics: the minimum wins.
        assert_eq!(document_ttl(Some(Duration::from_secs(1)), MAX, MIN), MAX);
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(3, start);
        assert!((0..3).all(|_| bucket.take(start, 3, 6)));
        assert!(!bucket.take(start, 3, 6));
        // 6 a minute: one token every 10 s.
        assert!(!bucket.take(start + Duration::from_secs(9), 3, 6));
        assert!(bucket.take(start + Duration::from_secs(10), 3, 6));
        assert!(!bucket.take(start + Duration::from_secs(10), 3, 6));
        // Never more than the burst, however long it rested.
        let later = start + Duration::from_secs(3600);
        assert!(bucket.is_full(later, 3, 6));
        assert!((0..3).all(|_| bucket.take(later, 3, 6)));
        assert!(!bucket.take(later, 3, 6));
    }

    #[test]
    fn each_host_has_its_own_limit_under_an_overall_one() {
        let now = Instant::now();
        let mut limits = FetchLimits::new(
            FetchLimitSettings {
                host_burst: 2,
                host_per_minute: 1,
                overall_burst: 5,
                overall_per_minute: 1,
                max_hosts: 100,
            },
            now,
        );
        assert!(limits.try_fetch("a.example", now));
        assert!(limits.try_fetch("a.example", now));
        assert!(!limits.try_fetch("a.example", now), "host a is at its burst");
        assert!(limits.try_fetch("b.example", now));
        assert!(limits.try_fetch("b.example", now));
        assert!(limits.try_fetch("c.example", now));
        assert!(!limits.try_fetch("d.example", now), "five fetches overall");
    }

    #[test]
    fn a_refusal_by_the_overall_limit_costs_the_host_nothing() {
        let now = Instant::now();
        let mut limits = FetchLimits::new(
            FetchLimitSettings {
                host_burst: 1,
                host_per_minute: 1,
                overall_burst: 1,
                overall_per_minute: 1,
                max_hosts: 100,
            },
            now,
        );
        assert!(limits.try_fetch("a.example", now));
        assert!(!limits.try_fetch("b.example", now));
        let later = now + Duration::from_secs(60);
        assert!(limits.try_fetch("b.example", later));
    }

    #[test]
    fn a_full_host_table_refuses_new_hosts_until_old_limits_have_refilled() {
        let now = Instant::now();
        let mut limits = FetchLimits::new(
            FetchLimitSettings {
                host_burst: 1,
                host_per_minute: 1,
                overall_burst: 100,
                overall_per_minute: 6000,
                max_hosts: 2,
            },
            now,
        );
        assert!(limits.try_fetch("a.example", now));
        assert!(limits.try_fetch("b.example", now));
        assert!(!limits.try_fetch("c.example", now));
        assert!(limits.try_fetch("c.example", now + Duration::from_secs(60)));
    }

    #[test]
    fn kept_outcomes_expire_and_stay_bounded() {
        let now = Instant::now();
        let mut kept = Kept::new(2);
        kept.insert("a".into(), 1, now + Duration::from_secs(10), now);
        kept.insert("b".into(), 2, now + Duration::from_secs(20), now);
        assert_eq!(kept.get("a", now), Some(1));
        assert_eq!(kept.get("a", now + Duration::from_secs(10)), None);
        kept.insert("c".into(), 3, now + Duration::from_secs(30), now);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.get("a", now), None, "the soonest to expire went first");
        assert_eq!(kept.get("c", now), Some(3));
        // Expired entries make room before live ones do.
        let later = now + Duration::from_secs(25);
        kept.insert("d".into(), 4, later + Duration::from_secs(1), later);
        assert_eq!((kept.get("c", later), kept.get("d", later)), (Some(3), Some(4)));
        // Replacing a key never evicts another.
        kept.insert("d".into(), 5, later + Duration::from_secs(100), later);
        assert_eq!((kept.get("c", later), kept.get("d", later)), (Some(3), Some(5)));
    }
}
