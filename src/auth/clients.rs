//! OAuth clients: those in the YAML (`oauth.clients`) and those registered at run time (RFC 7591, kept in
//! the store with a TTL). Redirect URIs match exactly, or against an anchored pattern whose only wildcard is
//! the port. Client secrets are compared in constant time and never logged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::cimd::{is_metadata_client_id, ClientMetadata, ClientMetadataResolver};
use crate::config::{ClientConfig, Secret};
use crate::errors::ApiError;
use crate::exchange::{Params, Request};
use crate::resource::{ResourceError, ResourceId};
use crate::store::{RecordKind, TokenStore};

/// A configured client that cannot be used: its secret cannot be read, or its token-exchange resource is not a
/// resource identifier (a start-up failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("oauth.clients `{client_id}`: client_secret: {source}")]
    Secret { client_id: String, source: crate::config::SecretError },
    #[error("oauth.clients `{client_id}`: token_exchange_resource: {source}")]
    Resource { client_id: String, source: ResourceError },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    #[serde(skip)]
    pub secret: Option<Secret>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub redirect_uri_patterns: Vec<String>,
    pub scopes: Vec<String>,
    pub ib_session_in_token_response: bool,
    #[serde(default)]
    pub client_name: Option<String>,
    /// Registered at run time (RFC 7591) or known by its metadata document, rather than configured.
    #[serde(default)]
    pub dynamic: bool,
    #[serde(default)]
    pub registered_at: u64,
    /// A Client ID Metadata Document client: the host its document was fetched from over TLS (the identity
    /// the sign-in page can vouch for). Never stored.
    #[serde(skip)]
    pub metadata_host: Option<String>,
    /// A configured resource server's resource (canonical): the audience of the tokens it may exchange
    /// (`oauth.clients[].token_exchange_resource`). Never stored.
    #[serde(skip)]
    pub exchange_resource: Option<ResourceId>,
}

/// `http://127.0.0.1:{port}/callback` for a loopback `http` URI (`127.0.0.1`, `[::1]`, `localhost`, with or
/// without a port), as a redirect pattern; `None` for any other URI.
fn any_loopback_port(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let host = url.host_str()?;
    if url.scheme() != "http" || !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
        return None;
    }
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("http://{host}:{{port}}{}{query}", url.path()))
}

fn port_matches(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0')
        && text.parse::<u32>().is_ok_and(|p| p <= 65_535)
}

impl Client {
    pub fn from_config(config: &ClientConfig) -> Result<Self, ClientError> {
        let secret = match &config.client_secret {
            Some(source) => Some(
                source
                    .resolve()
                    .map_err(|source| ClientError::Secret { client_id: config.client_id.clone(), source })?,
            ),
            None => None,
        };
        let exchange_resource = match &config.token_exchange_resource {
            Some(raw) => Some(
                ResourceId::parse(raw)
                    .map_err(|source| ClientError::Resource { client_id: config.client_id.clone(), source })?,
            ),
            None => None,
        };
        Ok(Client {
            client_id: config.client_id.clone(),
            secret,
            redirect_uris: config.redirect_uris.clone(),
            redirect_uri_patterns: config.redirect_uri_patterns.clone(),
            scopes: config.scopes.clone(),
            ib_session_in_token_response: config.ib_session_in_token_response,
            client_name: None,
            dynamic: false,
            registered_at: 0,
            metadata_host: None,
            exchange_resource,
        })
    }

    /// The client a resolved metadata document describes: public, its redirect URIs exact, the scopes the
    /// operator's policy gives clients that are not configured, and no IB session in its token responses.
    /// A loopback `http` redirect URI matches on any port (RFC 8252 §7.3: a native client listens on a port
    /// it gets at run time).
    pub fn from_metadata(metadata: &ClientMetadata, scopes: &[String]) -> Self {
        Client {
            client_id: metadata.client_id.clone(),
            secret: None,
            redirect_uris: metadata.redirect_uris.clone(),
            redirect_uri_patterns: metadata.redirect_uris.iter().filter_map(|uri| any_loopback_port(uri)).collect(),
            scopes: scopes.to_vec(),
            ib_session_in_token_response: false,
            client_name: metadata.client_name.clone(),
            dynamic: true,
            registered_at: 0,
            metadata_host: Some(metadata.host.clone()),
            exchange_resource: None,
        }
    }

    pub fn is_public(&self) -> bool {
        self.secret.is_none()
    }

    /// Exact string match, or a pattern `prefix{port}suffix` with a decimal port in between.
    pub fn redirect_uri_allowed(&self, uri: &str) -> bool {
        if self.redirect_uris.iter().any(|allowed| allowed == uri) {
            return true;
        }
        self.redirect_uri_patterns.iter().any(|pattern| {
            let Some((prefix, suffix)) = pattern.split_once("{port}") else {
                return false;
            };
            uri.len() > prefix.len() + suffix.len()
                && uri.starts_with(prefix)
                && uri.ends_with(suffix)
                && port_matches(&uri[prefix.len()..uri.len() - suffix.len()])
        })
    }

    fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret {
            Some(secret) => secret.matches(presented),
            None => false,
        }
    }
}

/// Where the client's credentials came from in a token-endpoint request.
struct Presented {
    client_id: String,
    secret: Option<String>,
    basic: bool,
}

fn presented_credentials(request: &Request, form: &Params) -> Result<Option<Presented>, ApiError> {
    let invalid = |d: &str| ApiError::InvalidClient { description: d.into(), basic: true };
    if let Some(header) = request.header("authorization") {
        let (scheme, encoded) = header.split_once(' ').ok_or_else(|| invalid("Malformed Authorization header"))?;
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| invalid("Malformed Basic credentials"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| invalid("Malformed Basic credentials"))?;
            let (id, secret) = decoded.split_once(':').ok_or_else(|| invalid("Malformed Basic credentials"))?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded.
            let id = Params::parse(&format!("v={id}"))?.required("v")?.to_string();
            let secret = Params::parse(&format!("v={secret}"))?.get("v")?.map(str::to_string);
            if form.get("client_secret")?.is_some() {
                return Err(ApiError::InvalidRequest("Use one client authentication method, not two".into()));
            }
            if let Some(form_id) = form.get("client_id")? {
                if form_id != id {
                    return Err(invalid("client_id does not match the Basic credentials"));
                }
            }
            return Ok(Some(Presented { client_id: id, secret, basic: true }));
        }
    }
    let Some(id) = form.get("client_id")? else {
        return Ok(None);
    };
    // A repeated client_secret is a malformed request (RFC 6749 §3.2), not a missing secret.
    let secret = form.get("client_secret")?.map(str::to_string);
    Ok(Some(Presented { client_id: id.to_string(), secret, basic: false }))
}

pub struct ClientRegistry {
    configured: HashMap<String, Arc<Client>>,
    /// Configured clients that may start a login without the sign-in page (`allow_headless_login`).
    /// Registered clients never may.
    headless: HashSet<String>,
    /// Resolves `client_id`s that are metadata document URLs (`oauth.client_id_metadata_documents`), with the
    /// scopes such clients get; `None`: such ids are unknown clients.
    metadata: Option<(ClientMetadataResolver, Vec<String>)>,
}

impl ClientRegistry {
    pub fn from_config(clients: &[ClientConfig]) -> Result<Self, ClientError> {
        let mut configured = HashMap::new();
        let mut headless = HashSet::new();
        for config in clients {
            configured.insert(config.client_id.clone(), Arc::new(Client::from_config(config)?));
            if config.headless_login_allowed() {
                headless.insert(config.client_id.clone());
            }
        }
        Ok(ClientRegistry { configured, headless, metadata: None })
    }

    /// Also knows the clients whose `client_id` is a metadata document URL, through `resolver`; they get
    /// `scopes` (`oauth.dynamic_client_scopes`).
    pub fn resolving_metadata_documents(mut self, resolver: ClientMetadataResolver, scopes: Vec<String>) -> Self {
        self.metadata = Some((resolver, scopes));
        self
    }

    /// The resources of the configured resource servers (`token_exchange_resource`): tokens may be issued for
    /// them, and the proxy never accepts those.
    pub fn exchange_resources(&self) -> Vec<ResourceId> {
        self.configured.values().filter_map(|client| client.exchange_resource.clone()).collect()
    }

    /// The metadata document resolver, if documents are on (kept across a reload that leaves them alone).
    pub fn metadata_resolver(&self) -> Option<&ClientMetadataResolver> {
        self.metadata.as_ref().map(|(resolver, _)| resolver)
    }

    /// May `client` start a login without the sign-in page? Only a configured client with
    /// `allow_headless_login` (by default the old bridge's `mcp-public-client`); never a registered one.
    pub fn allows_headless_login(&self, client: &Client) -> bool {
        !client.dynamic && self.headless.contains(&client.client_id)
    }

    /// The client `client_id` names: configured, known by its metadata document (fetched or kept; a document
    /// that cannot be used is `invalid_client` naming the rule it broke), or registered. `None`: unknown.
    pub async fn find(&self, store: &dyn TokenStore, client_id: &str) -> Result<Option<Arc<Client>>, ApiError> {
        if let Some(client) = self.configured.get(client_id) {
            return Ok(Some(client.clone()));
        }
        if is_metadata_client_id(client_id) {
            let Some((resolver, scopes)) = &self.metadata else { return Ok(None) };
            return match resolver.resolve(client_id).await {
                Ok(metadata) => Ok(Some(Arc::new(Client::from_metadata(&metadata, scopes)))),
                Err(e) => Err(ApiError::InvalidClient { description: e.to_string(), basic: false }),
            };
        }
        if client_id.len() > 128 || self.configured.is_empty() && client_id.is_empty() {
            return Ok(None);
        }
        let Some(bytes) = store.get_record(RecordKind::Client, client_id).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Client>(&bytes) {
            Ok(client) => Ok(Some(Arc::new(client))),
            Err(e) => {
                log::error!("registered client record is unreadable: {e}");
                Ok(None)
            }
        }
    }

    /// Authenticates the client of a token/revocation/introspection request (RFC 6749 §2.3):
    /// `client_secret_basic` or `client_secret_post` for confidential clients, `client_id` alone for public ones.
    pub async fn authenticate(
        &self,
        store: &dyn TokenStore,
        request: &Request,
        form: &Params,
    ) -> Result<Arc<Client>, ApiError> {
        let presented = presented_credentials(request, form)?.ok_or_else(|| ApiError::InvalidClient {
            description: "Client authentication required (client_id)".into(),
            basic: false,
        })?;
        let unknown = || ApiError::InvalidClient { description: "Unknown client".into(), basic: presented.basic };
        let client = self.find(store, &presented.client_id).await?.ok_or_else(unknown)?;
        match (&client.secret, &presented.secret) {
            (None, None) => Ok(client),
            (None, Some(_)) => Err(ApiError::InvalidClient {
                description: "This public client has no secret".into(),
                basic: presented.basic,
            }),
            (Some(_), Some(secret)) if client.secret_matches(secret) => Ok(client),
            (Some(_), _) => Err(ApiError::InvalidClient {
                description: "Client authentication failed".into(),
                basic: presented.basic,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            client_id: "c".into(),
            secret: None,
            redirect_uris: vec!["https://app.example.com/cb".into()],
            redirect_uri_patterns: vec!["http://127.0.0.1:{port}/callback".into()],
            scopes: vec!["profile".into()],
            ib_session_in_token_response: true,
            client_name: None,
            dynamic: false,
            registered_at: 0,
            metadata_host: None,
            exchange_resource: None,
        }
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = client();
        assert!(c.redirect_uri_allowed("https://app.example.com/cb"));
        for near in [
            "https://app.example.com/cb/",
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb#x",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/CB",
        ] {
            assert!(!c.redirect_uri_allowed(near), "{near}");
        }
    }

    #[test]
    fn a_loopback_redirect_uri_of_a_metadata_document_matches_any_port() {
        assert_eq!(any_loopback_port("http://127.0.0.1/callback").as_deref(), Some("http://127.0.0.1:{port}/callback"));
        assert_eq!(any_loopback_port("http://[::1]:8080/cb?x=1").as_deref(), Some("http://[::1]:{port}/cb?x=1"));
        assert_eq!(any_loopback_port("http://localhost:1/").as_deref(), Some("http://localhost:{port}/"));
        for other in ["https://127.0.0.1/callback", "http://127.0.0.2/callback", "http://agent.example/cb", "x"] {
            assert_eq!(any_loopback_port(other), None, "{other}");
        }
    }

    #[test]
    fn patterns_only_vary_the_port() {
        let c = client();
        assert!(c.redirect_uri_allowed("http://127.0.0.1:8765/callback"));
        for bad in [
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:80x/callback",
            "http://127.0.0.1:80/callback/../evil",
            "http://127.0.0.1:80@evil.com/callback",
            "http://127.0.0.1:8080/callbackx",
            "http://127.0.0.1:08080/callback",
        ] {
            assert!(!c.redirect_uri_allowed(bad), "{bad}");
        }
    }
}
