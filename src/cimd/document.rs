//! The rules a fetched Client ID Metadata Document must keep before its client may use the gateway:
//! its `client_id` is the URL it came from, byte for byte; it is a public client (no secret, no secret-based
//! authentication method); its `redirect_uris` are `https`, or `http` loopback callbacks on any port (RFC 8252
//! §7.3); its `grant_types` and `response_types` are ones the gateway serves. `client_name`, `client_uri`
//! and `logo_uri` are kept as the client's own, unverified claims for display.
//!
//! Pure: no I/O. An error names the rule and never echoes the document's text (it is attacker-controlled and
//! becomes an `invalid_client` description).

use serde_json::{Map, Value};
use url::Url;

use super::client_id::MetadataUrl;

/// Longest `client_name` kept for display (in characters); a longer name is refused, not cut.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;

/// The grant types a metadata document may ask for.
pub const ALLOWED_GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];

/// Why a document is refused. `Display` is the `invalid_client` description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("Client metadata document is not a JSON object")]
    NotJsonObject,
    #[error("Client metadata document has no client_id")]
    ClientIdMissing,
    #[error("Client metadata document's client_id does not equal its URL")]
    ClientIdMismatch,
    #[error("Client metadata document must not contain a client_secret (a public client only)")]
    ClientSecretPresent,
    #[error(
        "Client metadata document's token_endpoint_auth_method must be none: secret-based methods are not allowed"
    )]
    SharedSecretAuthMethod,
    #[error("Client metadata document's token_endpoint_auth_method must be none")]
    UnsupportedAuthMethod,
    #[error("Client metadata document must list at least one redirect_uri")]
    RedirectUrisMissing,
    #[error(
        "Client metadata document's redirect_uris must be https URLs or http loopback callbacks without a fragment"
    )]
    RedirectUriNotAllowed,
    #[error("Client metadata document's grant_types may only be authorization_code and refresh_token")]
    GrantTypeNotAllowed,
    #[error("Client metadata document's response_types may only be code")]
    ResponseTypeNotAllowed,
    /// A display field of the wrong type, too long, or with control characters; names the field.
    #[error("Client metadata document's {0} is not a usable display value")]
    DisplayField(&'static str),
}

/// A client resolved from its metadata document. Only `client_id` and `redirect_uris` are binding; the
/// display fields are the client's own claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// The document's URL, which is the `client_id`.
    pub client_id: String,
    /// The URL's host: the identity the consent line may present as verified (the gateway fetched the
    /// document from it over TLS).
    pub host: String,
    pub redirect_uris: Vec<String>,
    /// As listed, or `["authorization_code"]` when absent (RFC 7591 §2).
    pub grant_types: Vec<String>,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
}

impl ClientMetadata {
    pub fn allows_redirect_uri(&self, redirect_uri: &str) -> bool {
        self.redirect_uris.iter().any(|allowed| allowed == redirect_uri)
    }

    pub fn allows_refresh(&self) -> bool {
        self.grant_types.iter().any(|grant| grant == "refresh_token")
    }
}

/// Checks the document fetched from `url` (a JSON body) and keeps what the gateway uses.
pub fn validate(url: &MetadataUrl, body: &[u8]) -> Result<ClientMetadata, DocumentError> {
    let document: Map<String, Value> = serde_json::from_slice(body).map_err(|_| DocumentError::NotJsonObject)?;
    match document.get("client_id") {
        None | Some(Value::Null) => return Err(DocumentError::ClientIdMissing),
        Some(Value::String(id)) if id == url.as_str() => {}
        Some(_) => return Err(DocumentError::ClientIdMismatch),
    }
    if document.contains_key("client_secret") || document.contains_key("client_secret_expires_at") {
        return Err(DocumentError::ClientSecretPresent);
    }
    match document.get("token_endpoint_auth_method") {
        None | Some(Value::Null) => {}
        Some(Value::String(method)) if method == "none" => {}
        Some(Value::String(method)) if method.starts_with("client_secret_") => {
            return Err(DocumentError::SharedSecretAuthMethod)
        }
        Some(_) => return Err(DocumentError::UnsupportedAuthMethod),
    }
    let redirect_uris = strings(document.get("redirect_uris")).ok_or(DocumentError::RedirectUrisMissing)?;
    if redirect_uris.is_empty() {
        return Err(DocumentError::RedirectUrisMissing);
    }
    if !redirect_uris.iter().all(|uri| is_allowed_redirect_uri(uri)) {
        return Err(DocumentError::RedirectUriNotAllowed);
    }
    let grant_types = match document.get("grant_types") {
        None | Some(Value::Null) => vec!["authorization_code".to_string()],
        listed => strings(listed).ok_or(DocumentError::GrantTypeNotAllowed)?,
    };
    if grant_types.is_empty() || !grant_types.iter().all(|g| ALLOWED_GRANT_TYPES.contains(&g.as_str())) {
        return Err(DocumentError::GrantTypeNotAllowed);
    }
    match document.get("response_types") {
        None | Some(Value::Null) => {}
        listed => match strings(listed) {
            Some(types) if !types.is_empty() && types.iter().all(|t| t == "code") => {}
            _ => return Err(DocumentError::ResponseTypeNotAllowed),
        },
    }
    Ok(ClientMetadata {
        client_id: url.as_str().to_string(),
        host: url.host().to_string(),
        redirect_uris,
        grant_types,
        client_name: display_name(&document)?,
        client_uri: display_url(&document, "client_uri")?,
        logo_uri: display_url(&document, "logo_uri")?,
    })
}

/// A JSON array of strings, else `None`.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?.as_array()?.iter().map(|item| item.as_str().map(str::to_string)).collect()
}

/// `https` anywhere, or an `http` loopback callback with any port (RFC 8252 §7.3); never a fragment or
/// userinfo, and always written as the URL parser writes it (the authorization request must match it
/// byte for byte).
pub fn is_allowed_redirect_uri(uri: &str) -> bool {
    let Ok(url) = Url::parse(uri) else { return false };
    if url.fragment().is_some() || uri.contains('#') || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    // Canonical but for the empty root path the parser writes as `/`.
    let canonical = url.as_str() == uri || url.as_str().strip_suffix('/') == Some(uri);
    if !canonical || !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    match url.scheme() {
        "https" => url.host_str().is_some_and(|host| !host.is_empty()),
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost")),
        _ => false,
    }
}

fn display_name(document: &Map<String, Value>) -> Result<Option<String>, DocumentError> {
    match document.get("client_name") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name))
            if name.chars().count() <= MAX_CLIENT_NAME_CHARS && !name.chars().any(is_hidden_or_control) =>
        {
            Ok(Some(name.trim().to_string()).filter(|name| !name.is_empty()))
        }
        Some(_) => Err(DocumentError::DisplayField("client_name")),
    }
}

/// Characters that would hide or reorder what the consent page shows: controls, bidirectional overrides and
/// isolates, zero-width characters.
fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// An `https` URL for display (a link or an image the consent page may show), else refused.
fn display_url(document: &Map<String, Value>, field: &'static str) -> Result<Option<String>, DocumentError> {
    match document.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(uri))
            if uri.len() <= 2048
                && uri.bytes().all(|b| b.is_ascii_graphic())
                && Url::parse(uri).is_ok_and(|url| url.scheme() == "https" && url.username().is_empty()) =>
        {
            Ok(Some(uri.clone()))
        }
        Some(_) => Err(DocumentError::DisplayField(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "https://app.example.com/oauth/client.json";

    fn url() -> MetadataUrl {
        MetadataUrl::parse(URL).unwrap()
    }

    fn document() -> Value {
        json!({
            "client_id": URL,
            "client_name": "Example Agent",
            "client_uri": "https://app.example.com",
            "logo_uri": "https://app.example.com/logo.png",
            "redirect_uris": ["https://app.example.com/callback", "http://127.0.0.1/callback", "http://[::1]:33418/cb", "http://localhost:8080/"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        })
    }

    fn check(document: &Value) -> Result<ClientMetadata, DocumentError> {
        validate(&url(), document.to_string().as_bytes())
    }

    fn with(field: &str, value: Value) -> Value {
        let mut document = document();
        document[field] = value;
        document
    }

    fn without(field: &str) -> Value {
        let mut document = document();
        document.as_object_mut().unwrap().remove(field);
        document
    }

    #[test]
    fn a_good_document_resolves_with_its_display_data() {
        let client = check(&document()).unwrap();
        assert_eq!(client.client_id, URL);
        assert_eq!(client.host, "app.example.com");
        assert_eq!(client.redirect_uris.len(), 4);
        assert!(client.allows_redirect_uri("http://127.0.0.1/callback"));
        assert!(!client.allows_redirect_uri("http://127.0.0.1/callback/"));
        assert!(client.allows_refresh());
        assert_eq!(client.client_name.as_deref(), Some("Example Agent"));
        assert_eq!(client.logo_uri.as_deref(), Some("https://app.example.com/logo.png"));
    }

    #[test]
    fn a_minimal_document_is_an_authorization_code_client() {
        let minimal = json!({"client_id": URL, "redirect_uris": ["https://app.example.com/cb"]});
        let client = check(&minimal).unwrap();
        assert_eq!(client.grant_types, ["authorization_code"]);
        assert!(!client.allows_refresh());
        assert_eq!((client.client_name, client.client_uri, client.logo_uri), (None, None, None));
    }

    #[test]
    fn the_client_id_must_equal_the_url_byte_for_byte() {
        assert_eq!(check(&without("client_id")), Err(DocumentError::ClientIdMissing));
        for other in [
            json!("https://app.example.com/oauth/client.json/"),
            json!("https://APP.example.com/oauth/client.json"),
            json!("https://app.example.com:443/oauth/client.json"),
            json!("https://evil.example/oauth/client.json"),
            json!(["https://app.example.com/oauth/client.json"]),
            json!(1),
        ] {
            assert_eq!(check(&with("client_id", other.clone())), Err(DocumentError::ClientIdMismatch), "{other}");
        }
    }

    #[test]
    fn only_public_clients() {
        assert_eq!(check(&with("client_secret", json!("s3cret"))), Err(DocumentError::ClientSecretPresent));
        assert_eq!(check(&with("client_secret_expires_at", json!(0))), Err(DocumentError::ClientSecretPresent));
        for method in ["client_secret_basic", "client_secret_post", "client_secret_jwt"] {
            let refused = check(&with("token_endpoint_auth_method", json!(method)));
            assert_eq!(refused, Err(DocumentError::SharedSecretAuthMethod), "{method}");
        }
        for method in [json!("private_key_jwt"), json!("tls_client_auth"), json!(["none"]), json!("None")] {
            let refused = check(&with("token_endpoint_auth_method", method.clone()));
            assert_eq!(refused, Err(DocumentError::UnsupportedAuthMethod), "{method}");
        }
        assert!(check(&without("token_endpoint_auth_method")).is_ok());
    }

    #[test]
    fn redirect_uris_are_required() {
        assert_eq!(check(&without("redirect_uris")), Err(DocumentError::RedirectUrisMissing));
        assert_eq!(check(&with("redirect_uris", json!([]))), Err(DocumentError::RedirectUrisMissing));
        assert_eq!(
            check(&with("redirect_uris", json!("https://a.example/cb"))),
            Err(DocumentError::RedirectUrisMissing)
        );
        assert_eq!(check(&with("redirect_uris", json!([1]))), Err(DocumentError::RedirectUrisMissing));
    }

    #[test]
    fn foreign_redirect_uris_are_refused() {
        for uri in [
            "http://app.example.com/callback",
            "http://127.0.0.2/callback",
            "http://localhost.evil.example/cb",
            "http://[::2]/cb",
            "https://app.example.com/callback#frag",
            "https://user@app.example.com/callback",
            "cursor://callback",
            "javascript:alert(1)",
            "/callback",
            "https://app.example.com/a b",
            "HTTP://localhost/cb/../x",
        ] {
            let refused = check(&with("redirect_uris", json!(["https://ok.example/cb", uri])));
            assert_eq!(refused, Err(DocumentError::RedirectUriNotAllowed), "{uri}");
        }
    }

    #[test]
    fn loopback_callbacks_may_use_any_port() {
        for uri in ["http://127.0.0.1:1/cb", "http://127.0.0.1:65535/cb", "http://[::1]/", "http://localhost:33418/"] {
            assert!(is_allowed_redirect_uri(uri), "{uri}");
        }
    }

    #[test]
    fn only_our_grant_and_response_types() {
        for grants in [
            json!(["client_credentials"]),
            json!(["authorization_code", "implicit"]),
            json!([]),
            json!("authorization_code"),
        ] {
            assert_eq!(
                check(&with("grant_types", grants.clone())),
                Err(DocumentError::GrantTypeNotAllowed),
                "{grants}"
            );
        }
        for types in [json!(["token"]), json!(["code", "id_token"]), json!([])] {
            let refused = check(&with("response_types", types.clone()));
            assert_eq!(refused, Err(DocumentError::ResponseTypeNotAllowed), "{types}");
        }
    }

    #[test]
    fn display_fields_must_be_plain_and_https() {
        let cases = [
            ("client_name", json!(42), "client_name"),
            ("client_name", json!("a\u{7}b"), "client_name"),
            ("client_name", json!("Claude\u{202e}edualC"), "client_name"),
            ("client_name", json!("Cla\u{200b}ude"), "client_name"),
            ("client_name", json!("x".repeat(MAX_CLIENT_NAME_CHARS + 1)), "client_name"),
            ("client_uri", json!("http://app.example.com"), "client_uri"),
            ("client_uri", json!("javascript:alert(1)"), "client_uri"),
            ("logo_uri", json!("data:image/png;base64,AAAA"), "logo_uri"),
        ];
        for (field, value, named) in cases {
            assert_eq!(check(&with(field, value)), Err(DocumentError::DisplayField(named)), "{field}");
        }
        assert_eq!(check(&with("client_name", json!("   "))).unwrap().client_name, None);
    }

    #[test]
    fn non_objects_are_refused() {
        for body in ["", "[]", "null", "\"x\"", "{", "<html></html>"] {
            assert_eq!(validate(&url(), body.as_bytes()), Err(DocumentError::NotJsonObject), "{body}");
        }
    }

    #[test]
    fn descriptions_name_the_rule_never_the_value() {
        let refused = check(&with("redirect_uris", json!(["http://evil.example/<script>"]))).unwrap_err();
        assert!(!refused.to_string().contains("evil"), "{refused}");
        assert!(refused.to_string().contains("redirect_uris"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::select;

        fn near_valid_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                select(
                    &[
                        URL,
                        "https://app.example.com/oauth/client.json/",
                        "none",
                        "client_secret_basic",
                        "private_key_jwt",
                        "authorization_code",
                        "refresh_token",
                        "implicit",
                        "code",
                        "token",
                        "https://app.example.com/cb",
                        "http://127.0.0.1:8080/cb",
                        "http://localhost/cb",
                        "http://[::1]/cb",
                        "http://evil.example/cb",
                        "https://a.example/cb#x",
                        "javascript:alert(1)",
                        "",
                        "Agent",
                    ][..]
                )
                .prop_map(|s| json!(s)),
                Just(json!(null)),
                any::<i64>().prop_map(|n| json!(n)),
                "[ -~]{0,12}".prop_map(|s| json!(s)),
            ]
        }

        fn field_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                3 => near_valid_value(),
                2 => proptest::collection::vec(near_valid_value(), 0..4).prop_map(Value::Array),
            ]
        }

        /// A good document with up to four fields changed (set to a near-valid value, or removed).
        fn near_valid_document() -> impl Strategy<Value = Value> {
            let fields = select(
                &[
                    "client_id",
                    "redirect_uris",
                    "grant_types",
                    "response_types",
                    "token_endpoint_auth_method",
                    "client_secret",
                    "client_name",
                    "client_uri",
                    "logo_uri",
                    "scope",
                ][..],
            );
            proptest::collection::btree_map(fields, proptest::option::of(field_value()), 0..4).prop_map(|changes| {
                let mut document = document();
                for (field, value) in changes {
                    match value {
                        Some(value) => document[field] = value,
                        None => {
                            document.as_object_mut().map(|object| object.remove(field));
                        }
                    }
                }
                document
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn an_accepted_document_keeps_every_rule(document in near_valid_document()) {
                if let Ok(client) = check(&document) {
                    prop_assert_eq!(&document["client_id"], &json!(URL));
                    prop_assert!(document.get("client_secret").is_none());
                    prop_assert!(matches!(document.get("token_endpoint_auth_method"), None | Some(Value::Null))
                        || document["token_endpoint_auth_method"] == json!("none"));
                    prop_assert!(!client.redirect_uris.is_empty());
                    for uri in &client.redirect_uris {
                        let url = Url::parse(uri).unwrap();
                        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
                        prop_assert!(url.scheme() == "https" || (url.scheme() == "http" && loopback), "{}", uri);
                        prop_assert!(url.fragment().is_none());
                    }
                    prop_assert!(client.grant_types.iter().all(|g| ALLOWED_GRANT_TYPES.contains(&g.as_str())));
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = validate(&url(), &body);
            }
        }
    }
}
