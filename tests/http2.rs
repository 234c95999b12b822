//! HTTP/2 from clients, against a gateway process: `h2` offered by ALPN on a TLS listener (a throwaway CA from
//! `common::pki`), HTTP/1.1 still answered there, and h2c (prior knowledge) on a plain listener only when
//! `server.http2.h2c` says so. Over h2 the proxy keeps every rule it keeps over HTTP/1.1: the bearer check and its
//! challenge, the `sid` injected and the client's credentials stripped, foreign hosts refused, bodies streamed both
//! ways with flat memory; the OAuth endpoints read their form bodies.

mod common;

use common::pki::{test_pki, TestPki};
use common::*;
use serde_json::Value;

/// A gateway with a TLS listener (and its plain one, through which the tests log in), and that listener's origin.
fn tls_gateway(pki: &TestPki, http2: &str) -> (GatewayProcess, String) {
    let port = free_port();
    let server = format!(
        "  tls:\n    listen: ['127.0.0.1:{port}']\n    cert_file: {}\n    key_file: {}\n{http2}",
        pki.cert.display(),
        pki.key.display()
    );
    (GatewayProcess::start_full("", None, "", &server), format!("https://127.0.0.1:{port}"))
}

/// A gateway with a TLS listener, a mock platform, a session logged in through the plain listener, and an
/// h2-capable client for the TLS listener.
struct OverTls {
    pki: TestPki,
    gateway: GatewayProcess,
    tls: String,
    tokens: Value,
    h2: reqwest::Client,
    /// Kept for the test's length: the mock stops when dropped.
    _mock: ib_oauth_gateway::mock::MockHandle,
}

impl OverTls {
    async fn start() -> Self {
        let pki = test_pki();
        let (gateway, tls) = tls_gateway(&pki, "");
        let mock = start_mock(Default::default()).await;
        let tokens = tokens_for(&gateway, &mock, "").await;
        let h2 = tls_client(&pki).build().unwrap();
        OverTls { pki, gateway, tls, tokens, h2, _mock: mock }
    }

    fn access(&self) -> &str {
        self.tokens["access_token"].as_str().unwrap()
    }
}

/// What a client may send that must not reach IB: a cookie of its own and a `sid` of its choosing.
fn with_client_credentials(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.header("Cookie", "session=should-not-pass").header("sid", "client-chosen-sid")
}

/// A client that trusts the test CA and speaks h2 when the server offers it by ALPN.
fn tls_client(pki: &TestPki) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).tls_certs_merge(vec![ca])
}

#[tokio::test(flavor = "multi_thread")]
async fn over_h2_the_proxy_checks_the_bearer_injects_the_sid_strips_credentials_and_refuses_foreign_hosts() {
    let over = OverTls::start().await;
    let (tls, tokens, h2, access) = (&over.tls, &over.tokens, &over.h2, over.access());

    let discovery = h2.get(format!("{tls}/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!((discovery.status().as_u16(), discovery.version()), (200, reqwest::Version::HTTP_2));

    let anonymous = h2.get(format!("{tls}/api/v3/resource")).send().await.unwrap();
    assert_eq!((anonymous.status().as_u16(), anonymous.version()), (401, reqwest::Version::HTTP_2));
    let challenge = anonymous.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer resource_metadata="), "{challenge}");

    let proxied = with_client_credentials(h2.get(format!("{tls}/api/v3/resource?x=1")).bearer_auth(access));
    let proxied = proxied.send().await.unwrap();
    assert_eq!((proxied.status().as_u16(), proxied.version()), (200, reqwest::Version::HTTP_2));
    assert_eq!(proxied.headers()["x-content-type-options"], "nosniff");
    let echo: Value = proxied.json().await.unwrap();
    assert_eq!(echo["path"], "/api/3.0.0/mockclient/resource?x=1");
    let headers = &echo["headers"];
    assert_eq!(headers["sid"], tokens["sid"]);
    assert!(headers.get("authorization").is_none() && headers.get("cookie").is_none(), "{headers}");

    let foreign = h2.get(format!("{tls}/proxy/example.com/api")).bearer_auth(access).send().await.unwrap();
    assert_eq!(foreign.status(), 403);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");

    // An OAuth endpoint reads its form body over h2: a refresh.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let refreshed = h2.post(format!("{tls}/token")).form(&refresh_form(refresh)).send().await.unwrap();
    assert_eq!((refreshed.status().as_u16(), refreshed.version()), (200, reqwest::Version::HTTP_2));
    let refreshed: Value = refreshed.json().await.unwrap();
    assert!(refreshed["access_token"].is_string(), "{refreshed}");

    // HTTP/1.1 clients are still served on the same listener.
    let h1 = tls_client(&over.pki).http1_only().build().unwrap();
    let answer = h1.get(format!("{tls}/api/v3/resource")).bearer_auth(access).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.version()), (200, reqwest::Version::HTTP_11));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_h2_bodies_stream_both_ways_with_flat_gateway_memory() {
    const SIZE: u64 = 256 << 20;
    let over = OverTls::start().await;
    let (gateway, tls, h2, access) = (&over.gateway, &over.tls, &over.h2, over.access());
    let baseline = gateway.peak_rss_kib();

    let download = h2
        .get(format!("{tls}/api/v3/asset/1?action=download&mock_bytes={SIZE}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!((download.status().as_u16(), download.version()), (200, reqwest::Version::HTTP_2));
    assert_eq!(read_mock_pattern(download).await, SIZE);

    let upload = h2.put(format!("{tls}/api/v3/asset/1")).bearer_auth(access).body(streamed_body(SIZE >> 20)).send();
    let upload = upload.await.unwrap();
    assert_eq!((upload.status().as_u16(), upload.version()), (200, reqwest::Version::HTTP_2));
    let echo: Value = upload.json().await.unwrap();
    assert_eq!(echo["body_length"].as_u64(), Some(SIZE));

    let peak = gateway.peak_rss_kib();
    assert!(baseline > 0 && peak > 0);
    assert!(peak - baseline < 64 * 1024, "gateway memory grew from {baseline} KiB to {peak} KiB streaming over h2");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_http2_the_tls_listener_speaks_http_1_1_only() {
    let pki = test_pki();
    let (_gateway, tls) = tls_gateway(&pki, "  http2:\n    enabled: false\n");
    let client = tls_client(&pki).build().unwrap();
    let answer = client.get(format!("{tls}/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.version()), (200, reqwest::Version::HTTP_11));
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_is_accepted_on_plain_listeners_only_when_configured() {
    let prior_knowledge = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let off = GatewayProcess::start("");
    let refused = prior_knowledge.get(off.url("/.well-known/oauth-authorization-server")).send().await;
    assert!(refused.is_err(), "h2c is off by default: {:?}", refused.map(|r| r.version()));

    let on = GatewayProcess::start_full("", None, "", "  http2:\n    h2c: true\n");
    let answer = prior_knowledge.get(on.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.version()), (200, reqwest::Version::HTTP_2));
    // HTTP/1.1 still works on an h2c listener.
    let answer = http().get(on.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.version()), (200, reqwest::Version::HTTP_11));
}

// ---- HTTP/2 to IB (`upstream.http2`)

/// A gateway with `upstream.http2.enabled`, trusting the test CA, in front of a TLS mock platform that offers h2
/// by ALPN (`platform_h2`) or only HTTP/1.1, with a session logged in.
async fn h2_to_ib(platform_h2: bool) -> (TestPki, GatewayProcess, ib_oauth_gateway::mock::MockHandle, Value) {
    let pki = test_pki();
    let gateway = GatewayProcess::start_full(
        "upstream:\n  http2:\n    enabled: true\n",
        None,
        &format!("  extra_ca_file: {}\n", pki.ca.display()),
        "",
    );
    let settings = ib_oauth_gateway::mock::MockSettings { http2: platform_h2, ..Default::default() };
    let mock = common::pki::start_tls_mock_with(&pki, settings).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    (pki, gateway, mock, tokens)
}

/// The mock's (connections, h2 connections) accepted so far. Each reading opens a connection of its own (h2:
/// the control client speaks it too), counted in the reading it makes.
async fn connections(mock: &ib_oauth_gateway::mock::MockHandle) -> (u64, u64) {
    let stats = mock_stats(mock).await;
    (stats["connections_accepted"].as_u64().unwrap(), stats["h2_connections_accepted"].as_u64().unwrap())
}

/// Connections the gateway opened to the mock between two readings, and how many of them speak h2 (the later
/// reading's own connection left out).
fn opened_between(before: (u64, u64), after: (u64, u64)) -> (u64, u64) {
    (after.0 - before.0 - 1, after.1 - before.1 - 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn over_h2_to_ib_concurrent_requests_share_a_connection_and_keep_every_proxy_rule() {
    let (_pki, gateway, mock, tokens) = h2_to_ib(true).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    // The first proxied request opens the h2 connection.
    assert_eq!(get_resource_with(&gateway, &access).await.status(), 200);
    let before = connections(&mock).await;

    // Each answer waits 300 ms, so the 20 requests are in flight together (HTTP/1.1 would need 20 connections).
    let requests = (0..20).map(|i| {
        let (url, access) = (gateway.url(&format!("/api/v3/resource?n={i}&mock_delay_ms=300")), access.clone());
        async move {
            let answer = with_client_credentials(http().get(url).bearer_auth(access)).send().await.unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<Value>().await.unwrap()
        }
    });
    for (i, echo) in futures_util::future::join_all(requests).await.into_iter().enumerate() {
        assert_eq!(echo["path"], format!("/api/3.0.0/mockclient/resource?n={i}&mock_delay_ms=300"));
        let headers = &echo["headers"];
        assert_eq!(headers["sid"], tokens["sid"], "the session's sid, not the client's");
        assert!(headers.get("authorization").is_none() && headers.get("cookie").is_none(), "{headers}");
    }
    let (opened, h2) = opened_between(before, connections(&mock).await);
    assert!(opened <= 1, "20 concurrent requests opened {opened} connections: not multiplexed");
    assert_eq!(opened, h2, "every connection to the platform speaks h2");

    // IB's 401 over h2 still ends the session.
    assert!(expire_session(&mock, tokens["sid"].as_str().unwrap()).await.is_success());
    let rejected = get_resource_with(&gateway, &access).await;
    assert_eq!(rejected.status(), 401);
    let body: Value = rejected.json().await.unwrap();
    assert_eq!(body["error_description"], "Session has expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_h2_to_ib_a_gibibyte_streams_both_ways_with_flat_gateway_memory() {
    const GIB: u64 = 1 << 30;
    let (_pki, gateway, mock, tokens) = h2_to_ib(true).await;
    let access = tokens["access_token"].as_str().unwrap();
    let before = connections(&mock).await;
    let baseline = gateway.peak_rss_kib();

    let download = http()
        .get(gateway.url(&format!("/api/v3/asset/1?action=download&mock_bytes={GIB}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(read_mock_pattern(download).await, GIB);
    let upload = http().put(gateway.url("/api/v3/asset/1")).bearer_auth(access).body(streamed_body(GIB >> 20));
    let upload = upload.send().await.unwrap();
    assert_eq!(upload.status(), 200);
    let echo: Value = upload.json().await.unwrap();
    assert_eq!(echo["body_length"].as_u64(), Some(GIB));

    let peak = gateway.peak_rss_kib();
    assert!(baseline > 0 && peak > 0);
    assert!(peak - baseline < 64 * 1024, "gateway memory grew from {baseline} KiB to {peak} KiB streaming over h2");
    let (opened, h2) = opened_between(before, connections(&mock).await);
    assert!(opened >= 1 && opened == h2, "both bodies went over h2 ({opened} connections, {h2} h2)");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_without_h2_is_spoken_to_over_http_1_1() {
    let (_pki, gateway, mock, tokens) = h2_to_ib(false).await;
    let answer = get_resource_with(&gateway, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(answer.status(), 200);
    let echo: Value = answer.json().await.unwrap();
    assert_eq!(echo["headers"]["sid"], tokens["sid"]);
    assert_eq!(connections(&mock).await.1, 0, "no h2 connection to a platform that offers only http/1.1");
}

/// The `mock-platform` command (what the bench and operators run) offers h2 by ALPN only with `--http2`, and
/// refuses `--http2` without `--tls` (there is no ALPN without TLS).
#[tokio::test(flavor = "multi_thread")]
async fn the_mock_platform_command_offers_h2_only_with_its_flag() {
    let pki = test_pki();
    let client = tls_client(&pki).build().unwrap();
    for (flag, expected) in [(true, reqwest::Version::HTTP_2), (false, reqwest::Version::HTTP_11)] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut command = std::process::Command::new(BIN);
        command.args(["mock-platform", "--listen", &listen, "--tls"]).arg(&pki.cert).arg(&pki.key);
        if flag {
            command.arg("--http2");
        }
        let mut mock = command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let mut answer = None;
        for _ in 0..200 {
            if let Ok(response) = client.get(format!("https://{listen}/_mock/stats")).send().await {
                answer = Some((response.status().as_u16(), response.version()));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        mock.kill().unwrap();
        mock.wait().unwrap();
        assert_eq!(answer, Some((200, expected)), "--http2: {flag}");
    }
    let refused = std::process::Command::new(BIN).args(["mock-platform", "--http2"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--tls"), "{}", String::from_utf8_lossy(&refused.stderr));
}
