//! Repeated authentication failures from one address: a pure count (an address and a clock in, "report it now"
//! or not out). Windows are aligned to the clock like the rate limits' (`now / window_seconds`), so the whole
//! table is cleared when a window ends and memory never holds more than one window's networks.
//!
//! Addresses are counted by network, as the per-IP rate limit counts them ([`client_key`]: an IPv4 address,
//! an IPv6 /64), while the table has room. Under pressure a new address is counted by a wider network instead
//! (IPv6 /48 past half the table, /32 past three quarters; IPv4 /24, then /16), so one IPv6 /48 — 65,536 /64s
//! — cannot fill the table and blind the event for everyone else. An address already followed keeps counting
//! where it is; a new one that fits nowhere is not followed, and counted as such.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::AuditKind;
use crate::limits::client_key;

/// The networks an address is counted by, narrowest first, for IPv4 and IPv6.
const IPV4_PREFIXES: [u8; 3] = [32, 24, 16];
const IPV6_PREFIXES: [u8; 3] = [64, 48, 32];

/// What one failure did to the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted under a network; `Some` for the failure that reached the threshold (report it now).
    Followed(Option<AuditKind>),
    /// The table is full even at the widest network: not followed this window.
    Unfollowed,
}

pub struct FailureWindows {
    /// Failures in one window that make the event; 0: never.
    threshold: u32,
    window_seconds: u64,
    /// Networks followed in one window at most.
    max_networks: usize,
    /// The window `counts` is about.
    window: u64,
    counts: HashMap<IpNet, u32>,
}

impl FailureWindows {
    pub fn new(threshold: u32, window_seconds: u64, max_networks: usize) -> Self {
        FailureWindows { threshold, window_seconds, max_networks, window: 0, counts: HashMap::new() }
    }

    /// Counts one failure of `ip` at `now` (Unix seconds). The failure that reaches the threshold in its
    /// window gets the event to record; every other gets `None`, so a network is reported once per window.
    pub fn record(&mut self, ip: IpAddr, now: u64) -> Counted {
        if self.threshold == 0 || self.window_seconds == 0 {
            return Counted::Followed(None);
        }
        let window = now / self.window_seconds;
        if window != self.window {
            self.window = window;
            self.counts.clear();
            self.counts.shrink_to(1_024);
        }
        let ip = client_key(ip);
        let prefixes = if ip.is_ipv4() { IPV4_PREFIXES } else { IPV6_PREFIXES };
        let networks = prefixes.map(|prefix| IpNet::new(ip, prefix).map(|net| net.trunc()).unwrap_or(IpNet::from(ip)));
        let followed = networks.iter().find(|net| self.counts.contains_key(*net)).copied();
        // Level i takes new networks while the table is below (2 + i) quarters full.
        let room = |level: usize| self.counts.len() < self.max_networks * (2 + level) / 4;
        let Some(network) = followed.or_else(|| (0..networks.len()).find(|&level| room(level)).map(|l| networks[l]))
        else {
            return Counted::Unfollowed;
        };
        let count = self.counts.entry(network).or_insert(0);
        *count = count.saturating_add(1);
        Counted::Followed((*count == self.threshold).then_some(AuditKind::RepeatedAuthFailures {
            failures: self.threshold,
            window_seconds: self.window_seconds,
            network,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The event of one failure, if it is reported.
    fn event(windows: &mut FailureWindows, address: &str, now: u64) -> Option<AuditKind> {
        match windows.record(ip(address), now) {
            Counted::Followed(event) => event,
            Counted::Unfollowed => None,
        }
    }

    /// The failures (1-based) of `times` in a row at `now` that were reported.
    fn reported(windows: &mut FailureWindows, address: &str, now: u64, times: u32) -> Vec<u32> {
        (1..=times).filter(|_| event(windows, address, now).is_some()).collect()
    }

    #[test]
    fn the_failure_that_reaches_the_threshold_is_reported_and_no_other() {
        let mut windows = FailureWindows::new(10, 60, 100);
        assert_eq!(reported(&mut windows, "192.0.2.1", 120, 9), Vec::<u32>::new(), "one short of the threshold");
        assert_eq!(
            event(&mut windows, "192.0.2.1", 179),
            Some(AuditKind::RepeatedAuthFailures {
                failures: 10,
                window_seconds: 60,
                network: "192.0.2.1/32".parse().unwrap()
            })
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
        assert!(event(&mut windows, "192.0.2.1", 0).is_none());
        assert!(event(&mut windows, "192.0.2.2", 0).is_none(), "another address");
        assert!(event(&mut windows, "2001:db8:1:2::1", 0).is_none());
        assert!(event(&mut windows, "2001:db8:1:2:ffff::9", 0).is_some(), "the same /64");
        assert!(event(&mut windows, "2001:db8:1:3::1", 0).is_none(), "another /64");
        assert!(event(&mut windows, "::ffff:192.0.2.1", 0).is_some(), "IPv4-mapped counts as its IPv4 address");
    }

    #[test]
    fn one_ipv6_48_cannot_fill_the_table_and_blind_the_event_for_everyone_else() {
        let mut windows = FailureWindows::new(3, 60, 100);
        // An attacker walks 65,536 /64s of one /48, each failing once.
        for n in 0..65_536u32 {
            windows.record(ip(&format!("2001:db8:aaaa:{n:x}::1")), 0);
        }
        assert!(windows.counts.len() <= 100, "the table stays bounded: {}", windows.counts.len());
        // Past half the table the attacker's failures add up under its /48; an unrelated IPv4 client and another
        // IPv6 network are still followed and reported.
        assert_eq!(reported(&mut windows, "198.51.100.7", 10, 3), [3], "an IPv4 client is still reported");
        assert_eq!(reported(&mut windows, "2001:db8:bbbb::1", 10, 3), [3], "another /48 is still reported");
    }

    #[test]
    fn under_pressure_new_addresses_are_counted_by_wider_networks_and_the_rest_is_counted_as_unfollowed() {
        let mut windows = FailureWindows::new(1_000, 60, 8);
        for n in 0..4u32 {
            assert_eq!(windows.record(ip(&format!("2001:db8:{n:x}::1")), 0), Counted::Followed(None));
        }
        let nets = |w: &FailureWindows| {
            let mut nets: Vec<String> = w.counts.keys().map(ToString::to_string).collect();
            nets.sort();
            nets
        };
        assert!(nets(&windows).iter().all(|net| net.ends_with("/64")), "{:?}", nets(&windows));
        // Half full: the next new ones by /48, then by /32, then not at all.
        windows.record(ip("2001:db8:10:1::1"), 0);
        assert!(nets(&windows).contains(&"2001:db8:10::/48".to_string()), "{:?}", nets(&windows));
        windows.record(ip("2001:db8:11:1::1"), 0);
        windows.record(ip("2001:db9:1::1"), 0);
        assert!(nets(&windows).contains(&"2001:db9::/32".to_string()), "{:?}", nets(&windows));
        windows.record(ip("2001:dba:1::1"), 0);
        assert_eq!(windows.counts.len(), 8);
        assert_eq!(windows.record(ip("2001:dbb:1::1"), 0), Counted::Unfollowed, "full even at /32");
        // A followed network keeps counting, at whatever width it was taken.
        assert_eq!(windows.record(ip("2001:db8:10:ffff::9"), 0), Counted::Followed(None), "inside the /48");
        assert_eq!(windows.counts[&"2001:db8:10::/48".parse::<IpNet>().unwrap()], 2);
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
