//! ib-oauth-gateway: an OAuth 2.0 authorization server over IntelligenceBank's Browser Login, and an
//! authenticating Pingora proxy that forwards API calls to IntelligenceBank with the user's IB session.
//!
//! The path of a request, by module: [`config`] (the YAML schema), [`server`] (the Pingora services),
//! [`session`] (the session model and its pure rules), [`store`] (the token store: memory or Redis),
//! [`tokens`] (opaque secrets and their hashes).

pub mod config;
pub mod errors;
pub mod gateway;
pub mod ib;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod server;
pub mod session;
pub mod store;
pub mod tokens;
