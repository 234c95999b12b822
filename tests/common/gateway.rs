//! Gateway processes: the real binary with a config a test writes, killed on drop, ready only when every
//! listener (public and admin) accepts connections.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ib_oauth_gateway::mock::{MockHandle, MockSettings};

use super::mock::start_mock;
use super::oauth::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_REDIRECT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT};
use super::ports::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_ib-oauth-gateway");

/// A gateway process, killed on drop (also when the test fails). Its stderr goes to `log_path`.
pub struct GatewayProcess {
    child: Child,
    /// `http://` and the first public listener.
    pub base: String,
    /// `http://` and the admin listener.
    pub admin: String,
    /// Every address the config listens on (public, TLS and admin).
    listeners: Vec<String>,
    /// The configuration file the process was started with (a reload reads it again).
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The directory of a config written by [`GatewayProcess::start_config`], kept as long as the process.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl GatewayProcess {
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
    /// Logs at debug level, for [`assert_log_free_of`].
    pub fn start_full(extra: &str, public_url: Option<&str>, platforms: &str, server: &str) -> Self {
        Self::start_logged("debug", extra, public_url, platforms, server)
    }

    /// [`Self::start_full`] with `RUST_LOG` set to `rust_log`.
    pub fn start_logged(rust_log: &str, extra: &str, public_url: Option<&str>, platforms: &str, server: &str) -> Self {
        Self::start_config(&[("RUST_LOG", rust_log)], |port, admin, dir| {
            let public_url = public_url.map(str::to_string).unwrap_or_else(|| format!("http://127.0.0.1:{port}"));
            format!(
                "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: {public_url}\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n  threads: 2\n{server}platforms:\n  allow_insecure_loopback: true\n{platforms}oauth:\n  clients:\n    - client_id: {PUBLIC_CLIENT}\n      redirect_uri_patterns: ['http://127.0.0.1:{{port}}/callback']\n    - client_id: {CONFIDENTIAL_CLIENT}\n      client_secret: {CONFIDENTIAL_SECRET}\n      redirect_uris: ['{CONFIDENTIAL_REDIRECT}']\n      ib_session_in_token_response: false\n{extra}",
                d = dir.display()
            )
        })
    }

    /// Starts a gateway on a config of the test's own: `config(port, admin_port, dir)` returns its text,
    /// with `dir` a fresh directory (for the upgrade socket and pid file) that lives as long as the process.
    /// `envs` are set for the process. Returns once every listener accepts connections.
    pub fn start_config(envs: &[(&str, &str)], config: impl FnOnce(u16, u16, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, config(port, admin, dir.path())).unwrap();
        let mut gateway = Self::spawn(&path, &[], envs, &dir.path().join("gateway.log"));
        gateway._dir = Some(dir);
        gateway.wait_ready();
        gateway
    }

    /// The lowest level: runs the binary with `--config config` and `args` (e.g. `-u` to take over the
    /// sockets of a running gateway), stderr appended to `log`. Does not wait: see [`Self::wait_ready`].
    pub fn spawn(config: &Path, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Self {
        let text = std::fs::read_to_string(config).unwrap();
        let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        let server = &yaml["server"];
        let addresses = |key: &serde_norway::Value| -> Vec<String> {
            key.as_sequence().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_string)).collect()
        };
        let public = addresses(&server["listen"]);
        let admin = server["admin_listen"].as_str().map(str::to_string);
        let mut listeners = public.clone();
        listeners.extend(addresses(&server["tls"]["listen"]));
        listeners.extend(admin.clone());
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(args)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        GatewayProcess {
            child,
            base: public.first().map(|a| format!("http://{a}")).unwrap_or_default(),
            admin: admin.map(|a| format!("http://{a}")).unwrap_or_default(),
            listeners,
            config_path: config.to_path_buf(),
            log_path: log.to_path_buf(),
            _dir: None,
        }
    }

    /// Waits until every listener of the config (public, TLS and admin) accepts connections: the admin
    /// port alone may be up before the public one. Fails with the log when the process exits first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for address in self.listeners.clone() {
            while TcpStream::connect(&address).is_err() {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("gateway exited ({status}) before listening on {address}: {}", self.log());
                }
                assert!(Instant::now() < deadline, "gateway did not listen on {address}: {}", self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` (`TERM`, `QUIT`, …) to the process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit by itself, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log once it contains `needle` (the access log is written by its own thread, a moment after the
    /// response); panics with the log after 10 s.
    pub fn log_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(std::time::Instant::now() < deadline, "the log never showed {needle:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rewrites the configuration file: every `from` becomes `to` (panics when `from` is not in it). The
    /// process reads it again on SIGHUP or `POST /admin/reload`.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        assert!(text.contains(from), "the configuration has no {from:?}:\n{text}");
        std::fs::write(&self.config_path, text.replace(from, to)).unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A gateway started with `extra` (see [`GatewayProcess::start`]) and a mock platform with default settings.
pub async fn gateway_and_mock(extra: &str) -> (GatewayProcess, MockHandle) {
    (GatewayProcess::start(extra), start_mock(MockSettings::default()).await)
}

/// The gateway's `/metrics`, as text.
pub async fn scrape(gateway: &GatewayProcess) -> String {
    super::http::http().get(format!("{}/metrics", gateway.admin)).send().await.unwrap().text().await.unwrap()
}

/// The value of one sample (`name{labels} value`) of a scrape, 0 when absent.
pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
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

/// YAML for a Redis-backed store with a shared signing key (several instances accept each other's tokens).
pub fn shared_redis_yaml(redis_url: &str, key_dir: &Path, rate_limit_backend: &str) -> String {
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

/// `GET /api/v3/resource` through `gateway` with `access_token` (the mock answers it for a live session).
pub async fn get_resource_with(gateway: &GatewayProcess, access_token: &str) -> reqwest::Response {
    super::http::http().get(gateway.url("/api/v3/resource")).bearer_auth(access_token).send().await.unwrap()
}
