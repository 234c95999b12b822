//! A TCP relay that adds network latency without `tc netem` (these machines lack the qdisc): every chunk read
//! from one side is written to the other `DELAY_US` microseconds after it was read, each way, so a request and
//! its answer take `2 × DELAY_US` longer, and a pipelined stream is delayed, not throttled. For the load bench's
//! scenario (f), between the gateway and redis-server.
//!
//! Usage: `delay_relay LISTEN_ADDR UPSTREAM_ADDR DELAY_US` (e.g. `127.0.0.1:7000 127.0.0.1:6379 250`). Prints
//! `relay listening on ADDR` once ready; runs until killed.
//!
//! Each connection gets two OS threads per direction (a reader that stamps each chunk with its due time and a
//! writer that sleeps until then): `std::thread::sleep`, ended early by how late this machine's sleeps wake,
//! keeps the delay within tens of microseconds, where tokio's timer wheel rounds every sleep up to whole
//! milliseconds. A gateway opens a handful of Redis
//! connections, so four threads each are cheap.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, delay_us] = args.as_slice() else {
        eprintln!("usage: delay_relay LISTEN_ADDR UPSTREAM_ADDR DELAY_US");
        std::process::exit(2);
    };
    let Ok(delay_us) = delay_us.parse::<u64>() else {
        eprintln!("DELAY_US must be a whole number of microseconds");
        std::process::exit(2);
    };
    let delay = Duration::from_micros(delay_us);
    let listener = TcpListener::bind(listen).unwrap_or_else(|e| {
        eprintln!("cannot listen on {listen}: {e}");
        std::process::exit(1);
    });
    println!("relay listening on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let upstream = upstream.clone();
        thread::spawn(move || match TcpStream::connect(&upstream) {
            Ok(server) => relay(client, server, delay),
            Err(e) => eprintln!("cannot reach {upstream}: {e}"),
        });
    }
}

/// Both directions of one connection, until either side closes.
fn relay(client: TcpStream, server: TcpStream, delay: Duration) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let pairs = [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())];
    for (from, to) in pairs {
        let (Ok(from), Ok(to)) = (from, to) else { return };
        direction(from, to, delay);
    }
}

/// Reads `from`, writes each chunk to `to` `delay` after it was read.
fn direction(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if chunks.send((Instant::now() + delay, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    thread::spawn(move || {
        // How late a sleep usually wakes on this machine: each sleep ends that much early, so chunks leave near
        // their due time rather than a scheduler's wake-up later (without it: 0.90 ms round trips for a 0.5 ms
        // setting on the busy 2-core bench machine). A low quantile, not the mean: it rises slowly and falls
        // fast, so the odd long preemption does not make every other chunk leave early (a mean did: 0.32 ms).
        let mut late = Duration::ZERO;
        for (at, chunk) in due {
            let aim = at.checked_sub(late).unwrap_or(at);
            let now = Instant::now();
            if aim > now {
                thread::sleep(aim - now);
                let woke = Instant::now().saturating_duration_since(aim);
                late = if woke > late { late + (woke - late) / 16 } else { late - (late - woke) / 2 };
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
