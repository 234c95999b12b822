//! The OAuth 2.0 authorization server, answered by the gateway itself (no upstream): `/authorize` and its
//! poll, `/token`, `/userinfo`, `/revoke`, `/introspect`, `/register` and the discovery documents. Paths and
//! response shapes are the old bridge's, so its clients keep working; behaviour follows RFC 6749, 7636,
//! 9700, 8414, 9728, 7009, 7662 and 7591. Handlers take a [`Request`] and give a [`Reply`]; nothing here
//! logs a token, code, poll token, sid or secret.

mod authorize;
mod discovery;
mod register;
mod revoke;
mod token;
mod userinfo;

use http::Method;

use crate::errors::ApiError;
use crate::exchange::{Reply, Request};
use crate::state::AppState;

/// Does this path belong to the authorization server?
pub fn owns(path: &str) -> bool {
    matches!(
        path,
        "/authorize"
            | "/authorize/poll"
            | "/authorize/app.js"
            | "/authorize/style.css"
            | "/token"
            | "/userinfo"
            | "/revoke"
            | "/introspect"
            | "/register"
            | "/.well-known/oauth-authorization-server"
            | "/.well-known/jwks.json"
    ) || path == "/.well-known/oauth-protected-resource"
        || path.starts_with("/.well-known/oauth-protected-resource/")
        || path.starts_with("/.well-known/oauth-authorization-server/")
}

fn only(method: &Method, allowed: &[Method], allow_header: &'static str) -> Result<(), ApiError> {
    if allowed.contains(method) || (method == Method::HEAD && allowed.contains(&Method::GET)) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(allow_header))
    }
}

pub use discovery::resource_metadata_url;

/// Answers a request to one of the paths [`owns`] accepts. A refusal comes back as the error; the caller
/// turns it into the response (and counts it, once).
pub async fn handle(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let method = &request.method;
    match request.path.as_str() {
        "/authorize" => {
            only(method, &[Method::GET], "GET")?;
            authorize::authorize(state, request).await
        }
        "/authorize/poll" => {
            only(method, &[Method::GET], "GET")?;
            authorize::poll(state, request).await
        }
        "/authorize/app.js" => {
            only(method, &[Method::GET], "GET")?;
            Ok(Reply::asset("text/javascript; charset=utf-8", include_str!("assets/authorize.js")))
        }
        "/authorize/style.css" => {
            only(method, &[Method::GET], "GET")?;
            Ok(Reply::asset("text/css; charset=utf-8", include_str!("assets/style.css")))
        }
        "/token" => {
            only(method, &[Method::POST], "POST")?;
            token::token(state, request).await
        }
        "/userinfo" => {
            only(method, &[Method::GET, Method::POST], "GET, POST")?;
            userinfo::userinfo(state, request).await
        }
        "/revoke" => {
            only(method, &[Method::POST], "POST")?;
            revoke::revoke(state, request).await
        }
        "/introspect" => {
            only(method, &[Method::POST], "POST")?;
            revoke::introspect(state, request).await
        }
        "/register" => {
            only(method, &[Method::POST], "POST")?;
            register::register(state, request).await
        }
        "/.well-known/jwks.json" => {
            only(method, &[Method::GET], "GET")?;
            Ok(Reply::json(200, &state.keys.jwks()).with_header("Cache-Control", "public, max-age=300"))
        }
        path if path.starts_with("/.well-known/oauth-authorization-server") => {
            only(method, &[Method::GET], "GET")?;
            Ok(Reply::json(200, &discovery::authorization_server(&state.config)))
        }
        _ => {
            only(method, &[Method::GET], "GET")?;
            Ok(Reply::json(200, &discovery::protected_resource(&state.config)))
        }
    }
}
