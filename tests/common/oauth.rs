//! The OAuth client's side of a login through a gateway and the mock: the registered clients, PKCE,
//! `/authorize` → mock login → poll, and the token endpoint.

use ib_oauth_gateway::mock::MockHandle;
use sha2::{Digest, Sha256};

use super::gateway::GatewayProcess;
use super::http::{http, post_form, query_param, urlencode};
use super::mock::complete_login;

pub const PUBLIC_CLIENT: &str = "mcp-public-client";
pub const REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";
pub const CONFIDENTIAL_CLIENT: &str = "reporting-app";
pub const CONFIDENTIAL_SECRET: &str = "s3cret-s3cret-s3cret-s3cret";
pub const CONFIDENTIAL_REDIRECT: &str = "https://reports.example.com/oauth/callback";
pub const VERIFIER: &str = "test-verifier-0123456789-0123456789-0123456789";

pub fn challenge(verifier: &str) -> String {
    ib_oauth_gateway::tokens::b64(&Sha256::digest(verifier.as_bytes()))
}

/// The query of an authorization request by the public client.
pub fn authorize_query(state: &str) -> String {
    format!(
        "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&scope=profile&state={state}&code_challenge={}&code_challenge_method=S256",
        urlencode(REDIRECT_URI),
        challenge(VERIFIER)
    )
}

/// The query of an authorization request by the confidential client; `challenge` adds S256 PKCE.
pub fn confidential_authorize_query(state: &str, challenge: Option<&str>) -> String {
    let pkce = challenge.map(|c| format!("&code_challenge={c}&code_challenge_method=S256")).unwrap_or_default();
    format!(
        "response_type=code&client_id={CONFIDENTIAL_CLIENT}&redirect_uri={}&state={state}{pkce}",
        urlencode(CONFIDENTIAL_REDIRECT)
    )
}

/// Drives `/authorize` → mock login → poll, returning the redirect URL with the code.
/// `complete_query` is appended to the mock's `/_mock/complete` call (e.g. `&logintimeoutperiod=1`).
/// The public client starts headless, as the old bridge's consumers do; any other client starts as the sign-in
/// page does (see [`page_start`]).
pub async fn login(gateway: &GatewayProcess, mock: &MockHandle, query: &str, complete_query: &str) -> String {
    login_at(&gateway.base, mock, query, complete_query).await
}

/// Does `login` start `query` as the sign-in page would? Only the old bridge's public client may start headless
/// by default (`allow_headless_login`); every other client must use the page.
pub fn page_start(query: &str) -> bool {
    !query.split('&').any(|pair| pair == format!("client_id={PUBLIC_CLIENT}"))
}

/// [`login`] against a gateway at `base` (e.g. one a test runs itself).
pub async fn login_at(base: &str, mock: &MockHandle, query: &str, complete_query: &str) -> String {
    let url = |path: &str| format!("{base}{path}");
    let client = http();
    let mut start = client
        .get(url(&format!("/authorize?{query}&platform_url={}", urlencode(&mock.origin))))
        .header("Accept", "application/json");
    if page_start(query) {
        // As the page's script: the header asks for the browser binding, whose cookie every poll then carries.
        start = start.header("X-IBGW-Login-Page", "1");
    }
    let response = start.send().await.unwrap();
    let cookie =
        response.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let started: serde_json::Value = response.json().await.unwrap();
    let login_url = started["loginUrl"].as_str().unwrap_or_else(|| panic!("{started}"));
    let poll_token = started["token"].as_str().unwrap();
    let ib_token = query_param(login_url, "token").unwrap();
    let poll = || {
        let request = client.get(url(&format!("/authorize/poll?token={poll_token}")));
        match &cookie {
            Some(cookie) => request.header("Cookie", cookie),
            None => request,
        }
    };
    let pending = poll().send().await.unwrap();
    assert_eq!(pending.status(), 404);
    let body: serde_json::Value = pending.json().await.unwrap();
    assert_eq!(body["error"], "authorization_pending");
    complete_login(mock, &ib_token, complete_query).await;
    let done: serde_json::Value = poll().send().await.unwrap().json().await.unwrap();
    done["redirect_url"].as_str().unwrap_or_else(|| panic!("{done}")).to_string()
}

/// Exchanges a code from [`login`] for tokens, as the public client.
pub async fn exchange(gateway: &GatewayProcess, redirect_url: &str) -> (u16, serde_json::Value) {
    exchange_at(&gateway.base, redirect_url).await
}

/// The form of the public client's code exchange.
pub fn public_exchange_form(code: &str) -> [(&str, &str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", PUBLIC_CLIENT),
        ("code_verifier", VERIFIER),
    ]
}

/// [`exchange`] against a gateway at `base`.
pub async fn exchange_at(base: &str, redirect_url: &str) -> (u16, serde_json::Value) {
    let code = query_param(redirect_url, "code").unwrap();
    post_form(&format!("{base}/token"), &public_exchange_form(&code)).await
}

/// The public client's refresh-token grant.
pub fn refresh_form(refresh_token: &str) -> [(&str, &str); 3] {
    [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", PUBLIC_CLIENT)]
}

pub async fn refresh(gateway: &GatewayProcess, refresh_token: &str) -> (u16, serde_json::Value) {
    post_form(&gateway.url("/token"), &refresh_form(refresh_token)).await
}

/// Logs in through the mock and returns the token response.
pub async fn tokens_for(gateway: &GatewayProcess, mock: &MockHandle, complete_query: &str) -> serde_json::Value {
    let redirect = login(gateway, mock, &authorize_query("p"), complete_query).await;
    let (status, tokens) = exchange(gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}
