//! The README's curl walk-through runs as written: its ```sh block, taken from README.md unchanged, is run by
//! bash against a real `ib-oauth-gateway demo` process (the shipped conf/dev.yaml on free ports), and every
//! step of the OAuth flow, the proxied calls, the refresh and the sign-out succeed.

mod common;

use common::{free_port, BIN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first ```sh block after the heading `heading`.
fn sh_block_after(markdown: &str, heading: &str) -> String {
    let section = markdown.split(heading).nth(1).unwrap_or_else(|| panic!("README.md has no `{heading}`"));
    let block = section.split("```sh\n").nth(1).expect("a ```sh block");
    block.split("\n```").next().unwrap().to_string()
}

/// The demo process, killed when dropped.
struct Demo {
    child: Child,
    gateway: u16,
    mock: u16,
    dir: tempfile::TempDir,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answers_http(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).is_ok() && response.starts_with("HTTP/1.1 ")
}

/// `ib-oauth-gateway demo` with conf/dev.yaml moved to free ports.
fn start_demo() -> Demo {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, admin, mock) = (free_port(), free_port(), free_port());
    let shipped = std::fs::read_to_string(root().join("conf/dev.yaml")).unwrap();
    for default in ["127.0.0.1:8180", "127.0.0.1:9190"] {
        assert!(shipped.contains(default), "conf/dev.yaml no longer uses {default}: update README.md and this test");
    }
    let config = shipped
        .replace("127.0.0.1:8180", &format!("127.0.0.1:{gateway}"))
        .replace("127.0.0.1:9190", &format!("127.0.0.1:{admin}"))
        .replace("/tmp/", &format!("{}/", dir.path().display()));
    let path = dir.path().join("dev.yaml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let child = Command::new(BIN)
        .arg("demo")
        .arg("--config")
        .arg(&path)
        .arg("--mock-listen")
        .arg(format!("127.0.0.1:{mock}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let demo = Demo { child, gateway, mock, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(answers_http(admin, "/healthz") && answers_http(demo.mock, "/_mock/stats")) {
        assert!(Instant::now() < deadline, "the demo did not start:\n{}", demo_log(&demo));
        std::thread::sleep(Duration::from_millis(100));
    }
    demo
}

fn demo_log(demo: &Demo) -> String {
    std::fs::read_to_string(demo.dir.path().join("demo.log")).unwrap_or_default()
}

#[test]
fn readme_walkthrough_documents_the_demo_defaults() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = sh_block_after(&readme, "## Try the whole flow");
    assert!(block.starts_with("GW=${GW:-http://127.0.0.1:8180} MOCK=${MOCK:-http://127.0.0.1:8181}"), "{block}");
    let guide = std::fs::read_to_string(root().join("docs/client-guide.md")).unwrap();
    assert!(guide.contains("http://127.0.0.1:8180") && guide.contains("http://127.0.0.1:8181"), "client guide");
    let main = std::fs::read_to_string(root().join("src/main.rs")).unwrap();
    assert!(main.contains("default_value = \"127.0.0.1:8181\""), "the demo's mock default is 127.0.0.1:8181");
    // Every value is captured by the block itself: no placeholder for the reader to fill in.
    for placeholder in ["Bearer ACCESS", "code=CODE", "refresh_token=REFRESH", "token=POLLTOKEN", "token=IBTOKEN"] {
        assert!(!block.contains(placeholder), "README's walk-through has the placeholder {placeholder}");
    }
}

#[test]
fn readme_walkthrough_runs_as_written_against_the_demo() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = sh_block_after(&readme, "## Try the whole flow");
    let demo = start_demo();
    let output = Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", &block])
        .env("GW", format!("http://127.0.0.1:{}", demo.gateway))
        .env("MOCK", format!("http://127.0.0.1:{}", demo.mock))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walk-through failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- demo\n{}",
        demo_log(&demo)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let json = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    // The first poll is pending; the refresh keeps the sid and counts one refresh; the sign-out answers {}.
    assert_eq!(json(lines[1])["error"], "authorization_pending", "{stdout}");
    let tokens = json(lines.iter().find(|l| l.contains("\"access_token\"")).unwrap());
    let refreshed = json(lines[lines.len() - 2]);
    assert!(refreshed["access_token"].is_string(), "{stdout}");
    assert_eq!(refreshed["sid"], tokens["sid"], "a refresh keeps the IB session");
    assert_eq!(json(lines[lines.len() - 1]), serde_json::json!({}), "{stdout}");
}
