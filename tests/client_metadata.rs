//! Client ID Metadata Documents fetched from a real HTTPS document server on 127.0.0.1 (a throwaway CA and
//! certificate from `common::pki`): the fetcher's SSRF rules, the document rules, and the resolver's kept
//! outcomes, single fetches and fetch limits. Each refusal is checked by its error, which names the rule.
//!
//! The loopback server is reachable only through `DocumentFetcher::for_tests_only` (feature `mock`); the
//! production constructor `DocumentFetcher::new` is shown refusing it.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::documents::{document_server, Answer, DocumentServer};
use ib_oauth_gateway::cimd::address::AddressClass;
use ib_oauth_gateway::cimd::cache::FetchLimitSettings;
use ib_oauth_gateway::cimd::client_id::MetadataUrl;
use ib_oauth_gateway::cimd::{
    CimdSettings, ClientMetadataError, ClientMetadataResolver, DocumentError, DocumentFetcher, FetchError,
};
use ib_oauth_gateway::metrics::Metrics;
use serde_json::json;

/// A good document for `url`.
fn document(url: &str) -> serde_json::Value {
    json!({
        "client_id": url,
        "client_name": "Test Agent",
        "redirect_uris": ["http://127.0.0.1/callback", "https://agent.example/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none"
    })
}

/// Every path the tests use, each answering as its name says.
async fn standard_server() -> DocumentServer {
    document_server(|origin| {
        let url = |path: &str| format!("{origin}{path}");
        let mut answers = HashMap::new();
        answers.insert("/ok.json", Answer::json(document(&url("/ok.json"))).header("Cache-Control", "max-age=600"));
        let mut coalesced = Answer::json(document(&url("/coalesced.json")));
        coalesced.delay = Duration::from_millis(300);
        answers.insert("/coalesced.json", coalesced);
        let mut large = document(&url("/large.json"));
        large["client_name"] = json!("x".repeat(200));
        large["padding"] = json!("p".repeat(6 * 1024));
        answers.insert("/large.json", Answer::json(large.clone()));
        let mut large_unannounced = Answer::json(large);
        large_unannounced.no_length = true;
        answers.insert("/large-unannounced.json", large_unannounced);
        let mut slow = Answer::json(document(&url("/slow.json")));
        slow.delay = Duration::from_secs(3);
        answers.insert("/slow.json", slow);
        let mut trickle = Answer::json(document(&url("/trickle.json")));
        trickle.trickle = Some(Duration::from_millis(20));
        answers.insert("/trickle.json", trickle);
        let mut redirect = Answer::json(json!({}));
        redirect.status = "302 Found";
        redirect.headers = vec![("Location", url("/ok.json"))];
        answers.insert("/redirect.json", redirect);
        let mut html = Answer::json(document(&url("/html.json")));
        html.headers = vec![("Content-Type", "text/html".into())];
        answers.insert("/html.json", html);
        answers.insert("/mismatch.json", Answer::json(document(&url("/other.json"))));
        let mut secret = document(&url("/secret.json"));
        secret["token_endpoint_auth_method"] = json!("client_secret_basic");
        answers.insert("/secret.json", Answer::json(secret));
        let mut foreign = document(&url("/foreign.json"));
        foreign["redirect_uris"] = json!(["https://agent.example/cb", "http://agent.example/cb"]);
        answers.insert("/foreign.json", Answer::json(foreign));
        answers
    })
    .await
}

fn test_fetcher(server: &DocumentServer, timeout: Duration) -> DocumentFetcher {
    DocumentFetcher::for_tests_only(&server.ca_pem, timeout).expect("test fetcher")
}

fn resolver(server: &DocumentServer, settings: CimdSettings) -> ClientMetadataResolver {
    ClientMetadataResolver::new(test_fetcher(server, Duration::from_millis(1500)), settings, None)
}

/// A resolver with default settings that counts into metrics of its own, and those metrics.
fn counted_resolver(server: &DocumentServer) -> (ClientMetadataResolver, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new("memory"));
    let fetcher = test_fetcher(server, Duration::from_secs(2));
    (ClientMetadataResolver::new(fetcher, CimdSettings::default(), Some(metrics.clone())), metrics)
}

async fn refusal(server: &DocumentServer, path: &str) -> ClientMetadataError {
    let resolver = resolver(server, CimdSettings::default());
    resolver.resolve(&server.url(path)).await.expect_err("refused")
}

#[tokio::test]
async fn a_good_document_resolves_and_is_kept_for_its_max_age() {
    let server = standard_server().await;
    let (resolver, metrics) = counted_resolver(&server);
    let client_id = server.url("/ok.json");
    let client = resolver.resolve(&client_id).await.expect("resolves");
    assert_eq!(client.client_id, client_id);
    assert_eq!(client.host, "127.0.0.1");
    assert_eq!(client.client_name.as_deref(), Some("Test Agent"));
    assert!(client.allows_redirect_uri("http://127.0.0.1/callback"));
    assert!(client.allows_refresh());
    let again = resolver.resolve(&client_id).await.expect("kept");
    assert!(Arc::ptr_eq(&client, &again), "the kept outcome, not a second fetch");
    assert_eq!(server.hits("/ok.json"), 1);
    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(rendered.contains("ibgw_client_metadata_fetches_total{result=\"ok\"} 1"), "{rendered}");
}

#[tokio::test]
async fn a_document_is_fetched_again_once_its_time_is_up() {
    let server = standard_server().await;
    let settings = CimdSettings {
        min_cache: Duration::from_millis(200),
        max_cache: Duration::from_millis(200),
        ..CimdSettings::default()
    };
    let resolver = resolver(&server, settings);
    let client_id = server.url("/ok.json");
    resolver.resolve(&client_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    resolver.resolve(&client_id).await.unwrap();
    assert_eq!(server.hits("/ok.json"), 2, "max-age 600 clamped to 200 ms");
}

#[tokio::test]
async fn concurrent_resolutions_of_one_url_share_one_fetch() {
    let server = standard_server().await;
    let resolver = resolver(&server, CimdSettings::default());
    let client_id = server.url("/coalesced.json");
    let all = futures_util::future::join_all((0..20).map(|_| resolver.resolve(&client_id))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(server.hits("/coalesced.json"), 1);
}

#[tokio::test]
async fn a_fetch_whose_callers_all_gave_up_still_finishes_and_is_kept() {
    let server = standard_server().await;
    let (resolver, metrics) = counted_resolver(&server);
    let client_id = server.url("/coalesced.json");
    // The document takes 300 ms; the only caller waits 50.
    assert!(tokio::time::timeout(Duration::from_millis(50), resolver.resolve(&client_id)).await.is_err());
    // Nobody is waiting, yet the fetch finishes and is counted (counting happens when it is kept).
    let counted = "ibgw_client_metadata_fetches_total{result=\"ok\"} 1";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !String::from_utf8(metrics.render()).unwrap().contains(counted) {
        assert!(std::time::Instant::now() < deadline, "the abandoned fetch never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(resolver.resolve(&client_id).await.is_ok());
    assert_eq!(server.hits("/coalesced.json"), 1);
}

#[tokio::test]
async fn a_failure_is_kept_briefly_instead_of_fetched_on_every_request() {
    let server = standard_server().await;
    let settings = CimdSettings { failure_cache: Duration::from_millis(300), ..CimdSettings::default() };
    let resolver = resolver(&server, settings);
    let client_id = server.url("/mismatch.json");
    for _ in 0..3 {
        assert_eq!(
            resolver.resolve(&client_id).await.unwrap_err(),
            ClientMetadataError::Document(DocumentError::ClientIdMismatch)
        );
    }
    assert_eq!(server.hits("/mismatch.json"), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    resolver.resolve(&client_id).await.unwrap_err();
    assert_eq!(server.hits("/mismatch.json"), 2);
}

#[tokio::test]
async fn made_up_urls_on_one_host_are_fetched_only_up_to_the_limit() {
    let server = standard_server().await;
    let metrics = Arc::new(Metrics::new("memory"));
    let settings = CimdSettings {
        limits: FetchLimitSettings { host_burst: 3, host_per_minute: 1, ..FetchLimitSettings::default() },
        ..CimdSettings::default()
    };
    let resolver =
        ClientMetadataResolver::new(test_fetcher(&server, Duration::from_secs(2)), settings, Some(metrics.clone()));
    let mut refused = 0;
    for n in 0..20 {
        if resolver.resolve(&server.url(&format!("/made-up-{n}.json"))).await == Err(ClientMetadataError::RateLimited) {
            refused += 1;
        }
    }
    assert_eq!(refused, 17);
    let fetched: usize = (0..20).map(|n| server.hits(&format!("/made-up-{n}.json"))).sum();
    assert_eq!(fetched, 3);
    let rendered = String::from_utf8(metrics.render()).unwrap();
    assert!(rendered.contains("ibgw_client_metadata_fetches_total{result=\"rate_limited\"} 17"), "{rendered}");
    assert!(rendered.contains("ibgw_client_metadata_fetches_total{result=\"status\"} 3"), "{rendered}");
}

#[tokio::test]
async fn a_host_off_the_allowlist_is_never_fetched() {
    let server = standard_server().await;
    let settings = CimdSettings { allowed_hosts: Some(vec!["claude.ai".into()]), ..CimdSettings::default() };
    let resolver = resolver(&server, settings);
    assert_eq!(resolver.resolve(&server.url("/ok.json")).await.unwrap_err(), ClientMetadataError::HostNotAllowed);
    assert_eq!(server.hits("/ok.json"), 0);
}

#[tokio::test]
async fn a_document_larger_than_5_kib_is_refused() {
    let server = standard_server().await;
    assert_eq!(refusal(&server, "/large.json").await, ClientMetadataError::Fetch(FetchError::TooLarge));
    // Without a Content-Length the body is read as a stream and the fetch stops past the limit.
    assert_eq!(refusal(&server, "/large-unannounced.json").await, ClientMetadataError::Fetch(FetchError::TooLarge));
}

#[tokio::test]
async fn a_slow_server_is_given_up_on_at_the_deadline() {
    let server = standard_server().await;
    let fetcher = test_fetcher(&server, Duration::from_millis(500));
    let started = std::time::Instant::now();
    let url = MetadataUrl::parse(&server.url("/slow.json")).unwrap();
    assert_eq!(fetcher.fetch(&url).await, Err(FetchError::Timeout));
    // A body that trickles in (2 s at 20 ms a byte) is under the same deadline as the headers.
    let url = MetadataUrl::parse(&server.url("/trickle.json")).unwrap();
    assert_eq!(fetcher.fetch(&url).await, Err(FetchError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_redirect_is_refused_and_not_followed() {
    let server = standard_server().await;
    assert_eq!(refusal(&server, "/redirect.json").await, ClientMetadataError::Fetch(FetchError::Redirect));
    assert_eq!(server.hits("/ok.json"), 0);
}

#[tokio::test]
async fn a_document_not_served_as_json_is_refused() {
    let server = standard_server().await;
    assert_eq!(refusal(&server, "/html.json").await, ClientMetadataError::Fetch(FetchError::NotJson));
}

#[tokio::test]
async fn an_answer_other_than_200_is_refused() {
    let server = standard_server().await;
    assert_eq!(refusal(&server, "/missing.json").await, ClientMetadataError::Fetch(FetchError::Status(404)));
}

#[tokio::test]
async fn a_document_whose_client_id_is_not_its_url_is_refused() {
    let server = standard_server().await;
    let refused = refusal(&server, "/mismatch.json").await;
    assert_eq!(refused, ClientMetadataError::Document(DocumentError::ClientIdMismatch));
    assert_eq!(refused.to_string(), "Client metadata document's client_id does not equal its URL");
}

#[tokio::test]
async fn a_document_with_a_secret_auth_method_is_refused() {
    let server = standard_server().await;
    let refused = refusal(&server, "/secret.json").await;
    assert_eq!(refused, ClientMetadataError::Document(DocumentError::SharedSecretAuthMethod));
}

#[tokio::test]
async fn a_document_with_a_foreign_http_redirect_uri_is_refused() {
    let server = standard_server().await;
    let refused = refusal(&server, "/foreign.json").await;
    assert_eq!(refused, ClientMetadataError::Document(DocumentError::RedirectUriNotAllowed));
}

#[tokio::test]
async fn the_production_fetcher_refuses_a_loopback_server_before_connecting() {
    let server = standard_server().await;
    let fetcher = DocumentFetcher::new().expect("production fetcher");
    let loopback = Err(FetchError::AddressNotPublic(AddressClass::Loopback));
    // An IP literal, checked before the request.
    let literal = MetadataUrl::parse(&server.url("/ok.json")).unwrap();
    assert_eq!(fetcher.fetch(&literal).await, loopback);
    // A name that resolves to loopback, refused by the resolver the client connects through.
    let port = server.origin.rsplit(':').next().unwrap();
    let named = MetadataUrl::parse(&format!("https://localhost:{port}/ok.json")).unwrap();
    assert_eq!(fetcher.fetch(&named).await, loopback);
    // The IPv4-mapped IPv6 form of 127.0.0.1.
    let mapped = MetadataUrl::parse(&format!("https://[::ffff:7f00:1]:{port}/ok.json")).unwrap();
    assert_eq!(fetcher.fetch(&mapped).await, loopback);
    assert_eq!(server.hits("/ok.json"), 0);
}

#[tokio::test]
async fn the_test_fetcher_allows_loopback_but_never_a_private_address() {
    let server = standard_server().await;
    let fetcher = test_fetcher(&server, Duration::from_secs(2));
    let port = server.origin.rsplit(':').next().unwrap();
    // Through the resolver: `localhost` is loopback, allowed for tests.
    let named = MetadataUrl::parse(&format!("https://localhost:{port}/ok.json")).unwrap();
    assert!(fetcher.fetch(&named).await.is_ok());
    for private in ["https://10.0.0.1/client.json", "https://169.254.169.254/latest", "https://[fd00::1]/client.json"] {
        let url = MetadataUrl::parse(private).unwrap();
        assert!(matches!(fetcher.fetch(&url).await, Err(FetchError::AddressNotPublic(_))), "{private}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let server = standard_server().await;
    let other = common::pki::test_pki();
    let other_ca = std::fs::read(&other.ca).unwrap();
    let fetcher = DocumentFetcher::for_tests_only(&other_ca, Duration::from_secs(2)).unwrap();
    let url = MetadataUrl::parse(&server.url("/ok.json")).unwrap();
    assert_eq!(fetcher.fetch(&url).await, Err(FetchError::Unreachable));
}
