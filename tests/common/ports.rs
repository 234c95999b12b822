//! Free TCP ports for the servers a test starts (gateways, Redis, sentinels).

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Ports this process has handed out: two tests running at once never get the same one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The lowest port of the range tried: below the kernel's ephemeral range, so that neither `bind(":0")`
/// (the mocks) nor the source port of an outgoing connection can take a port between the moment it is
/// handed out and the moment the server binds it.
const FIRST: u32 = 20_000;

/// The low end of the kernel's ephemeral range, from which it picks ports for `bind(":0")` and for
/// outgoing connections.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|low| low.parse().ok()))
        .unwrap_or(32_768)
}

/// A TCP port on 127.0.0.1 that nothing listens on now and that no other caller in this process has been
/// given. Outside the ephemeral range where there is room; the start is spread by process id so that test
/// binaries running at the same time (other worktrees, other CI jobs) rarely try the same ports.
pub fn free_port() -> u16 {
    let low = ephemeral_low();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if low > FIRST + 1_000 {
        let span = low - FIRST;
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            let port = (FIRST + offset) as u16;
            if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    // No room below the ephemeral range: let the kernel choose, still never twice in this process.
    loop {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port();
        if handed_out.insert(port) {
            return port;
        }
    }
}
