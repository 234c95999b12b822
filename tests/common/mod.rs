//! Shared helpers for tests that run a real gateway process against the mock IntelligenceBank platform.
#![allow(dead_code)]

pub mod pki;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ib_oauth_gateway::mock::{self, MockHandle, MockSettings};
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_ib-oauth-gateway");
pub const PUBLIC_CLIENT: &str = "mcp-public-client";
pub const REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";
pub const CONFIDENTIAL_CLIENT: &str = "reporting-app";
pub const CONFIDENTIAL_SECRET: &str = "s3cret-s3cret-s3cret-s3cret";
pub const CONFIDENTIAL_REDIRECT: &str = "https://reports.example.com/oauth/callback";
pub const VERIFIER: &str = "test-verifier-0123456789-0123456789-0123456789";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn challenge(verifier: &str) -> String {
    ib_oauth_gateway::tokens::b64(&Sha256::digest(verifier.as_bytes()))
}

/// A gateway process with its own config, killed on drop. Its stderr is kept in `log_path`.
pub struct GatewayProcess {
    child: Child,
    pub base: String,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub log_path: std::path::PathBuf,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the process so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Starts a gateway for the mock platform. `extra` is YAML appended to the base config (top-level keys
    /// other than `server` and `platforms`).
    pub fn start(extra: &str) -> Self {
        Self::start_with(extra, None)
    }

    /// Like [`Self::start`]; instances behind one load balancer share `public_url` (the token issuer).
    pub fn start_with(extra: &str, public_url: Option<&str>) -> Self {
        Self::start_full(extra, public_url, "", "")
    }

    /// `platforms` and `server` are YAML added under `platforms:` and `server:` (e.g. `  extra_ca_file: /path\n`).
    pub fn start_full(extra: &str, public_url: Option<&str>, platforms: &str, server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let public_url = public_url.map(str::to_string).unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
        let config = format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: {public_url}\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n  threads: 2\n{server}platforms:\n  allow_insecure_loopback: true\n{platforms}oauth:\n  clients:\n    - client_id: {PUBLIC_CLIENT}\n      redirect_uri_patterns: ['http://127.0.0.1:{{port}}/callback']\n    - client_id: {CONFIDENTIAL_CLIENT}\n      client_secret: {CONFIDENTIAL_SECRET}\n      redirect_uris: ['{CONFIDENTIAL_REDIRECT}']\n      ib_session_in_token_response: false\n{extra}",
            d = dir.path().display()
        );
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, config).unwrap();
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let gateway = GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            dir,
            log_path,
        };
        gateway.wait_ready();
        gateway
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.admin.trim_start_matches("http://").to_string();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "gateway did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub async fn start_mock(settings: MockSettings) -> MockHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::serve(listener, None, settings).await.unwrap()
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// For the test's own calls to the mock's control endpoints, which may use a test certificate.
/// (The gateway itself always verifies certificates.)
pub fn control_http() -> reqwest::Client {
    reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap()
}

/// The query of an authorization request by the public client.
pub fn authorize_query(state: &str) -> String {
    format!(
        "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&scope=profile&state={state}&code_challenge={}&code_challenge_method=S256",
        urlencode(REDIRECT_URI),
        challenge(VERIFIER)
    )
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Query parameter `name` of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// Drives `/authorize` → mock login → poll, returning the redirect URL with the code.
/// `complete_query` is appended to the mock's `/_mock/complete` call (e.g. `&logintimeoutperiod=1`).
pub async fn login(gateway: &GatewayProcess, mock: &MockHandle, query: &str, complete_query: &str) -> String {
    login_at(&gateway.base, mock, query, complete_query).await
}

/// [`login`] against a gateway at `base` (e.g. one a test runs itself).
pub async fn login_at(base: &str, mock: &MockHandle, query: &str, complete_query: &str) -> String {
    let url = |path: &str| format!("{base}{path}");
    let client = http();
    let started: serde_json::Value = client
        .get(url(&format!("/authorize?{query}&platform_url={}", urlencode(&mock.origin))))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login_url = started["loginUrl"].as_str().unwrap_or_else(|| panic!("{started}"));
    let poll_token = started["token"].as_str().unwrap();
    let ib_token = query_param(login_url, "token").unwrap();
    let pending = client.get(url(&format!("/authorize/poll?token={poll_token}"))).send().await.unwrap();
    assert_eq!(pending.status(), 404);
    let body: serde_json::Value = pending.json().await.unwrap();
    assert_eq!(body["error"], "authorization_pending");
    let completed = control_http()
        .post(mock.url(&format!("/_mock/complete?token={}{complete_query}", urlencode(&ib_token))))
        .send()
        .await
        .unwrap();
    assert!(completed.status().is_success(), "{:?}", completed.text().await);
    let done: serde_json::Value =
        client.get(url(&format!("/authorize/poll?token={poll_token}"))).send().await.unwrap().json().await.unwrap();
    done["redirect_url"].as_str().unwrap_or_else(|| panic!("{done}")).to_string()
}

pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let response = http().post(url).form(form).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// Exchanges a code from [`login`] for tokens, as the public client.
pub async fn exchange(gateway: &GatewayProcess, redirect_url: &str) -> (u16, serde_json::Value) {
    exchange_at(&gateway.base, redirect_url).await
}

/// [`exchange`] against a gateway at `base`.
pub async fn exchange_at(base: &str, redirect_url: &str) -> (u16, serde_json::Value) {
    let code = query_param(redirect_url, "code").unwrap();
    post_form(
        &format!("{base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", PUBLIC_CLIENT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

pub async fn refresh(gateway: &GatewayProcess, refresh_token: &str) -> (u16, serde_json::Value) {
    post_form(
        &gateway.url("/token"),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", PUBLIC_CLIENT)],
    )
    .await
}

/// The mock platform's counters: `{"connections_accepted", "requests_total", "requests": {endpoint: n}}`.
pub async fn mock_stats(mock: &MockHandle) -> serde_json::Value {
    http().get(mock.url("/_mock/stats")).send().await.unwrap().json().await.unwrap()
}

/// The query of an authorization request by the confidential client; `challenge` adds S256 PKCE.
pub fn confidential_authorize_query(state: &str, challenge: Option<&str>) -> String {
    let pkce = challenge.map(|c| format!("&code_challenge={c}&code_challenge_method=S256")).unwrap_or_default();
    format!(
        "response_type=code&client_id={CONFIDENTIAL_CLIENT}&redirect_uri={}&state={state}{pkce}",
        urlencode(CONFIDENTIAL_REDIRECT)
    )
}

/// Panics, naming the leaked value's position, when the gateway's log contains any of `secrets`.
#[track_caller]
pub fn assert_log_free_of<S: AsRef<str>>(gateway: &GatewayProcess, secrets: &[S]) {
    let log = gateway.log();
    assert!(!log.is_empty(), "the gateway log is empty; is RUST_LOG honoured?");
    for (i, secret) in secrets.iter().enumerate() {
        let secret = secret.as_ref();
        assert!(secret.len() >= 8, "secret #{i} is too short to search for meaningfully: {secret:?}");
        if let Some(at) = log.find(secret) {
            let start = log[..at].rfind('\n').map_or(0, |n| n + 1);
            let end = log[at..].find('\n').map_or(log.len(), |n| at + n);
            panic!("secret #{i} appears in the gateway log: {}", &log[start..end]);
        }
    }
}

/// Logs in through the mock and returns the token response.
pub async fn tokens_for(gateway: &GatewayProcess, mock: &MockHandle, complete_query: &str) -> serde_json::Value {
    let redirect = login(gateway, mock, &authorize_query("p"), complete_query).await;
    let (status, tokens) = exchange(gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// A private redis-server on a free port, killed on drop. Tests that stop or count commands on Redis use
/// their own server, never a shared one.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = RedisServer { child: None, port: free_port(), dir };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (./scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli").arg("-p").arg(self.port.to_string()).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// YAML for a Redis-backed store with a shared signing key (several instances accept each other's tokens).
pub fn shared_redis_yaml(redis_url: &str, key_dir: &std::path::Path, rate_limit_backend: &str) -> String {
    let key = key_dir.join("shared.key");
    if !key.exists() {
        let out =
            ib_oauth_gateway::keys::keygen(ib_oauth_gateway::config::SigningAlgorithm::EdDSA, key_dir, Some("shared"));
        out.unwrap();
    }
    format!(
        "store:\n  backend: redis\n  redis:\n    urls: ['{redis_url}']\n    key_prefix: t{}\nsigning:\n  current:\n    kid: shared\n    private_key: {{file: {}}}\nrate_limits:\n  backend: {rate_limit_backend}\n",
        free_port(),
        key.display()
    )
}

/// Sends one raw HTTP/1.1 request (for paths an HTTP client library would normalise) and returns the
/// status and body.
pub fn raw_request(base: &str, request_line_target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("GET {request_line_target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
