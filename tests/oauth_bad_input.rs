//! The authorization server against bad, hostile and replayed input: a real gateway process, the mock
//! IntelligenceBank platform, and for every refusal the exact status, the RFC-shaped error body (or, on
//! `/authorize` before the redirect URI is trusted, the absence of any redirect), the state left behind,
//! and a log that holds none of the codes, tokens or secrets the test sent.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockHandle;
use serde_json::Value;
use std::time::Duration;

const FORM: &str = "application/x-www-form-urlencoded";
const WRONG_MEDIA_TYPE: &str = "Content-Type must be application/x-www-form-urlencoded";
const WRONG_GRANT_TYPE: &str = "grant_type must be authorization_code or refresh_token";

/// An RFC 6749 §5.2 / RFC 6750 §3 error: JSON with exactly `error` and `error_description`.
#[track_caller]
fn assert_error(answer: &Answer, status: u16, error: &str, description: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert!(answer.header("content-type").is_some_and(|t| t.starts_with("application/json")), "{:?}", answer.headers);
    assert_eq!(answer.body["error"], error, "{}", answer.text);
    assert_eq!(answer.body["error_description"], description, "{}", answer.text);
    assert_eq!(answer.body.as_object().map(|o| o.len()), Some(2), "only error and error_description: {}", answer.text);
    assert!(answer.header("location").is_none(), "an error answer never redirects");
}

/// A token-endpoint error: as [`assert_error`], and never cached (RFC 6749 §5.1/§5.2).
#[track_caller]
fn assert_token_error(answer: &Answer, status: u16, error: &str, description: &str) {
    assert_error(answer, status, error, description);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
}

/// A successful token response, never cached.
#[track_caller]
fn assert_tokens(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(answer.body["access_token"].is_string() && answer.body["refresh_token"].is_string(), "{}", answer.text);
    answer.body.clone()
}

/// `/authorize` refused without trusting the redirect URI: a page or JSON with the error, no `Location`.
#[track_caller]
fn assert_shown_not_redirected(answer: &Answer, status: u16, error: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert!(answer.header("location").is_none(), "must not redirect: {:?}", answer.headers);
    if answer.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
        assert_eq!(answer.body["error"], error, "{}", answer.text);
        assert!(answer.body["error_description"].is_string(), "{}", answer.text);
    } else {
        assert!(answer.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{:?}", answer.headers);
        assert!(answer.text.contains(&format!("<code>{error}</code>")), "{}", answer.text);
    }
}

/// `/authorize` refused after the redirect URI is trusted: 302 to it with `error`, `error_description`,
/// the client's `state` and `iss`, and no code.
#[track_caller]
fn assert_error_redirect(answer: &Answer, redirect_uri: &str, error: &str, state: &str, issuer: &str) {
    assert_eq!(answer.status, 302, "{}", answer.text);
    let location = answer.header("location").expect("Location");
    assert!(location.starts_with(&format!("{redirect_uri}?")), "{location}");
    assert_eq!(query_param(location, "error").as_deref(), Some(error), "{location}");
    assert!(query_param(location, "error_description").is_some_and(|d| !d.is_empty()), "{location}");
    assert_eq!(query_param(location, "state").as_deref(), Some(state), "{location}");
    assert_eq!(query_param(location, "iss").as_deref(), Some(issuer), "{location}");
    assert!(query_param(location, "code").is_none(), "{location}");
}

async fn get(gateway: &GatewayProcess, path_and_query: &str) -> Answer {
    send(http().get(gateway.url(path_and_query))).await
}

async fn get_json(gateway: &GatewayProcess, path_and_query: &str) -> Answer {
    send(http().get(gateway.url(path_and_query)).header("Accept", "application/json")).await
}

/// `POST /token` with a form (encoded by reqwest).
async fn token(gateway: &GatewayProcess, form: &[(&str, &str)]) -> Answer {
    send(http().post(gateway.url("/token")).form(form)).await
}

/// `POST /token` with a body exactly as given.
async fn token_raw(gateway: &GatewayProcess, content_type: &str, body: impl Into<reqwest::Body>) -> Answer {
    send(http().post(gateway.url("/token")).header("Content-Type", content_type).body(body)).await
}

/// `POST /token` as the confidential client with HTTP Basic.
async fn token_basic(gateway: &GatewayProcess, secret: &str, form: &[(&str, &str)]) -> Answer {
    send(http().post(gateway.url("/token")).basic_auth(CONFIDENTIAL_CLIENT, Some(secret)).form(form)).await
}

fn code_of(redirect_url: &str) -> String {
    query_param(redirect_url, "code").unwrap_or_else(|| panic!("no code in {redirect_url}"))
}

/// A fresh authorization code for the public client (PKCE with [`VERIFIER`]).
async fn public_code(gateway: &GatewayProcess, mock: &MockHandle) -> String {
    code_of(&login(gateway, mock, &authorize_query("st"), "").await)
}

/// A fresh authorization code for the confidential client, with or without PKCE.
async fn confidential_code(gateway: &GatewayProcess, mock: &MockHandle, challenge: Option<&str>) -> String {
    let redirect = login(gateway, mock, &confidential_authorize_query("cs", challenge), "").await;
    assert!(redirect.starts_with(CONFIDENTIAL_REDIRECT), "{redirect}");
    code_of(&redirect)
}

/// An authorization-code grant without client authentication or PKCE (add them as needed).
fn code_grant<'a>(code: &'a str, redirect_uri: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]
}

/// The public client's tokens after a full login.
async fn public_tokens(gateway: &GatewayProcess, mock: &MockHandle) -> (String, Value) {
    let code = public_code(gateway, mock).await;
    let tokens = assert_tokens(&token(gateway, &public_exchange_form(&code)).await);
    (code, tokens)
}

/// The access token, refresh token and IB sid of a token response.
fn secrets_of(tokens: &Value) -> Vec<String> {
    let mut secrets: Vec<String> =
        ["access_token", "refresh_token"].iter().map(|name| tokens[*name].as_str().unwrap().to_string()).collect();
    if let Some(sid) = tokens["sid"].as_str() {
        secrets.push(sid.to_string());
    }
    secrets
}

async fn refresh_as_public(gateway: &GatewayProcess, refresh_token: &str) -> Answer {
    token(gateway, &refresh_form(refresh_token)).await
}

async fn userinfo(gateway: &GatewayProcess, access_token: &str) -> Answer {
    send(http().get(gateway.url("/userinfo")).bearer_auth(access_token)).await
}

/// The always-present secrets of these tests.
fn fixed_secrets() -> Vec<String> {
    vec![VERIFIER.to_string(), CONFIDENTIAL_SECRET.to_string()]
}

/// Asserts that the gateway's log holds none of the [`fixed_secrets`], of `others` (codes, made-up or wrong
/// secrets) and of the tokens and sids in `token_responses`.
#[track_caller]
fn assert_no_secret_logged<S: AsRef<str>>(gateway: &GatewayProcess, others: &[S], token_responses: &[&Value]) {
    let mut secrets = fixed_secrets();
    secrets.extend(others.iter().map(|other| other.as_ref().to_string()));
    for tokens in token_responses {
        secrets.extend(secrets_of(tokens));
    }
    assert_log_free_of(gateway, &secrets);
}

// ---------------------------------------------------------------------------------------------------
// POST /token: request syntax (refused before the code is looked at, so the code stays usable)
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn token_request_missing_grant_type_code_or_redirect_uri_is_invalid_request_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let full = public_exchange_form(&code);
    for missing in ["grant_type", "code", "redirect_uri"] {
        let form: Vec<_> = full.iter().copied().filter(|(name, _)| *name != missing).collect();
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "invalid_request", &format!("Missing parameter {missing}"));
        // An empty value is an absent one (RFC 6749 §3.1).
        let form: Vec<_> = full.iter().map(|&(name, value)| (name, if name == missing { "" } else { value })).collect();
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "invalid_request", &format!("Missing parameter {missing}"));
    }
    let tokens = assert_tokens(&token(&gateway, &full).await);
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_without_code_verifier_for_a_pkce_code_is_invalid_grant_and_spends_the_code() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let without_verifier: Vec<_> =
        public_exchange_form(&code).into_iter().filter(|(name, _)| *name != "code_verifier").collect();
    let answer = token(&gateway, &without_verifier).await;
    assert_token_error(&answer, 400, "invalid_grant", "code_verifier required");
    // The attempt spent the code (RFC 6749 §4.1.2: one use); the verifier cannot be supplied afterwards.
    let answer = token(&gateway, &public_exchange_form(&code)).await;
    assert_token_error(&answer, 400, "invalid_grant", "Authorization code already used");
    assert_no_secret_logged(&gateway, &[code], &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_a_repeated_parameter_is_invalid_request_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let full = public_exchange_form(&code);
    for (name, second) in [
        ("code", "another-code-value-0000"),
        ("code", code.as_str()),
        ("grant_type", "authorization_code"),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", PUBLIC_CLIENT),
        ("code_verifier", VERIFIER),
    ] {
        let mut form = full.to_vec();
        form.push((name, second));
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "invalid_request", &format!("Parameter {name} is repeated"));
    }
    // The same name spelled with percent-encoding is the same parameter.
    let raw = format!(
        "grant_type=authorization_code&code={code}&%63ode=other-code-value&redirect_uri={}&client_id={PUBLIC_CLIENT}&code_verifier={VERIFIER}",
        urlencode(REDIRECT_URI)
    );
    let answer = token_raw(&gateway, FORM, raw).await;
    assert_token_error(&answer, 400, "invalid_request", "Parameter code is repeated");
    let tokens = assert_tokens(&token(&gateway, &full).await);

    // The confidential client's secret twice (even the right one) is a malformed request, not a failed
    // authentication, and its code stays usable too.
    let code2 = confidential_code(&gateway, &mock, None).await;
    let form = vec![
        ("grant_type", "authorization_code"),
        ("code", code2.as_str()),
        ("redirect_uri", CONFIDENTIAL_REDIRECT),
        ("client_id", CONFIDENTIAL_CLIENT),
        ("client_secret", CONFIDENTIAL_SECRET),
    ];
    for second in [CONFIDENTIAL_SECRET, "another-secret-value"] {
        let mut twice = form.clone();
        twice.push(("client_secret", second));
        let answer = token(&gateway, &twice).await;
        assert_token_error(&answer, 400, "invalid_request", "Parameter client_secret is repeated");
    }
    // With Basic, a form secret as well is two authentication methods.
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &form).await;
    assert_token_error(&answer, 400, "invalid_request", "Use one client authentication method, not two");
    let tokens2 = assert_tokens(&token(&gateway, &form).await);

    assert_no_secret_logged(&gateway, &[code, code2], &[&tokens, &tokens2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_password_grant_is_unsupported_grant_type() {
    let gateway = GatewayProcess::start("");
    let password = "hunter2-hunter2-hunter2";
    for grant_type in ["password", "client_credentials", "AUTHORIZATION_CODE"] {
        let form = [
            ("grant_type", grant_type),
            ("username", "someone@example.com"),
            ("password", password),
            ("client_id", PUBLIC_CLIENT),
        ];
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "unsupported_grant_type", WRONG_GRANT_TYPE);
    }
    // The confidential client, authenticated, gets the same answer.
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &[("grant_type", "client_credentials")]).await;
    assert_token_error(&answer, 400, "unsupported_grant_type", WRONG_GRANT_TYPE);
    assert_no_secret_logged(&gateway, &[password.to_string()], &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_body_over_the_size_cap_is_413_declared_or_chunked_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    // The default cap is 16 KiB: a valid exchange padded past it.
    let padding = "p".repeat(17 * 1024);
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={PUBLIC_CLIENT}&code_verifier={VERIFIER}&pad={padding}",
        urlencode(REDIRECT_URI)
    );
    let answer = token_raw(&gateway, FORM, body.clone()).await;
    assert_token_error(&answer, 413, "payload_too_large", "Request body too large");

    // Without Content-Length (chunked), the cap applies as the body arrives.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.as_bytes().chunks(1024).map(|chunk| Ok(chunk.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let answer = token_raw(&gateway, FORM, streamed).await;
    assert_token_error(&answer, 413, "payload_too_large", "Request body too large");

    // Nothing was read: the same exchange at a normal size succeeds.
    let tokens = assert_tokens(&token(&gateway, &public_exchange_form(&code)).await);
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_a_json_body_or_no_content_type_is_415_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let json = serde_json::json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": PUBLIC_CLIENT,
        "code_verifier": VERIFIER,
    });
    let answer = send(http().post(gateway.url("/token")).json(&json)).await;
    assert_token_error(&answer, 415, "unsupported_media_type", WRONG_MEDIA_TYPE);
    let form_text = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={PUBLIC_CLIENT}&code_verifier={VERIFIER}",
        urlencode(REDIRECT_URI)
    );
    for content_type in ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencodedx"] {
        let answer = token_raw(&gateway, content_type, form_text.clone()).await;
        assert_token_error(&answer, 415, "unsupported_media_type", WRONG_MEDIA_TYPE);
    }
    let answer = send(http().post(gateway.url("/token")).body(form_text.clone())).await;
    assert_token_error(&answer, 415, "unsupported_media_type", WRONG_MEDIA_TYPE);
    // The media type is case-insensitive and may carry a charset.
    let tokens =
        assert_tokens(&token_raw(&gateway, "Application/X-WWW-Form-URLEncoded; charset=UTF-8", form_text).await);
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_malformed_percent_encoding_is_invalid_request_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let valid = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&client_id={PUBLIC_CLIENT}&code_verifier={VERIFIER}",
        urlencode(REDIRECT_URI)
    );
    for (bad, description) in [
        ("state=%", "Malformed percent-encoding"),
        ("state=%4", "Malformed percent-encoding"),
        ("state=%zz", "Malformed percent-encoding"),
        ("st%g0ate=x", "Malformed percent-encoding"),
        ("state=%C3%28", "Parameters must be UTF-8"),
        ("state=%FF", "Parameters must be UTF-8"),
    ] {
        let answer = token_raw(&gateway, FORM, format!("{valid}&{bad}")).await;
        assert_token_error(&answer, 400, "invalid_request", description);
    }
    // The code itself malformed: refused before any lookup.
    let answer = token_raw(&gateway, FORM, valid.replace(&format!("code={code}"), &format!("code={code}%"))).await;
    assert_token_error(&answer, 400, "invalid_request", "Malformed percent-encoding");
    // Raw bytes that are not UTF-8.
    let mut raw = valid.clone().into_bytes();
    raw.extend_from_slice(b"&state=\xff\xfe");
    let answer = token_raw(&gateway, FORM, raw).await;
    assert_token_error(&answer, 400, "invalid_request", "Body must be UTF-8");

    let tokens = assert_tokens(&token_raw(&gateway, FORM, valid).await);
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}

// ---------------------------------------------------------------------------------------------------
// POST /token: the authorization-code grant
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn token_request_whose_redirect_uri_differs_by_slash_case_port_or_fragment_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("").await;
    let mut codes = Vec::new();
    for near_miss in [
        "http://127.0.0.1:8765/callback/",
        "http://127.0.0.1:8765/Callback",
        "HTTP://127.0.0.1:8765/callback",
        // Registered too (the pattern allows any port), but not the one this code was issued for.
        "http://127.0.0.1:8766/callback",
        "http://127.0.0.1:8765/callback#frag",
        "http://127.0.0.1:8765/callback?x=1",
        "http://localhost:8765/callback",
    ] {
        let code = public_code(&gateway, &mock).await;
        let mut form = public_exchange_form(&code);
        form[2] = ("redirect_uri", near_miss);
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "invalid_grant", "redirect_uri does not match the authorization request");
        codes.push(code);
    }
    // The confidential client's exact URI with its default port spelled out.
    let code = confidential_code(&gateway, &mock, None).await;
    let default_port = "https://reports.example.com:443/oauth/callback";
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &code_grant(&code, default_port)).await;
    assert_token_error(&answer, 400, "invalid_grant", "redirect_uri does not match the authorization request");
    codes.push(code);
    assert_no_secret_logged(&gateway, &codes, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_a_code_verifier_for_a_code_issued_without_pkce_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("").await;
    // The confidential client may leave PKCE out; a verifier at the token endpoint is then a downgrade
    // attempt (RFC 9700 §2.1.1) and is refused.
    let code = confidential_code(&gateway, &mock, None).await;
    let mut with_verifier = code_grant(&code, CONFIDENTIAL_REDIRECT);
    with_verifier.push(("code_verifier", VERIFIER));
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &with_verifier).await;
    assert_token_error(&answer, 400, "invalid_grant", "code_verifier sent for a code issued without PKCE");

    // For contrast: without the verifier, a code of the same kind is accepted.
    let code2 = confidential_code(&gateway, &mock, None).await;
    let form = code_grant(&code2, CONFIDENTIAL_REDIRECT);
    let tokens = assert_tokens(&token_basic(&gateway, CONFIDENTIAL_SECRET, &form).await);
    assert!(tokens.get("sid").is_none(), "this client does not get the IB session: {tokens}");

    assert_no_secret_logged(&gateway, &[code, code2], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_with_plain_code_challenge_method_is_redirected_as_invalid_request() {
    let (gateway, mock) = gateway_and_mock("").await;
    let plain = |client: &str, redirect: &str| {
        format!(
            "/authorize?response_type=code&client_id={client}&redirect_uri={}&state=pl&code_challenge={VERIFIER}&code_challenge_method=plain",
            urlencode(redirect)
        )
    };
    for (client, redirect) in [(PUBLIC_CLIENT, REDIRECT_URI), (CONFIDENTIAL_CLIENT, CONFIDENTIAL_REDIRECT)] {
        let answer = get(&gateway, &plain(client, redirect)).await;
        assert_error_redirect(&answer, redirect, "invalid_request", "pl", &gateway.base);
        let location = answer.header("location").unwrap();
        assert_eq!(query_param(location, "error_description").as_deref(), Some("code_challenge_method must be S256"));
    }
    // A challenge with no method means plain (RFC 7636 §4.3): refused the same way.
    let no_method = plain(PUBLIC_CLIENT, REDIRECT_URI).replace("&code_challenge_method=plain", "");
    let answer = get(&gateway, &no_method).await;
    assert_error_redirect(&answer, REDIRECT_URI, "invalid_request", "pl", &gateway.base);
    // With a platform, no login is started either.
    let with_platform = format!("{}&platform_url={}", plain(PUBLIC_CLIENT, REDIRECT_URI), urlencode(&mock.origin));
    let answer = get_json(&gateway, &with_platform).await;
    assert_error(&answer, 400, "invalid_request", "code_challenge_method must be S256");
    assert_eq!(mock_stats(&mock).await["requests"]["token"], Value::Null, "no login was started");
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_the_wrong_code_verifier_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("").await;
    let other_verifier = "another-verifier-9876543210-9876543210-98765";
    let mut others = vec![other_verifier.to_string()];
    for wrong in [other_verifier, "short-verifier", &format!("{VERIFIER}x")] {
        let code = public_code(&gateway, &mock).await;
        let mut form = public_exchange_form(&code);
        form[4] = ("code_verifier", wrong);
        let answer = token(&gateway, &form).await;
        assert_token_error(&answer, 400, "invalid_grant", "PKCE verification failed");
        others.push(code);
    }
    assert_no_secret_logged(&gateway, &others, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_reusing_a_code_is_invalid_grant_and_revokes_the_tokens_of_its_first_use() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(userinfo(&gateway, access).await.status, 200);

    let answer = token(&gateway, &public_exchange_form(&code)).await;
    assert_token_error(&answer, 400, "invalid_grant", "Authorization code already used");
    // RFC 6749 §4.1.2: what the first use issued is revoked.
    let answer = refresh_as_public(&gateway, refresh_token).await;
    assert_token_error(&answer, 400, "invalid_grant", "Session has expired");
    let answer = userinfo(&gateway, access).await;
    assert_error(&answer, 401, "invalid_token", "Session has expired");
    // A third try is refused the same way.
    let answer = token(&gateway, &public_exchange_form(&code)).await;
    assert_token_error(&answer, 400, "invalid_grant", "Authorization code already used");

    // Another user's session on the same gateway is untouched.
    let (other_code, other) = public_tokens(&gateway, &mock).await;
    assert_eq!(userinfo(&gateway, other["access_token"].as_str().unwrap()).await.status, 200);

    assert_no_secret_logged(&gateway, &[code, other_code], &[&tokens, &other]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_a_code_issued_to_another_client_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("").await;
    // The public client's code, presented by the (authenticated) confidential client.
    let code = public_code(&gateway, &mock).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &form).await;
    assert_token_error(&answer, 400, "invalid_grant", "Authorization code was issued to another client");
    // And the other way round, with client_secret_post.
    let code2 = confidential_code(&gateway, &mock, Some(&challenge(VERIFIER))).await;
    let answer = token(
        &gateway,
        &public_exchange_form(&code2).map(|p| {
            if p.0 == "redirect_uri" {
                ("redirect_uri", CONFIDENTIAL_REDIRECT)
            } else {
                p
            }
        }),
    )
    .await;
    assert_token_error(&answer, 400, "invalid_grant", "Authorization code was issued to another client");
    assert_no_secret_logged(&gateway, &[code, code2], &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_with_an_expired_code_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("tokens:\n  authorization_code_ttl_seconds: 1\n").await;
    let code = public_code(&gateway, &mock).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = token(&gateway, &public_exchange_form(&code)).await;
    assert_token_error(&answer, 400, "invalid_grant", "Invalid or expired authorization code");
    // A made-up code is answered the same way.
    let answer = token(&gateway, &public_exchange_form("made-up-code-0123456789")).await;
    assert_token_error(&answer, 400, "invalid_grant", "Invalid or expired authorization code");
    assert_no_secret_logged(&gateway, &[code, "made-up-code-0123456789".to_string()], &[]);
}

// ---------------------------------------------------------------------------------------------------
// POST /token: client authentication
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn token_request_from_an_unknown_client_is_401_invalid_client_and_the_code_stays_usable() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = public_code(&gateway, &mock).await;
    let mut form = public_exchange_form(&code);
    form[3] = ("client_id", "no-such-client");
    let answer = token(&gateway, &form).await;
    assert_token_error(&answer, 401, "invalid_client", "Unknown client");
    assert!(answer.header("www-authenticate").is_none(), "no Basic challenge when Basic was not tried");
    // Tried with HTTP Basic: the challenge says so (RFC 6749 §5.2).
    let unknown_secret = "unknown-client-secret-123";
    let answer = send(
        http()
            .post(gateway.url("/token"))
            .basic_auth("no-such-client", Some(unknown_secret))
            .form(&public_exchange_form(&code)[..3]),
    )
    .await;
    assert_token_error(&answer, 401, "invalid_client", "Unknown client");
    assert_eq!(answer.header("www-authenticate"), Some(r#"Basic realm="ib-oauth-gateway""#));
    // No client_id at all.
    let answer = token(&gateway, &public_exchange_form(&code)[..3]).await;
    assert_token_error(&answer, 401, "invalid_client", "Client authentication required (client_id)");

    let tokens = assert_tokens(&token(&gateway, &public_exchange_form(&code)).await);
    assert_no_secret_logged(&gateway, &[code, unknown_secret.to_string()], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_from_the_confidential_client_with_a_wrong_secret_is_401_invalid_client() {
    let (gateway, mock) = gateway_and_mock("").await;
    let code = confidential_code(&gateway, &mock, None).await;
    let wrong = "wrong-secret-wrong-secret-0";
    let grant = code_grant(&code, CONFIDENTIAL_REDIRECT);

    // client_secret_basic: 401 with a Basic challenge.
    let answer = token_basic(&gateway, wrong, &grant).await;
    assert_token_error(&answer, 401, "invalid_client", "Client authentication failed");
    assert_eq!(answer.header("www-authenticate"), Some(r#"Basic realm="ib-oauth-gateway""#));
    // A prefix of the right secret is not the right secret.
    let answer = token_basic(&gateway, &CONFIDENTIAL_SECRET[..CONFIDENTIAL_SECRET.len() - 1], &grant).await;
    assert_token_error(&answer, 401, "invalid_client", "Client authentication failed");

    // client_secret_post.
    let mut post = grant.to_vec();
    post.extend([("client_id", CONFIDENTIAL_CLIENT), ("client_secret", wrong)]);
    let answer = token(&gateway, &post).await;
    assert_token_error(&answer, 401, "invalid_client", "Client authentication failed");
    // Basic credentials for one client and a form client_id naming another.
    let mut mismatched = grant.to_vec();
    mismatched.push(("client_id", PUBLIC_CLIENT));
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &mismatched).await;
    assert_token_error(&answer, 401, "invalid_client", "client_id does not match the Basic credentials");
    assert_eq!(answer.header("www-authenticate"), Some(r#"Basic realm="ib-oauth-gateway""#));
    // No secret at all.
    let mut none = grant.to_vec();
    none.push(("client_id", CONFIDENTIAL_CLIENT));
    let answer = token(&gateway, &none).await;
    assert_token_error(&answer, 401, "invalid_client", "Client authentication failed");

    // The code was never looked at: the client with its right secret still redeems it.
    let mut right = grant.to_vec();
    right.extend([("client_id", CONFIDENTIAL_CLIENT), ("client_secret", CONFIDENTIAL_SECRET)]);
    let tokens = assert_tokens(&token(&gateway, &right).await);

    assert_no_secret_logged(&gateway, &[code, wrong.to_string()], &[&tokens]);
}

// ---------------------------------------------------------------------------------------------------
// POST /token: the refresh-token grant
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn refresh_with_a_token_of_another_client_is_invalid_grant_and_the_owner_can_still_refresh() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    let answer = token_basic(&gateway, CONFIDENTIAL_SECRET, &form).await;
    assert_token_error(&answer, 400, "invalid_grant", "Invalid or expired refresh token");
    // Nothing was rotated or revoked: the owner refreshes with the same token, and its access token works.
    let next = assert_tokens(&refresh_as_public(&gateway, refresh_token).await);
    assert_ne!(next["refresh_token"], tokens["refresh_token"]);
    assert_eq!(userinfo(&gateway, next["access_token"].as_str().unwrap()).await.status, 200);
    assert_eq!(userinfo(&gateway, tokens["access_token"].as_str().unwrap()).await.status, 200);
    assert_no_secret_logged(&gateway, &[code], &[&tokens, &next]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_with_a_garbage_or_repeated_refresh_token_is_refused_and_the_session_is_intact() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let garbage = "garbage-refresh-token-0123456789";
    // A token of the right shape for this session, but not its token: a guess must not end the session.
    let (session_part, _) = refresh_token.split_once('.').unwrap_or((refresh_token, ""));
    let guessed = format!("{session_part}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    for presented in [garbage, guessed.as_str()] {
        let answer = refresh_as_public(&gateway, presented).await;
        assert_token_error(&answer, 400, "invalid_grant", "Invalid or expired refresh token");
    }
    let answer = token(&gateway, &[("grant_type", "refresh_token"), ("client_id", PUBLIC_CLIENT)]).await;
    assert_token_error(&answer, 400, "invalid_request", "Missing parameter refresh_token");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("refresh_token", refresh_token),
        ("client_id", PUBLIC_CLIENT),
    ];
    let answer = token(&gateway, &form).await;
    assert_token_error(&answer, 400, "invalid_request", "Parameter refresh_token is repeated");
    // A refresh cannot widen the scope.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", PUBLIC_CLIENT),
        ("scope", "profile admin"),
    ];
    let answer = token(&gateway, &form).await;
    assert_token_error(&answer, 400, "invalid_scope", "A refresh cannot widen the scope");
    // None of that touched the session.
    let next = assert_tokens(&refresh_as_public(&gateway, refresh_token).await);
    assert_no_secret_logged(&gateway, &[code, garbage.to_string(), guessed], &[&tokens, &next]);
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_by_another_client_leaves_the_session_alone() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    for name in ["refresh_token", "access_token"] {
        let presented = tokens[name].as_str().unwrap();
        let answer = send(
            http()
                .post(gateway.url("/revoke"))
                .basic_auth(CONFIDENTIAL_CLIENT, Some(CONFIDENTIAL_SECRET))
                .form(&[("token", presented)]),
        )
        .await;
        // RFC 7009 §2.2: answered 200 whatever the token, but nothing is revoked.
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    assert_eq!(userinfo(&gateway, tokens["access_token"].as_str().unwrap()).await.status, 200);
    let next = assert_tokens(&refresh_as_public(&gateway, tokens["refresh_token"].as_str().unwrap()).await);
    assert_no_secret_logged(&gateway, &[code], &[&tokens, &next]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_after_the_session_was_revoked_is_invalid_grant() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    // Revoking the access token ends the whole session (RFC 7009 §2.1).
    let revoked =
        send(http().post(gateway.url("/revoke")).form(&[("token", access), ("client_id", PUBLIC_CLIENT)])).await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let answer = refresh_as_public(&gateway, refresh_token).await;
    assert_token_error(&answer, 400, "invalid_grant", "Session has expired");
    let answer = userinfo(&gateway, access).await;
    assert_error(&answer, 401, "invalid_token", "Session has expired");
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_reusing_an_old_token_after_the_grace_window_is_invalid_grant_and_revokes_the_session() {
    let (gateway, mock) = gateway_and_mock("tokens:\n  refresh_grace_seconds: 1\n").await;
    let (code, first) = public_tokens(&gateway, &mock).await;
    let old = first["refresh_token"].as_str().unwrap();
    let second = assert_tokens(&refresh_as_public(&gateway, old).await);
    let newest = second["refresh_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let answer = refresh_as_public(&gateway, old).await;
    assert_token_error(&answer, 400, "invalid_grant", "Refresh token was already used; the session has been revoked");
    // The whole session is gone: the newest refresh token and the newest access token too.
    let answer = refresh_as_public(&gateway, newest).await;
    assert_token_error(&answer, 400, "invalid_grant", "Session has expired");
    let answer = userinfo(&gateway, second["access_token"].as_str().unwrap()).await;
    assert_error(&answer, 401, "invalid_token", "Session has expired");
    assert_no_secret_logged(&gateway, &[code], &[&first, &second]);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_repeated_inside_the_grace_window_returns_the_same_successor() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, first) = public_tokens(&gateway, &mock).await;
    let old = first["refresh_token"].as_str().unwrap();
    let rotated = assert_tokens(&refresh_as_public(&gateway, old).await);
    let repeated = assert_tokens(&refresh_as_public(&gateway, old).await);
    assert_eq!(repeated["refresh_token"], rotated["refresh_token"], "the same successor, not a second one");
    assert_ne!(repeated["refresh_token"], first["refresh_token"]);
    // The session is intact and counts one refresh: the successor rotates normally.
    let third = assert_tokens(&refresh_as_public(&gateway, rotated["refresh_token"].as_str().unwrap()).await);
    assert_eq!(userinfo(&gateway, third["access_token"].as_str().unwrap()).await.status, 200);
    assert_eq!(userinfo(&gateway, repeated["access_token"].as_str().unwrap()).await.status, 200);
    assert_no_secret_logged(&gateway, &[code], &[&first, &rotated, &repeated, &third]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_responses_carry_cache_control_no_store() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await; // asserts no-store on the 200
    let refreshed = assert_tokens(&refresh_as_public(&gateway, tokens["refresh_token"].as_str().unwrap()).await);
    for answer in [
        token(&gateway, &[("grant_type", "password"), ("client_id", PUBLIC_CLIENT)]).await,
        token(&gateway, &[("client_id", "nobody-at-all")]).await,
        token_raw(&gateway, "application/json", "{}").await,
        send(http().get(gateway.url("/token"))).await,
    ] {
        assert!(answer.status >= 400, "{}", answer.text);
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{} {}", answer.status, answer.text);
    }
    assert_no_secret_logged(&gateway, &[code], &[&tokens, &refreshed]);
}

// ---------------------------------------------------------------------------------------------------
// GET /authorize
// ---------------------------------------------------------------------------------------------------

fn authorize_with(client_id: &str, redirect_uri: &str, rest: &str) -> String {
    format!("/authorize?client_id={client_id}&redirect_uri={}{rest}", urlencode(redirect_uri))
}

fn pkce() -> String {
    format!("&code_challenge={}&code_challenge_method=S256", challenge(VERIFIER))
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_with_an_unknown_or_missing_client_is_shown_and_never_redirected() {
    let (gateway, mock) = gateway_and_mock("").await;
    let unknown = authorize_with("no-such-client", REDIRECT_URI, &format!("&response_type=code&state=u{}", pkce()));
    assert_shown_not_redirected(&get(&gateway, &unknown).await, 401, "invalid_client");
    let answer = get_json(&gateway, &unknown).await;
    assert_error(&answer, 401, "invalid_client", "Unknown client");
    // Even when the login would start.
    let answer = get_json(&gateway, &format!("{unknown}&platform_url={}", urlencode(&mock.origin))).await;
    assert_error(&answer, 401, "invalid_client", "Unknown client");

    let missing = format!("/authorize?response_type=code&redirect_uri={}&state=u{}", urlencode(REDIRECT_URI), pkce());
    assert_shown_not_redirected(&get(&gateway, &missing).await, 400, "invalid_request");
    assert_error(&get_json(&gateway, &missing).await, 400, "invalid_request", "Missing parameter client_id");
    assert_eq!(mock_stats(&mock).await["requests"]["token"], Value::Null, "no login was started");
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_with_a_redirect_uri_that_is_not_registered_is_shown_and_never_redirected() {
    let gateway = GatewayProcess::start("");
    let rest = format!("&response_type=code&state=r{}", pkce());
    for (client, uri) in [
        (PUBLIC_CLIENT, "https://evil.example/callback"),
        (PUBLIC_CLIENT, "http://127.0.0.1:8765/callback/"),
        (PUBLIC_CLIENT, "http://127.0.0.1:8765/callback?x=1"),
        (PUBLIC_CLIENT, "http://127.0.0.1:8765@evil.example/callback"),
        (PUBLIC_CLIENT, "http://localhost:8765/callback"),
        (CONFIDENTIAL_CLIENT, "https://reports.example.com/oauth/callback/"),
        (CONFIDENTIAL_CLIENT, "https://reports.example.com.evil.example/oauth/callback"),
        // A URI registered for another client.
        (CONFIDENTIAL_CLIENT, REDIRECT_URI),
    ] {
        let query = authorize_with(client, uri, &rest);
        let answer = get(&gateway, &query).await;
        assert_shown_not_redirected(&answer, 400, "invalid_request");
        let answer = get_json(&gateway, &query).await;
        assert_error(&answer, 400, "invalid_request", "redirect_uri is not registered for this client");
    }
    // Missing, or given twice (which one would be trusted?).
    let missing = format!("/authorize?client_id={PUBLIC_CLIENT}{rest}");
    assert_shown_not_redirected(&get(&gateway, &missing).await, 400, "invalid_request");
    let twice =
        format!("{}&redirect_uri={}", authorize_with(PUBLIC_CLIENT, REDIRECT_URI, &rest), urlencode(REDIRECT_URI));
    assert_shown_not_redirected(&get(&gateway, &twice).await, 400, "invalid_request");
    assert_error(&get_json(&gateway, &twice).await, 400, "invalid_request", "Parameter redirect_uri is repeated");
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_without_response_type_is_redirected_as_invalid_request_with_state() {
    let gateway = GatewayProcess::start("");
    let query = authorize_with(PUBLIC_CLIENT, REDIRECT_URI, &format!("&state=no-rt{}", pkce()));
    let answer = get(&gateway, &query).await;
    assert_error_redirect(&answer, REDIRECT_URI, "invalid_request", "no-rt", &gateway.base);
    assert_eq!(
        query_param(answer.header("location").unwrap(), "error_description").as_deref(),
        Some("Missing parameter response_type")
    );
    // A client that asks for JSON gets the same error as JSON.
    assert_error(&get_json(&gateway, &query).await, 400, "invalid_request", "Missing parameter response_type");
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_with_response_type_token_is_redirected_as_unsupported_response_type_with_state() {
    let gateway = GatewayProcess::start("");
    for response_type in ["token", "code%20id_token", "id_token", "CODE"] {
        let query =
            authorize_with(PUBLIC_CLIENT, REDIRECT_URI, &format!("&response_type={response_type}&state=imp{}", pkce()));
        let answer = get(&gateway, &query).await;
        assert_error_redirect(&answer, REDIRECT_URI, "unsupported_response_type", "imp", &gateway.base);
        assert!(answer.header("location").unwrap().find('#').is_none(), "the error is in the query, not a fragment");
        assert_error(&get_json(&gateway, &query).await, 400, "unsupported_response_type", "response_type must be code");
    }
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_by_the_public_client_without_code_challenge_is_redirected_as_invalid_request() {
    let (gateway, mock) = gateway_and_mock("").await;
    let query = authorize_with(PUBLIC_CLIENT, REDIRECT_URI, "&response_type=code&scope=profile&state=nopkce");
    let answer = get(&gateway, &query).await;
    assert_error_redirect(&answer, REDIRECT_URI, "invalid_request", "nopkce", &gateway.base);
    assert_eq!(
        query_param(answer.header("location").unwrap(), "error_description").as_deref(),
        Some("PKCE is required: send code_challenge with S256")
    );
    // A method without a challenge, or a challenge that is not a S256 value.
    for rest in [
        "&code_challenge_method=S256".to_string(),
        "&code_challenge=tooshort&code_challenge_method=S256".to_string(),
        format!("&code_challenge={}%2B&code_challenge_method=S256", "a".repeat(43)),
    ] {
        let answer = get(&gateway, &format!("{query}{rest}")).await;
        assert_error_redirect(&answer, REDIRECT_URI, "invalid_request", "nopkce", &gateway.base);
    }
    // No login is started for such a request.
    let answer = get_json(&gateway, &format!("{query}&platform_url={}", urlencode(&mock.origin))).await;
    assert_error(&answer, 400, "invalid_request", "PKCE is required: send code_challenge with S256");
    assert_eq!(mock_stats(&mock).await["requests"]["token"], Value::Null, "no login was started");
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_with_an_unknown_scope_is_redirected_as_invalid_scope() {
    let gateway = GatewayProcess::start("");
    for scope in ["admin", "profile%20admin", "openid"] {
        let query = authorize_with(
            PUBLIC_CLIENT,
            REDIRECT_URI,
            &format!("&response_type=code&scope={scope}&state=sc{}", pkce()),
        );
        let answer = get(&gateway, &query).await;
        assert_error_redirect(&answer, REDIRECT_URI, "invalid_scope", "sc", &gateway.base);
        let answer = get_json(&gateway, &query).await;
        assert_eq!((answer.status, answer.body["error"].as_str()), (400, Some("invalid_scope")), "{}", answer.text);
    }
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn authorize_refuses_platform_urls_outside_the_policy_without_contacting_any_platform() {
    let (gateway, mock) = gateway_and_mock("").await;
    let mock_authority = mock.origin.trim_start_matches("http://").to_string();
    let mut refused = vec![
        "localhost".to_string(),
        "http://localhost:8080".to_string(),
        "169.254.169.254".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "evil.com".to_string(),
        "evil.com#.intelligencebank.com".to_string(),
        "evil.com?.intelligencebank.com".to_string(),
        "evil.com/.intelligencebank.com".to_string(),
        "company.intelligencebank.com.evil.com".to_string(),
        "https://user@company.intelligencebank.com".to_string(),
        "https://company.intelligencebank.com:8443".to_string(),
        "http://company.intelligencebank.com".to_string(),
        "intelligencebank.com".to_string(),
        "[::1]".to_string(),
        "2130706433".to_string(),
        "company.intelligencebank.com.".to_string(),
        "company%2eintelligencebank.com".to_string(),
        "ftp://company.intelligencebank.com".to_string(),
    ];
    // Near misses of the mock itself (allowed as `http://127.0.0.1:PORT` in tests): had any of these been
    // let through, the mock would have counted a login request.
    refused.extend([
        format!("http://user@{mock_authority}"),
        format!("http://{mock_authority}@evil.com"),
        format!("{}/auth", mock.origin),
        format!("{}?x=1", mock.origin),
        format!("{}#x", mock.origin),
        format!("http://localhost:{}", mock_authority.rsplit(':').next().unwrap()),
        format!("http://{mock_authority}.evil.com"),
        format!(" {}", mock.origin),
    ]);
    let base = authorize_query("pu");
    for platform_url in &refused {
        let answer = get_json(&gateway, &format!("/authorize?{base}&platform_url={}", urlencode(platform_url))).await;
        assert_eq!(answer.status, 400, "{platform_url}: {}", answer.text);
        assert_eq!(answer.body["error"], "invalid_request", "{platform_url}: {}", answer.text);
        let description = answer.body["error_description"].as_str().unwrap();
        assert!(description.starts_with("platform_url: "), "{platform_url}: {description}");
        assert!(answer.header("location").is_none());
        assert!(answer.body.get("loginUrl").is_none() && answer.body.get("token").is_none());
    }
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["requests"]["token"], Value::Null, "the mock saw a login request: {stats}");
    assert_eq!(stats["requests_total"], 1, "only the stats call itself: {stats}");

    // The control: the mock's own origin is allowed, and that login does reach it.
    let started = get_json(&gateway, &format!("/authorize?{base}&platform_url={}", urlencode(&mock.origin))).await;
    assert_eq!(started.status, 200, "{}", started.text);
    assert_eq!(mock_stats(&mock).await["requests"]["token"], 1);
    let poll_token = started.body["token"].as_str().unwrap().to_string();
    assert_no_secret_logged(&gateway, &[poll_token], &[]);
}

// ---------------------------------------------------------------------------------------------------
// GET /authorize/poll
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn poll_with_an_unknown_or_missing_token_is_invalid_request() {
    let gateway = GatewayProcess::start("");
    let unknown = "unknown-poll-token-0123456789abcdef";
    let answer = get(&gateway, &format!("/authorize/poll?token={unknown}")).await;
    assert_error(&answer, 400, "invalid_request", "Unknown or expired login attempt; start again");
    for query in ["", "?token=", "?other=1"] {
        let answer = get(&gateway, &format!("/authorize/poll{query}")).await;
        assert_error(&answer, 400, "invalid_request", "Missing parameter token");
    }
    let answer = get(&gateway, &format!("/authorize/poll?token={unknown}&token={unknown}")).await;
    assert_error(&answer, 400, "invalid_request", "Parameter token is repeated");
    assert_no_secret_logged(&gateway, &[unknown.to_string()], &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn poll_token_is_single_use_once_the_code_is_issued() {
    let (gateway, mock) = gateway_and_mock("").await;
    let started =
        get_json(&gateway, &format!("/authorize?{}&platform_url={}", authorize_query("p1"), urlencode(&mock.origin)))
            .await;
    let poll_token = started.body["token"].as_str().unwrap().to_string();
    let ib_token = query_param(started.body["loginUrl"].as_str().unwrap(), "token").unwrap();
    complete_login(&mock, &ib_token, "").await;
    let done = get(&gateway, &format!("/authorize/poll?token={poll_token}")).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let code = code_of(done.body["redirect_url"].as_str().unwrap());
    let again = get(&gateway, &format!("/authorize/poll?token={poll_token}")).await;
    assert_error(&again, 400, "invalid_request", "Unknown or expired login attempt; start again");
    let tokens = assert_tokens(&token(&gateway, &public_exchange_form(&code)).await);
    assert_no_secret_logged(&gateway, &[poll_token, code], &[&tokens]);
}

// ---------------------------------------------------------------------------------------------------
// Methods and paths
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn wrong_method_is_405_with_allow_and_unknown_path_is_404_json() {
    let gateway = GatewayProcess::start("");
    let client = http();
    for (method, path, allow) in [
        (reqwest::Method::GET, "/token", "POST"),
        (reqwest::Method::PUT, "/token", "POST"),
        (reqwest::Method::DELETE, "/token", "POST"),
        (reqwest::Method::POST, "/authorize", "GET"),
        (reqwest::Method::POST, "/authorize/poll", "GET"),
        (reqwest::Method::GET, "/revoke", "POST"),
        (reqwest::Method::GET, "/introspect", "POST"),
        (reqwest::Method::DELETE, "/userinfo", "GET, POST"),
        (reqwest::Method::POST, "/.well-known/oauth-authorization-server", "GET"),
    ] {
        let answer = send(client.request(method.clone(), gateway.url(path))).await;
        let description = format!("Method not allowed; use {allow}");
        assert_error(&answer, 405, "method_not_allowed", &description);
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
    for path in ["/nope", "/token/", "/authorize/x", "/TOKEN", "/.well-known/openid-configuration", "/"] {
        let answer = get(&gateway, path).await;
        assert_error(&answer, 404, "not_found", "No such endpoint");
    }
    // A 405 on /token is decided before the body is read: a form with a code in it is not looked at.
    let marker = "code-in-a-get-request-0123456789";
    let answer = get(&gateway, &format!("/token?grant_type=authorization_code&code={marker}")).await;
    assert_error(&answer, 405, "method_not_allowed", "Method not allowed; use POST");
    assert_no_secret_logged(&gateway, &[marker.to_string()], &[]);
}

// ---------------------------------------------------------------------------------------------------
// /userinfo
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_without_authorization_is_401_with_a_bare_bearer_challenge() {
    let gateway = GatewayProcess::start("");
    for request in [http().get(gateway.url("/userinfo")), http().post(gateway.url("/userinfo"))] {
        let answer = send(request).await;
        assert_eq!(answer.status, 401, "{}", answer.text);
        let challenge = answer.header("www-authenticate").expect("WWW-Authenticate");
        let metadata = format!("{}/.well-known/oauth-protected-resource", gateway.base);
        assert_eq!(challenge, format!(r#"Bearer resource_metadata="{metadata}""#));
        assert!(!challenge.contains("error="), "RFC 6750 §3.1: no error code without credentials: {challenge}");
        assert!(answer.body["error"].is_string() && answer.body["error_description"].is_string(), "{}", answer.text);
    }
    assert_log_free_of(&gateway, &fixed_secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_with_a_garbage_or_malformed_bearer_is_401_invalid_token() {
    let gateway = GatewayProcess::start("");
    let garbage = "garbage-token-5f1e0c2d9a8b7c6d";
    let metadata = format!("{}/.well-known/oauth-protected-resource", gateway.base);
    let expected_challenge = format!(
        r#"Bearer error="invalid_token", error_description="Invalid or expired access token", resource_metadata="{metadata}""#
    );
    let forged_jwt = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.forged-signature-000";
    for authorization in [
        format!("Bearer {garbage}"),
        format!("bearer {garbage}"),
        format!("Bearer {forged_jwt}"),
        format!("Basic {garbage}"),
        "Bearer".to_string(),
        "Bearer    ".to_string(),
        garbage.to_string(),
    ] {
        let answer = send(http().get(gateway.url("/userinfo")).header("Authorization", &authorization)).await;
        assert_error(&answer, 401, "invalid_token", "Invalid or expired access token");
        assert_eq!(answer.header("www-authenticate"), Some(expected_challenge.as_str()), "{authorization}");
    }
    assert_no_secret_logged(&gateway, &[garbage.to_string(), forged_jwt.to_string()], &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_does_not_accept_a_token_in_the_query_string_or_form_body() {
    let (gateway, mock) = gateway_and_mock("").await;
    let (code, tokens) = public_tokens(&gateway, &mock).await;
    let access = tokens["access_token"].as_str().unwrap();
    let answer = get(&gateway, &format!("/userinfo?access_token={access}")).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert!(answer.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer ") && !c.contains("error=")));
    let answer = send(http().post(gateway.url("/userinfo")).form(&[("access_token", access)])).await;
    assert_eq!(answer.status, 401, "{}", answer.text);
    // The same token in the header is good.
    let answer = userinfo(&gateway, access).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_no_secret_logged(&gateway, &[code], &[&tokens]);
}
