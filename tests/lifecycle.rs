//! Graceful lifecycle: a zero-downtime upgrade (SIGQUIT to the old process, `-u` for the new one) that also
//! reloads the configuration, under continuous load, with zero failed requests; SIGTERM drains.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockSettings;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config_text(port: u16, admin: u16, dir: &std::path::Path, shared: &str, origin: &str) -> String {
    format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: https://gateway.example.com\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 5\nplatforms:\n  allow_insecure_loopback: true\noauth:\n  clients:\n    - client_id: {PUBLIC_CLIENT}\n      redirect_uri_patterns: ['http://127.0.0.1:{{port}}/callback']\ncors:\n  allowed_origins: ['{origin}']\n{shared}",
        d = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_under_load_reloads_config_and_drops_no_request() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // No per-session limit: the load below is far above 600 requests a minute.
    let shared = shared_redis_yaml(&redis.url(), dir.path(), "local") + "  per_session_per_minute: 0\n";
    let (port, admin) = (free_port(), free_port());
    let config = dir.path().join("gateway.yaml");
    let log = dir.path().join("gateway.log");
    std::fs::write(&config, config_text(port, admin, dir.path(), &shared, "https://old.example.com")).unwrap();
    let mut old = GatewayProcess::spawn(&config, &[], &[], &log);
    old.wait_ready();
    let base = old.base.clone();

    // A session to proxy with: it lives in Redis and the key is shared, so it survives the upgrade.
    let mock = start_mock(MockSettings::default()).await;
    let redirect = login_at(&base, &mock, &authorize_query("u"), "").await;
    let (status, tokens) = exchange_at(&base, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(preflight_origin(&base, "https://old.example.com").await.as_deref(), Some("https://old.example.com"));

    // Continuous load: proxied calls, each on a fresh connection, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, base, access) = (stop.clone(), ok.clone(), failed.clone(), base.clone(), access.clone());
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let send = || client.get(format!("{base}/api/v3/resource")).bearer_auth(&access).send();
                // A GET that met a keep-alive connection just as the old process closed it (no response, the
                // request may not have been read) is retried once, as HTTP clients do for idempotent requests
                // (RFC 9110 §9.2.2). Any answer other than 200, and a second transport failure, counts as failed.
                let result = match send().await {
                    Err(e) if e.is_request() && !e.is_timeout() => send().await,
                    other => other,
                };
                match result {
                    Ok(response) if response.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed request: {:?}", other.map(|r| r.status()));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Reload: a new configuration, taken up by the new process.
    std::fs::write(&config, config_text(port, admin, dir.path(), &shared, "https://new.example.com")).unwrap();
    let mut new = GatewayProcess::spawn(&config, &["-u"], &[], &log);
    // The new process listens on the upgrade socket for the old one's sockets; only then may the old one go.
    let upgrade_sock = dir.path().join("upgrade.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !upgrade_sock.exists() {
        assert!(Instant::now() < deadline, "the new process never waited on the upgrade socket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old.signal("QUIT");
    let old_status = tokio::task::spawn_blocking(move || old.wait_exit(Duration::from_secs(30))).await.unwrap();
    assert!(old_status.success(), "{old_status:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "only {ok} requests went through");
    assert_eq!(failed, 0, "{failed} of {} requests failed across the upgrade", ok + failed);
    assert_eq!(preflight_origin(&base, "https://new.example.com").await.as_deref(), Some("https://new.example.com"));
    assert_eq!(preflight_origin(&base, "https://old.example.com").await, None, "the new config is in force");

    // SIGTERM: the new process drains and exits cleanly.
    new.signal("TERM");
    let status = tokio::task::spawn_blocking(move || new.wait_exit(Duration::from_secs(30))).await.unwrap();
    assert!(status.success(), "{status:?}");
}
