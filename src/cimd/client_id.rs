//! Which `client_id` values are Client ID Metadata Document URLs (draft-ietf-oauth-client-id-metadata-document
//! §3, as MCP 2025-11-25 profiles it): an `https` URL with a path, without a fragment, userinfo or dot
//! segments. A query and a port are allowed.
//!
//! The URL must also be written in its one canonical form (lower-case scheme and host, no default port, no
//! escapes the URL parser would rewrite): the document's `client_id` is compared byte for byte with the
//! `client_id` the client sent, so two spellings of one URL would be two clients. Pure: no I/O.

use url::{Host, Url};

/// Longer than any real metadata URL; a `client_id` past this is refused before anything else.
pub const MAX_CLIENT_ID_URL_LEN: usize = 1024;

/// Why a `client_id` is not a metadata document URL. `Display` names the rule, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdUrlError {
    #[error("client_id URL is longer than 1024 bytes")]
    TooLong,
    #[error("client_id URL must be printable ASCII")]
    NotPrintableAscii,
    #[error("client_id URL must use the https scheme")]
    NotHttps,
    #[error("client_id URL is not a valid URL")]
    Malformed,
    #[error("client_id URL must not contain a user name or password")]
    Userinfo,
    #[error("client_id URL must not contain a fragment")]
    Fragment,
    #[error("client_id URL must contain a path")]
    NoPath,
    #[error("client_id URL must not contain . or .. path segments")]
    DotSegment,
    #[error("client_id URL must be in canonical form (lower-case host, no trailing dot, no default port)")]
    NotCanonical,
}

/// A `client_id` that is a metadata document URL, kept exactly as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetadataUrl {
    url: Url,
}

impl MetadataUrl {
    pub fn parse(raw: &str) -> Result<Self, ClientIdUrlError> {
        if raw.len() > MAX_CLIENT_ID_URL_LEN {
            return Err(ClientIdUrlError::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientIdUrlError::NotPrintableAscii);
        }
        let Some(after_scheme) = raw.strip_prefix("https://") else {
            return Err(ClientIdUrlError::NotHttps);
        };
        if raw.contains('#') {
            return Err(ClientIdUrlError::Fragment);
        }
        let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(ClientIdUrlError::Malformed);
        }
        if authority.contains('@') {
            return Err(ClientIdUrlError::Userinfo);
        }
        let path_and_query = &after_scheme[authority.len()..];
        let path = path_and_query.split('?').next().unwrap_or_default();
        if path.is_empty() || path == "/" {
            return Err(ClientIdUrlError::NoPath);
        }
        if path.split('/').any(is_dot_segment) {
            return Err(ClientIdUrlError::DotSegment);
        }
        let url = Url::parse(raw).map_err(|_| ClientIdUrlError::Malformed)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ClientIdUrlError::Malformed);
        }
        // A trailing dot names the same server under another spelling of its host, the identity users see.
        if url.as_str() != raw || url.host_str().is_some_and(|host| host.ends_with('.')) {
            return Err(ClientIdUrlError::NotCanonical);
        }
        Ok(MetadataUrl { url })
    }

    /// The `client_id`, byte for byte as sent.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// The host the consent line shows as the client's verified identity (e.g. `claude.ai`); an IPv6
    /// literal in brackets.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    /// The host as the URL parser read it: a domain name, or an IP literal.
    pub fn parsed_host(&self) -> Option<Host<&str>> {
        self.url.host()
    }

    /// The port to connect to (443 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(443)
    }

    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// `.`, `..` and their percent-encoded spellings (which URL parsers resolve like the plain ones).
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// Is `client_id` a metadata document URL (rather than a registered or `dyn-` client id)?
pub fn is_metadata_client_id(client_id: &str) -> bool {
    MetadataUrl::parse(client_id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn real_client_urls_are_accepted() {
        for url in [
            "https://claude.ai/oauth/claude-code-client-metadata",
            "https://app.example.com/client.json",
            "https://app.example.com:8443/oauth/client?version=2",
            "https://127.0.0.1:4443/client.json",
            "https://[::1]:4443/client.json",
            "https://xn--bcher-kva.example/client",
            "https://app.example.com/a/b/",
        ] {
            assert!(is_metadata_client_id(url), "{url}");
            assert_eq!(MetadataUrl::parse(url).unwrap().as_str(), url);
        }
    }

    #[test]
    fn each_broken_rule_has_its_own_error() {
        let cases = [
            ("http://app.example.com/client", ClientIdUrlError::NotHttps),
            ("HTTPS://app.example.com/client", ClientIdUrlError::NotHttps),
            ("mcp-public-client", ClientIdUrlError::NotHttps),
            ("dyn-0123456789abcdef", ClientIdUrlError::NotHttps),
            ("https://app.example.com", ClientIdUrlError::NoPath),
            ("https://app.example.com/", ClientIdUrlError::NoPath),
            ("https://app.example.com?x=1", ClientIdUrlError::NoPath),
            ("https://app.example.com/client#x", ClientIdUrlError::Fragment),
            ("https://app.example.com/client#", ClientIdUrlError::Fragment),
            ("https://user@app.example.com/client", ClientIdUrlError::Userinfo),
            ("https://user:pw@app.example.com/client", ClientIdUrlError::Userinfo),
            ("https://app.example.com/a/../client", ClientIdUrlError::DotSegment),
            ("https://app.example.com/./client", ClientIdUrlError::DotSegment),
            ("https://app.example.com/a/%2e%2E/client", ClientIdUrlError::DotSegment),
            ("https://app.example.com/client/..", ClientIdUrlError::DotSegment),
            ("https://App.Example.com/client", ClientIdUrlError::NotCanonical),
            ("https://app.example.com./client", ClientIdUrlError::NotCanonical),
            ("https://app.example.com:443/client", ClientIdUrlError::NotCanonical),
            ("https://app.example.com/a\\b", ClientIdUrlError::NotCanonical),
            ("https://app.example.com/clïent", ClientIdUrlError::NotPrintableAscii),
            ("https://app.example.com/a b", ClientIdUrlError::NotPrintableAscii),
            ("https://app.example.com/a\tb", ClientIdUrlError::NotPrintableAscii),
            ("https:///client", ClientIdUrlError::Malformed),
            ("https://:443/client", ClientIdUrlError::Malformed),
            ("https://app.example.com:99999/client", ClientIdUrlError::Malformed),
        ];
        for (raw, expected) in cases {
            assert_eq!(MetadataUrl::parse(raw), Err(expected), "{raw}");
        }
        let long = format!("https://app.example.com/{}", "a".repeat(MAX_CLIENT_ID_URL_LEN));
        assert_eq!(MetadataUrl::parse(&long), Err(ClientIdUrlError::TooLong));
    }

    #[test]
    fn host_and_port_are_the_ones_connected_to() {
        let url = MetadataUrl::parse("https://app.example.com:8443/client").unwrap();
        assert_eq!((url.host(), url.port()), ("app.example.com", 8443));
        let url = MetadataUrl::parse("https://app.example.com/client").unwrap();
        assert_eq!((url.host(), url.port()), ("app.example.com", 443));
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => proptest::sample::select(&[
                "https://", "http://", "app.example.com", "APP.example.com", "127.0.0.1", "[::1]", "/", "//", ".",
                "..", "%2e", "%2E", "%2f", "?", "#", "@", ":", ":443", ":8443", "\\", " ", "%", "a", "client.json",
                "é", "\u{0}", "\t",
            ][..]).prop_map(str::to_string),
            1 => "[ -~]{0,6}",
            1 => any::<String>().prop_map(|s| s.chars().take(4).collect()),
        ]
    }

    fn candidate() -> impl Strategy<Value = String> {
        proptest::collection::vec(piece(), 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn an_accepted_url_keeps_every_rule(raw in candidate()) {
            if let Ok(url) = MetadataUrl::parse(&raw) {
                prop_assert_eq!(url.as_str(), raw.as_str());
                prop_assert!(raw.starts_with("https://"));
                prop_assert!(raw.bytes().all(|b| b.is_ascii_graphic()));
                prop_assert!(url.url().fragment().is_none());
                prop_assert!(url.url().username().is_empty() && url.url().password().is_none());
                prop_assert!(url.url().path() != "/" && !url.url().path().is_empty());
                prop_assert!(!url.url().path_segments().into_iter().flatten().any(|s| s == "." || s == ".."));
                prop_assert!(!url.host().is_empty());
            }
        }

        #[test]
        fn well_formed_urls_are_accepted(
            host in "[a-wyz][a-z0-9-]{0,20}(\\.[a-wyz][a-z0-9]{0,10}){1,3}",
            port in proptest::option::of(1u16..),
            path in proptest::collection::vec("[A-Za-z0-9_~-]{1,12}", 1..5),
            query in proptest::option::of("[a-z0-9=&]{0,20}"),
        ) {
            let port = port.filter(|p| *p != 443).map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            let raw = format!("https://{host}{port}/{}{query}", path.join("/"));
            prop_assert_eq!(MetadataUrl::parse(&raw).map(|u| u.as_str().to_string()), Ok(raw.clone()));
        }
    }
}
