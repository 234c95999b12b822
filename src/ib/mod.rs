//! Everything that talks to IntelligenceBank (IB), and a stand-in for it.
//!
//! - [`platform_url`]: which platform and API hosts the gateway may talk to at all ([`PlatformPolicy`]).
//! - [`client`]: the Browser Login calls (`/v1/auth/app/token`, `/v1/auth/app/info`) over one shared HTTPS
//!   client ([`IbClient`]).
//!
//! The stand-in for IB used by tests, benches and the demo is the top-level `mock` module, behind the `mock` feature.
//!
//! Nothing here ever logs a `sid`, a login token or any other secret.

pub mod client;
pub mod platform_url;

pub use client::{CompletedLogin, ExtraCas, IbClient, IbError, IbSetupError, LoginPoll};
pub use platform_url::{PlatformPolicy, PlatformUrl, PlatformUrlError};

/// Makes aws-lc-rs the process-wide rustls crypto provider.
///
/// This build compiles in more than one rustls provider (ring and aws-lc-rs), and rustls then refuses to pick
/// one on its own. Safe to call any number of times, from any thread; a provider installed earlier (by us or by
/// anyone else) is kept.
pub fn install_crypto_provider() {
    // Err only means a default is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
