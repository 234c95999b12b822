//! Fetches a Client ID Metadata Document: the one place the gateway makes an HTTP request to a URL a stranger
//! chose, so every SSRF defence is here.
//!
//! - `https` only (the URL was checked by [`MetadataUrl`]; the client refuses anything else too).
//! - Every address the host resolves to must be public ([`super::address`]); one non-public address refuses
//!   the fetch. The check runs inside the client's DNS resolver, so the connection is made to exactly the
//!   addresses checked (no DNS-rebinding window); an IP-literal host, which skips the resolver, is checked
//!   before the request; the address actually connected to is checked again on the response.
//! - No proxy from the environment (a proxy would connect on our behalf to an address we never saw), no
//!   redirects, no retries.
//! - One deadline for the whole fetch (resolve, connect, TLS, headers, body): 5 s.
//! - The body is read as a stream and the fetch stops at the first byte past 5 KiB; a `Content-Length` past
//!   it stops the fetch before any body is read.
//! - Status 200 with a JSON content type (`application/json` or `application/*+json`) only.
//! - No content decoding: reqwest is built without its gzip/brotli/deflate features (none in Cargo.lock),
//!   so the 5 KiB read are the 5 KiB parsed; enabling one of them would need an explicit `no_gzip()` here.
//!
//! [`DocumentFetcher::new`] is the only constructor in a production build. The test constructor
//! `DocumentFetcher::for_tests_only`, which also allows loopback targets and trusts a test CA, exists only
//! with `cfg(test)` or the `mock` feature (not in `--no-default-features` production builds), and no
//! configuration key reaches it: it cannot be turned on from a config file.
//!
//! Never logs a response body; failures are logged at `debug` with the host only.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use url::Host;

use super::address::{classify, AddressClass};
use super::client_id::MetadataUrl;

/// The whole fetch must finish within this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Larger documents are refused (the draft recommends 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

const USER_AGENT: &str = concat!("ib-oauth-gateway/", env!("CARGO_PKG_VERSION"), " (client metadata)");

/// Why a fetch failed. `Display` is the `invalid_client` description: it names the rule, never a URL, an
/// address or a byte of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("Client metadata document host resolves to a non-public address ({})", .0.as_str())]
    AddressNotPublic(AddressClass),
    #[error("Client metadata document host does not resolve")]
    NoAddress,
    #[error("Client metadata document could not be fetched (connection or TLS failure)")]
    Unreachable,
    #[error("Client metadata document was not fetched in time")]
    Timeout,
    #[error("Client metadata document URL answered with a redirect; redirects are not followed")]
    Redirect,
    #[error("Client metadata document URL answered with HTTP status {0}, not 200")]
    Status(u16),
    #[error("Client metadata document must be served as application/json")]
    NotJson,
    #[error("Client metadata document is larger than 5120 bytes")]
    TooLarge,
}

impl FetchError {
    /// The `result` label of `ibgw_client_metadata_fetches_total`.
    pub fn label(self) -> &'static str {
        match self {
            FetchError::AddressNotPublic(_) => "address_not_public",
            FetchError::NoAddress => "no_address",
            FetchError::Unreachable => "unreachable",
            FetchError::Timeout => "timeout",
            FetchError::Redirect => "redirect",
            FetchError::Status(_) => "status",
            FetchError::NotJson => "not_json",
            FetchError::TooLarge => "too_large",
        }
    }
}

/// Why the fetcher could not be built (at start-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchSetupError {
    #[error("cannot build the client metadata HTTPS client: {0}")]
    Client(String),
    #[error("the test CA is not a PEM certificate: {0}")]
    TestCa(String),
}

/// A document as fetched: the body (at most [`MAX_DOCUMENT_BYTES`]) and the `Cache-Control` freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedDocument {
    pub body: bytes::Bytes,
    /// `max-age` in seconds; `Some(0)` for `no-store`/`no-cache`; `None` when the response says nothing.
    pub max_age: Option<Duration>,
}

/// Which addresses a fetch may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddressPolicy {
    PublicOnly,
    /// Tests only: public and loopback (never private or link-local).
    #[cfg_attr(not(any(test, feature = "mock")), allow(dead_code))]
    PublicOrLoopback,
}

impl AddressPolicy {
    fn check(self, ip: IpAddr) -> Result<(), FetchError> {
        match (classify(ip), self) {
            (AddressClass::Public, _) | (AddressClass::Loopback, AddressPolicy::PublicOrLoopback) => Ok(()),
            (class, _) => Err(FetchError::AddressNotPublic(class)),
        }
    }
}

/// The resolver error that carries a refused address class out through reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RefusedByResolver(FetchError);

/// DNS resolution that hands the connector only addresses the policy allows, and fails if any is refused.
struct CheckedResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(resolve_checked(name.as_str().to_string(), self.policy))
    }
}

async fn resolve_checked(
    host: String,
    policy: AddressPolicy,
) -> Result<reqwest::dns::Addrs, Box<dyn StdError + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|_| RefusedByResolver(FetchError::NoAddress))?
        .collect();
    if addrs.is_empty() {
        return Err(RefusedByResolver(FetchError::NoAddress).into());
    }
    for addr in &addrs {
        policy.check(addr.ip()).map_err(RefusedByResolver)?;
    }
    Ok(Box::new(addrs.into_iter()))
}

/// The one HTTPS client for metadata documents, shared by every resolution.
#[derive(Debug, Clone)]
pub struct DocumentFetcher {
    http: reqwest::Client,
    policy: AddressPolicy,
    timeout: Duration,
}

impl DocumentFetcher {
    /// The production fetcher: public addresses only, the system's trusted roots, [`FETCH_TIMEOUT`].
    pub fn new() -> Result<Self, FetchSetupError> {
        Self::build(AddressPolicy::PublicOnly, None, FETCH_TIMEOUT)
    }

    /// Tests only (`cfg(test)` or feature `mock`; no configuration key reaches it): also connects to loopback
    /// addresses, trusts `test_ca_pem` besides the system roots, and gives up after `timeout`.
    #[cfg(any(test, feature = "mock"))]
    pub fn for_tests_only(test_ca_pem: &[u8], timeout: Duration) -> Result<Self, FetchSetupError> {
        let ca = reqwest::Certificate::from_pem(test_ca_pem).map_err(|e| FetchSetupError::TestCa(e.to_string()))?;
        Self::build(AddressPolicy::PublicOrLoopback, Some(ca), timeout)
    }

    fn build(
        policy: AddressPolicy,
        extra_ca: Option<reqwest::Certificate>,
        timeout: Duration,
    ) -> Result<Self, FetchSetupError> {
        crate::ib::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1);
        if let Some(ca) = extra_ca {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder.build().map_err(|e| FetchSetupError::Client(e.to_string()))?;
        Ok(DocumentFetcher { http, policy, timeout })
    }

    /// Fetches the document at `url` under every rule in the module documentation.
    pub async fn fetch(&self, url: &MetadataUrl) -> Result<FetchedDocument, FetchError> {
        let result = match tokio::time::timeout(self.timeout, self.fetch_within_deadline(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout),
        };
        if let Err(error) = &result {
            log::debug!("client metadata: fetch from host {} refused: {}", url.host(), error.label());
        }
        result
    }

    async fn fetch_within_deadline(&self, url: &MetadataUrl) -> Result<FetchedDocument, FetchError> {
        // An IP-literal host is connected to without asking the resolver.
        match url.parsed_host() {
            Some(Host::Ipv4(ip)) => self.policy.check(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.policy.check(IpAddr::V6(ip))?,
            _ => {}
        }
        let mut response = self
            .http
            .get(url.url().clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| send_error(&e))?;
        // Belt and braces: the address actually connected to.
        match response.remote_addr() {
            Some(addr) => self.policy.check(addr.ip())?,
            None => return Err(FetchError::Unreachable),
        }
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect);
        }
        if status != http::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        if !is_json(response.headers()) {
            return Err(FetchError::NotJson);
        }
        if response.content_length().is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64) {
            return Err(FetchError::TooLarge);
        }
        let max_age = max_age(response.headers());
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| send_error(&e))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchedDocument { body: body.freeze(), max_age })
    }
}

/// A reqwest failure as a fetch error: a refusal by our resolver if one is in the chain, else a timeout or an
/// unreachable host.
fn send_error(error: &reqwest::Error) -> FetchError {
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = cause {
        if let Some(RefusedByResolver(refused)) = current.downcast_ref::<RefusedByResolver>() {
            return *refused;
        }
        cause = current.source();
    }
    if error.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Unreachable
    }
}

/// `application/json` or `application/<anything>+json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Freshness from `Cache-Control`: `no-store` and `no-cache` mean none; else `max-age`.
pub fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                let seconds = seconds.trim_matches('"');
                if let Ok(seconds) = seconds.parse::<u64>() {
                    found = Some(Duration::from_secs(seconds));
                } else if !seconds.is_empty() && seconds.bytes().all(|b| b.is_ascii_digit()) {
                    // More digits than a u64: as long as anyone could ask for.
                    found = Some(Duration::from_secs(u64::MAX));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=600")])), secs(600));
        assert_eq!(max_age(&headers(&[("cache-control", "public, MAX-AGE=\"60\"")])), secs(60));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=99999999999999999999999")])), secs(u64::MAX));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=600, no-store")])), secs(0));
        assert_eq!(max_age(&headers(&[("cache-control", "public"), ("cache-control", "no-cache")])), secs(0));
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=-1")])), None);
        assert_eq!(max_age(&headers(&[("cache-control", "max-age=")])), None);
        assert_eq!(max_age(&headers(&[])), None);
    }

    #[test]
    fn only_json_content_types() {
        for ok in ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/ld+json"] {
            assert!(is_json(&headers(&[("content-type", ok)])), "{ok}");
        }
        for refused in ["text/html", "text/json", "application/jsonx", "application/javascript", "json", ""] {
            assert!(!is_json(&headers(&[("content-type", refused)])), "{refused}");
        }
        assert!(!is_json(&headers(&[])));
    }

    #[test]
    fn the_production_policy_refuses_loopback_and_the_test_policy_nothing_else() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.0.0.1".parse().unwrap();
        let public: IpAddr = "1.1.1.1".parse().unwrap();
        assert_eq!(
            AddressPolicy::PublicOnly.check(loopback),
            Err(FetchError::AddressNotPublic(AddressClass::Loopback))
        );
        assert_eq!(AddressPolicy::PublicOnly.check(public), Ok(()));
        assert_eq!(AddressPolicy::PublicOrLoopback.check(loopback), Ok(()));
        assert_eq!(
            AddressPolicy::PublicOrLoopback.check(private),
            Err(FetchError::AddressNotPublic(AddressClass::Private))
        );
    }

    #[test]
    fn descriptions_name_the_rule() {
        assert_eq!(
            FetchError::AddressNotPublic(AddressClass::Private).to_string(),
            "Client metadata document host resolves to a non-public address (private)"
        );
        assert_eq!(FetchError::TooLarge.to_string(), "Client metadata document is larger than 5120 bytes");
    }
}
