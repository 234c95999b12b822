//! The gateway's one configuration schema.
//!
//! Operators write YAML (see `conf/`); [`load`] parses it into [`Config`], resolves secrets given as files
//! or environment variables, and validates it. Every key has a default or is required, unknown keys are
//! refused, and every error names the key it is about. The rest of the program reads only [`Config`].
//! Secrets are held in [`Secret`], whose `Debug` never prints the value.

pub mod live;
mod load;
pub mod secret;

pub(crate) use load::check_redirect_uri;
pub use load::{load, load_all, load_str, load_str_all, ConfigError, ConfigErrors};
pub use secret::{Secret, SecretError, SecretSource};

use serde::{Deserialize, Serialize};

/// The whole configuration, as validated. Every key's default is in its section's `Default` impl below (the
/// one place defaults live; `#[serde(default)]` on each section takes them from there).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tokens: TokenConfig,
    pub signing: SigningConfig,
    pub session: SessionConfig,
    pub platforms: PlatformConfig,
    pub upstream: UpstreamConfig,
    pub oauth: OAuthConfig,
    pub cors: CorsConfig,
    pub rate_limits: RateLimitConfig,
    pub logging: LoggingConfig,
    pub admin: AdminConfig,
    pub tracing: TracingConfig,
}

/// Listeners, the public identity of the gateway and Pingora's process settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain-HTTP listen addresses for the OAuth endpoints and the proxy.
    pub listen: Vec<ListenAddr>,
    /// Optional downstream TLS listeners.
    pub tls: Option<DownstreamTls>,
    /// Metrics and health listener; keep it off the public network.
    pub admin_listen: ListenAddr,
    /// The public base URL clients use; it is the OAuth issuer. Required.
    pub public_url: String,
    /// Pingora worker threads per service.
    pub threads: usize,
    /// Seconds between a shutdown signal and the start of the final drain (Pingora `grace_period_seconds`).
    pub grace_period_seconds: u64,
    /// Seconds the final drain may take (Pingora `graceful_shutdown_timeout_seconds`).
    pub graceful_shutdown_timeout_seconds: u64,
    /// Unix socket through which a new process takes the listening sockets in a zero-downtime upgrade.
    pub upgrade_sock: String,
    /// PID file written when running as a daemon.
    pub pid_file: String,
    /// Largest request body the OAuth endpoints accept, in bytes (larger: 413).
    pub max_form_body_bytes: usize,
    /// Load balancers / reverse proxies (IPs or CIDRs) whose `X-Forwarded-For` is believed when finding the
    /// client IP for per-IP limits. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<Network>,
    /// HTTP/2 from clients.
    pub http2: Http2Config,
}

/// HTTP/2 on the public listeners: offered by ALPN (`h2`, then `http/1.1`) on TLS listeners, and optionally
/// accepted with prior knowledge (h2c) on plain ones. The `h2` crate's own flood protections (reset-stream,
/// pending-accept and local-error limits) always apply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Offer `h2` by ALPN on the TLS listeners.
    pub enabled: bool,
    /// Accept HTTP/2 with prior knowledge on the plain listeners (HTTP/1.1 still works there).
    pub h2c: bool,
    /// Streams one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// The largest decoded header list a client may send, in bytes.
    pub max_header_list_size: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config { enabled: true, h2c: false, max_concurrent_streams: 100, max_header_list_size: 64 * 1024 }
    }
}

/// An IP address (a single-host network) or a CIDR, parsed when the file is read and never again; written
/// back (`print-config`) as a CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network(pub ipnet::IpNet);

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let parsed =
            text.parse::<ipnet::IpNet>().ok().or_else(|| text.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from));
        parsed.map(Network).ok_or_else(|| format!("`{text}` is not an IP address or CIDR"))
    }
}

impl From<Network> for String {
    fn from(network: Network) -> String {
        network.0.to_string()
    }
}

/// A socket address to listen on (`0.0.0.0:8080`, `[::1]:9090`), parsed when the file is read and never again;
/// written back (`print-config`) as it was written. Text that is not an address is kept as read, so that
/// validation reports it with every other problem of the file (one parse error would hide the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct ListenAddr {
    text: String,
    parsed: Option<std::net::SocketAddr>,
}

impl From<String> for ListenAddr {
    fn from(text: String) -> Self {
        let parsed = text.parse().ok();
        ListenAddr { text, parsed }
    }
}

impl From<ListenAddr> for String {
    fn from(addr: ListenAddr) -> String {
        addr.text
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl ListenAddr {
    fn at(text: &str) -> Self {
        ListenAddr::from(text.to_string())
    }

    /// The address; `None` only in a file that validation refuses.
    pub fn addr(&self) -> Option<std::net::SocketAddr> {
        self.parsed
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![ListenAddr::at("0.0.0.0:8080")],
            tls: None,
            admin_listen: ListenAddr::at("127.0.0.1:9090"),
            // Required: validation refuses an empty one.
            public_url: String::new(),
            threads: 2,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 25,
            upgrade_sock: "/tmp/ib-oauth-gateway-upgrade.sock".into(),
            pid_file: "/tmp/ib-oauth-gateway.pid".into(),
            max_form_body_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            http2: Http2Config::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTls {
    pub listen: Vec<ListenAddr>,
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
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub memory: MemoryStoreConfig,
    pub redis: RedisConfig,
}

/// Bounds of the embedded store: when full, writes are refused (503) rather than memory growing or a live
/// entry being pushed out. Sessions, codes, login attempts and registered clients each have their own budget.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStoreConfig {
    pub max_sessions: usize,
    /// Bytes the sessions may hold (estimated per session: its strings plus bookkeeping).
    pub max_session_bytes: usize,
    /// Entries of each record map: authorization codes, login attempts, registered clients (each its own).
    pub max_records: usize,
    /// Bytes each record map may hold.
    pub max_record_bytes: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_sessions: 1_000_000,
            max_session_bytes: 1024 * 1024 * 1024,
            max_records: 1_000_000,
            max_record_bytes: 128 * 1024 * 1024,
        }
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
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub mode: RedisMode,
    /// `redis://` or `rediss://` URLs: one for standalone, the sentinels for Sentinel, seed nodes for Cluster.
    pub urls: Vec<String>,
    /// Name of the monitored master (Sentinel mode).
    pub sentinel_master: String,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// Prefix of every key the gateway writes.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    pub command_timeout_ms: u64,
    /// Sessions kept in this instance's memory, exact by Redis' invalidation messages (0: no cache; every
    /// request reads its session from Redis).
    pub session_cache_max_entries: usize,
    /// A cached session is read again from Redis after this long, whatever the invalidation channel says.
    pub session_cache_max_age_ms: u64,
    /// How often the invalidation subscriber proves its channel delivers (a numbered heartbeat through every
    /// master); a copy is served only until twice this after the newest heartbeat that came back.
    pub session_cache_heartbeat_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            mode: RedisMode::Standalone,
            urls: Vec::new(),
            sentinel_master: "mymaster".into(),
            username: None,
            password: None,
            key_prefix: "ibgw".into(),
            connect_timeout_ms: 2_000,
            command_timeout_ms: 1_000,
            session_cache_max_entries: 100_000,
            session_cache_max_age_ms: 60_000,
            session_cache_heartbeat_ms: 250,
        }
    }
}

/// Lifetimes of what the gateway issues, and the refresh rules.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub access_token_ttl_seconds: u64,
    /// A refresh token's own lifetime; it never outlives its IB session either.
    pub refresh_token_ttl_seconds: u64,
    pub authorization_code_ttl_seconds: u64,
    /// How long a started login (poll token) may wait for the user.
    pub login_attempt_ttl_seconds: u64,
    /// Refreshes allowed per IB session; the next one is refused with `Session refresh limit exceeded`.
    pub max_refresh_count: u32,
    /// Window in which repeating a just-rotated refresh token returns the same successor.
    pub refresh_grace_seconds: u64,
    /// Clock leeway when checking `exp`/`nbf` of access tokens.
    pub leeway_seconds: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            access_token_ttl_seconds: 3_600,
            refresh_token_ttl_seconds: 120 * 3_600,
            authorization_code_ttl_seconds: 60,
            login_attempt_ttl_seconds: 600,
            max_refresh_count: 120,
            refresh_grace_seconds: 10,
            leeway_seconds: 30,
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
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    pub algorithm: SigningAlgorithm,
    /// The key that signs new tokens. Absent: an ephemeral key is generated (development only).
    pub current: Option<SigningKeyConfig>,
    /// Public keys of earlier signing keys, still accepted until their tokens have expired.
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
    pub algorithm: Option<SigningAlgorithm>,
    /// SPKI PEM public key.
    pub public_key: SecretSource,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Used only when IB's login omits `logintimeoutperiod`; clamped to IB's 1-120 h.
    pub default_login_timeout_hours: u32,
    /// Sessions this close to `sid_expiry` are reported as near expiry.
    pub near_expiry_margin_seconds: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { default_login_timeout_hours: 120, near_expiry_margin_seconds: 300 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// A platform host must end with one of these (a leading dot means "a subdomain of").
    pub allowed_host_suffixes: Vec<String>,
    /// Development switch: also allow `http://127.0.0.1:PORT` platforms and API hosts (the mock platform).
    pub allow_insecure_loopback: bool,
    /// Extra PEM CA bundle trusted for IB TLS, besides the system roots.
    pub extra_ca_file: Option<String>,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            allowed_host_suffixes: vec![".intelligencebank.com".into()],
            allow_insecure_loopback: false,
            extra_ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub connect_timeout_ms: u64,
    pub read_timeout_ms: u64,
    pub write_timeout_ms: u64,
    pub idle_timeout_seconds: u64,
    /// Idle upstream connections kept per process.
    pub pool_size: usize,
    pub dns_cache_ttl_seconds: u64,
    pub http2: UpstreamHttp2Config,
}

/// HTTP/2 to IB (`upstream.http2`): off by default. On, the gateway offers `h2` and `http/1.1` by ALPN to TLS
/// platforms and speaks h2 where the platform picks it: requests to one host share a multiplexed connection
/// instead of a pool of them. Plain-HTTP platforms (loopback tests) always get HTTP/1.1.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamHttp2Config {
    pub enabled: bool,
    /// Streams this gateway opens on one h2 connection before it opens another.
    pub max_concurrent_streams: usize,
    /// h2 PING on an idle connection every this many seconds (0: never), so a dead peer is noticed.
    pub ping_interval_seconds: u64,
}

impl Default for UpstreamHttp2Config {
    fn default() -> Self {
        UpstreamHttp2Config { enabled: false, max_concurrent_streams: 100, ping_interval_seconds: 30 }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout_ms: 5_000,
            read_timeout_ms: 60_000,
            write_timeout_ms: 60_000,
            idle_timeout_seconds: 60,
            pool_size: 256,
            dns_cache_ttl_seconds: 60,
            http2: UpstreamHttp2Config::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    pub scopes_supported: Vec<String>,
    /// The scopes a client that is not in `clients` (registered through RFC 7591, or known by its Client ID
    /// Metadata Document) may be granted, and is granted when it asks for none. Absent: every scope in
    /// `scopes_supported`. `[profile, "ib:read"]` makes every such client (agents) read-only.
    pub dynamic_client_scopes: Option<Vec<String>>,
    /// RFC 8707 resource identifiers this gateway issues tokens for, besides `server.public_url` (always one):
    /// e.g. the URL an MCP server is known by, `https://gw.example.com/mcp`. Needs a restart to change (the
    /// accepted audiences of access tokens).
    pub resources: Vec<String>,
    pub client_id_metadata_documents: ClientMetadataDocumentsConfig,
    pub registration: RegistrationConfig,
    pub clients: Vec<ClientConfig>,
}

impl OAuthConfig {
    /// `dynamic_client_scopes`, or every supported scope.
    pub fn dynamic_client_scopes(&self) -> &[String] {
        self.dynamic_client_scopes.as_deref().unwrap_or(&self.scopes_supported)
    }
}

/// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a `client_id` that is an
/// `https` URL with a path names the client's own metadata, fetched (under SSRF defences) and kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientMetadataDocumentsConfig {
    pub enabled: bool,
    /// Only documents on these hosts (exact, case-insensitive) are fetched. Empty: any public host.
    pub allowed_hosts: Vec<String>,
    /// A resolved document is kept for its `Cache-Control: max-age`, clamped to this range.
    pub min_cache_seconds: u64,
    pub max_cache_seconds: u64,
    /// How long a failed resolution is kept (the URL is not fetched again meanwhile).
    pub failure_cache_seconds: u64,
    /// The most documents (and failures) kept at once.
    pub max_entries: usize,
    /// Fetches per document host per minute (a burst of 5 on top), and overall (a burst of 30).
    pub fetches_per_host_per_minute: u32,
    pub fetches_per_minute: u32,
    /// Tests only (builds with the `mock` feature; a production build refuses the key as unknown): trust this
    /// CA besides the system roots and allow documents on loopback addresses.
    #[cfg(feature = "mock")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_only_trusted_ca_file: Option<String>,
}

impl Default for ClientMetadataDocumentsConfig {
    fn default() -> Self {
        ClientMetadataDocumentsConfig {
            enabled: true,
            allowed_hosts: Vec::new(),
            min_cache_seconds: 5 * 60,
            max_cache_seconds: 24 * 3_600,
            failure_cache_seconds: 60,
            max_entries: 1000,
            fetches_per_host_per_minute: 10,
            fetches_per_minute: 120,
            #[cfg(feature = "mock")]
            test_only_trusted_ca_file: None,
        }
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            scopes_supported: vec!["profile".into(), "ib:read".into(), "ib:write".into()],
            dynamic_client_scopes: None,
            resources: Vec::new(),
            client_id_metadata_documents: ClientMetadataDocumentsConfig::default(),
            registration: RegistrationConfig::default(),
            // The old bridge's well-known public client, kept so its users need no registration.
            clients: vec![ClientConfig {
                client_id: LEGACY_PUBLIC_CLIENT.into(),
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
                // Its consumers (the old bridge's MCP clients) start and poll logins without a browser.
                allow_headless_login: Some(true),
                ..ClientConfig::default()
            }],
        }
    }
}

/// RFC 7591 dynamic client registration (public clients only).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub enabled: bool,
    pub client_ttl_seconds: u64,
    pub per_ip_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig { enabled: true, client_ttl_seconds: 90 * 24 * 3_600, per_ip_per_hour: 20 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    pub client_id: String,
    /// Absent: a public client (PKCE required). Present: a confidential client.
    pub client_secret: Option<SecretSource>,
    /// Exact redirect URIs (preferred).
    pub redirect_uris: Vec<String>,
    /// Anchored patterns whose only wildcard is `{port}` in the port position,
    /// e.g. `http://127.0.0.1:{port}/callback`.
    pub redirect_uri_patterns: Vec<String>,
    pub scopes: Vec<String>,
    /// Add the IB session fields (`sid`, `clientid`, `apiV3url`, ...) to token responses, as the old bridge did.
    pub ib_session_in_token_response: bool,
    /// May this client start a login without the sign-in page (the JSON start without the page's
    /// `X-IBGW-Login-Page` header), whose poll is then bound to no browser? Absent: only for the old bridge's
    /// well-known public client [`LEGACY_PUBLIC_CLIENT`]; see [`ClientConfig::headless_login_allowed`].
    pub allow_headless_login: Option<bool>,
    /// This (confidential) client is a resource server in front of the gateway — an MCP server that calls
    /// IntelligenceBank — known to its own clients by this resource URL: they may ask the gateway for tokens
    /// for it (RFC 8707), the proxy never accepts those, and this client may exchange them for short-lived
    /// gateway tokens of the same session (RFC 8693 token exchange).
    pub token_exchange_resource: Option<String>,
}

/// The old bridge's well-known public client, whose consumers poll logins without a browser.
pub const LEGACY_PUBLIC_CLIENT: &str = "mcp-public-client";

impl ClientConfig {
    /// `allow_headless_login`, or when it is absent: `true` for [`LEGACY_PUBLIC_CLIENT`] only (also when an
    /// operator lists that client explicitly, as conf/gateway.yaml does), `false` for every other client.
    pub fn headless_login_allowed(&self) -> bool {
        self.allow_headless_login.unwrap_or(self.client_id == LEGACY_PUBLIC_CLIENT)
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            // Required: validation refuses an empty one.
            client_id: String::new(),
            client_secret: None,
            redirect_uris: Vec::new(),
            redirect_uri_patterns: Vec::new(),
            scopes: vec!["profile".into()],
            ib_session_in_token_response: true,
            allow_headless_login: None,
            token_exchange_resource: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// `["*"]` or exact origins.
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age_seconds: u64,
    /// Never allowed together with the `*` origin.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".into()],
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .iter()
                .map(|m| m.to_string())
                .collect(),
            // `traceparent` and `tracestate`: a browser app's W3C trace context reaches IB through the gateway.
            allowed_headers: ["Authorization", "Content-Type", "Accept", "X-Request-Id", "traceparent", "tracestate"]
                .iter()
                .map(|h| h.to_string())
                .collect(),
            exposed_headers: [
                "X-Request-Id",
                "WWW-Authenticate",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ]
            .iter()
            .map(|h| h.to_string())
            .collect(),
            max_age_seconds: 600,
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
    /// Counted in this instance and shared through Redis every `sync_interval_ms`: no round trip per request,
    /// a bounded overshoot across instances (docs/operations.md).
    Approximate,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub backend: RateLimitBackend,
    /// IB documents 600 calls per minute per user; 0 disables.
    pub per_session_per_minute: u32,
    /// For requests without a valid session (OAuth endpoints, refused tokens); 0 disables.
    pub per_ip_per_minute: u32,
    /// `approximate` backend: how often this instance adds its counts to Redis and learns the others'.
    pub sync_interval_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            backend: RateLimitBackend::Local,
            per_session_per_minute: 600,
            per_ip_per_minute: 300,
            sync_interval_ms: 100,
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
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// An env_logger filter such as `info` or `info,ib_oauth_gateway=debug`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per request (text or JSON by `format`), written off the request path, whatever `level` says.
    pub access_log: bool,
    /// Where the security audit log (one JSON line per security event) goes.
    pub audit: AuditOutput,
    /// Failed authentications from one client address (IPv6: its /64) within one clock-aligned window that
    /// make a `repeated_auth_failures` audit event; 0 disables the event.
    pub audit_failure_threshold: u32,
    /// The window of `audit_failure_threshold`, in seconds.
    pub audit_failure_window_seconds: u64,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: true,
            audit: AuditOutput::Stderr,
            audit_failure_threshold: 10,
            audit_failure_window_seconds: 60,
        }
    }
}

/// `logging.audit`, written as one YAML string: `stderr`, `off` or `file /path/to/audit.log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum AuditOutput {
    #[default]
    Stderr,
    Off,
    /// An absolute path, appended to; opened at start-up.
    File(String),
}

impl TryFrom<String> for AuditOutput {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.trim() {
            "stderr" => Ok(AuditOutput::Stderr),
            "off" => Ok(AuditOutput::Off),
            other => match other.strip_prefix("file ").map(str::trim) {
                Some(path) if path.starts_with('/') => Ok(AuditOutput::File(path.to_string())),
                _ => Err(format!("`{text}` is not `stderr`, `off` or `file /absolute/path/to/audit.log`")),
            },
        }
    }
}

impl From<AuditOutput> for String {
    fn from(output: AuditOutput) -> String {
        match output {
            AuditOutput::Stderr => "stderr".into(),
            AuditOutput::Off => "off".into(),
            AuditOutput::File(path) => format!("file {path}"),
        }
    }
}

/// The admin API on `server.admin_listen` (`/admin/...`), behind a bearer token. Defaults: no token (the
/// admin API off), metrics open.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The bearer token of the admin API, at least [`ADMIN_TOKEN_MIN_CHARS`] characters. Absent: the admin
    /// API is off (its paths answer 404); `/healthz`, `/readyz` and `/metrics` answer as always.
    pub token: Option<SecretSource>,
    /// Require the token for `/metrics` too. `/healthz` and `/readyz` stay open for probes.
    pub protect_metrics: bool,
}

/// The shortest admin token accepted: 32 characters (e.g. `openssl rand -hex 32` gives 64).
pub const ADMIN_TOKEN_MIN_CHARS: usize = 32;
/// W3C trace context: every request continues a valid incoming `traceparent` or starts a trace, and IB is sent
/// the gateway's span as the parent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The share of new traces (requests without a valid `traceparent`) marked sampled, 0 to 1. A request that
    /// continues a trace keeps its caller's decision.
    pub sample_ratio: f64,
    /// OTLP/HTTP (protobuf) traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`, used as written.
    /// Absent: no span is exported (and none is made).
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// How long spans wait in the batch before they are sent.
    pub export_delay_ms: u64,
    /// How long one export may take (a slow collector never holds up a request, only the batch).
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            sample_ratio: 1.0,
            otlp_endpoint: None,
            service_name: "ib-oauth-gateway".into(),
            export_delay_ms: 5_000,
            export_timeout_ms: 10_000,
        }
    }
}
