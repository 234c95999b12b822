//! Reading and validating the YAML file. Every error names the key (as a dotted path) and the problem; validation
//! reports every problem it finds, not only the first.

use super::*;
use url::Url;

/// What is wrong with a configuration, and where. `Display` gives the one line `check-config` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in file order: one for a file that cannot be read or parsed (YAML
/// syntax, an unknown key, a wrong type), every semantic one otherwise. Never empty. `Display` gives one line
/// per problem, as `check-config` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    pub fn one(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }

    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: there is at least one error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems found, or `None` when there are none.
    pub fn collect(errors: Vec<ConfigError>) -> Option<Self> {
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// The first problem, for callers that report one.
    pub fn into_first(self) -> ConfigError {
        self.0.into_iter().next().expect("ConfigErrors is never empty")
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One problem, printable on one line whatever the file held: control characters in the key (an unknown key
/// may be any string) are escaped, an empty key is named, and the message is flattened.
fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    let key: String = key.into().chars().flat_map(|c| c.escape_default().collect::<Vec<_>>()).collect();
    let key = match key.as_str() {
        "" | "." => "(top level)".to_string(),
        named if named.ends_with('.') => format!("{named}\"\""),
        _ => key,
    };
    ConfigError { key, message: one_line(&message.into()) }
}

/// Loads and validates a configuration file; the first problem only (see [`load_all`]).
pub fn load(path: &str) -> Result<Config, ConfigError> {
    load_all(path).map_err(ConfigErrors::into_first)
}

/// Parses and validates configuration text; the first problem only (see [`load_str_all`]).
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    load_str_all(text).map_err(ConfigErrors::into_first)
}

/// Loads and validates a configuration file, reporting every problem. An unreadable file is one error whose
/// key is the path itself.
pub fn load_all(path: &str) -> Result<Config, ConfigErrors> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigErrors::one(err(path, format!("cannot read file: {e}"))))?;
    load_str_all(&text)
}

/// Parses and validates configuration text, reporting every semantic problem. Parsing stops at the first
/// syntax or type error (serde cannot go on past it), so such a file reports that one alone.
pub fn load_str_all(text: &str) -> Result<Config, ConfigErrors> {
    let deserializer = serde_norway::Deserializer::from_str(text);
    let config: Config = serde_path_to_error::deserialize(deserializer)
        .map_err(|e| ConfigErrors::one(err(e.path().to_string(), e.into_inner().to_string())))?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(problems))
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Collects what is wrong; each check runs whatever the others found.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(err(key, message));
    }

    /// Records the error of `result`, if any, and gives its value back.
    fn note<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }
}

fn validate(config: &Config) -> Vec<ConfigError> {
    let mut problems = Problems::default();
    validate_server(&config.server, &mut problems);
    validate_store(&config.store, &mut problems);
    validate_tokens(&config.tokens, &mut problems);
    validate_signing(&config.signing, &mut problems);
    let hours = config.session.default_login_timeout_hours;
    if !(1..=120).contains(&hours) {
        problems.add("session.default_login_timeout_hours", format!("{hours} is outside IB's 1 to 120 hours"));
    }
    validate_platforms(&config.platforms, &mut problems);
    validate_upstream(&config.upstream, &mut problems);
    validate_oauth(&config.oauth, &mut problems);
    validate_cors(&config.cors, &mut problems);
    let shared_limits = matches!(config.rate_limits.backend, RateLimitBackend::Redis | RateLimitBackend::Approximate);
    if shared_limits && config.store.backend != StoreBackend::Redis {
        let backend = if config.rate_limits.backend == RateLimitBackend::Redis { "redis" } else { "approximate" };
        problems.add("rate_limits.backend", format!("`{backend}` needs store.backend: redis"));
    }
    if !(10..=10_000).contains(&config.rate_limits.sync_interval_ms) {
        problems.add("rate_limits.sync_interval_ms", "must be 10 to 10000");
    }
    if config.logging.level.trim().is_empty() {
        problems.add("logging.level", "must not be empty");
    }
    if config.logging.audit_failure_threshold > 0 && config.logging.audit_failure_window_seconds == 0 {
        problems.add("logging.audit_failure_window_seconds", "must be at least 1 (or set audit_failure_threshold: 0)");
    }
    validate_admin(&config.admin, &mut problems);
    validate_tracing(&config.tracing, &mut problems);
    problems.0
}

/// The admin token travels in an `Authorization` header: visible ASCII, long enough not to be guessed.
fn validate_admin(admin: &AdminConfig, problems: &mut Problems) {
    let Some(token) = &admin.token else {
        if admin.protect_metrics {
            problems.add("admin.protect_metrics", "needs admin.token (else /metrics could never be read)");
        }
        return;
    };
    match token.resolve() {
        Err(e) => problems.add("admin.token", e.to_string()),
        Ok(token) if token.expose().len() < ADMIN_TOKEN_MIN_CHARS || !token.expose().is_ascii() => problems.add(
            "admin.token",
            format!("must be at least {ADMIN_TOKEN_MIN_CHARS} characters (e.g. `openssl rand -hex 32`)"),
        ),
        Ok(token) if !token.expose().bytes().all(|b| b.is_ascii_graphic()) => {
            problems.add("admin.token", "must be visible ASCII without spaces (it is sent in a header)")
        }
        Ok(_) => {}
    }
}

fn validate_tracing(tracing: &TracingConfig, problems: &mut Problems) {
    let ratio = tracing.sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        problems.add("tracing.sample_ratio", format!("{ratio} is not between 0 and 1"));
    }
    if let Some(endpoint) = &tracing.otlp_endpoint {
        let usable =
            Url::parse(endpoint).is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some());
        if !usable {
            problems.add(
                "tracing.otlp_endpoint",
                format!("`{endpoint}` is not a URL like http://127.0.0.1:4318/v1/traces"),
            );
        }
    }
    if tracing.service_name.trim().is_empty() {
        problems.add("tracing.service_name", "must not be empty");
    }
    if !(1..=600_000).contains(&tracing.export_delay_ms) {
        problems.add("tracing.export_delay_ms", "must be 1 to 600000");
    }
    if !(1..=120_000).contains(&tracing.export_timeout_ms) {
        problems.add("tracing.export_timeout_ms", "must be 1 to 120000");
    }
}

fn listen_addr(key: &str, addr: &ListenAddr) -> Result<(), ConfigError> {
    match addr.addr() {
        Some(_) => Ok(()),
        None => Err(err(key, format!("`{addr}` is not an address like 0.0.0.0:8080"))),
    }
}

fn file_exists(key: &str, path: &str) -> Result<(), ConfigError> {
    if std::path::Path::new(path).is_file() {
        Ok(())
    } else {
        Err(err(key, format!("file {path} does not exist")))
    }
}

fn validate_server(server: &ServerConfig, problems: &mut Problems) {
    if server.listen.is_empty() && server.tls.is_none() {
        problems.add("server.listen", "at least one listen address is needed");
    }
    for (i, addr) in server.listen.iter().enumerate() {
        problems.note(listen_addr(&format!("server.listen[{i}]"), addr));
    }
    if let Some(tls) = &server.tls {
        if tls.listen.is_empty() {
            problems.add("server.tls.listen", "at least one TLS listen address is needed");
        }
        for (i, addr) in tls.listen.iter().enumerate() {
            problems.note(listen_addr(&format!("server.tls.listen[{i}]"), addr));
        }
        problems.note(file_exists("server.tls.cert_file", &tls.cert_file));
        problems.note(file_exists("server.tls.key_file", &tls.key_file));
    }
    problems.note(listen_addr("server.admin_listen", &server.admin_listen));
    match Url::parse(&server.public_url) {
        Err(_) if server.public_url.is_empty() => {
            problems.add("server.public_url", "is required: the public base URL clients use (the OAuth issuer)")
        }
        Err(e) => problems.add("server.public_url", format!("`{}` is not a URL: {e}", server.public_url)),
        Ok(url) if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() => {
            problems.add("server.public_url", "must be an absolute http(s) URL")
        }
        Ok(url) if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() => {
            problems.add("server.public_url", "must not carry a query, fragment or user name")
        }
        Ok(_) => {}
    }
    if server.threads == 0 {
        problems.add("server.threads", "must be at least 1");
    }
    if !(1..=10_000).contains(&server.http2.max_concurrent_streams) {
        problems.add("server.http2.max_concurrent_streams", "must be 1 to 10000");
    }
    if !(1024..=1 << 20).contains(&server.http2.max_header_list_size) {
        problems.add("server.http2.max_header_list_size", "must be 1024 to 1048576 bytes");
    }
    if server.max_form_body_bytes < 1024 {
        problems.add("server.max_form_body_bytes", "must be at least 1024");
    }
}

fn validate_store(store: &StoreConfig, problems: &mut Problems) {
    if store.memory.max_sessions == 0 {
        problems.add("store.memory.max_sessions", "must be at least 1");
    }
    if store.memory.max_records == 0 {
        problems.add("store.memory.max_records", "must be at least 1");
    }
    if store.memory.max_session_bytes < 1024 * 1024 {
        problems.add("store.memory.max_session_bytes", "must be at least 1048576 (1 MiB)");
    }
    if store.memory.max_record_bytes < 1024 * 1024 {
        problems.add("store.memory.max_record_bytes", "must be at least 1048576 (1 MiB)");
    }
    let redis = &store.redis;
    if redis.key_prefix.is_empty() || redis.key_prefix.contains(['{', '}', ' ']) {
        problems.add("store.redis.key_prefix", "must be non-empty, without braces or spaces");
    }
    if store.backend != StoreBackend::Redis {
        return;
    }
    if redis.urls.is_empty() {
        problems.add("store.redis.urls", "store.backend is redis but no URL is given");
    }
    for (i, raw) in redis.urls.iter().enumerate() {
        let key = format!("store.redis.urls[{i}]");
        match Url::parse(raw) {
            Err(e) => problems.add(key, format!("not a URL: {e}")),
            Ok(url) if !matches!(url.scheme(), "redis" | "rediss") => {
                problems.add(key, "scheme must be redis:// or rediss://")
            }
            Ok(url) if url.password().is_some() => {
                problems.add(key, "put the password in store.redis.password (a file or env secret), not in the URL")
            }
            Ok(_) => {}
        }
    }
    if redis.mode == RedisMode::Standalone && redis.urls.len() > 1 {
        problems.add("store.redis.urls", "standalone mode takes exactly one URL");
    }
    if redis.mode == RedisMode::Sentinel && redis.sentinel_master.is_empty() {
        problems.add("store.redis.sentinel_master", "must name the monitored master");
    }
    if let Some(password) = &redis.password {
        if let Err(e) = password.resolve() {
            problems.add("store.redis.password", e.to_string());
        }
    }
    if redis.connect_timeout_ms == 0 {
        problems.add("store.redis.connect_timeout_ms", "must be positive");
    }
    if redis.session_cache_max_age_ms == 0 {
        problems.add(
            "store.redis.session_cache_max_age_ms",
            "must be positive (turn the cache off with session_cache_max_entries: 0)",
        );
    }
    if redis.command_timeout_ms == 0 {
        problems.add("store.redis.command_timeout_ms", "must be positive");
    }
    if !(10..=60_000).contains(&redis.session_cache_heartbeat_ms) {
        problems.add("store.redis.session_cache_heartbeat_ms", "must be between 10 and 60000");
    }
}

fn validate_tokens(tokens: &TokenConfig, problems: &mut Problems) {
    let positive = [
        ("tokens.access_token_ttl_seconds", tokens.access_token_ttl_seconds),
        ("tokens.refresh_token_ttl_seconds", tokens.refresh_token_ttl_seconds),
        ("tokens.authorization_code_ttl_seconds", tokens.authorization_code_ttl_seconds),
        ("tokens.login_attempt_ttl_seconds", tokens.login_attempt_ttl_seconds),
    ];
    for (key, value) in positive {
        if value == 0 {
            problems.add(key, "must be positive");
        }
    }
    if tokens.authorization_code_ttl_seconds > 600 {
        problems.add("tokens.authorization_code_ttl_seconds", "RFC 6749 §4.1.2: at most 600 seconds");
    }
    if tokens.refresh_grace_seconds > 60 {
        problems.add("tokens.refresh_grace_seconds", "at most 60 seconds (a longer window weakens reuse detection)");
    }
    if tokens.leeway_seconds > 300 {
        problems.add("tokens.leeway_seconds", "at most 300 seconds");
    }
}

fn validate_signing(signing: &SigningConfig, problems: &mut Problems) {
    if let Some(current) = &signing.current {
        if current.kid.is_empty() {
            problems.add("signing.current.kid", "must not be empty");
        }
        if let Err(e) = current.private_key.resolve() {
            problems.add("signing.current.private_key", e.to_string());
        }
    }
    for (i, previous) in signing.previous.iter().enumerate() {
        let key = format!("signing.previous[{i}]");
        if previous.kid.is_empty() {
            problems.add(format!("{key}.kid"), "must not be empty");
        }
        let clashes_with_current = signing.current.as_ref().is_some_and(|c| c.kid == previous.kid);
        let repeated = signing.previous[..i].iter().any(|p| p.kid == previous.kid);
        if clashes_with_current || repeated {
            problems.add(format!("{key}.kid"), format!("kid `{}` is used twice", previous.kid));
        }
        if let Err(e) = previous.public_key.resolve() {
            problems.add(format!("{key}.public_key"), e.to_string());
        }
    }
    // Whether the PEM files hold keys of the right algorithm is checked by `keys` (the key parser sits above
    // the configuration, which knows nothing of key formats): at start-up and by `check-config`.
}

fn validate_platforms(platforms: &PlatformConfig, problems: &mut Problems) {
    if platforms.allowed_host_suffixes.is_empty() {
        problems.add("platforms.allowed_host_suffixes", "at least one suffix is needed");
    }
    for (i, suffix) in platforms.allowed_host_suffixes.iter().enumerate() {
        let bare = suffix.trim_start_matches('.');
        let valid = !bare.is_empty()
            && bare.contains('.')
            && bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            problems.add(
                format!("platforms.allowed_host_suffixes[{i}]"),
                format!("`{suffix}` is not a lowercase domain like .intelligencebank.com"),
            );
        }
    }
    if let Some(ca) = &platforms.extra_ca_file {
        problems.note(file_exists("platforms.extra_ca_file", ca));
    }
}

fn validate_upstream(upstream: &UpstreamConfig, problems: &mut Problems) {
    let positive = [
        ("upstream.connect_timeout_ms", upstream.connect_timeout_ms),
        ("upstream.read_timeout_ms", upstream.read_timeout_ms),
        ("upstream.write_timeout_ms", upstream.write_timeout_ms),
        ("upstream.idle_timeout_seconds", upstream.idle_timeout_seconds),
        ("upstream.pool_size", upstream.pool_size as u64),
        ("upstream.dns_cache_ttl_seconds", upstream.dns_cache_ttl_seconds),
    ];
    for (key, value) in positive {
        if value == 0 {
            problems.add(key, "must be positive");
        }
    }
    let http2 = &upstream.http2;
    if !(1..=1_000).contains(&http2.max_concurrent_streams) {
        problems.add("upstream.http2.max_concurrent_streams", "must be 1 to 1000");
    }
    if http2.ping_interval_seconds > 3_600 {
        problems.add("upstream.http2.ping_interval_seconds", "must be at most 3600 (0: no pings)");
    }
}

fn validate_oauth(oauth: &OAuthConfig, problems: &mut Problems) {
    if oauth.scopes_supported.is_empty() {
        problems.add("oauth.scopes_supported", "at least one scope is needed");
    }
    for (i, client) in oauth.clients.iter().enumerate() {
        let key = format!("oauth.clients[{i}]");
        if client.client_id.is_empty() {
            problems.add(format!("{key}.client_id"), "is required");
        } else if client.client_id.len() > 128 {
            problems.add(format!("{key}.client_id"), "must be 1 to 128 characters");
        }
        if oauth.clients[..i].iter().any(|c| c.client_id == client.client_id) {
            problems.add(format!("{key}.client_id"), format!("`{}` is defined twice", client.client_id));
        }
        if client.redirect_uris.is_empty() && client.redirect_uri_patterns.is_empty() {
            problems.add(format!("{key}.redirect_uris"), "a client needs at least one redirect URI or pattern");
        }
        for (j, uri) in client.redirect_uris.iter().enumerate() {
            if let Err(m) = check_redirect_uri(uri) {
                problems.add(format!("{key}.redirect_uris[{j}]"), m);
            }
        }
        for (j, pattern) in client.redirect_uri_patterns.iter().enumerate() {
            if let Err(m) = check_redirect_pattern(pattern) {
                problems.add(format!("{key}.redirect_uri_patterns[{j}]"), m);
            }
        }
        if let Some(unknown) = client.scopes.iter().find(|s| !oauth.scopes_supported.contains(s)) {
            problems.add(format!("{key}.scopes"), format!("`{unknown}` is not in oauth.scopes_supported"));
        }
        if client.token_exchange_resource.is_some() && client.client_secret.is_none() {
            problems.add(
                format!("{key}.token_exchange_resource"),
                "token exchange needs a confidential client (client_secret)",
            );
        }
        if let Some(secret) = &client.client_secret {
            match secret.resolve() {
                Err(e) => problems.add(format!("{key}.client_secret"), e.to_string()),
                Ok(resolved) if resolved.expose().len() < 16 => {
                    problems.add(format!("{key}.client_secret"), "must be at least 16 characters")
                }
                Ok(_) => {}
            }
        }
    }
    if let Some(dynamic) = &oauth.dynamic_client_scopes {
        if let Some(unknown) = dynamic.iter().find(|s| !oauth.scopes_supported.contains(s)) {
            problems.add("oauth.dynamic_client_scopes", format!("`{unknown}` is not in oauth.scopes_supported"));
        }
    }
    let documents = &oauth.client_id_metadata_documents;
    let key = "oauth.client_id_metadata_documents";
    if documents.min_cache_seconds == 0 || documents.min_cache_seconds > documents.max_cache_seconds {
        problems.add(format!("{key}.min_cache_seconds"), "must be positive and at most max_cache_seconds");
    }
    if documents.max_entries == 0 {
        problems.add(format!("{key}.max_entries"), "must be positive (turn documents off with enabled: false)");
    }
    if documents.fetches_per_host_per_minute == 0 || documents.fetches_per_minute == 0 {
        problems.add(format!("{key}.fetches_per_minute"), "fetch limits must be positive");
    }
    if let Some(host) = documents.allowed_hosts.iter().find(|h| h.is_empty() || h.contains(['/', ':', ' '])) {
        problems.add(format!("{key}.allowed_hosts"), format!("`{host}` is not a host name"));
    }
    if oauth.registration.client_ttl_seconds == 0 {
        problems.add("oauth.registration.client_ttl_seconds", "must be positive");
    }
}

/// A redirect URI must be absolute, without fragment, and https unless it points at the loopback interface.
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URL: {e}"))?;
    if url.fragment().is_some() {
        return Err("must not contain a fragment".into());
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")) => Ok(()),
        _ => Err("must be https, or http on localhost/127.0.0.1/[::1]".into()),
    }
}

fn check_redirect_pattern(pattern: &str) -> Result<(), String> {
    let misplaced =
        || "`{port}` may only stand in the port position, e.g. http://127.0.0.1:{port}/callback".to_string();
    if pattern.matches("{port}").count() != 1 {
        return Err("a pattern has exactly one `{port}` wildcard".into());
    }
    let (before, after) = pattern.split_once("{port}").ok_or_else(misplaced)?;
    let host = before.split_once("://").map(|(_, rest)| rest).ok_or_else(misplaced)?;
    let host = host.strip_suffix(':').ok_or_else(misplaced)?;
    if host.is_empty() || host.contains(['/', '@', ':']) || !(after.is_empty() || after.starts_with('/')) {
        return Err(misplaced());
    }
    check_redirect_uri(&pattern.replace("{port}", "1"))
}

fn validate_cors(cors: &CorsConfig, problems: &mut Problems) {
    let wildcard = cors.allowed_origins.iter().any(|o| o == "*");
    if wildcard && cors.allow_credentials {
        problems.add("cors.allow_credentials", "cannot be true while allowed_origins contains `*`");
    }
    for (i, origin) in cors.allowed_origins.iter().enumerate().filter(|(_, o)| *o != "*") {
        let parsed = Url::parse(origin).ok();
        let is_origin = parsed.is_some_and(|u| u.host_str().is_some() && u.path() == "/" && !origin.ends_with('/'));
        if !is_origin {
            problems.add(
                format!("cors.allowed_origins[{i}]"),
                format!("`{origin}` is not an origin like https://app.example.com"),
            );
        }
    }
    for (i, method) in cors.allowed_methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.add(format!("cors.allowed_methods[{i}]"), format!("`{method}` is not an HTTP method"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "server:\n  public_url: https://auth.example.com\n";

    #[test]
    fn minimal_file_takes_every_default() {
        let config = load_str(MINIMAL).unwrap();
        assert_eq!(config.store.backend, StoreBackend::Memory);
        assert_eq!(config.signing.algorithm, SigningAlgorithm::EdDSA);
        assert_eq!(config.rate_limits.per_session_per_minute, 600);
        assert_eq!(config.oauth.clients[0].client_id, "mcp-public-client");
        assert_eq!(config.session.near_expiry_margin_seconds, 300);
    }

    #[test]
    fn upstream_http2_is_off_by_default_and_its_limits_are_checked() {
        let http2 = load_str(MINIMAL).unwrap().upstream.http2;
        assert!(!http2.enabled);
        assert_eq!((http2.max_concurrent_streams, http2.ping_interval_seconds), (100, 30));
        let with = |yaml: &str| load_str(&format!("{MINIMAL}upstream:\n  http2: {yaml}\n"));
        let on = with("{enabled: true, max_concurrent_streams: 8, ping_interval_seconds: 0}").unwrap();
        assert!(on.upstream.http2.enabled);
        assert_eq!(on.upstream.http2.max_concurrent_streams, 8);
        for (bad, key) in [
            ("{max_concurrent_streams: 0}", "upstream.http2.max_concurrent_streams"),
            ("{max_concurrent_streams: 1001}", "upstream.http2.max_concurrent_streams"),
            ("{ping_interval_seconds: 3601}", "upstream.http2.ping_interval_seconds"),
        ] {
            assert_eq!(with(bad).unwrap_err().key, key, "{bad}");
        }
        assert!(with("{enable: true}").is_err(), "unknown keys are named");
    }

    #[test]
    fn audit_output_is_stderr_off_or_an_absolute_file() {
        let audit = |value: &str| load_str(&format!("{MINIMAL}logging:\n  audit: {value}\n")).map(|c| c.logging.audit);
        assert_eq!(load_str(MINIMAL).unwrap().logging.audit, AuditOutput::Stderr);
        assert_eq!(audit("stderr").unwrap(), AuditOutput::Stderr);
        assert_eq!(audit("off").unwrap(), AuditOutput::Off);
        assert_eq!(audit("file /var/log/ibgw/audit.log").unwrap(), AuditOutput::File("/var/log/ibgw/audit.log".into()));
        for bad in ["syslog", "file", "file relative/audit.log", "/var/log/audit.log", "true"] {
            assert_eq!(audit(bad).unwrap_err().key, "logging.audit", "{bad}");
        }
        let e = audit("syslog").unwrap_err();
        assert!(e.message.contains("`stderr`, `off` or `file /absolute/path/to/audit.log`"), "{e}");
        let e = load_str(&format!("{MINIMAL}logging:\n  audit_failure_window_seconds: 0\n")).unwrap_err();
        assert_eq!(e.key, "logging.audit_failure_window_seconds");
    }

    #[test]
    fn headless_login_defaults_to_allowed_only_for_the_legacy_public_client() {
        assert!(load_str(MINIMAL).unwrap().oauth.clients[0].headless_login_allowed());
        let clients = [
            "    - {client_id: mcp-public-client, redirect_uris: ['https://a.example/cb']}",
            "    - {client_id: other, redirect_uris: ['https://a.example/cb']}",
            "    - {client_id: headless, redirect_uris: ['https://a.example/cb'], allow_headless_login: true}",
            "    - {client_id: mcp-public-client-2, redirect_uris: ['https://a.example/cb'], allow_headless_login: false}",
        ];
        let config = load_str(&format!("{MINIMAL}oauth:\n  clients:\n{}\n", clients.join("\n"))).unwrap();
        let allowed: Vec<bool> = config.oauth.clients.iter().map(|c| c.headless_login_allowed()).collect();
        assert_eq!(allowed, [true, false, true, false]);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load_str("server:\n  public_url: https://a.example\n  lisen: []\n").unwrap_err();
        assert_eq!(e.key, "server.lisen");
        assert!(e.message.contains("lisen"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let e = load_str("server:\n  public_url: https://a.example\ntokens:\n  max_refresh_count: lots\n").unwrap_err();
        assert_eq!(e.key, "tokens.max_refresh_count");
    }

    #[test]
    fn missing_required_key_is_reported() {
        let e = load_str("server:\n  listen: ['0.0.0.0:1']\n").unwrap_err();
        assert!(e.to_string().contains("public_url"), "{e}");
    }

    #[test]
    fn required_keys_without_a_default_are_named() {
        let e = load_str("logging:\n  level: info\n").unwrap_err();
        assert_eq!((e.key.as_str(), e.message.contains("required")), ("server.public_url", true), "{e}");
        let client = "oauth:\n  clients:\n    - redirect_uris: ['https://a.example/cb']\n";
        let e = load_str(&format!("{MINIMAL}{client}")).unwrap_err();
        assert_eq!((e.key.as_str(), e.message.as_str()), ("oauth.clients[0].client_id", "is required"));
    }

    #[test]
    fn redis_backend_without_url_is_refused() {
        let e = load_str(&format!("{MINIMAL}store:\n  backend: redis\n")).unwrap_err();
        assert_eq!(e.key, "store.redis.urls");
    }

    #[test]
    fn credentials_with_wildcard_origin_are_refused() {
        let e = load_str(&format!("{MINIMAL}cors:\n  allow_credentials: true\n")).unwrap_err();
        assert_eq!(e.key, "cors.allow_credentials");
    }

    #[test]
    fn login_timeout_default_outside_ib_range_is_refused() {
        let e = load_str(&format!("{MINIMAL}session:\n  default_login_timeout_hours: 121\n")).unwrap_err();
        assert_eq!(e.key, "session.default_login_timeout_hours");
    }

    #[test]
    fn redirect_patterns_only_wildcard_the_port() {
        assert!(check_redirect_pattern("http://127.0.0.1:{port}/callback").is_ok());
        assert!(check_redirect_pattern("http://{port}.example.com/callback").is_err());
        assert!(check_redirect_pattern("https://example.com/{port}").is_err());
        assert!(check_redirect_pattern("http://evil.com:{port}/callback").is_err());
    }

    #[test]
    fn redirect_uri_must_be_https_or_loopback() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:3000/cb").is_ok());
        assert!(check_redirect_uri("http://app.example.com/cb").is_err());
        assert!(check_redirect_uri("https://app.example.com/cb#x").is_err());
        assert!(check_redirect_uri("/relative").is_err());
    }

    #[test]
    fn tracing_values_are_checked_key_by_key() {
        let text = format!(
            "{MINIMAL}tracing:\n  sample_ratio: 1.5\n  otlp_endpoint: collector:4318\n  service_name: ''\n  \
             export_delay_ms: 0\n  export_timeout_ms: 0\n"
        );
        let errors = load_str_all(&text).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tracing.sample_ratio",
                "tracing.otlp_endpoint",
                "tracing.service_name",
                "tracing.export_delay_ms",
                "tracing.export_timeout_ms"
            ]
        );
        let fine =
            format!("{MINIMAL}tracing:\n  sample_ratio: 0\n  otlp_endpoint: https://otel.example:4318/v1/traces\n");
        assert!(load_str(&fine).is_ok());
    }

    #[test]
    fn every_semantic_error_is_reported_in_file_order() {
        let text = format!(
            "{MINIMAL}  threads: 0\ntokens:\n  leeway_seconds: 301\ncors:\n  allowed_methods: [get]\nlogging:\n  level: ' '\n"
        );
        let errors = load_str_all(&text).unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["server.threads", "tokens.leeway_seconds", "cors.allowed_methods[0]", "logging.level"]);
        assert_eq!(errors.to_string().lines().count(), 4, "{errors}");
        assert_eq!(load_str(&text).unwrap_err().key, "server.threads", "load_str keeps reporting the first");
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        let errors = load_str_all("server: [unclosed\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
    }

    #[test]
    fn an_unreadable_file_is_one_error_keyed_by_its_path() {
        let errors = load_all("/nonexistent/gateway.yaml").unwrap_err();
        assert_eq!(errors.len(), 1);
        let error = errors.into_first();
        assert_eq!(error.key, "/nonexistent/gateway.yaml");
        assert_eq!(error.to_string().matches("/nonexistent").count(), 1, "{error}");
    }

    #[test]
    fn a_short_admin_token_is_refused_naming_the_key() {
        let e = load_str(&format!("{MINIMAL}admin:\n  token: too-short\n")).unwrap_err();
        assert_eq!(e.key, "admin.token");
        assert!(e.message.contains("at least 32 characters"), "{e}");
        assert!(!e.message.contains("too-short"), "the error never shows the token: {e}");
        let e = load_str(&format!("{MINIMAL}admin:\n  token: '{}'\n", "with space ".repeat(4))).unwrap_err();
        assert_eq!(e.key, "admin.token");
        let config = load_str(&format!("{MINIMAL}admin:\n  token: {}\n", "a".repeat(32))).unwrap();
        assert!(config.admin.token.is_some() && !config.admin.protect_metrics);
        assert!(load_str(MINIMAL).unwrap().admin.token.is_none(), "no token by default: the admin API is off");
        let e = load_str(&format!("{MINIMAL}admin:\n  protect_metrics: true\n")).unwrap_err();
        assert_eq!(e.key, "admin.protect_metrics");
    }

    #[test]
    fn secret_from_missing_env_names_the_key() {
        let text = format!(
            "{MINIMAL}store:\n  backend: redis\n  redis:\n    urls: [redis://127.0.0.1:6379]\n    password: {{env: IBGW_NOPE_UNSET}}\n"
        );
        let e = load_str(&text).unwrap_err();
        assert_eq!(e.key, "store.redis.password");
        assert!(e.message.contains("IBGW_NOPE_UNSET"));
    }
}
