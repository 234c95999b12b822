//! The OAuth 2.0 authorization server, answered by the gateway itself (no upstream): `/authorize` and its
//! poll, `/token`, `/userinfo`, `/revoke`, `/introspect`, `/register` and the discovery documents. Paths and
//! response shapes are the old bridge's, so its clients keep working; behaviour follows RFC 6749, 7636,
//! 9700, 8414, 9728, 7009, 7662 and 7591. Handlers take a [`Request`] and give a [`Reply`]; nothing here
//! logs a token, code, poll token, sid or secret.
//!
//! [`ENDPOINTS`] is the one list of them: dispatch, the 405 `Allow` header and the `route` label of the
//! gateway's metrics all read it. A new endpoint is a row there and its handler.

mod authorize;
mod discovery;
mod introspect;
mod register;
mod revoke;
mod token;
mod userinfo;

use http::Method;
use std::future::Future;
use std::pin::Pin;

use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::state::AppState;

pub use discovery::resource_metadata_url;

/// What a handler gives back, as a boxed future so that every handler fits one table.
type Answer<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// An endpoint's handler: the request in, the reply (or the refusal the gateway answers and counts) out.
type Handler = for<'a> fn(&'a AppState, &'a Request) -> Answer<'a>;

/// The [`Handler`] of an `async fn(&AppState, &Request) -> Result<Reply, ApiError>`.
macro_rules! handler {
    ($function:path) => {{
        fn run<'a>(state: &'a AppState, request: &'a Request) -> Answer<'a> {
            Box::pin($function(state, request))
        }
        run as Handler
    }};
}

/// Who an endpoint authenticates, besides what its parameters prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Nobody: public documents, the start of a login, the sign-in page's assets.
    Nobody,
    /// The OAuth client (`client_secret_basic`/`_post`, or a public client's id), through `auth::clients`.
    Client,
    /// The user, by a Bearer access token, through `auth::Authenticator`.
    Bearer,
}

/// One endpoint of the authorization server.
pub struct Endpoint {
    /// The path it answers.
    pub path: &'static str,
    /// Also answers every path below `path/` (RFC 8414 and RFC 9728 documents of a path-suffixed issuer).
    pub below: bool,
    /// The methods it answers, as the 405's `Allow` header lists them; `HEAD` is answered where `GET` is.
    pub allow: &'static str,
    /// The `route` label of `ibgw_http_requests_total` and the access log (bounded: never the path).
    pub route: &'static str,
    pub authentication: Authentication,
    handler: Handler,
}

impl Endpoint {
    fn answers(&self, path: &str) -> bool {
        path == self.path || (self.below && path.strip_prefix(self.path).is_some_and(|rest| rest.starts_with('/')))
    }

    fn allows(&self, method: &Method) -> bool {
        let listed = |name: &str| self.allow.split(", ").any(|allowed| allowed == name);
        listed(method.as_str()) || (method == Method::HEAD && listed("GET"))
    }

    /// Answers `request` (whose path this endpoint [answers](find)). A refusal comes back as the error; the caller
    /// turns it into the response (and counts it, once).
    pub async fn handle(&self, state: &AppState, request: &Request) -> Result<Reply, ApiError> {
        if !self.allows(&request.method) {
            return Err(ApiError::MethodNotAllowed(self.allow));
        }
        (self.handler)(state, request).await
    }
}

async fn authorize_script(_: &AppState, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::asset("text/javascript; charset=utf-8", include_str!("assets/authorize.js")))
}

async fn authorize_style(_: &AppState, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::asset("text/css; charset=utf-8", include_str!("assets/style.css")))
}

async fn jwks(state: &AppState, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, &state.keys.jwks()).with_header("Cache-Control", "public, max-age=300"))
}

async fn authorization_server_metadata(state: &AppState, _: &Request) -> Result<Reply, ApiError> {
    Ok(Reply::json(200, &discovery::authorization_server(&state.config)))
}

/// RFC 9728 §3.1: the document of a resource with a path is at the well-known path followed by that path
/// (`/.well-known/oauth-protected-resource/mcp` for `https://gw.example.com/mcp`). A path that names none of
/// the gateway's resources gets the gateway's own document.
async fn protected_resource_metadata(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let suffix = request.path.strip_prefix("/.well-known/oauth-protected-resource").unwrap_or_default();
    let origin = url::Url::parse(&state.config.server.public_url).map(|url| url.origin().ascii_serialization());
    let named = match (suffix, origin) {
        ("", _) | (_, Err(_)) => None,
        (suffix, Ok(origin)) => state.resources.accepts(&format!("{origin}{suffix}")).map(|id| id.to_string()),
    };
    Ok(Reply::json(200, &discovery::protected_resource(&state.config, named.as_deref())))
}

/// Every endpoint of the authorization server.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        path: "/authorize",
        below: false,
        allow: "GET",
        route: "authorize",
        authentication: Authentication::Nobody,
        handler: handler!(authorize::authorize),
    },
    Endpoint {
        path: "/authorize/poll",
        below: false,
        allow: "GET",
        route: "authorize",
        authentication: Authentication::Nobody,
        handler: handler!(authorize::poll),
    },
    Endpoint {
        path: "/authorize/app.js",
        below: false,
        allow: "GET",
        route: "authorize",
        authentication: Authentication::Nobody,
        handler: handler!(authorize_script),
    },
    Endpoint {
        path: "/authorize/style.css",
        below: false,
        allow: "GET",
        route: "authorize",
        authentication: Authentication::Nobody,
        handler: handler!(authorize_style),
    },
    Endpoint {
        path: "/token",
        below: false,
        allow: "POST",
        route: "token",
        authentication: Authentication::Client,
        handler: handler!(token::token),
    },
    Endpoint {
        path: "/userinfo",
        below: false,
        allow: "GET, POST",
        route: "userinfo",
        authentication: Authentication::Bearer,
        handler: handler!(userinfo::userinfo),
    },
    Endpoint {
        path: "/revoke",
        below: false,
        allow: "POST",
        route: "revoke",
        authentication: Authentication::Client,
        handler: handler!(revoke::revoke),
    },
    Endpoint {
        path: "/introspect",
        below: false,
        allow: "POST",
        route: "introspect",
        authentication: Authentication::Client,
        handler: handler!(introspect::introspect),
    },
    Endpoint {
        path: "/register",
        below: false,
        allow: "POST",
        route: "register",
        authentication: Authentication::Nobody,
        handler: handler!(register::register),
    },
    Endpoint {
        path: "/.well-known/oauth-authorization-server",
        below: true,
        allow: "GET",
        route: "discovery",
        authentication: Authentication::Nobody,
        handler: handler!(authorization_server_metadata),
    },
    Endpoint {
        path: "/.well-known/oauth-protected-resource",
        below: true,
        allow: "GET",
        route: "discovery",
        authentication: Authentication::Nobody,
        handler: handler!(protected_resource_metadata),
    },
    Endpoint {
        path: "/.well-known/jwks.json",
        below: false,
        allow: "GET",
        route: "discovery",
        authentication: Authentication::Nobody,
        handler: handler!(jwks),
    },
];

/// The endpoint that answers `path`, if the authorization server has one.
pub fn find(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|endpoint| endpoint.answers(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_find_their_endpoint_and_nothing_else_does() {
        let route = |path: &str| find(path).map(|endpoint| endpoint.route);
        assert_eq!(route("/authorize"), Some("authorize"));
        assert_eq!(route("/authorize/app.js"), Some("authorize"));
        assert_eq!(route("/token"), Some("token"));
        assert_eq!(route("/.well-known/oauth-protected-resource"), Some("discovery"));
        assert_eq!(route("/.well-known/oauth-protected-resource/mcp"), Some("discovery"), "RFC 9728 §3.1");
        assert_eq!(route("/.well-known/oauth-authorization-server/tenant"), Some("discovery"), "RFC 8414 §3.1");
        for other in ["/", "/tokens", "/token/", "/authorize/", "/.well-known/jwks.json/x", "/.well-known/other"] {
            assert_eq!(route(other), None, "{other}");
        }
        assert_eq!(route("/.well-known/oauth-protected-resourcex"), None, "below means below a slash");
    }

    #[test]
    fn head_is_answered_where_get_is_and_the_allow_header_lists_the_methods() {
        let endpoint = |path: &str| find(path).unwrap();
        assert!(endpoint("/authorize").allows(&Method::HEAD));
        assert!(endpoint("/userinfo").allows(&Method::POST));
        assert!(!endpoint("/token").allows(&Method::GET));
        assert!(!endpoint("/token").allows(&Method::HEAD));
        assert_eq!(endpoint("/userinfo").allow, "GET, POST");
    }

    #[test]
    fn every_path_is_listed_once_and_every_route_label_is_one_of_the_known_few() {
        let mut paths: Vec<&str> = ENDPOINTS.iter().map(|endpoint| endpoint.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ENDPOINTS.len());
        let labels = ["authorize", "token", "userinfo", "revoke", "introspect", "register", "discovery"];
        assert!(ENDPOINTS.iter().all(|endpoint| labels.contains(&endpoint.route)));
    }
}
