//! Talking to the IB API host: asynchronous, cached DNS (Pingora's `HttpPeer::new` would resolve with a
//! blocking call in the request path), peers with the configured timeouts and certificate verification,
//! and the rewrite of the request headers (bearer out, IB `sid` in).

use parking_lot::RwLock;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::route::Target;
use crate::config::UpstreamConfig;
use crate::errors::ApiError;

/// At most this many host names are remembered; IB hosts are few, so this only bounds abuse.
const DNS_CACHE_HOSTS: usize = 4_096;

/// Addresses of one (host, port), and when they were looked up.
type Resolved = (Vec<SocketAddr>, Instant);

/// `host[:port]` → addresses, for `dns_cache_ttl_seconds`.
pub struct DnsCache {
    entries: RwLock<HashMap<String, Resolved>>,
    ttl: Duration,
}

impl DnsCache {
    pub fn new(ttl_seconds: u64) -> Self {
        DnsCache { entries: RwLock::new(HashMap::new()), ttl: Duration::from_secs(ttl_seconds) }
    }

    /// `authority` is `host` or `host:port` as in [`super::route::Target`]; it is the cache key.
    pub async fn resolve(&self, authority: &str, host: &str, port: u16) -> Result<SocketAddr, ApiError> {
        if let Some((addrs, at)) = self.entries.read().get(authority) {
            if at.elapsed() < self.ttl {
                if let Some(addr) = addrs.first() {
                    return Ok(*addr);
                }
            }
        }
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => addrs.collect(),
            Err(e) => {
                log::warn!("DNS lookup of {host} failed: {e}");
                return Err(ApiError::BadGateway("The IntelligenceBank host could not be resolved"));
            }
        };
        let first = *addrs.first().ok_or(ApiError::BadGateway("The IntelligenceBank host could not be resolved"))?;
        let mut entries = self.entries.write();
        if entries.len() >= DNS_CACHE_HOSTS {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= DNS_CACHE_HOSTS {
                entries.clear();
            }
        }
        entries.insert(authority.to_string(), (addrs, Instant::now()));
        Ok(first)
    }
}

/// A peer for the target at a resolved address, with SNI and the configured timeouts.
pub fn peer(target: &Target, addr: SocketAddr, config: &UpstreamConfig) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, target.tls, target.host.clone());
    let options = &mut peer.options;
    options.connection_timeout = Some(Duration::from_millis(config.connect_timeout_ms));
    options.total_connection_timeout = Some(Duration::from_millis(config.connect_timeout_ms * 2));
    options.read_timeout = Some(Duration::from_millis(config.read_timeout_ms));
    options.write_timeout = Some(Duration::from_millis(config.write_timeout_ms));
    options.idle_timeout = Some(Duration::from_secs(config.idle_timeout_seconds));
    options.verify_cert = true;
    options.verify_hostname = true;
    let http2 = &config.http2;
    if http2.enabled && target.tls {
        // ALPN `h2` then `http/1.1`: the platform picks; one multiplexed connection when it picks h2.
        options.set_http_version(2, 1);
        options.max_h2_streams = http2.max_concurrent_streams;
        options.h2_ping_interval =
            (http2.ping_interval_seconds > 0).then(|| Duration::from_secs(http2.ping_interval_seconds));
    }
    peer
}

/// Request headers a proxy must not forward (RFC 9110 §7.6.1), plus what carries the client's credentials.
const DROPPED: &[&str] = &[
    "authorization",
    "cookie",
    "sid",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-host",
    // Rebuilt from the trusted chain below, never appended to what a client sent.
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    // Headers some servers believe about the client's URL or method: the client does not choose them.
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    // The client's trace context: IB is sent ours instead (`propagate_trace`).
    "traceparent",
    "tracestate",
];

/// Every header a CDN, load balancer or proxy uses to name the client's address. IB may believe any of them,
/// and a client could write any of them itself: all are dropped, and IB is told the chain the gateway believes
/// in `X-Forwarded-For` alone (rebuilt below). A new CDN's header belongs here, nowhere else.
pub const CLIENT_IP_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-original-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "akamai-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-envoy-external-address",
    "x-azure-clientip",
    "x-appengine-user-ip",
];

/// Rewrites the request for IB: the path, `Host`, the session's `sid`, forwarding headers and request id;
/// the bearer token, cookies, any client-supplied `sid`, client-chosen forwarding headers and hop-by-hop
/// headers are removed. `X-Forwarded-For` is the chain the gateway believes (client first, the TCP peer last:
/// see `gateway::forwarded_chain`), never what the client wrote.
pub fn rewrite_request(
    request: &mut RequestHeader,
    target: &Target,
    sid: &str,
    forwarded_chain: &[std::net::IpAddr],
    downstream_tls: bool,
    request_id: &str,
) -> pingora::Result<()> {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<String> = request
        .headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .filter(|name| !name.is_empty())
        .collect();
    // One pass over the (few) headers the client sent, rather than a look-up per name that could be dropped.
    let drops = |name: &http::HeaderName| {
        let name = name.as_str();
        DROPPED.contains(&name) || CLIENT_IP_HEADERS.contains(&name) || named.iter().any(|named| named == name)
    };
    while let Some(name) = request.headers.keys().find(|name| drops(name)).cloned() {
        request.remove_header(&name);
    }
    let uri = http::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(&target.path_and_query))
        .map_err(|_| pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "unusable upstream path"))?;
    request.set_uri(uri);
    request.insert_header("Host", target.authority.as_str())?;
    // Marked sensitive: never put in an HTTP/2 header compression table.
    let mut sid = http::HeaderValue::from_str(sid)
        .map_err(|_| pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, "unusable sid"))?;
    sid.set_sensitive(true);
    request.insert_header("sid", sid)?;
    if !forwarded_chain.is_empty() {
        let mut chain = String::with_capacity(forwarded_chain.len() * 17);
        for (i, ip) in forwarded_chain.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let _ = write!(chain, "{separator}{ip}");
        }
        request.insert_header("X-Forwarded-For", chain)?;
    }
    let proto = http::HeaderValue::from_static(if downstream_tls { "https" } else { "http" });
    request.insert_header("X-Forwarded-Proto", proto)?;
    request.insert_header("X-Request-Id", request_id)?;
    Ok(())
}

/// Sends IB the gateway's W3C trace context: `traceparent` naming the gateway's span of this call as the parent,
/// and the `tracestate` that came with the client's (the client's own `traceparent` is dropped by
/// [`rewrite_request`]).
pub fn propagate_trace(
    request: &mut RequestHeader,
    traceparent: &crate::trace::TraceParent,
    tracestate: Option<&str>,
) -> pingora::Result<()> {
    request.insert_header("traceparent", traceparent.to_string())?;
    if let Some(tracestate) = tracestate {
        request.insert_header("tracestate", tracestate)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_is_offered_to_tls_platforms_only_when_configured() {
        use pingora::protocols::ALPN;
        let addr: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let mut config = UpstreamConfig::default();
        assert_eq!(peer(&target(), addr, &config).options.alpn, ALPN::H1, "off by default");
        config.http2.enabled = true;
        config.http2.max_concurrent_streams = 7;
        let on = peer(&target(), addr, &config);
        assert_eq!(on.options.alpn, ALPN::H2H1, "h2 first, http/1.1 as the fallback");
        assert_eq!(on.options.max_h2_streams, 7);
        assert_eq!(on.options.h2_ping_interval, Some(Duration::from_secs(30)));
        let plain = Target { tls: false, port: 80, ..target() };
        assert_eq!(peer(&plain, addr, &config).options.alpn, ALPN::H1, "no h2c to plain-HTTP platforms");
        config.http2.ping_interval_seconds = 0;
        assert_eq!(peer(&target(), addr, &config).options.h2_ping_interval, None);
    }

    fn target() -> Target {
        Target {
            host: "lbv3us1.intelligencebank.com".into(),
            port: 443,
            tls: true,
            authority: "lbv3us1.intelligencebank.com".into(),
            path_and_query: b"/api/3.0.0/c/resource.limit(1)?a=%2F".to_vec(),
        }
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_are_replaced() {
        let mut request = RequestHeader::build("GET", b"/proxy/x/y", None).unwrap();
        for (name, value) in [
            ("Authorization", "Bearer abc"),
            ("Cookie", "a=b"),
            ("sid", "client-chosen"),
            ("Connection", "keep-alive, X-Secret-Hop"),
            ("X-Secret-Hop", "1"),
            ("Accept", "application/json"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ] {
            request.append_header(name, value).unwrap();
        }
        let chain = ["10.1.2.3".parse().unwrap()];
        rewrite_request(&mut request, &target(), "real-sid", &chain, false, "req1").unwrap();
        let get = |name: &str| request.headers.get(name).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("authorization"), None);
        assert_eq!(get("cookie"), None);
        assert_eq!(get("x-secret-hop"), None);
        assert_eq!(get("sid").as_deref(), Some("real-sid"));
        assert_eq!(request.headers.get_all("sid").iter().count(), 1);
        assert_eq!(get("host").as_deref(), Some("lbv3us1.intelligencebank.com"));
        assert_eq!(get("x-forwarded-for").as_deref(), Some("10.1.2.3"), "rebuilt, not appended to");
        for forged in
            ["x-real-ip", "x-original-url", "x-rewrite-url", "x-http-method-override", "traceparent", "tracestate"]
        {
            assert_eq!(get(forged), None, "{forged}");
        }
        assert_eq!(get("accept").as_deref(), Some("application/json"));
        assert_eq!(request.raw_path(), b"/api/3.0.0/c/resource.limit(1)?a=%2F");
    }

    #[test]
    fn the_trace_context_names_the_gateways_span_as_the_parent() {
        let mut request = RequestHeader::build("GET", b"/proxy/x/y", None).unwrap();
        request.append_header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        rewrite_request(&mut request, &target(), "sid", &[], false, "req1").unwrap();
        let ours = crate::trace::TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01").unwrap();
        propagate_trace(&mut request, &ours, Some("congo=t61rcWkgMzE")).unwrap();
        let all =
            |name: &str| -> Vec<&str> { request.headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect() };
        assert_eq!(all("traceparent"), ["00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"]);
        assert_eq!(all("tracestate"), ["congo=t61rcWkgMzE"]);
    }
}
