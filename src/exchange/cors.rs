//! CORS, per `cors:` in the configuration: preflights answered without authentication, and the
//! `Access-Control-*` headers added to every response for an allowed origin.

use http::{HeaderValue, Method};
use std::collections::HashSet;

use super::Reply;
use crate::config::CorsConfig;

pub struct Cors {
    any_origin: bool,
    origins: HashSet<String>,
    methods: String,
    headers: String,
    exposed: String,
    max_age: String,
    credentials: bool,
}

impl Cors {
    pub fn new(config: &CorsConfig) -> Self {
        Cors {
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            origins: config.allowed_origins.iter().filter(|o| *o != "*").cloned().collect(),
            methods: config.allowed_methods.join(", "),
            headers: config.allowed_headers.join(", "),
            exposed: config.exposed_headers.join(", "),
            max_age: config.max_age_seconds.to_string(),
            credentials: config.allow_credentials,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if that origin is allowed.
    fn allowed(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        if self.origins.contains(origin) {
            Some(origin.to_string())
        } else if self.any_origin {
            Some("*".into())
        } else {
            None
        }
    }

    /// Headers for an actual (non-preflight) response. Without an allowed `Origin` (the common case on the proxy
    /// path) that is `Vary: Origin` alone, made without allocating.
    pub fn response_headers(&self, origin: Option<&str>) -> impl Iterator<Item = (&'static str, HeaderValue)> + '_ {
        let allowed = self.allowed(origin).and_then(|allowed| HeaderValue::try_from(allowed).ok());
        let echoed = allowed.as_ref().is_some_and(|allowed| allowed != "*");
        let exposed =
            allowed.as_ref().and_then(|_| HeaderValue::from_str(&self.exposed).ok()).filter(|v| !v.is_empty());
        let credentials = (self.credentials && echoed).then(|| HeaderValue::from_static("true"));
        std::iter::once(("Vary", HeaderValue::from_static("Origin")))
            .chain(allowed.map(|value| ("Access-Control-Allow-Origin", value)))
            .chain(exposed.map(|value| ("Access-Control-Expose-Headers", value)))
            .chain(credentials.map(|value| ("Access-Control-Allow-Credentials", value)))
    }

    /// Is this an OPTIONS request asking for a preflight?
    pub fn is_preflight(method: &Method, requested_method: Option<&str>) -> bool {
        method == Method::OPTIONS && requested_method.is_some()
    }

    /// The answer to a preflight: 204, with the allow headers when the origin is allowed. The headers of
    /// [`Self::response_headers`] (`Vary`, `Access-Control-Allow-Origin`, ...) are not in it: whoever writes the
    /// reply adds them to every reply, this one included (twice would be `Access-Control-Allow-Origin: o, o`,
    /// which browsers refuse).
    pub fn preflight(&self, origin: Option<&str>) -> Reply {
        let mut reply = Reply { status: 204, headers: Vec::new(), body: bytes::Bytes::new() };
        if self.allowed(origin).is_some() {
            reply.headers.push(("Access-Control-Allow-Methods", self.methods.clone()));
            reply.headers.push(("Access-Control-Allow-Headers", self.headers.clone()));
            reply.headers.push(("Access-Control-Max-Age", self.max_age.clone()));
        }
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_are_echoed_and_others_get_nothing() {
        let config = CorsConfig {
            allowed_origins: vec!["https://app.example.com".into()],
            allow_credentials: true,
            ..CorsConfig::default()
        };
        let cors = Cors::new(&config);
        let headers: Vec<_> = cors.response_headers(Some("https://app.example.com")).collect();
        assert!(headers.contains(&("Access-Control-Allow-Origin", HeaderValue::from_static("https://app.example.com"))));
        assert!(headers.contains(&("Access-Control-Allow-Credentials", HeaderValue::from_static("true"))));
        let other: Vec<_> = cors.response_headers(Some("https://evil.example")).collect();
        assert!(!other.iter().any(|(name, _)| *name == "Access-Control-Allow-Origin"));
    }

    #[test]
    fn wildcard_never_allows_credentials() {
        let cors = Cors::new(&CorsConfig::default());
        let headers: Vec<_> = cors.response_headers(Some("https://any.example")).collect();
        assert!(headers.contains(&("Access-Control-Allow-Origin", HeaderValue::from_static("*"))));
        assert!(!headers.iter().any(|(name, _)| *name == "Access-Control-Allow-Credentials"));
    }
}
