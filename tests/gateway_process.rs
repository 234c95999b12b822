//! The README's run command in miniature: a real gateway process with an in-memory store answers on its
//! public port and its admin port, and stops on SIGTERM; `health` (the container health check) says whether it
//! is ready; `oauth.registration.per_ip_per_hour` limits registrations, and `0` lifts the limit.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn start_gateway() -> GatewayProcess {
    start_gateway_with("")
}

/// A gateway whose configuration ends with `extra` (top-level YAML sections other than `server`); its config
/// file is `gateway.yaml` beside its log.
fn start_gateway_with(extra: &str) -> GatewayProcess {
    GatewayProcess::start_config(&[], |port, admin, dir| {
        format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: http://127.0.0.1:{port}\n  upgrade_sock: {dir}/upgrade.sock\n  pid_file: {dir}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n{extra}",
            dir = dir.display()
        )
    })
}

#[test]
fn gateway_answers_on_its_port_and_admin_port() {
    let gateway = start_gateway();
    let (status, body) = raw_request(&gateway.admin, "/healthz", &[]);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = raw_request(&gateway.admin, "/readyz", &[]);
    assert_eq!(status, 200);
    let (status, metrics) = raw_request(&gateway.admin, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(metrics.contains("ibgw_build_info"), "{metrics}");
    assert!(metrics.contains("ibgw_active_sessions 0"), "{metrics}");
    let (status, body) = raw_request(&gateway.base, "/no-such-endpoint", &[]);
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "not_found");
}

#[test]
fn gateway_without_a_signing_key_warns_loudly() {
    let gateway = start_gateway();
    let log = gateway.log();
    assert!(log.contains("NO SIGNING KEY CONFIGURED"), "{log}");
    assert!(log.contains("will NOT be accepted by other gateway instances"), "{log}");
}

#[test]
fn sigterm_stops_the_gateway() {
    let mut gateway = start_gateway();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}

/// Runs `ib-oauth-gateway health ARGS...`; its exit code.
fn health(args: &[&str]) -> Option<i32> {
    let output = Command::new(BIN).arg("health").args(args).env_remove("IBGW_CONFIG").output().unwrap();
    output.status.code()
}

#[test]
fn health_exits_0_when_the_gateway_is_ready_and_1_when_nothing_listens() {
    let gateway = start_gateway();
    let config = gateway.log_path.with_file_name("gateway.yaml");
    let config = config.to_str().unwrap();
    assert_eq!(health(&["--config", config]), Some(0), "ready gateway, found through its configuration");
    let url = format!("{}/readyz", gateway.admin);
    assert_eq!(health(&["--url", &url]), Some(0), "ready gateway, by URL");
    let output = Command::new(BIN).arg("health").env("IBGW_CONFIG", config).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "IBGW_CONFIG: {}", String::from_utf8_lossy(&output.stderr));
    // A path the admin listener does not serve is not healthy.
    let missing = format!("{}/no-such-path", gateway.admin);
    assert_eq!(health(&["--url", &missing]), Some(1));
    drop(gateway);

    let nothing = format!("http://127.0.0.1:{}/readyz", free_port());
    assert_eq!(health(&["--url", &nothing]), Some(1), "nothing listens");
    assert_eq!(health(&["--config", "/nonexistent/gateway.yaml"]), Some(1), "no configuration");
}

#[test]
fn health_asks_the_loopback_address_for_a_wildcard_admin_listen() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, format!("server:\n  public_url: https://a.example\n  admin_listen: '0.0.0.0:{port}'\n"))
        .unwrap();
    // A one-shot admin listener: answers /readyz with 200 and records the request.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let read = stream.read(&mut request).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").unwrap();
        String::from_utf8_lossy(&request[..read]).into_owned()
    });
    assert_eq!(health(&["--config", path.to_str().unwrap()]), Some(0));
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
}

const REGISTRATION: &str = r#"{"redirect_uris":["http://127.0.0.1:8765/callback"],"client_name":"t"}"#;

async fn register(gateway: &GatewayProcess) -> u16 {
    let request = http().post(gateway.url("/register")).header("Content-Type", "application/json").body(REGISTRATION);
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_limit_refuses_past_it_per_client_ip() {
    let gateway = start_gateway_with("oauth:\n  registration:\n    per_ip_per_hour: 2\n");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(register(&gateway).await);
    }
    assert_eq!(statuses, [201, 201, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_limit_zero_means_no_limit() {
    let gateway = start_gateway_with("oauth:\n  registration:\n    per_ip_per_hour: 0\n");
    // More than the default limit of 20 from one address.
    for n in 0..25 {
        assert_eq!(register(&gateway).await, 201, "registration {n}");
    }
}
