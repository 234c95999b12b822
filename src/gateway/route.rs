//! Which proxied request is this, and where may it go? Pure functions, no I/O.
//!
//! - `/proxy/{host}/{path...}`: the old bridge's route; `{host}` has no scheme.
//! - `/api/v3/{path...}`: forwards to the caller's own `{apiV3url}/api/3.0.0/{clientid}/{path...}`.
//!
//! Paths and queries are forwarded byte for byte; dot segments (also percent-encoded), NUL, CR/LF and
//! backslashes are refused before any upstream work. `{host}` must be exactly the authority of the session's
//! own `apiV3url` or platform URL: the IB `sid` is never sent anywhere else.

use crate::errors::ApiError;
use crate::session::Session;

/// A proxied request, as the client addressed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRoute {
    /// `/proxy/{host}/{rest}`: `rest` starts with `/` and includes the query, raw.
    Host { authority: String, path_and_query: String },
    /// `/api/v3/{rest}`: `rest` is what follows `/api/v3`, starting with `/`, raw, with the query.
    ApiV3 { rest: String },
}

/// Where the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// `host` or `host:port` (non-default port), for the `Host` header.
    pub authority: String,
    pub path_and_query: Vec<u8>,
}

pub fn is_proxy_path(path: &str) -> bool {
    path.starts_with("/proxy/") || path == "/api/v3" || path.starts_with("/api/v3/")
}

fn malformed(what: &str) -> ApiError {
    ApiError::InvalidRequest(format!("Malformed request path: {what}"))
}

/// Refuses dot segments (plain or percent-encoded, and `..;x`, which some servers read as `..`), NUL, CR,
/// LF and backslashes anywhere in the target, double percent-encoding (`%25`) and percent-encoded bytes that
/// are not UTF-8 (overlong forms such as `%c0%ae`) in the path.
fn check_raw_target(raw: &str) -> Result<(), ApiError> {
    if raw.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f) {
        return Err(malformed("control character or backslash"));
    }
    let is_dot_segment = |segment: &str| {
        let name = segment.split(';').next().unwrap_or_default();
        name == "." || name == ".."
    };
    let path = raw.split('?').next().unwrap_or_default();
    for segment in path.split('/') {
        if is_dot_segment(segment) {
            return Err(malformed("dot segment"));
        }
        if !segment.contains('%') {
            continue;
        }
        let lower = segment.to_ascii_lowercase();
        if ["%00", "%0a", "%0d", "%5c"].iter().any(|encoded| lower.contains(encoded)) {
            return Err(malformed("encoded control character or backslash"));
        }
        if lower.contains("%25") {
            return Err(malformed("double percent-encoding"));
        }
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| malformed("percent-encoded bytes that are not UTF-8"))?;
        // `%2f` inside a segment would let a segment smuggle its own dot segments.
        if decoded.split('/').any(is_dot_segment) {
            return Err(malformed("dot segment"));
        }
    }
    let query = raw.split_once('?').map(|(_, q)| q.to_ascii_lowercase()).unwrap_or_default();
    if ["%00", "%0a", "%0d"].iter().any(|encoded| query.contains(encoded)) {
        return Err(malformed("encoded control character"));
    }
    Ok(())
}

/// Parses the raw request target (path and query exactly as received).
pub fn parse(raw_target: &str) -> Result<ProxyRoute, ApiError> {
    check_raw_target(raw_target)?;
    if let Some(rest) = raw_target.strip_prefix("/proxy/") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(malformed("empty host"));
        }
        let path_and_query = if tail.starts_with('/') { tail.to_string() } else { format!("/{tail}") };
        return Ok(ProxyRoute::Host { authority: authority.to_string(), path_and_query });
    }
    if let Some(rest) = raw_target.strip_prefix("/api/v3") {
        if rest.is_empty() || rest.starts_with('/') || rest.starts_with('?') {
            let rest = if rest.starts_with('/') { rest.to_string() } else { format!("/{rest}") };
            return Ok(ProxyRoute::ApiV3 { rest });
        }
    }
    Err(ApiError::NotFound)
}

/// Host, port and TLS of an `http(s)://host[:port]` origin as stored in a session.
fn origin_parts(origin: &str) -> Option<(String, u16, bool, String)> {
    let (tls, rest) = if let Some(rest) = origin.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, origin.strip_prefix("http://")?)
    };
    let authority = rest.trim_end_matches('/').to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
        return None;
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().ok()?),
        None => (authority.clone(), default_port),
    };
    Some((host, port, tls, authority))
}

/// Binds a route to the session's own hosts, or refuses it (403) before any connection is made.
pub fn bind(route: &ProxyRoute, session: &Session) -> Result<Target, ApiError> {
    let grant = &session.grant;
    let target = |origin: &str, path_and_query: Vec<u8>| -> Result<Target, ApiError> {
        let (host, port, tls, authority) = origin_parts(origin).ok_or_else(|| {
            log::error!("session {} holds an unusable IB origin", session.id.log_tag());
            ApiError::ServerError
        })?;
        Ok(Target { host, port, tls, authority, path_and_query })
    };
    match route {
        ProxyRoute::ApiV3 { rest } => {
            let path = format!("/api/3.0.0/{}{rest}", grant.ib_client_id);
            target(&grant.api_v3_url, path.into_bytes())
        }
        ProxyRoute::Host { authority, path_and_query } => {
            // Exact, case-sensitive match against the stored (lowercase) authorities: no look-alikes,
            // no other ports, no userinfo, no trailing dots.
            for origin in [&grant.api_v3_url, &grant.platform_url] {
                if origin_parts(origin).is_some_and(|(_, _, _, own)| own == *authority) {
                    return target(origin, path_and_query.clone().into_bytes());
                }
            }
            Err(ApiError::HostNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionGrant, SessionId};

    fn session() -> Session {
        let grant = SessionGrant::example("c");
        Session::start(SessionId::generate(), grant, 1_700_000_000, 120)
    }

    #[test]
    fn proxy_route_keeps_path_and_query_byte_for_byte() {
        let raw = "/proxy/lbv3us1.intelligencebank.com/api/3.0.0/AbC1/resource.limit(100).order(createTime:-1)?verbose=null&x=%2F,y";
        let route = parse(raw).unwrap();
        let target = bind(&route, &session()).unwrap();
        assert_eq!(
            target.path_and_query,
            b"/api/3.0.0/AbC1/resource.limit(100).order(createTime:-1)?verbose=null&x=%2F,y".to_vec()
        );
        assert_eq!((target.host.as_str(), target.port, target.tls), ("lbv3us1.intelligencebank.com", 443, true));
    }

    #[test]
    fn api_v3_shorthand_goes_to_the_sessions_own_account() {
        let target = bind(&parse("/api/v3/resource/1?action=download").unwrap(), &session()).unwrap();
        assert_eq!(target.path_and_query, b"/api/3.0.0/AbC1/resource/1?action=download".to_vec());
        assert_eq!(target.authority, "lbv3us1.intelligencebank.com");
    }

    #[test]
    fn only_the_sessions_own_hosts_are_allowed() {
        let s = session();
        assert!(bind(&parse("/proxy/acme.intelligencebank.com/x").unwrap(), &s).is_ok());
        for host in [
            "evil.com",
            "lbv3us1.intelligencebank.com.evil.com",
            "lbv3us1.intelligencebank.com:8443",
            "LBV3US1.intelligencebank.com",
            "lbv3us1.intelligencebank.com.",
            "user@lbv3us1.intelligencebank.com",
            "lbv3us1.intelligencebank.com@evil.com",
            "127.0.0.1",
            "other.intelligencebank.com",
        ] {
            let route = parse(&format!("/proxy/{host}/api")).unwrap();
            assert_eq!(bind(&route, &s), Err(ApiError::HostNotAllowed), "{host}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for raw in [
            "/proxy//api",
            "/proxy/h/../x",
            "/proxy/h/a/%2e%2e/x",
            "/proxy/h/a/%2E./x",
            "/proxy/h/a/.%2e",
            "/proxy/h/a/..%2fx",
            "/proxy/h/./x",
            "/api/v3/../../x",
            "/proxy/h/a\\b",
            "/proxy/h/a%00b",
            "/proxy/h/a%0d%0aHost:x",
            "/proxy/h/..;/x",
            "/proxy/h/a/..;jsessionid=1/x",
            "/proxy/h/a/%2e%2e;x/b",
            "/proxy/h/a/%252e%252e/b",
            "/proxy/h/a/%c0%ae%c0%ae/b",
            "/proxy/h/a/%e0%80%ae/b",
        ] {
            assert!(matches!(parse(raw), Err(ApiError::InvalidRequest(_))), "{raw}");
        }
        assert!(parse("/proxy/h/a..b/x.y").is_ok(), "dots inside names are fine");
    }
}
