//! The configuration as the gateway runs on it: the file's shape ([`Config`], checked by
//! [`crate::config::load_all`]) turned once into typed, resolved values by `Settings::try_from` — the signing
//! keys parsed, the OAuth clients' secrets and the admin token read, the extra CA file read and parsed, the
//! RFC 8707 resources parsed, the Client ID Metadata Document fetcher built.
//! Start-up (`server::run`), a reload (`server::reload`) and `check-config`/`print-config` (`main`) all go
//! through it, so each value is parsed in one place, once per reading of the file, and nothing downstream
//! parses a string of the configuration again. (Addresses and networks are typed by the schema itself:
//! `config::ListenAddr`, `config::Network`.)

use std::sync::Arc;

use std::time::Duration;

use crate::auth::clients::ClientRegistry;
use crate::cimd::cache::FetchLimitSettings;
use crate::cimd::{CimdSettings, DocumentFetcher};
use crate::config::{ClientMetadataDocumentsConfig, Config, ConfigError, ConfigErrors, Secret};
use crate::ib::{ExtraCas, IbSetupError};
use crate::keys::{KeyError, SigningKeys};
use crate::resource::Resources;

/// Everything the running gateway takes from one reading of the configuration file.
pub struct Settings {
    /// The file as validated; what needs no further parsing is read from here.
    pub config: Arc<Config>,
    /// `signing`: the configured keys, parsed; with no `signing.current`, a key made for this reading alone
    /// (`ephemeral_key`). A reload keeps the running keys (they need a restart) and drops these.
    pub keys: Arc<SigningKeys>,
    pub ephemeral_key: bool,
    /// `oauth.clients`, with their secrets read.
    pub clients: ClientRegistry,
    /// `admin.token`, read.
    pub admin_token: Option<Secret>,
    /// `platforms.extra_ca_file`, read and parsed.
    pub extra_cas: Option<ExtraCas>,
    /// `server.public_url` and `oauth.resources`, as RFC 8707 resource identifiers.
    pub resources: Arc<Resources>,
    /// `oauth.client_id_metadata_documents`, when enabled: the fetcher and the resolver's settings.
    pub metadata_documents: Option<MetadataDocuments>,
}

/// How Client ID Metadata Documents are fetched and kept.
#[derive(Debug, Clone)]
pub struct MetadataDocuments {
    pub fetcher: DocumentFetcher,
    pub settings: CimdSettings,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("keys", &self.keys)
            .field("ephemeral_key", &self.ephemeral_key)
            .field("admin_token", &self.admin_token)
            .field("extra_cas", &self.extra_cas.is_some())
            .finish_non_exhaustive()
    }
}

impl TryFrom<Config> for Settings {
    type Error = ConfigErrors;

    /// Every problem is reported (each names its key), not only the first.
    fn try_from(config: Config) -> Result<Self, ConfigErrors> {
        let mut problems = Vec::new();
        let keys = SigningKeys::from_config(&config.signing).map_err(|e| problems.push(key_problem(e))).ok();
        let clients = ClientRegistry::from_config(&config.oauth.clients)
            .map_err(|e| problems.push(ConfigError { key: "oauth.clients".into(), message: e.to_string() }))
            .ok();
        let admin_token = config.admin.token.as_ref().map(|source| source.resolve()).transpose();
        let admin_token = admin_token
            .map_err(|e| problems.push(ConfigError { key: "admin.token".into(), message: e.to_string() }))
            .ok();
        let extra_cas = ExtraCas::read(&config).map_err(|e| problems.push(ca_problem(e))).ok();
        let public_url = crate::auth::access_token::audience(&config);
        let resources = Resources::new(&public_url, &config.oauth.resources)
            .map_err(|e| problems.push(ConfigError { key: e.which.clone(), message: e.error.to_string() }))
            .ok();
        let servers = clients.as_ref().map(ClientRegistry::exchange_resources).unwrap_or_default();
        let resources = resources.and_then(|resources| {
            resources
                .with_servers(servers)
                .map_err(|own| {
                    let message =
                        format!("`{own}` is one of the gateway's own resources: the proxy would accept its tokens");
                    problems.push(ConfigError { key: "oauth.clients[].token_exchange_resource".into(), message })
                })
                .ok()
        });
        let documents =
            metadata_documents(&config.oauth.client_id_metadata_documents).map_err(|e| problems.push(e)).ok();
        match (keys, clients, admin_token, extra_cas, resources, documents) {
            (
                Some((keys, ephemeral_key)),
                Some(clients),
                Some(admin_token),
                Some(extra_cas),
                Some(resources),
                Some(metadata_documents),
            ) => Ok(Settings {
                config: Arc::new(config),
                keys: Arc::new(keys),
                ephemeral_key,
                clients,
                admin_token,
                extra_cas,
                resources: Arc::new(resources),
                metadata_documents,
            }),
            _ => Err(ConfigErrors::collect(problems).expect("every conversion that failed left its problem")),
        }
    }
}

/// The fetcher and resolver settings of `oauth.client_id_metadata_documents` (`None` when turned off).
fn metadata_documents(config: &ClientMetadataDocumentsConfig) -> Result<Option<MetadataDocuments>, ConfigError> {
    const KEY: &str = "oauth.client_id_metadata_documents";
    if !config.enabled {
        return Ok(None);
    }
    let settings = CimdSettings {
        allowed_hosts: (!config.allowed_hosts.is_empty())
            .then(|| config.allowed_hosts.iter().map(|host| host.to_ascii_lowercase()).collect()),
        min_cache: Duration::from_secs(config.min_cache_seconds),
        max_cache: Duration::from_secs(config.max_cache_seconds),
        failure_cache: Duration::from_secs(config.failure_cache_seconds),
        max_entries: config.max_entries,
        limits: FetchLimitSettings {
            host_per_minute: config.fetches_per_host_per_minute,
            overall_per_minute: config.fetches_per_minute,
            ..FetchLimitSettings::default()
        },
    };
    let failed = |e: &dyn std::fmt::Display| ConfigError { key: KEY.into(), message: e.to_string() };
    #[cfg(feature = "mock")]
    {
        if let Some(path) = &config.test_only_trusted_ca_file {
            let key = format!("{KEY}.test_only_trusted_ca_file");
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError { key: key.clone(), message: format!("cannot read {path}: {e}") })?;
            let fetcher = DocumentFetcher::for_tests_only(&pem, crate::cimd::fetch::FETCH_TIMEOUT)
                .map_err(|e| ConfigError { key, message: e.to_string() })?;
            return Ok(Some(MetadataDocuments { fetcher, settings }));
        }
    }
    let fetcher = DocumentFetcher::new().map_err(|e| failed(&e))?;
    Ok(Some(MetadataDocuments { fetcher, settings }))
}

/// A key that does not parse names its setting; a failure of the crypto backend is about `signing` as a whole.
fn key_problem(error: KeyError) -> ConfigError {
    match error {
        KeyError::Setting { setting, problem } => ConfigError { key: setting, message: problem.to_string() },
        other => ConfigError { key: "signing".into(), message: other.to_string() },
    }
}

/// `IbSetupError`'s message starts with the key it is about; the key is said once.
fn ca_problem(error: IbSetupError) -> ConfigError {
    const KEY: &str = "platforms.extra_ca_file";
    let message = error.to_string();
    let message = message.strip_prefix(KEY).and_then(|m| m.strip_prefix(": ")).unwrap_or(&message).to_string();
    ConfigError { key: KEY.into(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<Settings, ConfigErrors> {
        let config = crate::config::load_str_all(&format!("server:\n  public_url: https://gw.example\n{yaml}"))?;
        Settings::try_from(config)
    }

    #[test]
    fn a_file_without_keys_or_secrets_gets_an_ephemeral_key_and_no_admin_token() {
        let settings = settings("").unwrap();
        assert!(settings.ephemeral_key);
        assert!(settings.admin_token.is_none() && settings.extra_cas.is_none());
    }

    #[test]
    fn every_unusable_value_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (pem, ca) = (dir.path().join("key.pem"), dir.path().join("ca.pem"));
        std::fs::write(&pem, "not a key").unwrap();
        std::fs::write(&ca, "not a certificate").unwrap();
        let errors = settings(&format!(
            "signing:\n  current:\n    kid: k1\n    private_key: file:{}\nplatforms:\n  extra_ca_file: {}\n",
            pem.display(),
            ca.display()
        ))
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["signing.current.private_key", "platforms.extra_ca_file"], "{errors}");
        assert!(!errors.to_string().contains("platforms.extra_ca_file: platforms.extra_ca_file"), "{errors}");
    }
}
