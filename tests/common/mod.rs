//! The one test-support library of the integration tests. Each helper is defined once, in the submodule
//! named for what it deals with; the ones most tests use are re-exported here (`use common::*;`).
//!
//! - [`ports`]: free TCP ports, never the same one twice in a process.
//! - [`redis`]: private redis-server processes (standalone, replica, sentinel), killed on drop.
//! - [`gateway`]: gateway processes, ready only when every listener accepts connections.
//! - [`oauth`]: the registered test clients, PKCE, a full login and the token endpoint.
//! - [`mock`]: the mock IntelligenceBank platform and its test controls.
//! - [`http`]: HTTP clients, whole answers, form posts, raw requests.
//! - [`pki`]: a throwaway CA and server certificate; TLS mocks.
//! - [`documents`]: an HTTPS server of Client ID Metadata Documents.
//! - [`store`]: the token store under test: backends, sessions, rotations.
//! - [`secrets`]: local values for the secrets a shipped configuration names by path or variable.
#![allow(dead_code, unused_imports)]

pub mod documents;
pub mod gateway;
pub mod http;
pub mod mock;
pub mod oauth;
pub mod pki;
pub mod ports;
pub mod redis;
pub mod secrets;
pub mod store;

pub use self::redis::RedisServer;
pub use gateway::*;
pub use http::*;
pub use mock::*;
pub use oauth::*;
pub use ports::*;
