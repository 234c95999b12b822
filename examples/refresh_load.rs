//! Bench-only load client for refresh grants (`benches/load.sh`, scenario d). Each refresh token can be used
//! once (rotation), so a wrk script cannot replay one request: this runs N concurrent refresh chains for S
//! seconds, each chain posting `grant_type=refresh_token` with the refresh token its previous grant returned,
//! and prints grants per second and latency percentiles. Tokens are never printed.
//!
//! Usage: `refresh_load TOKEN_URL CLIENT_ID REFRESH_TOKEN_FILE CHAINS SECONDS`, with the client secret in
//! `$IBGW_BENCH_CLIENT_SECRET`. The file holds one refresh token per line, at least CHAINS of them.

use std::time::{Duration, Instant};

use serde_json::Value;

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("refresh_load: {message}");
    std::process::exit(1);
}

/// What one chain did: latencies of its successful grants, and its first error (it stops there).
struct ChainResult {
    latencies: Vec<Duration>,
    error: Option<String>,
}

async fn chain(
    client: reqwest::Client,
    url: String,
    client_id: String,
    secret: String,
    mut token: String,
    deadline: Instant,
) -> ChainResult {
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let started = Instant::now();
        let sent = client
            .post(&url)
            .basic_auth(&client_id, Some(&secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return ChainResult { latencies, error: Some(format!("request failed: {e}")) },
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(e) => return ChainResult { latencies, error: Some(format!("HTTP {status}, unreadable body: {e}")) },
        };
        match body["refresh_token"].as_str() {
            Some(next) if status.is_success() => token = next.to_string(),
            _ => {
                let error = body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("?");
                return ChainResult { latencies, error: Some(format!("HTTP {status}: {error}")) };
            }
        }
        latencies.push(started.elapsed());
    }
    ChainResult { latencies, error: None }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, client_id, token_file, chains, seconds] = args.as_slice() else {
        fail("usage: refresh_load TOKEN_URL CLIENT_ID REFRESH_TOKEN_FILE CHAINS SECONDS");
    };
    let chains: usize = chains.parse().unwrap_or_else(|_| fail("CHAINS must be a number"));
    let seconds: f64 = seconds.parse().unwrap_or_else(|_| fail("SECONDS must be a number"));
    let secret = std::env::var("IBGW_BENCH_CLIENT_SECRET").unwrap_or_else(|_| fail("IBGW_BENCH_CLIENT_SECRET unset"));
    let tokens: Vec<String> = std::fs::read_to_string(token_file)
        .unwrap_or_else(|e| fail(format!("{token_file}: {e}")))
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.len() < chains {
        fail(format!("{token_file} holds {} refresh tokens, {chains} chains need as many", tokens.len()));
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(chains)
        .build()
        .unwrap_or_else(|e| fail(format!("HTTP client: {e}")));

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = tokens
        .into_iter()
        .take(chains)
        .map(|token| {
            tokio::spawn(chain(client.clone(), url.clone(), client_id.clone(), secret.clone(), token, deadline))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let result = task.await.unwrap_or_else(|e| fail(format!("a chain panicked: {e}")));
        latencies.extend(result.latencies);
        errors.extend(result.error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "grants={} seconds={elapsed:.2} grants_per_s={:.0} p50_ms={:.2} p99_ms={:.2} chains={chains} failed_chains={}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        percentile(0.50),
        percentile(0.99),
        errors.len()
    );
    if let Some(first) = errors.first() {
        eprintln!("refresh_load: first chain error: {first}");
    }
}
