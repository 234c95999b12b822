//! RFC 8707 resource indicators: which protected resources this gateway issues tokens for, and whether a
//! client's `resource` parameter names one of them.
//!
//! An identifier is an absolute `http`/`https` URI without a fragment or userinfo. It is compared in one
//! canonical form: scheme and host lower-cased, the scheme's default port dropped, the path kept as sent (RFC
//! 8707 §2: `https://gw.example.com/mcp` is not `https://gw.example.com`). The root path is the one place
//! where a trailing slash does not matter: `https://gw.example.com` and `https://gw.example.com/` are the same
//! resource, written without the slash (the form the MCP specification uses). Any other trailing slash is
//! significant. The canonical form is what an access token's `aud` carries.
//!
//! Pure: no I/O. It never decides what a token may do with a resource, only whether the resource is ours.

use url::Url;

/// Why a string is not a resource identifier. `Display` names the rule, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource must be an absolute URI")]
    NotAbsolute,
    #[error("resource must be an http or https URI")]
    UnsupportedScheme,
    #[error("resource must not contain a fragment")]
    Fragment,
    #[error("resource must not contain a user name or password")]
    Userinfo,
    #[error("resource must name a host")]
    NoHost,
    #[error("resource must not contain control characters or spaces")]
    ControlCharacter,
}

/// A resource identifier in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    /// Parses and normalises `raw` (see the module documentation).
    pub fn parse(raw: &str) -> Result<Self, ResourceError> {
        if raw.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(ResourceError::ControlCharacter);
        }
        if raw.contains('#') {
            return Err(ResourceError::Fragment);
        }
        let url = Url::parse(raw).map_err(|_| ResourceError::NotAbsolute)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ResourceError::UnsupportedScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ResourceError::Userinfo);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ResourceError::NoHost);
        }
        // `Url` has lower-cased the scheme and host, dropped a default port and written an empty path as `/`.
        let mut canonical = String::from(url.as_str());
        if url.path() == "/" && url.query().is_none() {
            canonical.pop();
        }
        Ok(ResourceId(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The resources this gateway issues tokens for: its own — the public URL first (the default audience of a grant
/// that names none), then the configured extras, without duplicates — and the resource servers in front of it
/// (MCP servers that exchange their clients' tokens, RFC 8693), whose tokens the gateway issues but never accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    ids: Vec<ResourceId>,
    servers: Vec<ResourceId>,
}

/// A configured resource that is not a resource identifier; `Display` names the position and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{which}: {error}")]
pub struct ResourcesError {
    /// `server.public_url` or `oauth.resources[N]`.
    pub which: String,
    pub error: ResourceError,
}

impl Resources {
    /// `public_url` is the gateway's own identifier (`server.public_url`); `extra` are further resources the
    /// operator lists (`oauth.resources`), e.g. `https://gw.example.com/mcp`.
    pub fn new(public_url: &str, extra: &[String]) -> Result<Self, ResourcesError> {
        let default = ResourceId::parse(public_url)
            .map_err(|error| ResourcesError { which: "server.public_url".into(), error })?;
        let mut ids = vec![default];
        for (at, raw) in extra.iter().enumerate() {
            let id = ResourceId::parse(raw)
                .map_err(|error| ResourcesError { which: format!("oauth.resources[{at}]"), error })?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(Resources { ids, servers: Vec::new() })
    }

    /// Adds the resource servers in front of the gateway (already canonical). One that is also the gateway's own
    /// is refused: a token for it would be accepted by the proxy.
    pub fn with_servers(mut self, servers: Vec<ResourceId>) -> Result<Self, ResourceId> {
        if let Some(own) = servers.iter().find(|server| self.ids.contains(server)) {
            return Err(own.clone());
        }
        self.servers = servers;
        Ok(self)
    }

    /// The canonical form of `requested` if tokens may be issued for it (the gateway's own resources and the
    /// resource servers in front of it), else `None` (`invalid_target`).
    pub fn accepts(&self, requested: &str) -> Option<&ResourceId> {
        let requested = ResourceId::parse(requested).ok()?;
        self.ids.iter().chain(&self.servers).find(|id| **id == requested)
    }

    /// Is `id` (canonical) one of the gateway's own resources, whose tokens the proxy accepts?
    pub fn is_own(&self, id: &str) -> bool {
        self.ids.iter().any(|own| own.as_str() == id)
    }

    /// The audience of a grant that names no resource: the public URL.
    pub fn default_resource(&self) -> &ResourceId {
        &self.ids[0]
    }

    /// Every resource of the gateway's own, the default first: what RFC 9728 metadata names and what the `aud`
    /// of a token the proxy accepts may hold.
    pub fn iter(&self) -> impl Iterator<Item = &ResourceId> {
        self.ids.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> String {
        ResourceId::parse(raw).map(|id| id.0).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn root_with_and_without_trailing_slash_is_one_resource_written_without_it() {
        assert_eq!(canonical("https://gw.example.com"), "https://gw.example.com");
        assert_eq!(canonical("https://gw.example.com/"), "https://gw.example.com");
    }

    #[test]
    fn scheme_and_host_are_lower_cased_and_the_default_port_dropped() {
        assert_eq!(canonical("HTTPS://GW.Example.COM:443/mcp"), "https://gw.example.com/mcp");
        assert_eq!(canonical("http://gw.example.com:80"), "http://gw.example.com");
        assert_eq!(canonical("https://gw.example.com:8443/"), "https://gw.example.com:8443");
    }

    #[test]
    fn paths_are_kept_and_their_case_and_trailing_slash_matter() {
        assert_eq!(canonical("https://gw.example.com/mcp"), "https://gw.example.com/mcp");
        assert_eq!(canonical("https://gw.example.com/mcp/"), "https://gw.example.com/mcp/");
        assert_eq!(canonical("https://gw.example.com/MCP"), "https://gw.example.com/MCP");
    }

    #[test]
    fn a_root_with_a_query_keeps_its_slash() {
        assert_eq!(canonical("https://gw.example.com/?x=1"), "https://gw.example.com/?x=1");
        assert_eq!(canonical("https://gw.example.com?x=1"), "https://gw.example.com/?x=1");
    }

    #[test]
    fn each_broken_rule_has_its_own_error() {
        let cases = [
            ("/mcp", ResourceError::NotAbsolute),
            ("gw.example.com", ResourceError::NotAbsolute),
            ("urn:example:resource", ResourceError::UnsupportedScheme),
            ("ftp://gw.example.com/", ResourceError::UnsupportedScheme),
            ("https://gw.example.com/#frag", ResourceError::Fragment),
            ("https://gw.example.com#", ResourceError::Fragment),
            ("https://user:pw@gw.example.com/", ResourceError::Userinfo),
            ("https://user@gw.example.com/", ResourceError::Userinfo),
            ("https://gw.example.com/a b", ResourceError::ControlCharacter),
            ("https://gw.example.com/\n", ResourceError::ControlCharacter),
        ];
        for (raw, expected) in cases {
            assert_eq!(ResourceId::parse(raw), Err(expected), "{raw}");
        }
    }

    #[test]
    fn resources_accept_the_public_url_in_either_root_form_and_only_listed_paths() {
        let resources = Resources::new("https://gw.example.com/", &["https://gw.example.com/mcp".into()]).unwrap();
        assert_eq!(resources.default_resource().as_str(), "https://gw.example.com");
        assert_eq!(resources.accepts("https://gw.example.com").map(ResourceId::as_str), Some("https://gw.example.com"));
        assert_eq!(
            resources.accepts("https://GW.example.com:443/").map(ResourceId::as_str),
            Some("https://gw.example.com")
        );
        assert_eq!(
            resources.accepts("https://gw.example.com/mcp").map(ResourceId::as_str),
            Some("https://gw.example.com/mcp")
        );
        // RFC 8707 §2: paths are compared; an origin match is not enough.
        assert_eq!(resources.accepts("https://gw.example.com/mcp/"), None);
        assert_eq!(resources.accepts("https://gw.example.com/other"), None);
        assert_eq!(resources.accepts("http://gw.example.com"), None);
        assert_eq!(resources.accepts("https://gw.example.com.evil.example"), None);
        assert_eq!(resources.accepts("https://gw.example.com#x"), None);
        assert_eq!(resources.accepts(""), None);
    }

    #[test]
    fn duplicates_are_listed_once_and_the_default_first() {
        let resources =
            Resources::new("https://gw.example.com", &["https://gw.example.com/".into(), "https://a.example/x".into()])
                .unwrap();
        let all: Vec<&str> = resources.iter().map(ResourceId::as_str).collect();
        assert_eq!(all, ["https://gw.example.com", "https://a.example/x"]);
    }

    #[test]
    fn a_bad_configured_resource_names_its_key() {
        let error =
            Resources::new("https://gw.example.com", &["https://ok.example".into(), "nope".into()]).unwrap_err();
        assert_eq!(error.to_string(), "oauth.resources[1]: resource must be an absolute URI");
        let error = Resources::new("gw.example.com", &[]).unwrap_err();
        assert_eq!(error.to_string(), "server.public_url: resource must be an absolute URI");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn piece() -> impl Strategy<Value = String> {
            prop_oneof![
                6 => proptest::sample::select(&[
                    "https://", "http://", "HTTPS://", "gw.example.com", "GW.Example.com", "127.0.0.1", "[::1]", "/",
                    "//", ".", "..", "%2e", "%2F", "?", "#", "@", ":", ":443", ":80", ":8443", "\\", " ", "%", "mcp",
                    "é", "\u{0}",
                ][..]).prop_map(str::to_string),
                1 => "[ -~]{0,6}",
            ]
        }

        fn candidate() -> impl Strategy<Value = String> {
            proptest::collection::vec(piece(), 0..10).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn the_canonical_form_is_a_fixed_point(raw in candidate()) {
                if let Ok(id) = ResourceId::parse(&raw) {
                    prop_assert_eq!(ResourceId::parse(id.as_str()), Ok(id.clone()));
                    prop_assert!(!id.as_str().contains('#'));
                    prop_assert!(id.as_str().starts_with("https://") || id.as_str().starts_with("http://"));
                }
            }

            #[test]
            fn a_root_is_one_resource_with_or_without_its_slash(
                host in "[a-wyz][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,8}){1,2}",
                port in proptest::option::of(1u16..),
                path in proptest::option::of("/[a-z]{1,8}/?"),
            ) {
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let bare = format!("https://{host}{port}");
                let resources = Resources::new(&bare, &[]).unwrap();
                prop_assert_eq!(resources.accepts(&format!("{bare}/")), Some(resources.default_resource()));
                prop_assert_eq!(resources.accepts(&bare.to_uppercase()), Some(resources.default_resource()));
                if let Some(path) = path {
                    // A path is a different resource unless listed.
                    prop_assert_eq!(resources.accepts(&format!("{bare}{path}")), None);
                    let with_path = format!("{bare}{path}");
                    let listed = Resources::new(&bare, std::slice::from_ref(&with_path)).unwrap();
                    prop_assert!(listed.accepts(&with_path).is_some());
                }
            }

            #[test]
            fn accepts_only_what_parses_to_a_listed_resource(raw in candidate()) {
                let resources = Resources::new("https://gw.example.com", &["https://gw.example.com/mcp".into()]).unwrap();
                if let Some(id) = resources.accepts(&raw) {
                    prop_assert_eq!(ResourceId::parse(&raw), Ok(id.clone()));
                }
            }
        }
    }
}
