//! The security audit log of a real gateway process: a flow that produces every event a request can cause,
//! each one JSON line in the file `logging.audit` names, with its client, user, address, session tag and
//! request id, and never a token, refresh token, code, session id or `sid`. (`session_ended_by_operator` has
//! no endpoint yet: `src/audit` tests it through the writer.)

mod common;

use common::*;
use ib_oauth_gateway::session::SessionId;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The audit lines of the file, once there are at least `at_least` (up to 10 s; the writer drains every 50 ms).
fn audit_lines(path: &Path, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A session as the test knows it: its tokens, the code that issued them, and what the audit log should name.
struct Login {
    tokens: Value,
    code: String,
    /// The log tag of the session id in the refresh token (`<session id>.<secret>`).
    tag: String,
    session_id: String,
}

async fn log_in(gateway: &GatewayProcess, mock: &ib_oauth_gateway::mock::MockHandle) -> Login {
    let redirect = login(gateway, mock, &authorize_query("audit"), "").await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, tokens) = exchange(gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    let session_id = tokens["refresh_token"].as_str().unwrap().split('.').next().unwrap().to_string();
    let tag = SessionId::parse(&session_id).unwrap().log_tag();
    Login { tokens, code, tag, session_id }
}

fn token(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap_or_else(|| panic!("no {name} in {value}")).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_security_event_is_one_audit_line_with_its_fields_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let gateway = GatewayProcess::start(&format!(
        "logging:\n  audit: file {}\n  audit_failure_threshold: 3\n  audit_failure_window_seconds: 3600\ntokens:\n  max_refresh_count: 2\n  refresh_grace_seconds: 0\n",
        path.display()
    ));
    let mock = start_mock(Default::default()).await;
    let mut secrets: Vec<String> = Vec::new();

    // client_registered
    let registration = serde_json::json!({ "redirect_uris": ["http://127.0.0.1:9999/callback"] });
    let response = http().post(gateway.url("/register")).json(&registration).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let register_id = response.headers()["x-request-id"].to_str().unwrap().to_string();
    let registered: Value = response.json().await.unwrap();
    let dynamic_client = token(&registered, "client_id");

    // login_completed and code_redeemed, then refresh_rotated twice and refresh_limit_reached (limit 2).
    let limited = log_in(&gateway, &mock).await;
    let user = {
        let access = token(&limited.tokens, "access_token");
        let info: Value =
            http().get(gateway.url("/userinfo")).bearer_auth(access).send().await.unwrap().json().await.unwrap();
        token(&info, "sub")
    };
    let mut refresh_token = token(&limited.tokens, "refresh_token");
    for _ in 0..2 {
        let (status, rotated) = refresh(&gateway, &refresh_token).await;
        assert_eq!(status, 200, "{rotated}");
        secrets.extend([token(&rotated, "access_token"), refresh_token.clone()]);
        refresh_token = token(&rotated, "refresh_token");
    }
    let (status, refused) = refresh(&gateway, &refresh_token).await;
    assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_grant")), "{refused}");
    secrets.push(refresh_token);

    // refresh_token_reuse_detected: the first refresh token again, after a grace window of 0 s.
    let reused = log_in(&gateway, &mock).await;
    let first = token(&reused.tokens, "refresh_token");
    let (status, rotated) = refresh(&gateway, &first).await;
    assert_eq!(status, 200, "{rotated}");
    secrets.extend([token(&rotated, "access_token"), token(&rotated, "refresh_token")]);
    let (status, refused) = refresh(&gateway, &first).await;
    assert_eq!(status, 400, "{refused}");

    // token_revoked: an access token, revoked by its client.
    let revoked = log_in(&gateway, &mock).await;
    let form = [("token", token(&revoked.tokens, "access_token")), ("client_id", PUBLIC_CLIENT.to_string())];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = post_form(&gateway.url("/revoke"), &form).await;
    assert_eq!(status, 200);

    // session_ended_by_ib: IB ends the sid; the next proxied call gets its 401.
    let ended = log_in(&gateway, &mock).await;
    assert_eq!(expire_session(&mock, &token(&ended.tokens, "sid")).await, 200);
    let response = http()
        .get(gateway.url("/api/v3/resource?q=secret-query-value"))
        .bearer_auth(token(&ended.tokens, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let ended_by_ib_id = response.headers()["x-request-id"].to_str().unwrap().to_string();

    // repeated_auth_failures: access tokens that are not the gateway's (threshold 3). The reused refresh token
    // above was a failure too: five in all, so exactly one event even if a window boundary falls among them,
    // and it comes with one of these.
    let mut failure_ids = Vec::new();
    for _ in 0..4 {
        let response =
            http().get(gateway.url("/api/v3/resource")).bearer_auth("not-a-token-of-ours").send().await.unwrap();
        assert_eq!(response.status(), 401);
        failure_ids.push(response.headers()["x-request-id"].to_str().unwrap().to_string());
    }

    let lines = audit_lines(&path, 17);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    let session =
        |name: &str| -> &str { lines.iter().find(|l| l["event"] == name).unwrap()["session"].as_str().unwrap() };
    assert_eq!(
        events,
        [
            "client_registered",
            "login_completed",
            "code_redeemed",
            "refresh_rotated",
            "refresh_rotated",
            "refresh_limit_reached",
            "login_completed",
            "code_redeemed",
            "refresh_rotated",
            "refresh_token_reuse_detected",
            "login_completed",
            "code_redeemed",
            "token_revoked",
            "login_completed",
            "code_redeemed",
            "session_ended_by_ib",
            "repeated_auth_failures",
        ],
        "{lines:#?}"
    );
    for line in &lines {
        assert_eq!(line["type"], "audit");
        assert!(line["time"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')), "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert!(line["request_id"].as_str().is_some_and(|id| id.len() == 16), "{line}");
        // The W3C trace of the request that caused it; the failure counter runs outside the request's trace.
        if line["event"] == "repeated_auth_failures" {
            assert!(line["trace_id"].is_null(), "{line}");
        } else {
            let trace_id = line["trace_id"].as_str().unwrap_or_default();
            assert!(trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
        }
        let sessionless = ["client_registered", "login_completed", "repeated_auth_failures"];
        if !sessionless.contains(&line["event"].as_str().unwrap()) {
            assert_eq!(line["client_id"], PUBLIC_CLIENT, "{line}");
            assert_eq!(line["user"], user.as_str(), "{line}");
            assert_eq!(line["session"].as_str().map(str::len), Some(12), "{line}");
        }
    }
    let registered_line = &lines[0];
    assert_eq!(registered_line["client_id"], dynamic_client.as_str());
    assert_eq!(registered_line["request_id"], register_id.as_str());
    assert!(registered_line["user"].is_null() && registered_line["session"].is_null());
    let completed = &lines[1];
    assert_eq!(
        (completed["client_id"].as_str(), completed["user"].as_str()),
        (Some(PUBLIC_CLIENT), Some(user.as_str()))
    );
    assert!(completed["session"].is_null(), "no session before the code is redeemed");
    assert_eq!(session("code_redeemed"), limited.tag);
    assert_eq!(session("refresh_limit_reached"), limited.tag);
    assert_eq!(session("refresh_token_reuse_detected"), reused.tag);
    assert_eq!(session("token_revoked"), revoked.tag);
    let by_ib = lines.iter().find(|l| l["event"] == "session_ended_by_ib").unwrap();
    assert_eq!(by_ib["session"], ended.tag.as_str());
    assert_eq!(by_ib["request_id"], ended_by_ib_id.as_str());
    let repeated = lines.last().unwrap();
    assert!(repeated["client_id"].is_null() && repeated["user"].is_null() && repeated["session"].is_null());
    assert_eq!((repeated["failures"].as_u64(), repeated["window_seconds"].as_u64()), (Some(3), Some(3600)));
    assert_eq!(repeated["network"], "127.0.0.1/32", "the network counted: one IPv4 address");
    assert!(failure_ids[1..].contains(&repeated["request_id"].as_str().unwrap().to_string()), "{repeated}");

    let text = std::fs::read_to_string(&path).unwrap();
    for login in [&limited, &reused, &revoked, &ended] {
        secrets.extend([login.code.clone(), login.session_id.clone(), token(&login.tokens, "sid")]);
        secrets.extend([token(&login.tokens, "access_token"), token(&login.tokens, "refresh_token")]);
    }
    secrets.push("secret-query-value".into());
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "the audit log holds {secret}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_audit_log_that_is_off_writes_no_audit_line() {
    let (gateway, mock) = gateway_and_mock("logging:\n  audit: off\n  format: json\n").await;
    tokens_for(&gateway, &mock, "").await;
    // The access line of a later request is there: the audit lines would have been written by then.
    let id = http().get(gateway.url("/no-such-endpoint")).send().await.unwrap().headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let log = gateway.log_with(&id);
    assert!(!log.contains(r#""type":"audit""#), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_audit_lines_go_to_standard_error() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let log = gateway.log_with(r#""event":"code_redeemed""#);
    let line = log.lines().find(|l| l.contains(r#""event":"code_redeemed""#)).unwrap();
    let value: Value = serde_json::from_str(line).unwrap();
    assert_eq!(value["type"], "audit");
    assert!(!line.contains(tokens["refresh_token"].as_str().unwrap()));
}

/// A daemonized gateway (`-d`), killed by the pid in its pid file when dropped.
struct Daemon {
    pid_file: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = std::process::Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// The writer thread starts with the first event, in the daemon: one started before Pingora forks would be
/// left behind in the parent, and the daemon's events would never be written.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemonized_gateway_writes_its_audit_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin) = (free_port(), free_port());
    let (audit, config, d) = (dir.path().join("audit.log"), dir.path().join("gateway.yaml"), dir.path().display());
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: http://127.0.0.1:{port}\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\nlogging:\n  audit: file {}\n",
            audit.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let _daemon = Daemon { pid_file: dir.path().join("gateway.pid") };
    let status = std::process::Command::new(BIN).arg("--config").arg(&config).arg("-d").stderr(log).status().unwrap();
    assert!(status.success(), "the parent exits once the daemon is forked");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(dir.path().join("gateway.log")).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let registration = serde_json::json!({ "redirect_uris": ["http://127.0.0.1:9999/callback"] });
    let response = http().post(format!("http://127.0.0.1:{port}/register")).json(&registration).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let lines = audit_lines(&audit, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event"], "client_registered");
}
