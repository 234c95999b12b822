//! Repeated authentication failures from one address: a pure count (an address and a clock in, "report it now"
//! or not out). Windows are aligned to the clock like the rate limits' (`now / window_seconds`), so the whole
//! table is cleared when a window ends and memory never holds more than one window's addresses. Addresses are
//! counted as the per-IP rate limit counts them ([`client_key`]: IPv6 by its /64).

use std::collections::HashMap;
use std::net::IpAddr;

use super::AuditKind;
use crate::limits::client_key;

pub struct FailureWindows {
    /// Failures in one window that make the event; 0: never.
    threshold: u32,
    window_seconds: u64,
    /// Addresses followed in one window at most.
    max_addresses: usize,
    /// The window `counts` is about.
    window: u64,
    counts: HashMap<IpAddr, u32>,
}

impl FailureWindows {
    pub fn new(threshold: u32, window_seconds: u64, max_addresses: usize) -> Self {
        FailureWindows { threshold, window_seconds, max_addresses, window: 0, counts: HashMap::new() }
    }

    /// Counts one failure of `ip` at `now` (Unix seconds). The failure that reaches the threshold in its
    /// window gets the event to record; every other gets `None`, so an address is reported once per window.
    /// A new address past `max_addresses` in this window is not followed.
    pub fn record(&mut self, ip: IpAddr, now: u64) -> Option<AuditKind> {
        if self.threshold == 0 || self.window_seconds == 0 {
            return None;
        }
        let window = now / self.window_seconds;
        if window != self.window {
            self.window = window;
            self.counts.clear();
            self.counts.shrink_to(1_024);
        }
        let key = client_key(ip);
        if !self.counts.contains_key(&key) && self.counts.len() >= self.max_addresses {
            return None;
        }
        let count = self.counts.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        (*count == self.threshold).then_some(AuditKind::RepeatedAuthFailures {
            failures: self.threshold,
            window_seconds: self.window_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The failures (1-based) of `times` in a row at `now` that were reported.
    fn reported(windows: &mut FailureWindows, address: &str, now: u64, times: u32) -> Vec<u32> {
        (1..=times).filter(|_| windows.record(ip(address), now).is_some()).collect()
    }

    #[test]
    fn the_failure_that_reaches_the_threshold_is_reported_and_no_other() {
        let mut windows = FailureWindows::new(10, 60, 100);
        assert_eq!(reported(&mut windows, "192.0.2.1", 120, 9), Vec::<u32>::new(), "one short of the threshold");
        assert_eq!(
            windows.record(ip("192.0.2.1"), 179),
            Some(AuditKind::RepeatedAuthFailures { failures: 10, window_seconds: 60 })
        );
        assert_eq!(reported(&mut windows, "192.0.2.1", 179, 100), Vec::<u32>::new(), "once per window");
    }

    #[test]
    fn a_new_window_starts_the_count_again_at_the_clock_boundary() {
        let mut windows = FailureWindows::new(3, 60, 100);
        assert!(reported(&mut windows, "192.0.2.1", 119, 2).is_empty(), "the last second of window 1");
        assert!(reported(&mut windows, "192.0.2.1", 120, 2).is_empty(), "window 2 counts from zero");
        assert_eq!(reported(&mut windows, "192.0.2.1", 179, 1), [1], "the third failure of window 2");
        assert_eq!(reported(&mut windows, "192.0.2.1", 180, 3), [3], "window 3 reports again");
    }

    #[test]
    fn addresses_are_counted_apart_and_ipv6_by_its_64() {
        let mut windows = FailureWindows::new(2, 60, 100);
        assert!(windows.record(ip("192.0.2.1"), 0).is_none());
        assert!(windows.record(ip("192.0.2.2"), 0).is_none(), "another address");
        assert!(windows.record(ip("2001:db8:1:2::1"), 0).is_none());
        assert!(windows.record(ip("2001:db8:1:2:ffff::9"), 0).is_some(), "the same /64");
        assert!(windows.record(ip("2001:db8:1:3::1"), 0).is_none(), "another /64");
        assert!(windows.record(ip("::ffff:192.0.2.1"), 0).is_some(), "IPv4-mapped counts as its IPv4 address");
    }

    #[test]
    fn a_full_table_follows_only_the_addresses_it_has_until_the_window_ends() {
        let mut windows = FailureWindows::new(2, 60, 2);
        assert!(windows.record(ip("192.0.2.1"), 0).is_none());
        assert!(windows.record(ip("192.0.2.2"), 0).is_none());
        assert_eq!(reported(&mut windows, "192.0.2.3", 0, 5), Vec::<u32>::new(), "not followed: the table is full");
        assert!(windows.record(ip("192.0.2.1"), 59).is_some(), "followed addresses still count");
        assert_eq!(reported(&mut windows, "192.0.2.3", 60, 2), [2], "the next window has room");
    }

    #[test]
    fn a_threshold_of_zero_never_reports() {
        let mut windows = FailureWindows::new(0, 60, 100);
        assert!(reported(&mut windows, "192.0.2.1", 0, 1_000).is_empty());
    }

    #[test]
    fn a_threshold_of_one_reports_the_first_failure() {
        let mut windows = FailureWindows::new(1, 60, 100);
        assert_eq!(reported(&mut windows, "192.0.2.1", 0, 3), [1]);
    }
}
