//! The IntelligenceBank client against the mock platform, over real HTTP and TLS on 127.0.0.1.
//!
//! Every test starts its own mock (`mock::serve`) on a free port and drives the real `IbClient` built from
//! a real `Config`. TLS tests generate a throwaway CA and a server certificate for `127.0.0.1`/`localhost`.

mod common;

use std::time::{Duration, Instant};

use common::{
    complete_login, complete_login_with, control_http, expire_session, free_port, mock_stats, start_mock, urlencode,
};
use ib_oauth_gateway::config::{self, Config};
use ib_oauth_gateway::ib::{CompletedLogin, IbClient, IbError, IbSetupError, LoginPoll, PlatformUrl};
use ib_oauth_gateway::mock::{self, MockHandle, MockSettings};
use ib_oauth_gateway::store::now_unix;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const API_PATH: &str = "/api/3.0.0/mockclient/resource.limit(100).order(createTime:-1)?verbose=null&x=%2F";

fn gateway_config(extra_ca_file: Option<&str>, read_timeout_ms: u64) -> Config {
    let ca = extra_ca_file.map_or(String::new(), |path| format!("  extra_ca_file: \"{path}\"\n"));
    let yaml = format!(
        "server:\n  public_url: \"http://127.0.0.1:8080\"\n\
         platforms:\n  allow_insecure_loopback: true\n{ca}\
         upstream:\n  connect_timeout_ms: 2000\n  read_timeout_ms: {read_timeout_ms}\n"
    );
    config::load_str(&yaml).expect("test configuration is valid")
}

fn client() -> IbClient {
    IbClient::new(&gateway_config(None, 10_000)).expect("client builds")
}

fn platform(client: &IbClient, mock: &MockHandle) -> PlatformUrl {
    client.policy().validate(&mock.origin).expect("the mock's origin passes the loopback policy")
}

async fn poll(client: &IbClient, platform: &PlatformUrl, token: &str) -> LoginPoll {
    client.poll_login(platform, token).await.expect("poll succeeds")
}

fn completed(poll: LoginPoll) -> CompletedLogin {
    match poll {
        LoginPoll::Complete(login) => login,
        LoginPoll::Pending => panic!("expected a completed login, got Pending"),
    }
}

/// A mock with `settings`, a client, the mock as its platform, and the IB login token of a login started
/// there.
async fn login_started(settings: MockSettings) -> (MockHandle, IbClient, PlatformUrl, String) {
    let mock = start_mock(settings).await;
    let client = client();
    let platform = platform(&client, &mock);
    let token = client.start_login(&platform).await.expect("start");
    (mock, client, platform, token)
}

/// Logs the test user in through the mock's controls; returns the IB session id.
async fn logged_in_sid(mock: &MockHandle) -> String {
    let client = client();
    let platform = platform(&client, mock);
    let token = client.start_login(&platform).await.expect("start");
    complete_login(mock, &token, "").await
}

#[tokio::test]
async fn browser_login_is_pending_until_completed_then_reports_every_field() {
    let settings =
        MockSettings { login_timeout_hours: Some(8), login_time_offset_seconds: -60, ..MockSettings::default() };
    let (mock, client, platform, token) = login_started(settings).await;
    let http = control_http();
    assert!(!token.is_empty());
    let page = http.get(IbClient::login_page_url(&platform, &token)).send().await.expect("login page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("action=\"/_mock/complete\""), "{html}");

    assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
    assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);

    let sid = complete_login(&mock, &token, "&uuid=user-42&firstname=Ada&lastname=Lovelace").await;
    let login = completed(poll(&client, &platform, &token).await);
    assert_eq!(login.sid.expose(), sid);
    assert_eq!(login.user_uuid, "user-42");
    let login_time = login.login_time.expect("loginTime reported");
    let expected = now_unix() - 60;
    assert!(login_time.abs_diff(expected) <= 5, "loginTime {login_time} is Unix seconds, about {expected}");
    assert_eq!(login.client_id, "mockclient");
    assert_eq!(login.api_v3_url.origin(), mock.origin);
    assert_eq!(login.login_timeout_hours, Some(8));
    assert_eq!((login.first_name.as_str(), login.last_name.as_str()), ("Ada", "Lovelace"));
    assert_eq!(login.email, None);
    assert_eq!(format!("{login:?}").matches(&sid).count(), 0, "Debug never shows the sid");

    let grant = login.into_grant(&platform, "app-1".into(), "profile".into());
    assert_eq!(grant.platform_url, mock.origin);
    assert_eq!(grant.api_v3_url, mock.origin);
    assert_eq!(grant.ib_client_id, "mockclient");
    assert_eq!(grant.user.uuid, "user-42");
    assert_eq!(grant.user.login_time, Some(login_time));
    assert_eq!(grant.login_timeout_hours, Some(8));
    assert_eq!((grant.oauth_client_id.as_str(), grant.scope.as_str()), ("app-1", "profile"));
}

#[tokio::test]
async fn login_page_form_completes_the_login_as_the_demo_user() {
    let (mock, client, platform, token) = login_started(MockSettings::default()).await;
    let http = control_http();
    let html = http
        .get(IbClient::login_page_url(&platform, &token))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")), "{html}");

    let submitted = http
        .post(mock.url("/_mock/complete"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", urlencode(&token)))
        .send()
        .await
        .expect("form post");
    assert_eq!(submitted.status(), 200);
    assert!(submitted.text().await.expect("html").contains("Logged in as Demo User"));
    let login = completed(poll(&client, &platform, &token).await);
    assert_eq!((login.first_name.as_str(), login.last_name.as_str()), ("Demo", "User"));

    let again = http.get(IbClient::login_page_url(&platform, &token)).send().await.expect("page");
    assert_eq!(again.status(), 404, "a finished login has no login page");
}

#[tokio::test]
async fn info_body_has_the_contract_shape() {
    let (mock, _, _, token) = login_started(MockSettings::default()).await;
    let http = control_http();
    let sid = complete_login(&mock, &token, "").await;

    let body: Value = http
        .get(mock.url(&format!("/v1/auth/app/info?token={}", urlencode(&token))))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("info JSON");
    assert!(body["SID"].is_string());
    let session = &body["content"]["session"];
    assert_eq!(session["sid"], Value::from(sid.clone()));
    for key in ["userUuid", "originalUserUuid"] {
        assert!(session[key].is_string(), "session.{key}");
    }
    assert!(session["loginTime"].as_u64().is_some_and(|t| t.abs_diff(now_unix()) <= 5));
    let info = &body["content"]["info"];
    for key in [
        "clientname",
        "clientuuid",
        "clientid",
        "sid",
        "apikey",
        "apiV3url",
        "adminemail",
        "firstname",
        "lastname",
        "useruuid",
    ] {
        assert!(info[key].is_string(), "info.{key}");
    }
    assert_eq!(info["logintimeoutperiod"], Value::from(120));
    assert_eq!(info["apiV3url"], Value::from(mock.origin.clone()), "scheme included, no path");
}

#[tokio::test]
async fn logintimeoutperiod_omitted_by_ib_is_none() {
    let (mock, client, platform, token) =
        login_started(MockSettings { login_timeout_hours: None, ..MockSettings::default() }).await;
    complete_login(&mock, &token, "").await;
    let login = completed(poll(&client, &platform, &token).await);
    assert_eq!(login.login_timeout_hours, None);
}

#[tokio::test]
async fn numbers_sent_as_strings_are_read() {
    let (mock, client, platform, token) = login_started(MockSettings::default()).await;
    complete_login(&mock, &token, "&logintimeoutperiod=%226%22&loginTime=%221609227014%22").await;
    let login = completed(poll(&client, &platform, &token).await);
    assert_eq!(login.login_timeout_hours, Some(6));
    assert_eq!(login.login_time, Some(1_609_227_014));
}

#[tokio::test]
async fn failed_login_stays_pending_forever() {
    let (mock, client, platform, token) = login_started(MockSettings::default()).await;
    let http = control_http();
    let failed = http.post(mock.url(&format!("/_mock/fail?token={}", urlencode(&token)))).send().await.expect("fail");
    assert_eq!(failed.status(), 200);
    for _ in 0..3 {
        assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
    }
    let late = http.post(mock.url(&format!("/_mock/complete?token={}", urlencode(&token)))).send().await.expect("post");
    assert_eq!(late.status(), 409, "a failed login cannot be completed");
    assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
}

#[tokio::test]
async fn unknown_login_token_is_pending() {
    let mock = start_mock(MockSettings::default()).await;
    let client = client();
    let platform = platform(&client, &mock);
    assert_eq!(poll(&client, &platform, "never-issued").await, LoginPoll::Pending);
}

#[tokio::test]
async fn ok_without_a_session_sid_is_pending() {
    let settings = MockSettings { pending_as_ok_without_session: true, ..MockSettings::default() };
    let (mock, client, platform, token) = login_started(settings).await;
    let http = control_http();
    let raw = http.get(mock.url(&format!("/v1/auth/app/info?token={}", urlencode(&token)))).send().await.expect("info");
    assert_eq!(raw.status(), 200, "the mock answers 200 while pending in this mode");
    assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
    complete_login(&mock, &token, "").await;
    assert!(matches!(poll(&client, &platform, &token).await, LoginPoll::Complete(_)));
}

#[tokio::test]
async fn api_v3_url_failing_the_policy_is_a_bad_response() {
    for api_v3_url in
        ["https://api.evil.example", "http://127.0.0.2:8080", "https://lbv3us1.intelligencebank.com/api/v3"]
    {
        let settings = MockSettings { api_v3_url: Some(api_v3_url.into()), ..MockSettings::default() };
        let (mock, client, platform, token) = login_started(settings).await;
        complete_login(&mock, &token, "").await;
        let result = client.poll_login(&platform, &token).await;
        assert!(matches!(result, Err(IbError::BadResponse(_))), "{api_v3_url}: {result:?}");
    }
}

#[tokio::test]
async fn polls_reuse_one_pooled_connection() {
    let (mock, client, platform, token) = login_started(MockSettings::default()).await;
    for _ in 0..5 {
        assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
    }
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["requests"]["token"], Value::from(1));
    assert_eq!(stats["requests"]["info"], Value::from(5));
    // The client's six calls plus the stats call on the control client's own connection.
    assert_eq!(stats["connections_accepted"], Value::from(2), "{stats}");
}

// ---- TLS ----

use common::pki::{start_tls_mock, test_pki};

#[tokio::test]
async fn tls_platform_is_trusted_with_the_extra_ca() {
    let pki = test_pki();
    let mock = start_tls_mock(&pki).await;
    assert!(mock.origin.starts_with("https://127.0.0.1:"), "{}", mock.origin);
    let ca = pki.ca.to_str().expect("utf-8 path");
    let client = IbClient::new(&gateway_config(Some(ca), 10_000)).expect("client with extra CA");
    let platform = platform(&client, &mock);
    assert!(platform.is_tls());

    let token = client.start_login(&platform).await.expect("start over TLS");
    assert_eq!(poll(&client, &platform, &token).await, LoginPoll::Pending);
    let pem = std::fs::read(&pki.ca).expect("CA PEM");
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA cert")])
        .build()
        .expect("control client");
    let sid = complete_login_with(&http, &mock, &token, "").await;
    let login = completed(poll(&client, &platform, &token).await);
    assert_eq!(login.sid.expose(), sid);
    assert_eq!(login.api_v3_url.origin(), mock.origin);
}

#[tokio::test]
async fn tls_platform_without_the_extra_ca_is_refused() {
    let pki = test_pki();
    let mock = start_tls_mock(&pki).await;
    let client = client();
    let platform = platform(&client, &mock);
    assert_eq!(client.start_login(&platform).await, Err(IbError::Unreachable));
    assert_eq!(client.poll_login(&platform, "token").await, Err(IbError::Unreachable));
}

#[test]
fn extra_ca_file_without_certificates_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").expect("write");
    let err = IbClient::new(&gateway_config(path.to_str(), 1_000)).expect_err("refused");
    assert!(matches!(err, IbSetupError::CaFileEmpty { .. } | IbSetupError::CaFileNotPem { .. }), "{err}");
    assert!(err.to_string().starts_with("platforms.extra_ca_file"), "{err}");
}

// ---- failures of the platform itself ----

/// A server that answers every connection with `response`, then closes it.
async fn canned_server(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn unexpected_status_redirect_and_garbage_are_errors() {
    let client = client();
    let cases = [
        (
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            IbError::UnexpectedStatus(500),
        ),
        (
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            IbError::UnexpectedStatus(302),
        ),
        ("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", IbError::UnexpectedStatus(401)),
    ];
    for (response, expected) in cases {
        let origin = canned_server(response).await;
        let platform = client.policy().validate(&origin).expect("loopback");
        assert_eq!(client.start_login(&platform).await, Err(expected.clone()));
        assert_eq!(client.poll_login(&platform, "t").await, Err(expected));
    }

    let origin = canned_server("HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\n<html>").await;
    let platform = client.policy().validate(&origin).expect("loopback");
    assert!(matches!(client.start_login(&platform).await, Err(IbError::BadResponse(_))));
    assert!(matches!(client.poll_login(&platform, "t").await, Err(IbError::BadResponse(_))));
}

#[tokio::test]
async fn closed_port_is_unreachable() {
    let addr = format!("127.0.0.1:{}", free_port());
    let client = client();
    let platform = client.policy().validate(&format!("http://{addr}")).expect("loopback");
    assert_eq!(client.start_login(&platform).await, Err(IbError::Unreachable));
}

#[tokio::test]
async fn silent_platform_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let client = IbClient::new(&gateway_config(None, 300)).expect("client");
    let platform = client.policy().validate(&format!("http://{addr}")).expect("loopback");
    let started = Instant::now();
    assert_eq!(client.start_login(&platform).await, Err(IbError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---- API v3 on the mock ----

#[tokio::test]
async fn api_echo_returns_the_raw_target_byte_for_byte() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let response = control_http()
        .get(mock.url(API_PATH))
        .header("sid", &sid)
        .header("x-multi", "a")
        .header("X-Multi", "b")
        .send()
        .await
        .expect("api call");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let echo: Value = response.json().await.expect("echo JSON");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], API_PATH);
    assert_eq!(echo["headers"]["sid"], Value::from(sid));
    assert_eq!(echo["headers"]["x-multi"], "a, b");
    assert_eq!(echo["body_length"], 0);
    assert_eq!(echo["sid_ok"], true);
    assert_eq!(echo["response"]["count"], 100);
    assert_eq!(echo["response"]["rows"].as_array().map(Vec::len), Some(100));
}

#[tokio::test]
async fn api_echo_does_not_normalise_what_a_url_library_would() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let target = "/api/3.0.0/mockclient/a/./b/../c//d?x=%2f&y=(1,2)&z=a:b&&=";
    let authority = mock.origin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let request = format!("PUT {target} HTTP/1.1\r\nHost: {authority}\r\nsid: {sid}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 answer");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let body = raw.split_once("\r\n\r\n").map(|(_, body)| body).expect("body");
    let echo: Value = serde_json::from_str(body).expect("echo JSON");
    assert_eq!(echo["path"], target);
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body_length"], 5);
}

#[tokio::test]
async fn api_refuses_unknown_wrong_account_and_expired_sids_with_401() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let http = control_http();
    let call = |path: &str, sid: Option<&str>| {
        let mut request = http.get(mock.url(path));
        if let Some(sid) = sid {
            request = request.header("sid", sid);
        }
        request.send()
    };
    assert_eq!(call("/api/3.0.0/mockclient/resource", Some(&sid)).await.expect("ok").status(), 200);
    let query_sid = format!("/api/3.0.0/mockclient/resource/1?action=download&sid={}", urlencode(&sid));
    assert_eq!(call(&query_sid, None).await.expect("query sid").status(), 200, "download URLs accept ?sid=");

    let missing = call("/api/3.0.0/mockclient/resource", None).await.expect("missing");
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["message"], "Unauthorized");
    assert_eq!(call("/api/3.0.0/mockclient/resource", Some("not-a-sid")).await.expect("bogus").status(), 401);
    assert_eq!(call("/api/3.0.0/otherclient/resource", Some(&sid)).await.expect("account").status(), 401);

    assert_eq!(expire_session(&mock, &sid).await, 200);
    assert_eq!(call("/api/3.0.0/mockclient/resource", Some(&sid)).await.expect("expired").status(), 401);
}

#[tokio::test]
async fn api_session_past_its_logintimeoutperiod_is_refused() {
    let settings =
        MockSettings { login_timeout_hours: Some(1), login_time_offset_seconds: -3_700, ..MockSettings::default() };
    let mock = start_mock(settings).await;
    let sid = logged_in_sid(&mock).await;
    let response = control_http().get(mock.url("/api/3.0.0/mockclient/resource")).header("sid", sid).send().await;
    assert_eq!(response.expect("call").status(), 401);
}

#[tokio::test]
async fn api_streams_downloads_and_counts_uploads() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let http = control_http();

    const DOWNLOAD: u64 = 5 * 1024 * 1024 + 7;
    let mut response = http
        .get(mock.url(&format!("/api/3.0.0/mockclient/resource/1?action=download&mock_bytes={DOWNLOAD}")))
        .header("sid", &sid)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(DOWNLOAD));
    let mut offset = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        for (i, byte) in chunk.iter().enumerate() {
            assert_eq!(*byte, mock::pattern_byte(offset + i as u64), "byte {}", offset + i as u64);
        }
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, DOWNLOAD);

    const UPLOAD_CHUNKS: usize = 48;
    const CHUNK: usize = 64 * 1024;
    let chunks = futures_util::stream::iter(
        (0..UPLOAD_CHUNKS).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; CHUNK]))),
    );
    let upload = http
        .post(mock.url("/api/3.0.0/mockclient/resource"))
        .header("sid", &sid)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 200);
    let echo: Value = upload.json().await.expect("echo");
    assert_eq!(echo["body_length"], (UPLOAD_CHUNKS * CHUNK) as u64);
    assert_eq!(echo["headers"]["transfer-encoding"], "chunked");
}

#[tokio::test]
async fn api_mock_status_and_delay_steer_the_answer() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let http = control_http();
    let path = "/api/3.0.0/mockclient/resource?mock_status=503";
    let response = http.get(mock.url(path)).header("sid", &sid).send().await.expect("status");
    assert_eq!(response.status(), 503);
    let echo: Value = response.json().await.expect("echo");
    assert_eq!(echo["path"], path);

    let started = Instant::now();
    let response = http
        .get(mock.url("/api/3.0.0/mockclient/resource?mock_delay_ms=250"))
        .header("sid", &sid)
        .send()
        .await
        .expect("delay");
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn stats_count_requests_and_connections() {
    let mock = start_mock(MockSettings::default()).await;
    let sid = logged_in_sid(&mock).await;
    let http = control_http();
    for _ in 0..3 {
        let response = http.get(mock.url("/api/3.0.0/mockclient/resource")).header("sid", &sid).send().await;
        assert_eq!(response.expect("api").status(), 200);
    }
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["requests"]["api"], 3);
    assert_eq!(stats["requests"]["complete"], 1);
    assert!(stats["connections_accepted"].as_u64().is_some_and(|n| n >= 2), "{stats}");
    mock.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mock = start_mock(MockSettings::default()).await;
    let origin = mock.origin.clone();
    mock.shutdown().await;
    let result = reqwest::Client::new().get(format!("{origin}/_mock/stats")).send().await;
    assert!(result.is_err(), "nothing listens after shutdown");
}
