//! Which IntelligenceBank hosts the gateway may talk to.
//!
//! Users type their platform address (`company.intelligencebank.com`), and IB's login answers with the API
//! host (`apiV3url`). Both reach the network only through a [`PlatformUrl`], which exists only after
//! [`PlatformPolicy::validate`] accepted the text: an `https` origin whose host is a proper DNS name under an
//! allowed suffix, on port 443. The parser is deliberately stricter than a URL parser: anything a browser or
//! URL library would silently rewrite (backslashes, percent-encoding, numeric IPv4 forms, trailing dots,
//! embedded whitespace) is refused rather than normalised, so what we check is what we connect to.
//! The one exception is the development switch `allow_insecure_loopback`, which admits `127.0.0.1` on any port.

use crate::config::PlatformConfig;

/// Why a platform or API address was refused. `Display` is written for the user who typed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlatformUrlError {
    #[error("the platform address is empty")]
    Empty,
    #[error("the platform address contains characters that are not allowed")]
    InvalidCharacter,
    #[error("the platform address must not contain a user name or password")]
    UserInfo,
    #[error("the platform address must use https")]
    NotHttps,
    #[error("the platform address must be a host name, not an IP address")]
    IpAddress,
    #[error("the platform address must not be localhost")]
    Localhost,
    #[error("the platform address is not a valid host name")]
    InvalidHost,
    #[error("the platform address is not an allowed IntelligenceBank host, such as company.intelligencebank.com")]
    HostNotAllowed,
    #[error("the platform address must not name a port other than 443")]
    Port,
    #[error("the platform address must not have a path")]
    Path,
    #[error("the platform address must not have a query")]
    Query,
    #[error("the platform address must not have a fragment")]
    Fragment,
}

/// The hosts the gateway may talk to, from `platforms` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPolicy {
    /// Lowercase. With a leading dot: proper subdomains only. Without: the domain itself or a subdomain.
    allowed_host_suffixes: Vec<String>,
    allow_insecure_loopback: bool,
}

/// The one loopback host the development switch admits.
const LOOPBACK_HOST: &str = "127.0.0.1";
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

impl PlatformPolicy {
    pub fn new(config: &PlatformConfig) -> Self {
        PlatformPolicy {
            allowed_host_suffixes: config.allowed_host_suffixes.iter().map(|s| s.to_ascii_lowercase()).collect(),
            allow_insecure_loopback: config.allow_insecure_loopback,
        }
    }

    /// Checks an address as a user would type it (`company.intelligencebank.com`, with or without `https://`
    /// and a trailing `/`) or as IB returns it (`apiV3url`), and returns its normalised origin.
    pub fn validate(&self, raw: &str) -> Result<PlatformUrl, PlatformUrlError> {
        if raw.is_empty() {
            return Err(PlatformUrlError::Empty);
        }
        // Printable ASCII only: no whitespace, control characters or Unicode look-alikes. Backslashes and
        // percent signs are what URL parsers rewrite (to `/` and to decoded hosts), so they are refused too.
        if !raw.bytes().all(|b| b.is_ascii_graphic()) || raw.contains(['\\', '%']) {
            return Err(PlatformUrlError::InvalidCharacter);
        }
        if raw.contains('@') {
            return Err(PlatformUrlError::UserInfo);
        }

        let (scheme, rest) = match raw.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_string(), raw),
        };
        let tls = match scheme.as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(PlatformUrlError::NotHttps),
        };

        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        check_tail(tail)?;

        if authority.starts_with('[') {
            return Err(PlatformUrlError::IpAddress);
        }
        let (host, explicit_port) = match authority.split_once(':') {
            None => (authority, None),
            Some((_, port)) if port.contains(':') => return Err(PlatformUrlError::IpAddress),
            Some((host, port)) => (host, Some(parse_port(port)?)),
        };
        let host = host.to_ascii_lowercase();

        if self.allow_insecure_loopback && host == LOOPBACK_HOST {
            let port = explicit_port.unwrap_or(if tls { 443 } else { 80 });
            return Ok(PlatformUrl::new(host, port, tls));
        }
        if !tls {
            return Err(PlatformUrlError::NotHttps);
        }
        check_host(&host)?;
        if !self.host_allowed(&host) {
            return Err(PlatformUrlError::HostNotAllowed);
        }
        match explicit_port {
            None | Some(443) => Ok(PlatformUrl::new(host, 443, true)),
            Some(_) => Err(PlatformUrlError::Port),
        }
    }

    /// May the gateway talk to `host` (lowercase, as a stored session names it) now? The check of
    /// [`Self::validate`] for a host already validated once: a live reload may have narrowed the allowlist since.
    pub fn allows_host(&self, host: &str, tls: bool) -> bool {
        if self.allow_insecure_loopback && host == LOOPBACK_HOST {
            return true;
        }
        tls && self.host_allowed(host)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_host_suffixes.iter().any(|suffix| match suffix.strip_prefix('.') {
            Some(domain) => host.len() > suffix.len() && host.ends_with(suffix.as_str()) && !domain.is_empty(),
            None => host == suffix || host.strip_suffix(suffix.as_str()).is_some_and(|sub| sub.ends_with('.')),
        })
    }
}

/// After the host only a lone `/` may follow.
fn check_tail(tail: &str) -> Result<(), PlatformUrlError> {
    if tail.is_empty() || tail == "/" {
        return Ok(());
    }
    match tail.find(['?', '#']) {
        Some(i) if tail[..i].is_empty() || &tail[..i] == "/" => {
            Err(if tail[i..].starts_with('#') { PlatformUrlError::Fragment } else { PlatformUrlError::Query })
        }
        _ => Err(PlatformUrlError::Path),
    }
}

fn parse_port(text: &str) -> Result<u16, PlatformUrlError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PlatformUrlError::Port);
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(PlatformUrlError::Port),
    }
}

/// A DNS name of letter-digit-hyphen labels, not an IP address in any spelling, not localhost.
fn check_host(host: &str) -> Result<(), PlatformUrlError> {
    if host.is_empty() {
        return Err(PlatformUrlError::InvalidHost);
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() || looks_numeric(host) {
        return Err(PlatformUrlError::IpAddress);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(PlatformUrlError::Localhost);
    }
    // A trailing dot names the same host to DNS but defeats suffix checks and certificate matching.
    if host.len() > MAX_HOST_LEN || host.ends_with('.') {
        return Err(PlatformUrlError::InvalidHost);
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(PlatformUrlError::InvalidHost)
    }
}

/// WHATWG URL parsers read a host whose last label is a number (`2130706433`, `0x7f.1`, `0177.0.0.1`) as
/// an IPv4 address; such a host is never a DNS name we accept.
fn looks_numeric(host: &str) -> bool {
    let last = host.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
    let hex = last.strip_prefix("0x").is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
}

/// An origin the policy accepted: `https://company.intelligencebank.com` (or, in development,
/// `http://127.0.0.1:PORT`). Lowercase host, no path, no default port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PlatformUrl {
    origin: String,
    host: String,
    port: u16,
    tls: bool,
}

impl PlatformUrl {
    fn new(host: String, port: u16, tls: bool) -> Self {
        let default_port = if tls { 443 } else { 80 };
        let scheme = if tls { "https" } else { "http" };
        let origin =
            if port == default_port { format!("{scheme}://{host}") } else { format!("{scheme}://{host}:{port}") };
        PlatformUrl { origin, host, port, tls }
    }

    /// `https://company.intelligencebank.com`, with no trailing slash.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `host`, or `host:port` when the port is not the scheme's default: the `Host` header value.
    pub fn authority(&self) -> &str {
        let start = self.origin.find("://").map_or(0, |i| i + 3);
        &self.origin[start..]
    }
}

impl std::fmt::Display for PlatformUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::PlatformUrlError as E;
    use super::*;

    fn policy() -> PlatformPolicy {
        PlatformPolicy::new(&PlatformConfig::default())
    }

    fn loopback_policy() -> PlatformPolicy {
        PlatformPolicy::new(&PlatformConfig { allow_insecure_loopback: true, ..PlatformConfig::default() })
    }

    fn origin(policy: &PlatformPolicy, raw: &str) -> Result<String, E> {
        policy.validate(raw).map(|url| url.origin().to_string())
    }

    #[test]
    fn what_users_type_is_normalised_to_the_https_origin() {
        for raw in [
            "company.intelligencebank.com",
            "company.intelligencebank.com/",
            "https://company.intelligencebank.com",
            "https://company.intelligencebank.com/",
            "HTTPS://company.intelligencebank.com",
            "company.IntelligenceBank.com",
            "https://COMPANY.INTELLIGENCEBANK.COM:443/",
        ] {
            assert_eq!(origin(&policy(), raw), Ok("https://company.intelligencebank.com".into()), "{raw}");
        }
    }

    #[test]
    fn accepted_url_exposes_host_port_and_authority() {
        let url = policy().validate("https://lbv3us1.intelligencebank.com").expect("valid");
        assert_eq!(url.host(), "lbv3us1.intelligencebank.com");
        assert_eq!(url.port(), 443);
        assert!(url.is_tls());
        assert_eq!(url.authority(), "lbv3us1.intelligencebank.com");
        assert_eq!(url.to_string(), "https://lbv3us1.intelligencebank.com");
    }

    #[test]
    fn deeper_subdomains_and_hyphens_are_accepted() {
        assert!(policy().validate("a-b.eu.intelligencebank.com").is_ok());
        assert!(policy().validate("xn--bcher-kva.intelligencebank.com").is_ok());
    }

    #[test]
    fn hosts_outside_the_allowed_suffix_are_refused() {
        for raw in [
            "intelligencebank.com",
            "company.intelligencebank.com.evil.com",
            "evilintelligencebank.com",
            "evil.com",
            "https://evil.com/.intelligencebank.com",
            "intelligencebank.com.evil.com",
        ] {
            assert!(policy().validate(raw).is_err(), "{raw}");
        }
        assert_eq!(policy().validate("evilintelligencebank.com"), Err(E::HostNotAllowed));
        assert_eq!(policy().validate("company.intelligencebank.com.evil.com"), Err(E::HostNotAllowed));
    }

    #[test]
    fn fragment_and_query_tricks_are_refused() {
        assert_eq!(policy().validate("evil.com#.intelligencebank.com"), Err(E::Fragment));
        assert_eq!(policy().validate("https://evil.com?.intelligencebank.com"), Err(E::Query));
        assert_eq!(policy().validate("company.intelligencebank.com/?x=1"), Err(E::Query));
        assert_eq!(policy().validate("company.intelligencebank.com?x=1"), Err(E::Query));
        assert_eq!(policy().validate("company.intelligencebank.com/#top"), Err(E::Fragment));
        assert_eq!(policy().validate("company.intelligencebank.com#"), Err(E::Fragment));
    }

    #[test]
    fn paths_are_refused() {
        assert_eq!(policy().validate("company.intelligencebank.com/api/v3"), Err(E::Path));
        assert_eq!(policy().validate("company.intelligencebank.com//"), Err(E::Path));
        assert_eq!(policy().validate("company.intelligencebank.com/a?b"), Err(E::Path));
    }

    #[test]
    fn userinfo_is_refused() {
        assert_eq!(policy().validate("https://user@company.intelligencebank.com"), Err(E::UserInfo));
        assert_eq!(policy().validate("https://company.intelligencebank.com@evil.com"), Err(E::UserInfo));
        assert_eq!(policy().validate("u:p@company.intelligencebank.com"), Err(E::UserInfo));
    }

    #[test]
    fn ip_literals_in_every_spelling_are_refused() {
        for raw in [
            "127.0.0.1",
            "https://127.0.0.1",
            "169.254.169.254",
            "https://169.254.169.254/",
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "0177.0.0.1",
            "127.1",
            "[::1]",
            "https://[::1]:443",
            "https://[::ffff:127.0.0.1]",
            "::1",
            "1.2.3.4.intelligencebank.com.5",
        ] {
            assert_eq!(policy().validate(raw), Err(E::IpAddress), "{raw}");
        }
    }

    #[test]
    fn localhost_is_refused_in_any_case() {
        for raw in ["localhost", "LOCALHOST", "https://localhost:443", "foo.localhost", "http://localhost"] {
            assert!(policy().validate(raw).is_err(), "{raw}");
        }
        assert_eq!(policy().validate("LOCALHOST"), Err(E::Localhost));
        assert_eq!(loopback_policy().validate("http://localhost:8080"), Err(E::NotHttps));
        assert_eq!(loopback_policy().validate("https://localhost:8080"), Err(E::Localhost));
    }

    #[test]
    fn schemes_other_than_https_are_refused() {
        for raw in [
            "http://company.intelligencebank.com",
            "ftp://company.intelligencebank.com",
            "javascript://company.intelligencebank.com",
            "file:///etc/passwd",
            "ws://company.intelligencebank.com",
        ] {
            assert_eq!(policy().validate(raw), Err(E::NotHttps), "{raw}");
        }
        // No "://": the text before ':' is read as a host, and what follows is not a port.
        assert!(policy().validate("https:company.intelligencebank.com").is_err());
        assert!(policy().validate("//company.intelligencebank.com").is_err());
    }

    #[test]
    fn ports_other_than_443_are_refused() {
        for raw in [
            "company.intelligencebank.com:8443",
            "https://company.intelligencebank.com:80",
            "https://company.intelligencebank.com:",
            "https://company.intelligencebank.com:0",
            "https://company.intelligencebank.com:65536",
            "https://company.intelligencebank.com:+443",
            "https://company.intelligencebank.com:443x",
        ] {
            assert_eq!(policy().validate(raw), Err(E::Port), "{raw}");
        }
    }

    #[test]
    fn backslashes_whitespace_controls_and_percent_encoding_are_refused() {
        for raw in [
            "https://evil.com\\.intelligencebank.com",
            "https://company.intelligencebank.com\\",
            " company.intelligencebank.com",
            "company.intelligencebank.com ",
            "company.intelligencebank.com\n",
            "comp\tany.intelligencebank.com",
            "company.intelligencebank.com\0",
            "comp%61ny.intelligencebank.com",
            "%65vil.com",
            "company.intelligencebank.com/%2e",
            "cömpany.intelligencebank.com",
            "company。intelligencebank.com",
        ] {
            assert_eq!(policy().validate(raw), Err(E::InvalidCharacter), "{raw:?}");
        }
        assert_eq!(policy().validate(""), Err(E::Empty));
    }

    #[test]
    fn trailing_dots_and_malformed_labels_are_refused() {
        for raw in [
            "company.intelligencebank.com.",
            "https://company.intelligencebank.com./",
            "company..intelligencebank.com",
            ".company.intelligencebank.com",
            "-company.intelligencebank.com",
            "company-.intelligencebank.com",
            "com_pany.intelligencebank.com",
            "https://",
            "https:///",
        ] {
            assert!(policy().validate(raw).is_err(), "{raw}");
        }
        assert_eq!(policy().validate("company.intelligencebank.com."), Err(E::InvalidHost));
        let long_label = format!("{}.intelligencebank.com", "a".repeat(64));
        assert_eq!(policy().validate(&long_label), Err(E::InvalidHost));
    }

    #[test]
    fn loopback_is_refused_unless_the_development_switch_is_on() {
        assert_eq!(policy().validate("http://127.0.0.1:8080"), Err(E::NotHttps));
        assert_eq!(policy().validate("https://127.0.0.1:8443"), Err(E::IpAddress));
    }

    #[test]
    fn development_switch_admits_exactly_127_0_0_1_on_any_port() {
        let loopback = loopback_policy();
        let url = loopback.validate("http://127.0.0.1:18080").expect("loopback");
        assert_eq!(url.origin(), "http://127.0.0.1:18080");
        assert_eq!((url.host(), url.port(), url.is_tls()), ("127.0.0.1", 18080, false));
        assert_eq!(url.authority(), "127.0.0.1:18080");
        assert_eq!(origin(&loopback, "http://127.0.0.1:18080/"), Ok("http://127.0.0.1:18080".into()));
        assert_eq!(origin(&loopback, "https://127.0.0.1:8443"), Ok("https://127.0.0.1:8443".into()));
        assert_eq!(origin(&loopback, "http://127.0.0.1"), Ok("http://127.0.0.1".into()));

        for raw in [
            "http://127.0.0.2:8080",
            "http://127.1:8080",
            "http://2130706433:8080",
            "http://[::1]:8080",
            "http://0.0.0.0:8080",
            "http://169.254.169.254",
            "http://127.0.0.1:8080/path",
            "http://127.0.0.1:8080?x",
            "http://user@127.0.0.1:8080",
            "http://127.0.0.1.:8080",
            "http://company.intelligencebank.com",
        ] {
            assert!(loopback.validate(raw).is_err(), "{raw}");
        }
        // The switch adds loopback; it takes nothing away.
        assert!(loopback.validate("company.intelligencebank.com").is_ok());
    }

    #[test]
    fn suffix_without_a_leading_dot_admits_the_domain_and_its_subdomains_only() {
        let policy = PlatformPolicy::new(&PlatformConfig {
            allowed_host_suffixes: vec!["example.org".into()],
            ..PlatformConfig::default()
        });
        assert!(policy.validate("example.org").is_ok());
        assert!(policy.validate("ib.example.org").is_ok());
        assert_eq!(policy.validate("badexample.org"), Err(E::HostNotAllowed));
        assert_eq!(policy.validate("company.intelligencebank.com"), Err(E::HostNotAllowed));
    }

    #[test]
    fn a_stored_host_is_allowed_only_while_the_allowlist_in_force_allows_it() {
        let narrowed = PlatformPolicy::new(&PlatformConfig {
            allowed_host_suffixes: vec![".eu.intelligencebank.com".into()],
            ..PlatformConfig::default()
        });
        assert!(policy().allows_host("company.intelligencebank.com", true));
        assert!(!narrowed.allows_host("company.intelligencebank.com", true), "narrowed since the login");
        assert!(narrowed.allows_host("company.eu.intelligencebank.com", true));
        assert!(!narrowed.allows_host("company.eu.intelligencebank.com", false), "plain HTTP never, but loopback");
        assert!(loopback_policy().allows_host("127.0.0.1", false));
        assert!(!policy().allows_host("127.0.0.1", false), "the development switch turned off");
    }

    #[test]
    fn error_messages_do_not_echo_the_input() {
        let err = policy().validate("https://secret-token@evil.com").expect_err("refused");
        assert!(!err.to_string().contains("secret-token"));
    }
}
