//! Live reload on real gateway processes: SIGHUP and `POST /admin/reload` read the configuration file again
//! and apply CORS, OAuth clients and rate limits at once, keeping sessions and this window's counts; keys that
//! need a restart are named and keep their running value; an invalid file changes nothing. A SIGHUP never ends
//! the process. Two instances on one Redis each reload their own file.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockSettings;
use std::time::{Duration, Instant};

const TOKEN: &str = "reload-admin-token-0123456789abcdef0123";
const OLD_ORIGIN: &str = "https://old.example.com";
const NEW_ORIGIN: &str = "https://new.example.com";
const NEW_REDIRECT: &str = "https://reports.example.com/new-callback";

fn admin_and_cors(origin: &str) -> String {
    format!("admin:\n  token: {TOKEN}\ncors:\n  allowed_origins: ['{origin}']\n")
}

async fn post_reload(gateway: &GatewayProcess) -> Answer {
    send(http().post(format!("{}/admin/reload", gateway.admin)).bearer_auth(TOKEN)).await
}

/// The status of an authorization request of the confidential client with `redirect_uri`.
async fn authorize_status(gateway: &GatewayProcess, redirect_uri: &str) -> u16 {
    let query =
        confidential_authorize_query("r", None).replace(&urlencode(CONFIDENTIAL_REDIRECT), &urlencode(redirect_uri));
    send(http().get(gateway.url(&format!("/authorize?{query}")))).await.status
}

/// Polls `check` until it holds, for at most 15 s (a reload is applied in milliseconds).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the clock minute (the rate-limit window) has at least 30 s left.
async fn a_fresh_window() {
    let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60;
    if second > 30 {
        tokio::time::sleep(Duration::from_secs(61 - second)).await;
    }
}

async fn discovery_status(gateway: &GatewayProcess) -> u16 {
    send(http().get(gateway.url("/.well-known/oauth-authorization-server"))).await.status
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_cors_and_clients_without_ending_the_process_or_its_sessions() {
    let mock = start_mock(MockSettings::default()).await;
    let gateway = GatewayProcess::start(&admin_and_cors(OLD_ORIGIN));
    let started = scrape(&gateway).await;
    assert!(sample(&started, "ibgw_config_last_reload_success_timestamp_seconds") > 1.7e9, "set at start-up");
    assert_eq!(sample(&started, r#"ibgw_config_reloads_total{result="success"}"#), 0.0);
    let tokens = tokens_for(&gateway, &mock, "").await;
    assert_eq!(preflight_origin(&gateway.base, NEW_ORIGIN).await, None);
    assert_eq!(authorize_status(&gateway, NEW_REDIRECT).await, 400, "not yet registered");

    gateway.edit_config(OLD_ORIGIN, NEW_ORIGIN);
    gateway.edit_config(
        &format!("['{CONFIDENTIAL_REDIRECT}']"),
        &format!("['{CONFIDENTIAL_REDIRECT}', '{NEW_REDIRECT}']"),
    );
    gateway.signal("HUP");
    eventually("the new CORS origin is allowed", async || {
        preflight_origin(&gateway.base, NEW_ORIGIN).await.as_deref() == Some(NEW_ORIGIN)
    })
    .await;
    assert_eq!(preflight_origin(&gateway.base, OLD_ORIGIN).await, None);
    assert_eq!(authorize_status(&gateway, NEW_REDIRECT).await, 200, "the new redirect URI is registered");
    assert_eq!(authorize_status(&gateway, CONFIDENTIAL_REDIRECT).await, 200);

    // The process is alive and its (memory) store kept the session.
    assert_eq!(send(http().get(format!("{}/healthz", gateway.admin))).await.status, 200);
    let proxied = http().get(gateway.url("/api/v3/resource")).bearer_auth(tokens["access_token"].as_str().unwrap());
    assert_eq!(send(proxied).await.status, 200, "a session from before the reload still works");
    let reloaded = scrape(&gateway).await;
    assert_eq!(sample(&reloaded, r#"ibgw_config_reloads_total{result="success"}"#), 1.0);
    assert!(
        sample(&reloaded, "ibgw_config_last_reload_success_timestamp_seconds")
            >= sample(&started, "ibgw_config_last_reload_success_timestamp_seconds")
    );
    gateway.log_with("configuration reloaded");
    gateway.log_with("SIGHUP");

    // A second SIGHUP with nothing changed: still alive, still one more success.
    gateway.signal("HUP");
    eventually("a second reload", async || {
        sample(&scrape(&gateway).await, r#"ibgw_config_reloads_total{result="success"}"#) == 2.0
    })
    .await;
    assert_log_free_of(&gateway, &[TOKEN]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lowered_rate_limit_applies_at_once_and_counts_this_windows_requests() {
    let gateway =
        GatewayProcess::start(&format!("{}rate_limits:\n  per_ip_per_minute: 1000\n", admin_and_cors(OLD_ORIGIN)));
    a_fresh_window().await;
    for _ in 0..4 {
        assert_eq!(discovery_status(&gateway).await, 200);
    }
    gateway.edit_config("per_ip_per_minute: 1000", "per_ip_per_minute: 4");
    let answer = post_reload(&gateway).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["changed"], serde_json::json!(["rate_limits.per_ip_per_minute"]));
    assert_eq!(discovery_status(&gateway).await, 429, "the four requests before the reload still count");
    gateway.edit_config("per_ip_per_minute: 4", "per_ip_per_minute: 1000");
    assert_eq!(post_reload(&gateway).await.status, 200);
    assert_eq!(discovery_status(&gateway).await, 200, "a raised limit applies at once too");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listen_change_needs_a_restart_and_an_invalid_file_changes_nothing() {
    let gateway =
        GatewayProcess::start(&format!("{}upstream:\n  read_timeout_ms: 30000\n", admin_and_cors(OLD_ORIGIN)));
    let wrong_method = send(http().get(format!("{}/admin/reload", gateway.admin)).bearer_auth(TOKEN)).await;
    assert_eq!((wrong_method.status, wrong_method.header("allow")), (405, Some("POST")));

    // A new listen address and a new origin: the origin applies, the address waits for a restart.
    gateway.edit_config("listen: ['127.0.0.1:", "listen: ['127.0.0.2:");
    gateway.edit_config(OLD_ORIGIN, NEW_ORIGIN);
    let answer = post_reload(&gateway).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "reloaded");
    assert_eq!(answer.body["changed"], serde_json::json!(["cors.allowed_origins"]));
    assert_eq!(answer.body["restart_required"], serde_json::json!(["server.listen"]));
    assert_eq!(preflight_origin(&gateway.base, NEW_ORIGIN).await.as_deref(), Some(NEW_ORIGIN));
    assert_eq!(discovery_status(&gateway).await, 200, "the running listener stays");
    let log = gateway.log_with("need a restart");
    assert!(log.lines().any(|l| l.contains("WARN") && l.contains("server.listen")), "{log}");

    // Two problems: both named, nothing applied, the process serves on.
    gateway.edit_config(NEW_ORIGIN, "not-an-origin");
    gateway.edit_config("read_timeout_ms: 30000", "read_timeout_ms: 0");
    let refused = post_reload(&gateway).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.body["error"], "invalid_config");
    let keys: Vec<&str> =
        refused.body["errors"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["upstream.read_timeout_ms", "cors.allowed_origins[0]"]);
    assert_eq!(
        preflight_origin(&gateway.base, NEW_ORIGIN).await.as_deref(),
        Some(NEW_ORIGIN),
        "the running config stays"
    );
    gateway.signal("HUP");
    eventually("the SIGHUP reload is refused and counted", async || {
        sample(&scrape(&gateway).await, r#"ibgw_config_reloads_total{result="failure"}"#) == 2.0
    })
    .await;
    let log = gateway.log_with("configuration reload (SIGHUP) refused");
    assert!(log.contains("cors.allowed_origins[0]"), "the log names the key: {log}");
    assert_eq!(send(http().get(format!("{}/healthz", gateway.admin))).await.status, 200);
    assert_eq!(preflight_origin(&gateway.base, NEW_ORIGIN).await.as_deref(), Some(NEW_ORIGIN));
    assert_eq!(sample(&scrape(&gateway).await, r#"ibgw_config_reloads_total{result="success"}"#), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_redis_each_reload_and_keep_the_shared_sessions() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "redis") + &admin_and_cors(OLD_ORIGIN);
    let first = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let mock = start_mock(MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, "").await;
    let access = tokens["access_token"].as_str().unwrap().to_string();

    for gateway in [&first, &second] {
        gateway.edit_config(OLD_ORIGIN, NEW_ORIGIN);
    }
    first.signal("HUP");
    assert_eq!(post_reload(&second).await.status, 200);
    for gateway in [&first, &second] {
        eventually("each instance allows the new origin", async || {
            preflight_origin(&gateway.base, NEW_ORIGIN).await.as_deref() == Some(NEW_ORIGIN)
        })
        .await;
        let proxied = http().get(gateway.url("/api/v3/resource")).bearer_auth(&access);
        assert_eq!(send(proxied).await.status, 200, "the shared session survives both reloads");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_log_level_applies_at_once() {
    // An empty RUST_LOG overrides nothing: `logging.level` decides.
    let extra = format!("{}logging:\n  level: warn\n", admin_and_cors(OLD_ORIGIN));
    let gateway = GatewayProcess::start_logged("", &extra, None, "", "");
    assert_eq!(post_reload(&gateway).await.status, 200);
    // The reload's own `info` line is written before the answer: at `warn` it is not.
    assert!(!gateway.log().contains("configuration reloaded"), "{}", gateway.log());
    gateway.edit_config("level: warn", "level: info");
    let answer = post_reload(&gateway).await;
    assert_eq!(answer.body["changed"], serde_json::json!(["logging.level"]), "{}", answer.text);
    gateway.log_with("configuration reloaded");
    gateway.log_with("changed: logging.level");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shorter_read_timeout_applies_to_new_requests_while_one_in_flight_finishes_on_its_own() {
    let mock = start_mock(MockSettings::default()).await;
    let extra = format!("{}upstream:\n  read_timeout_ms: 30000\n", admin_and_cors(OLD_ORIGIN));
    let gateway = GatewayProcess::start(&extra);
    let access = tokens_for(&gateway, &mock, "").await["access_token"].as_str().unwrap().to_string();
    let slow = || http().get(gateway.url("/api/v3/resource?mock_delay_ms=3000")).bearer_auth(&access).send();

    let in_flight = tokio::spawn(slow());
    eventually("the slow request is in flight", async || {
        sample(&scrape(&gateway).await, "ibgw_requests_in_flight") == 1.0
    })
    .await;
    gateway.edit_config("read_timeout_ms: 30000", "read_timeout_ms: 300");
    assert_eq!(post_reload(&gateway).await.body["changed"], serde_json::json!(["upstream.read_timeout_ms"]));
    assert_eq!(slow().await.unwrap().status(), 504, "a request that starts after the reload times out");
    let finished = in_flight.await.unwrap().unwrap();
    assert_eq!(finished.status(), 200, "the request in flight keeps the timeout it started with");
}

/// A daemonized gateway (`-d`), killed on drop by the pid in its pid file.
struct Daemon {
    pid: u32,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
    }
}

fn is_alive(pid: u32) -> bool {
    std::process::Command::new("kill").args(["-0", &pid.to_string()]).status().is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_daemonized_gateway_too() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let d = dir.path().display();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: http://127.0.0.1:{port}\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n{}",
            admin_and_cors(OLD_ORIGIN)
        ),
    )
    .unwrap();
    // The command returns once it has forked; the daemon writes its pid file.
    let mut parent = GatewayProcess::spawn(&config, &["-d"], &[], &dir.path().join("gateway.log"));
    assert!(parent.wait_exit(Duration::from_secs(30)).success(), "{}", parent.log());
    let pid_file = dir.path().join("gateway.pid");
    let mut pid = None;
    eventually("the daemon writes its pid and listens", async || {
        pid = std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse::<u32>().ok());
        pid.is_some() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let daemon = Daemon { pid: pid.unwrap() };
    parent.edit_config(OLD_ORIGIN, NEW_ORIGIN);
    let sent = std::process::Command::new("kill").args(["-HUP", &daemon.pid.to_string()]).status().unwrap();
    assert!(sent.success());
    eventually("the daemon allows the new origin", async || {
        preflight_origin(&parent.base, NEW_ORIGIN).await.as_deref() == Some(NEW_ORIGIN)
    })
    .await;
    assert!(is_alive(daemon.pid), "SIGHUP never ends the daemon: {}", parent.log());
}

/// A reload that narrows the platform allowlist reaches the sessions already open: a session whose IB host the
/// new allowlist does not admit is refused (403 `forbidden`) before anything reaches IB.
#[tokio::test(flavor = "multi_thread")]
async fn a_narrowed_platform_allowlist_applies_to_existing_sessions() {
    let mock = start_mock(MockSettings::default()).await;
    let gateway = GatewayProcess::start(&admin_and_cors(OLD_ORIGIN));
    let tokens = tokens_for(&gateway, &mock, "").await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(send(http().get(gateway.url("/api/v3/resource")).bearer_auth(&access)).await.status, 200);
    let before = mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0);
    // The mock platform is on 127.0.0.1: only the development switch admits it.
    gateway.edit_config("allow_insecure_loopback: true", "allow_insecure_loopback: false");
    let answer = post_reload(&gateway).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["changed"], serde_json::json!(["platforms.allow_insecure_loopback"]));
    let refused = send(http().get(gateway.url("/api/v3/resource")).bearer_auth(&access)).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (403, Some("forbidden")), "{}", refused.text);
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), before, "nothing reached IB");
}

/// `platforms.extra_ca_file` is read once: a reload after the file's content changed says the key needs a
/// restart, and logins (the IB client, rebuilt by the reload for its live timeouts) and proxied calls (Pingora's
/// upstream TLS) go on trusting the same CAs, those read at start-up.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_extra_ca_file_needs_a_restart_and_logins_and_proxied_calls_keep_trusting_the_same_cas() {
    let (first, second) = (common::pki::test_pki(), common::pki::test_pki());
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("extra-ca.pem");
    std::fs::copy(&first.ca, &ca_file).unwrap();
    let platforms = format!("  extra_ca_file: {}\n", ca_file.display());
    let gateway = GatewayProcess::start_full(&admin_and_cors(OLD_ORIGIN), None, &platforms, "");
    let mock = common::pki::start_tls_mock(&first).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let proxied = async |tokens: &serde_json::Value| {
        let access = tokens["access_token"].as_str().unwrap();
        send(http().get(gateway.url("/api/v3/resource")).bearer_auth(access)).await.status
    };
    assert_eq!(proxied(&tokens).await, 200);

    std::fs::copy(&second.ca, &ca_file).unwrap();
    let answer = post_reload(&gateway).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["restart_required"], serde_json::json!(["platforms.extra_ca_file"]), "{}", answer.text);
    let again = tokens_for(&gateway, &mock, "").await;
    assert_eq!(proxied(&again).await, 200, "a login after the reload trusts the CA read at start-up");
    assert_eq!(proxied(&tokens).await, 200);
}
