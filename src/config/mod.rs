//! The gateway's one configuration schema.
//!
//! Operators write YAML (see `conf/`); [`load`] parses it into [`Config`], resolves secrets given as files
//! or environment variables, and validates it. Every key has a default or is required, unknown keys are
//! refused, and every error names the key it is about. The rest of the program reads only [`Config`].
//! Secrets are held in [`Secret`], whose `Debug` never prints the value.

mod load;
mod secret;

pub(crate) use load::check_redirect_uri;
pub use load::parse_network;
pub use load::{load, load_all, load_str, load_str_all, ConfigError, ConfigErrors};
pub use secret::{Secret, SecretError, SecretSource};

use serde::{Deserialize, Serialize};

/// The whole configuration, as validated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub tokens: TokenConfig,
    #[serde(default)]
    pub signing: SigningConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub platforms: PlatformConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub oauth: OAuthConfig,
    #[serde(default)]
    pub cors: CorsConfig,
    #[serde(default)]
    pub rate_limits: RateLimitConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// Listeners, the public identity of the gateway and Pingora's process settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Plain-HTTP listen addresses for the OAuth endpoints and the proxy.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Optional downstream TLS listeners.
    #[serde(default)]
    pub tls: Option<DownstreamTls>,
    /// Metrics and health listener; keep it off the public network.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// The public base URL clients use; it is the OAuth issuer. Required.
    pub public_url: String,
    /// Pingora worker threads per service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Seconds between a shutdown signal and the start of the final drain (Pingora `grace_period_seconds`).
    #[serde(default = "default_grace_period")]
    pub grace_period_seconds: u64,
    /// Seconds the final drain may take (Pingora `graceful_shutdown_timeout_seconds`).
    #[serde(default = "default_shutdown_timeout")]
    pub graceful_shutdown_timeout_seconds: u64,
    /// Unix socket through which a new process takes the listening sockets in a zero-downtime upgrade.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_sock: String,
    /// PID file written when running as a daemon.
    #[serde(default = "default_pid_file")]
    pub pid_file: String,
    /// Largest request body the OAuth endpoints accept, in bytes (larger: 413).
    #[serde(default = "default_max_form_bytes")]
    pub max_form_body_bytes: usize,
    /// Load balancers / reverse proxies (IPs or CIDRs) whose `X-Forwarded-For` is believed when finding the
    /// client IP for per-IP limits. Empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTls {
    pub listen: Vec<String>,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: StoreBackend,
    #[serde(default)]
    pub memory: MemoryStoreConfig,
    #[serde(default)]
    pub redis: RedisConfig,
}

/// Bounds of the embedded store: when full, writes are refused (503) rather than memory growing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreConfig {
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Bound of each of the two record maps: authorization codes, and login attempts with registered clients.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig { max_sessions: default_max_sessions(), max_records: default_max_records() }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    #[serde(default)]
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs: one for standalone, the sentinels for Sentinel, seed nodes for Cluster.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Name of the monitored master (Sentinel mode).
    #[serde(default = "default_sentinel_master")]
    pub sentinel_master: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Prefix of every key the gateway writes.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_redis_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_redis_command_timeout")]
    pub command_timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            mode: RedisMode::Standalone,
            urls: Vec::new(),
            sentinel_master: default_sentinel_master(),
            username: None,
            password: None,
            key_prefix: default_key_prefix(),
            connect_timeout_ms: default_redis_connect_timeout(),
            command_timeout_ms: default_redis_command_timeout(),
        }
    }
}

/// Lifetimes of what the gateway issues, and the refresh rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default = "default_access_ttl")]
    pub access_token_ttl_seconds: u64,
    /// A refresh token's own lifetime; it never outlives its IB session either.
    #[serde(default = "default_refresh_ttl")]
    pub refresh_token_ttl_seconds: u64,
    #[serde(default = "default_code_ttl")]
    pub authorization_code_ttl_seconds: u64,
    /// How long a started login (poll token) may wait for the user.
    #[serde(default = "default_login_ttl")]
    pub login_attempt_ttl_seconds: u64,
    /// Refreshes allowed per IB session; the next one is refused with `Session refresh limit exceeded`.
    #[serde(default = "default_max_refresh_count")]
    pub max_refresh_count: u32,
    /// Window in which repeating a just-rotated refresh token returns the same successor.
    #[serde(default = "default_refresh_grace")]
    pub refresh_grace_seconds: u64,
    /// Clock leeway when checking `exp`/`nbf` of access tokens.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            access_token_ttl_seconds: default_access_ttl(),
            refresh_token_ttl_seconds: default_refresh_ttl(),
            authorization_code_ttl_seconds: default_code_ttl(),
            login_attempt_ttl_seconds: default_login_ttl(),
            max_refresh_count: default_max_refresh_count(),
            refresh_grace_seconds: default_refresh_grace(),
            leeway_seconds: default_leeway(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SigningAlgorithm {
    #[default]
    EdDSA,
    ES256,
    RS256,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// The key that signs new tokens. Absent: an ephemeral key is generated (development only).
    #[serde(default)]
    pub current: Option<SigningKeyConfig>,
    /// Public keys of earlier signing keys, still accepted until their tokens have expired.
    #[serde(default)]
    pub previous: Vec<VerificationKeyConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    pub kid: String,
    /// PKCS#8 PEM private key.
    pub private_key: SecretSource,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationKeyConfig {
    pub kid: String,
    #[serde(default)]
    pub algorithm: Option<SigningAlgorithm>,
    /// SPKI PEM public key.
    pub public_key: SecretSource,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Used only when IB's login omits `logintimeoutperiod`; clamped to IB's 1-120 h.
    #[serde(default = "default_login_timeout_hours")]
    pub default_login_timeout_hours: u32,
    /// Sessions this close to `sid_expiry` are reported as near expiry.
    #[serde(default = "default_near_expiry")]
    pub near_expiry_margin_seconds: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            default_login_timeout_hours: default_login_timeout_hours(),
            near_expiry_margin_seconds: default_near_expiry(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// A platform host must end with one of these (a leading dot means "a subdomain of").
    #[serde(default = "default_suffixes")]
    pub allowed_host_suffixes: Vec<String>,
    /// Development switch: also allow `http://127.0.0.1:PORT` platforms and API hosts (the mock platform).
    #[serde(default)]
    pub allow_insecure_loopback: bool,
    /// Extra PEM CA bundle trusted for IB TLS, besides the system roots.
    #[serde(default)]
    pub extra_ca_file: Option<String>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            allowed_host_suffixes: default_suffixes(),
            allow_insecure_loopback: false,
            extra_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_read_timeout")]
    pub read_timeout_ms: u64,
    #[serde(default = "default_write_timeout")]
    pub write_timeout_ms: u64,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Idle upstream connections kept per process.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_dns_ttl")]
    pub dns_cache_ttl_seconds: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_ms: default_connect_timeout(),
            read_timeout_ms: default_read_timeout(),
            write_timeout_ms: default_write_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            pool_size: default_pool_size(),
            dns_cache_ttl_seconds: default_dns_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    #[serde(default = "default_scopes")]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default = "default_clients")]
    pub clients: Vec<ClientConfig>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            scopes_supported: default_scopes(),
            registration: RegistrationConfig::default(),
            clients: default_clients(),
        }
    }
}

/// RFC 7591 dynamic client registration (public clients only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_registration_ttl")]
    pub client_ttl_seconds: u64,
    #[serde(default = "default_registration_rate")]
    pub per_ip_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            enabled: true,
            client_ttl_seconds: default_registration_ttl(),
            per_ip_per_hour: default_registration_rate(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    /// Absent: a public client (PKCE required). Present: a confidential client.
    #[serde(default)]
    pub client_secret: Option<SecretSource>,
    /// Exact redirect URIs (preferred).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Anchored patterns whose only wildcard is `{port}` in the port position,
    /// e.g. `http://127.0.0.1:{port}/callback`.
    #[serde(default)]
    pub redirect_uri_patterns: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Add the IB session fields (`sid`, `clientid`, `apiV3url`, ...) to token responses, as the old bridge did.
    #[serde(default = "default_true")]
    pub ib_session_in_token_response: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `["*"]` or exact origins.
    #[serde(default = "default_cors_origins")]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "default_cors_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default = "default_cors_exposed")]
    pub exposed_headers: Vec<String>,
    #[serde(default = "default_cors_max_age")]
    pub max_age_seconds: u64,
    /// Never allowed together with the `*` origin.
    #[serde(default)]
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: default_cors_origins(),
            allowed_methods: default_cors_methods(),
            allowed_headers: default_cors_headers(),
            exposed_headers: default_cors_exposed(),
            max_age_seconds: default_cors_max_age(),
            allow_credentials: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// Per instance (pingora-limits); N instances admit up to N times the limit.
    #[default]
    Local,
    /// Exact across instances, counted in the Redis store.
    Redis,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default)]
    pub backend: RateLimitBackend,
    /// IB documents 600 calls per minute per user; 0 disables.
    #[serde(default = "default_per_session")]
    pub per_session_per_minute: u32,
    /// For requests without a valid session (OAuth endpoints, refused tokens); 0 disables.
    #[serde(default = "default_per_ip")]
    pub per_ip_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            backend: RateLimitBackend::Local,
            per_session_per_minute: default_per_session(),
            per_ip_per_minute: default_per_ip(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// An env_logger filter such as `info` or `info,ib_oauth_gateway=debug`; `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig { level: default_log_level(), format: LogFormat::Text }
    }
}

fn default_listen() -> Vec<String> {
    vec!["0.0.0.0:8080".into()]
}
fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_threads() -> usize {
    2
}
fn default_grace_period() -> u64 {
    5
}
fn default_shutdown_timeout() -> u64 {
    25
}
fn default_upgrade_sock() -> String {
    "/tmp/ib-oauth-gateway-upgrade.sock".into()
}
fn default_pid_file() -> String {
    "/tmp/ib-oauth-gateway.pid".into()
}
fn default_max_form_bytes() -> usize {
    16 * 1024
}
fn default_max_sessions() -> usize {
    1_000_000
}
fn default_max_records() -> usize {
    1_000_000
}
fn default_sentinel_master() -> String {
    "mymaster".into()
}
fn default_key_prefix() -> String {
    "ibgw".into()
}
fn default_redis_connect_timeout() -> u64 {
    2_000
}
fn default_redis_command_timeout() -> u64 {
    1_000
}
fn default_access_ttl() -> u64 {
    3_600
}
fn default_refresh_ttl() -> u64 {
    120 * 3_600
}
fn default_code_ttl() -> u64 {
    60
}
fn default_login_ttl() -> u64 {
    600
}
fn default_max_refresh_count() -> u32 {
    120
}
fn default_refresh_grace() -> u64 {
    10
}
fn default_leeway() -> u64 {
    30
}
fn default_login_timeout_hours() -> u32 {
    120
}
fn default_near_expiry() -> u64 {
    300
}
fn default_suffixes() -> Vec<String> {
    vec![".intelligencebank.com".into()]
}
fn default_connect_timeout() -> u64 {
    5_000
}
fn default_read_timeout() -> u64 {
    60_000
}
fn default_write_timeout() -> u64 {
    60_000
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_pool_size() -> usize {
    256
}
fn default_dns_ttl() -> u64 {
    60
}
fn default_scopes() -> Vec<String> {
    vec!["profile".into()]
}
fn default_true() -> bool {
    true
}
fn default_registration_ttl() -> u64 {
    90 * 24 * 3_600
}
fn default_registration_rate() -> u32 {
    20
}
fn default_cors_origins() -> Vec<String> {
    vec!["*".into()]
}
fn default_cors_methods() -> Vec<String> {
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].iter().map(|m| m.to_string()).collect()
}
fn default_cors_headers() -> Vec<String> {
    ["Authorization", "Content-Type", "Accept", "X-Request-Id"].iter().map(|h| h.to_string()).collect()
}
fn default_cors_exposed() -> Vec<String> {
    ["X-Request-Id", "WWW-Authenticate", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
        .iter()
        .map(|h| h.to_string())
        .collect()
}
fn default_cors_max_age() -> u64 {
    600
}
fn default_per_session() -> u32 {
    600
}
fn default_per_ip() -> u32 {
    300
}
fn default_log_level() -> String {
    "info".into()
}

/// The old bridge's well-known public client, kept so its users need no registration.
fn default_clients() -> Vec<ClientConfig> {
    vec![ClientConfig {
        client_id: "mcp-public-client".into(),
        client_secret: None,
        redirect_uris: vec![
            "https://claude.ai/api/mcp/auth_callback".into(),
            "https://claude.com/api/mcp/auth_callback".into(),
        ],
        redirect_uri_patterns: vec![
            "http://localhost:{port}/callback".into(),
            "http://127.0.0.1:{port}/callback".into(),
            "http://localhost:{port}/oauth/callback".into(),
            "http://localhost:{port}/oauth/callback/debug".into(),
        ],
        scopes: default_scopes(),
        ib_session_in_token_response: true,
    }]
}
