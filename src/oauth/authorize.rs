//! `GET /authorize` and `GET /authorize/poll`: the authorization endpoint over IntelligenceBank's Browser
//! Login. Errors found before the client and redirect URI are trusted are shown (page or JSON), never
//! redirected; errors after are redirected to the client with `error`, `error_description` and `state`.
//!
//! Every parameter that is stored with a login attempt has a length limit, checked before IB is called or
//! anything is stored; a parameter over its limit is always shown (400), never redirected, so an over-long
//! `state` is never echoed. A login started by the sign-in page's script (header [`LOGIN_PAGE_HEADER`]) is
//! bound to that browser by a cookie whose SHA-256 the attempt keeps; its poll must present the cookie.
//! A start without the header ("headless") is allowed only to clients with `allow_headless_login`, and its
//! poll is bound to no browser. See docs/security.md, "Login phishing (RFC 8628 §5.4)".

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::audit::{AuditEvent, AuditKind};
use crate::auth::clients::Client;
use crate::errors::ApiError;
use crate::exchange::{escape_html, Params, Reply, Request};
use crate::ib::{IbClient, LoginPoll};
use crate::session::SessionGrant;
use crate::state::AppState;
use crate::store::RecordKind;
use crate::tokens::{random_secret, TokenHash};

/// Longest `client_id` (as configured clients are limited; registered ids are shorter).
const MAX_CLIENT_ID: usize = 128;
/// Longest `client_id` that is an `https` URL (a Client ID Metadata Document).
const MAX_METADATA_CLIENT_ID: usize = 1024;
const MAX_RESOURCE: usize = 2048;
const MAX_REDIRECT_URI: usize = 2048;
const MAX_STATE: usize = 512;
const MAX_SCOPE: usize = 256;
const MAX_PLATFORM_URL: usize = 512;

/// Sent by the sign-in page's script with its JSON start: the start is bound to the browser by a cookie.
/// It is not a credential (any HTTP client can send it); it only asks for the binding.
pub(super) const LOGIN_PAGE_HEADER: &str = "x-ibgw-login-page";
/// The binding cookie's name over https: `__Host-` makes browsers refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain`, so no other host (a sibling subdomain) can set or overwrite it.
const LOGIN_COOKIE_SECURE: &str = "__Host-ibgw_login";
/// Over plain http (development): browsers refuse `Secure` cookies and `__Host-` names from http origins.
const LOGIN_COOKIE_PLAIN: &str = "ibgw_login";

/// A login in progress, stored under the poll token's hash until it completes or expires.
#[derive(Serialize, Deserialize)]
struct LoginAttempt {
    platform: String,
    ib_login_token: String,
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    /// The RFC 8707 resource asked for (canonical), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    /// SHA-256 (base64url) of the browser-binding cookie of a login started by the sign-in page; `None` for a
    /// headless start (and for attempts stored before the binding existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    browser: Option<String>,
}

/// What an authorization code grants, stored under the code's hash.
#[derive(Serialize, Deserialize)]
pub(super) struct CodeGrant {
    pub grant: SessionGrant,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
}

/// A validated authorization request.
struct Authorization {
    client: Arc<Client>,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    resource: Option<String>,
}

/// An error once the redirect URI is trusted: sent back to the client.
struct RedirectError {
    redirect_uri: String,
    state: Option<String>,
    error: ApiError,
}

enum Refusal {
    Show(ApiError),
    Redirect(RedirectError),
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal::Show(error)
    }
}

fn is_pkce_value(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `value` when it is at most `max` bytes; otherwise `400 invalid_request` naming the parameter and the limit.
fn within<'a>(name: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.len() > max {
        return Err(ApiError::InvalidRequest(format!("Parameter {name} is longer than {max} bytes")));
    }
    Ok(value)
}

/// The length check of an optional parameter. A repeated one is left to the later checks (it is never used).
fn check_length(params: &Params, name: &str, max: usize) -> Result<(), ApiError> {
    if let Ok(Some(value)) = params.get(name) {
        within(name, value, max)?;
    }
    Ok(())
}

async fn validate(state: &AppState, params: &Params) -> Result<Authorization, Refusal> {
    let client_id = params.required("client_id")?;
    let max = if client_id.starts_with("https://") { MAX_METADATA_CLIENT_ID } else { MAX_CLIENT_ID };
    let client_id = within("client_id", client_id, max)?;
    let client = state
        .clients
        .find(state.store.as_ref(), client_id)
        .await?
        .ok_or_else(|| ApiError::InvalidClient { description: "Unknown client".into(), basic: false })?;
    let redirect_uri = within("redirect_uri", params.required("redirect_uri")?, MAX_REDIRECT_URI)?;
    if !client.redirect_uri_allowed(redirect_uri) {
        return Err(ApiError::InvalidRequest("redirect_uri is not registered for this client".into()).into());
    }
    // Shown, not redirected: an over-long state must not be echoed, and RFC 6749 §4.1.2.1 does not allow a
    // redirect that leaves out a state the request carried.
    check_length(params, "state", MAX_STATE)?;
    check_length(params, "scope", MAX_SCOPE)?;
    check_length(params, "platform_url", MAX_PLATFORM_URL)?;
    check_length(params, "resource", MAX_RESOURCE)?;
    let redirect_uri = redirect_uri.to_string();
    let client_state = params.get("state").ok().flatten().map(str::to_string);
    let redirect = |error: ApiError| {
        Refusal::Redirect(RedirectError { redirect_uri: redirect_uri.clone(), state: client_state.clone(), error })
    };
    let check = || -> Result<(String, Option<String>, Option<String>), ApiError> {
        match params.required("response_type")? {
            "code" => {}
            _ => return Err(ApiError::UnsupportedResponseType),
        }
        params.get("state")?;
        let scope = match params.get("scope")? {
            Some(requested) => {
                let scopes: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
                if let Some(unknown) = scopes.iter().find(|s| !client.scopes.iter().any(|c| c == *s)) {
                    return Err(ApiError::InvalidScope(format!("Scope {unknown} is not available to this client")));
                }
                scopes.join(" ")
            }
            None => client.scopes.join(" "),
        };
        let resource = requested_resource(state, params.get("resource")?)?;
        let challenge = params.get("code_challenge")?;
        let method = params.get("code_challenge_method")?;
        match (challenge, method) {
            (None, None) if client.is_public() => {
                Err(ApiError::InvalidRequest("PKCE is required: send code_challenge with S256".into()))
            }
            (None, None) => Ok((scope, resource, None)),
            (None, Some(_)) => Err(ApiError::InvalidRequest("code_challenge_method without code_challenge".into())),
            (Some(_), method) if method != Some("S256") => {
                Err(ApiError::InvalidRequest("code_challenge_method must be S256".into()))
            }
            (Some(challenge), _) if !is_pkce_value(challenge) => {
                Err(ApiError::InvalidRequest("code_challenge must be 43 to 128 unreserved characters".into()))
            }
            (Some(challenge), _) => Ok((scope, resource, Some(challenge.to_string()))),
        }
    };
    let (scope, resource, code_challenge) = check().map_err(redirect)?;
    Ok(Authorization { client, redirect_uri, scope, state: client_state, code_challenge, resource })
}

/// The canonical form of a `resource` parameter (RFC 8707) when it names one of this gateway's resources;
/// anything else is `invalid_target`. The `/token` endpoint checks its own `resource` the same way.
pub(super) fn requested_resource(state: &AppState, requested: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(requested) = requested else { return Ok(None) };
    match state.resources.accepts(requested) {
        Some(resource) => Ok(Some(resource.to_string())),
        None => Err(ApiError::InvalidTarget("resource is not a resource this gateway issues tokens for".into())),
    }
}

fn redirect_with(redirect_uri: &str, issuer: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (name, value) in pairs {
                    query.append_pair(name, value);
                }
                query.append_pair("iss", issuer);
            }
            url.to_string()
        }
        // Registered redirect URIs are validated URLs; this is unreachable for them.
        Err(_) => redirect_uri.to_string(),
    }
}

fn error_redirect(state: &AppState, refusal: RedirectError) -> Reply {
    let description = refusal.error.description();
    let mut pairs = vec![("error", refusal.error.code()), ("error_description", description.as_str())];
    if let Some(client_state) = &refusal.state {
        pairs.push(("state", client_state));
    }
    Reply::redirect(redirect_with(&refusal.redirect_uri, &crate::auth::access_token::audience(&state.config), &pairs))
}

fn error_page(error: &ApiError) -> Reply {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in error</title>\
         <link rel=\"stylesheet\" href=\"/authorize/style.css\"></head><body><main><h1>This sign-in link is not valid</h1>\
         <p><code>{}</code>: {}</p><p>Return to the application and start again.</p></main></body></html>",
        escape_html(error.code()),
        escape_html(&error.description())
    );
    Reply::html(error.status(), body)
}

pub(super) async fn authorize(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let params = request.query_params()?;
    let authorization = match validate(state, &params).await {
        Ok(authorization) => authorization,
        Err(Refusal::Show(error)) if request.accepts_json() => return Err(error),
        Err(Refusal::Show(error)) => return Ok(error_page(&error)),
        Err(Refusal::Redirect(refusal)) if request.accepts_json() => return Err(refusal.error),
        Err(Refusal::Redirect(refusal)) => return Ok(error_redirect(state, refusal)),
    };
    match params.get("platform_url")? {
        None => Ok(Reply::html(200, consent_page(&authorization))),
        Some(platform_url) => {
            let from_page = request.header(LOGIN_PAGE_HEADER) == Some("1");
            if !from_page && !state.clients.allows_headless_login(&authorization.client) {
                return Err(ApiError::InvalidRequest(
                    "This client must use the sign-in page: open /authorize in the user's browser".into(),
                ));
            }
            let binding = from_page.then(|| browser_binding(state, request));
            start_login(state, authorization, platform_url, binding).await
        }
    }
}

/// `host[:port]` of a (validated, registered) redirect URI: where the browser is sent with the code.
fn redirect_host(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(url) => match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => redirect_uri.to_string(),
        },
        Err(_) => redirect_uri.to_string(),
    }
}

/// The sign-in page: it names the client and where the browser returns to, escaped.
fn consent_page(authorization: &Authorization) -> String {
    let client = &authorization.client;
    let mut name = escape_html(client.client_name.as_deref().unwrap_or(&client.client_id));
    if let Some(host) = &client.metadata_host {
        // The document was fetched from this host over TLS: that much the gateway vouches for.
        name = match &client.client_name {
            Some(_) => format!("{} (it calls itself {name})", escape_html(host)),
            None => escape_html(host),
        };
    } else if client.dynamic {
        // A registered client chose its own name; the redirect host is what the gateway vouches for.
        name.push_str(" (a name the application gave itself)");
    }
    include_str!("assets/authorize.html")
        .replace("{{client}}", &name)
        .replace("{{redirect_host}}", &escape_html(&redirect_host(&authorization.redirect_uri)))
        .replace("{{scope}}", &escape_html(&authorization.scope))
}

fn login_cookie_name(state: &AppState) -> &'static str {
    if state.config.server.public_url.starts_with("https://") {
        LOGIN_COOKIE_SECURE
    } else {
        LOGIN_COOKIE_PLAIN
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers, if any.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
}

fn is_binding_value(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The browser's binding secret: the one its cookie already holds (several sign-ins in one browser each keep
/// working), else a new 256-bit one. Only its hash is stored.
fn browser_binding(state: &AppState, request: &Request) -> String {
    match cookie(request, login_cookie_name(state)) {
        Some(value) if is_binding_value(value) => value.to_string(),
        _ => random_secret(),
    }
}

fn binding_cookie(state: &AppState, value: &str) -> String {
    let max_age = state.config.tokens.login_attempt_ttl_seconds;
    let name = login_cookie_name(state);
    let secure = if name == LOGIN_COOKIE_SECURE { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly{secure}; SameSite=Strict")
}

async fn start_login(
    state: &AppState,
    authorization: Authorization,
    platform_url: &str,
    binding: Option<String>,
) -> Result<Reply, ApiError> {
    let platform =
        state.ib.policy().validate(platform_url).map_err(|e| ApiError::InvalidRequest(format!("platform_url: {e}")))?;
    let ib_login_token = state.ib.start_login(&platform).await.map_err(|e| {
        state.metrics.logins.with_label_values(&["failed"]).inc();
        log::warn!("IB login could not be started on {}: {e}", platform.host());
        ApiError::BadGateway("IntelligenceBank did not start the login")
    })?;
    let poll_token = random_secret();
    let attempt = LoginAttempt {
        platform: platform.origin().to_string(),
        ib_login_token: ib_login_token.clone(),
        client_id: authorization.client.client_id.clone(),
        redirect_uri: authorization.redirect_uri,
        scope: authorization.scope,
        state: authorization.state,
        code_challenge: authorization.code_challenge,
        resource: authorization.resource,
        browser: binding.as_deref().map(|value| TokenHash::of(value).encoded()),
    };
    let record = serde_json::to_vec(&attempt).map_err(|_| ApiError::ServerError)?;
    state
        .store
        .put_record(
            RecordKind::LoginAttempt,
            &TokenHash::of(&poll_token).encoded(),
            &record,
            state.config.tokens.login_attempt_ttl_seconds,
        )
        .await?;
    let bound = if binding.is_some() { "browser" } else { "none (headless)" };
    log::info!("login started: client={} platform={} binding={bound}", attempt.client_id, platform.host());
    state.metrics.logins.with_label_values(&["started"]).inc();
    let reply = Reply::json(
        200,
        &serde_json::json!({
            "loginUrl": IbClient::login_page_url(&platform, &ib_login_token),
            "token": poll_token,
            "expires_in": state.config.tokens.login_attempt_ttl_seconds,
        }),
    );
    Ok(match binding {
        Some(value) => reply.with_header("Set-Cookie", binding_cookie(state, &value)),
        None => reply,
    })
}

pub(super) async fn poll(state: &AppState, request: &Request) -> Result<Reply, ApiError> {
    let params = request.query_params()?;
    let poll_token = params.required("token")?;
    let key = TokenHash::of(poll_token).encoded();
    let expired = || ApiError::InvalidRequest("Unknown or expired login attempt; start again".into());
    let Some(record) = state.store.get_record(RecordKind::LoginAttempt, &key).await? else {
        // Unknown and expired poll tokens look the same; a page left open past the TTL is the usual case.
        state.metrics.logins.with_label_values(&["timed_out"]).inc();
        return Err(expired());
    };
    let attempt: LoginAttempt = serde_json::from_slice(&record).map_err(|_| expired())?;
    // A browser-bound attempt answers only the browser that started it; to anyone else it is unknown, and it
    // is left in place for its own browser.
    if let Some(expected) = &attempt.browser {
        let presented = cookie(request, login_cookie_name(state)).map(TokenHash::of);
        let matches = match (presented, TokenHash::from_encoded(expected)) {
            (Some(presented), Some(expected)) => presented.matches(&expected),
            _ => false,
        };
        if !matches {
            log::info!("login poll refused: client={} browser binding missing or wrong", attempt.client_id);
            return Err(expired());
        }
    }
    let platform = state.ib.policy().validate(&attempt.platform).map_err(|_| expired())?;
    let completed = match state.ib.poll_login(&platform, &attempt.ib_login_token).await {
        Ok(LoginPoll::Pending) => return Err(ApiError::AuthorizationPending),
        Ok(LoginPoll::Complete(completed)) => completed,
        Err(e) => {
            state.metrics.logins.with_label_values(&["failed"]).inc();
            log::warn!("IB login poll failed on {}: {e}", platform.host());
            return Err(ApiError::BadGateway("IntelligenceBank did not answer the login poll"));
        }
    };
    // Of two concurrent polls that both see the login complete, only the one that takes the record issues a code.
    if state.store.take_record(RecordKind::LoginAttempt, &key).await?.is_none() {
        return Err(expired());
    }
    let mut grant = completed.into_grant(&platform, attempt.client_id.clone(), attempt.scope.clone());
    grant.resource = attempt.resource.clone();
    let completed_event =
        AuditEvent::new(AuditKind::LoginCompleted).client(&attempt.client_id).user(&grant.user.uuid).request(request);
    let code = random_secret();
    let code_grant =
        CodeGrant { grant, redirect_uri: attempt.redirect_uri.clone(), code_challenge: attempt.code_challenge };
    let record = serde_json::to_vec(&code_grant).map_err(|_| ApiError::ServerError)?;
    state.store.put_code(&TokenHash::of(&code), &record, state.config.tokens.authorization_code_ttl_seconds).await?;
    log::info!("login completed: client={} platform={}", attempt.client_id, platform.host());
    state.metrics.logins.with_label_values(&["completed"]).inc();
    state.audit.record(completed_event);
    let mut pairs = vec![("code", code.as_str())];
    if let Some(client_state) = &attempt.state {
        pairs.push(("state", client_state));
    }
    let location = redirect_with(&attempt.redirect_uri, &crate::auth::access_token::audience(&state.config), &pairs);
    Ok(Reply::json(200, &serde_json::json!({ "redirect_url": location })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<script>\"'&"), "&lt;script&gt;&quot;&#39;&amp;");
    }

    #[test]
    fn redirect_keeps_existing_query_and_adds_iss() {
        let location = redirect_with("https://app.example/cb?x=1", "https://gw", &[("code", "a b"), ("state", "s")]);
        assert_eq!(location, "https://app.example/cb?x=1&code=a+b&state=s&iss=https%3A%2F%2Fgw");
    }

    #[test]
    fn pkce_values_are_checked() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }
}
