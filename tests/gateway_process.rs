//! The README's run command in miniature: a real gateway process with an in-memory store answers on its
//! public port and its admin port, and stops on SIGTERM; `health` (the container health check) says whether it
//! is ready; `oauth.registration.per_ip_per_hour` limits registrations, and `0` lifts the limit.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ib-oauth-gateway");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A gateway process, killed when dropped.
struct Gateway {
    child: Child,
    port: u16,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

fn start_gateway() -> Gateway {
    start_gateway_with("")
}

/// A gateway whose configuration ends with `extra` (top-level YAML sections other than `server`).
fn start_gateway_with(extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let config = format!(
        "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: http://127.0.0.1:{port}\n  upgrade_sock: {dir}/upgrade.sock\n  pid_file: {dir}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n{extra}",
        dir = dir.path().display()
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = Command::new(BIN).arg("--config").arg(&path).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let gateway = Gateway { child, port, admin, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(admin, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "gateway did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    gateway
}

#[test]
fn gateway_answers_on_its_port_and_admin_port() {
    let gateway = start_gateway();
    let (status, body) = http_get(gateway.admin, "/healthz").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = http_get(gateway.admin, "/readyz").unwrap();
    assert_eq!(status, 200);
    let (status, metrics) = http_get(gateway.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("ibgw_build_info"), "{metrics}");
    assert!(metrics.contains("ibgw_active_sessions 0"), "{metrics}");
    let (status, body) = http_get(gateway.port, "/no-such-endpoint").unwrap();
    assert_eq!(status, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "not_found");
}

#[test]
fn gateway_without_a_signing_key_warns_loudly() {
    let gateway = start_gateway();
    let log = std::fs::read_to_string(gateway._dir.path().join("stderr.log")).unwrap();
    assert!(log.contains("NO SIGNING KEY CONFIGURED"), "{log}");
    assert!(log.contains("will NOT be accepted by other gateway instances"), "{log}");
}

#[test]
fn sigterm_stops_the_gateway() {
    let mut gateway = start_gateway();
    let pid = gateway.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = gateway.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "gateway did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `ib-oauth-gateway health ARGS...`; its exit code.
fn health(args: &[&str]) -> Option<i32> {
    let output = Command::new(BIN).arg("health").args(args).env_remove("IBGW_CONFIG").output().unwrap();
    output.status.code()
}

#[test]
fn health_exits_0_when_the_gateway_is_ready_and_1_when_nothing_listens() {
    let gateway = start_gateway();
    let config = gateway._dir.path().join("gateway.yaml");
    let config = config.to_str().unwrap();
    assert_eq!(health(&["--config", config]), Some(0), "ready gateway, found through its configuration");
    let url = format!("http://127.0.0.1:{}/readyz", gateway.admin);
    assert_eq!(health(&["--url", &url]), Some(0), "ready gateway, by URL");
    let output = Command::new(BIN).arg("health").env("IBGW_CONFIG", config).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "IBGW_CONFIG: {}", String::from_utf8_lossy(&output.stderr));
    // A path the admin listener does not serve is not healthy.
    let missing = format!("http://127.0.0.1:{}/no-such-path", gateway.admin);
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

fn post_json(port: u16, path: &str, body: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

const REGISTRATION: &str = r#"{"redirect_uris":["http://127.0.0.1:8765/callback"],"client_name":"t"}"#;

#[test]
fn registration_limit_refuses_past_it_per_client_ip() {
    let gateway = start_gateway_with("oauth:\n  registration:\n    per_ip_per_hour: 2\n");
    let statuses: Vec<_> = (0..3).map(|_| post_json(gateway.port, "/register", REGISTRATION)).collect();
    assert_eq!(statuses, [Some(201), Some(201), Some(429)]);
}

#[test]
fn registration_limit_zero_means_no_limit() {
    let gateway = start_gateway_with("oauth:\n  registration:\n    per_ip_per_hour: 0\n");
    // More than the default limit of 20 from one address.
    for n in 0..25 {
        assert_eq!(post_json(gateway.port, "/register", REGISTRATION), Some(201), "registration {n}");
    }
}
