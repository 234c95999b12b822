//! ib-oauth-gateway: an OAuth 2.0 authorization server over IntelligenceBank's Browser Login, and an
//! authenticating Pingora proxy that forwards API calls to IntelligenceBank with the user's IB session.
//!
//! The crate is layered; each module imports only from the layers below it (`tests/layers.rs` checks it,
//! `docs/architecture.md` draws it):
//!
//! - [`server`]: assembles the Pingora services (public gateway, admin) from the configuration.
//! - [`gateway`]: the `ProxyHttp` phases: decide, pick the IB peer, rewrite, answer.
//! - [`oauth`]: the authorization server's endpoints, a [`exchange::Request`] in, a [`exchange::Reply`] out.
//! - [`state`]: what every handler shares, built from [`settings`] (the configuration parsed once into typed,
//!   resolved values); [`auth`]: the one authentication path, access tokens, clients.
//! - [`store`] (memory or Redis), [`ib`] (the IntelligenceBank client), [`keys`] (signing keys), [`cimd`]
//!   (Client ID Metadata Documents: the SSRF-guarded fetch of a client's own metadata).
//! - [`audit`] (the security audit log: one JSON line per security event).
//! - [`tokens`] (opaque secrets and their hashes); [`session`] (the model and its pure rules), [`limits`]
//!   (rate limits), [`exchange`] (the plain HTTP request/reply the endpoints work on, CORS), [`resource`]
//!   (RFC 8707 resource indicators), [`scopes`] (what a token's scope lets the proxy forward).
//! - [`access_log`] (one line per request, off the request path).
//! - [`errors`] (the one client-facing error), [`metrics`] (handles, reading nobody), [`logging`], [`trace`]
//!   (W3C trace context).
//! - [`config`]: the YAML schema and its validation.
//!
//! `mock` (feature `mock`, on by default) is a stand-in IntelligenceBank platform for tests and the demo;
//! production builds (`--no-default-features`) leave it out.

pub mod access_log;
pub mod audit;
pub mod auth;
pub mod cimd;
pub mod config;
pub mod errors;
pub mod exchange;
pub mod gateway;
pub mod ib;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod oauth;
pub mod resource;
pub mod scopes;
pub mod server;
pub mod session;
pub mod settings;
pub mod state;
pub mod store;
pub mod tokens;
pub mod trace;
