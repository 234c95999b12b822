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

    let proxied = h2
        .get(format!("{tls}/api/v3/resource?x=1"))
        .bearer_auth(access)
        .header("Cookie", "session=should-not-pass")
        .header("sid", "client-chosen-sid")
        .send()
        .await
        .unwrap();
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
