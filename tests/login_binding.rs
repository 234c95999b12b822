//! `/authorize` against a real gateway process and the mock platform: every stored parameter is bounded
//! (refused before IB is called or anything is stored), a login started by the sign-in page is bound to its
//! browser by a cookie (RFC 8628 §5.4, see docs/security.md "Login phishing"), headless starts are allowed
//! only to clients with `allow_headless_login`, and the sign-in page names the client and the redirect host.

mod common;

use common::*;
use ib_oauth_gateway::mock::MockSettings;

const PAGE_HEADER: &str = "X-IBGW-Login-Page";
const UNKNOWN_ATTEMPT: &str = "Unknown or expired login attempt; start again";

/// How many times the mock was asked to start an IB login (`POST /v1/auth/app/token`).
async fn ib_login_starts(mock: &ib_oauth_gateway::mock::MockHandle) -> u64 {
    mock_stats(mock).await["requests"]["token"].as_u64().unwrap_or(0)
}

/// A JSON start of `query` at the mock's platform; `page`: as the sign-in page's script does it.
async fn start(gateway: &GatewayProcess, origin: &str, query: &str, page: bool) -> Answer {
    let url = gateway.url(&format!("/authorize?{query}&platform_url={}", urlencode(origin)));
    let mut request = http().get(url).header("Accept", "application/json");
    if page {
        request = request.header(PAGE_HEADER, "1");
    }
    send(request).await
}

async fn poll(gateway: &GatewayProcess, token: &str, cookie: Option<&str>) -> Answer {
    let mut request = http().get(gateway.url(&format!("/authorize/poll?token={token}")));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    send(request).await
}

/// The `name=value` pair of the answer's `Set-Cookie` header.
fn cookie_pair(answer: &Answer) -> String {
    let set_cookie = answer.header("set-cookie").unwrap_or_else(|| panic!("no Set-Cookie: {:?}", answer.headers));
    set_cookie.split(';').next().unwrap().trim().to_string()
}

#[track_caller]
fn assert_unknown_attempt(answer: &Answer) {
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.body["error"], "invalid_request");
    assert_eq!(answer.body["error_description"], UNKNOWN_ATTEMPT);
}

#[tokio::test]
async fn a_page_start_binds_the_poll_to_the_browser_that_holds_its_cookie() {
    let (gateway, mock) = gateway_and_mock("").await;
    let started = start(&gateway, &mock.origin, &authorize_query("bound"), true).await;
    assert_eq!(started.status, 200, "{}", started.text);
    // Plain-http development gateway: no `__Host-` prefix and no `Secure` (browsers refuse both over http).
    let set_cookie = started.header("set-cookie").unwrap().to_string();
    assert!(set_cookie.starts_with("ibgw_login="), "{set_cookie}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Strict", "; Max-Age=600"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure;") && !set_cookie.ends_with("Secure"), "{set_cookie}");
    let cookie = cookie_pair(&started);
    let value = cookie.split_once('=').unwrap().1.to_string();
    assert_eq!(value.len(), 43, "256 random bits, base64url");
    let token = started.body["token"].as_str().unwrap().to_string();
    let ib_token = query_param(started.body["loginUrl"].as_str().unwrap(), "token").unwrap();

    // Another browser: its own page start gives it a cookie of its own.
    let other = start(&gateway, &mock.origin, &authorize_query("other"), true).await;
    let other_cookie = cookie_pair(&other);
    assert_ne!(other_cookie, cookie);

    assert_unknown_attempt(&poll(&gateway, &token, None).await);
    assert_unknown_attempt(&poll(&gateway, &token, Some(&other_cookie)).await);
    assert_unknown_attempt(&poll(&gateway, &token, Some("ibgw_login=not-a-binding")).await);
    let pending = poll(&gateway, &token, Some(&format!("theme=dark; {cookie}"))).await;
    assert_eq!((pending.status, pending.body["error"].as_str()), (404, Some("authorization_pending")));

    // The user completes the IB login: the code still goes only to the browser that started it, and the refused
    // polls did not spend the attempt.
    complete_login(&mock, &ib_token, "").await;
    assert_unknown_attempt(&poll(&gateway, &token, None).await);
    assert_unknown_attempt(&poll(&gateway, &token, Some(&other_cookie)).await);
    let done = poll(&gateway, &token, Some(&cookie)).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let redirect = done.body["redirect_url"].as_str().unwrap().to_string();
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("bound"));
    let (status, tokens) = exchange(&gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    assert_unknown_attempt(&poll(&gateway, &token, Some(&cookie)).await);
    assert_log_free_of(&gateway, &[value.as_str(), token.as_str(), &query_param(&redirect, "code").unwrap()]);
}

#[tokio::test]
async fn one_browser_keeps_its_binding_across_two_sign_ins() {
    let (gateway, mock) = gateway_and_mock("").await;
    let first = start(&gateway, &mock.origin, &authorize_query("one"), true).await;
    let cookie = cookie_pair(&first);
    let second = send(
        http()
            .get(gateway.url(&format!(
                "/authorize?{}&platform_url={}",
                authorize_query("two"),
                urlencode(&mock.origin)
            )))
            .header("Accept", "application/json")
            .header(PAGE_HEADER, "1")
            .header("Cookie", &cookie),
    )
    .await;
    assert_eq!(cookie_pair(&second), cookie, "the browser's binding is reused, so the first sign-in still polls");
    for started in [&first, &second] {
        let pending = poll(&gateway, started.body["token"].as_str().unwrap(), Some(&cookie)).await;
        assert_eq!(pending.status, 404, "{}", pending.text);
    }
}

#[tokio::test]
async fn over_https_the_cookie_is_host_prefixed_and_secure() {
    let gateway = GatewayProcess::start_with("", Some("https://gateway.example.com"));
    let mock = start_mock(MockSettings::default()).await;
    let started = start(&gateway, &mock.origin, &authorize_query("tls"), true).await;
    assert_eq!(started.status, 200, "{}", started.text);
    let set_cookie = started.header("set-cookie").unwrap();
    assert!(set_cookie.starts_with("__Host-ibgw_login="), "{set_cookie}");
    for attribute in ["; Path=/", "; HttpOnly", "; Secure", "; SameSite=Strict"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let token = started.body["token"].as_str().unwrap();
    let cookie = cookie_pair(&started);
    assert_unknown_attempt(&poll(&gateway, token, Some(&cookie.replace("__Host-", ""))).await);
    assert_eq!(poll(&gateway, token, Some(&cookie)).await.status, 404);
}

#[tokio::test]
async fn the_legacy_client_still_starts_and_polls_headless_with_the_old_json() {
    let (gateway, mock) = gateway_and_mock("").await;
    let started = start(&gateway, &mock.origin, &authorize_query("old"), false).await;
    assert_eq!(started.status, 200, "{}", started.text);
    assert!(started.header("set-cookie").is_none(), "a headless start sets no cookie");
    let keys: Vec<&str> = started.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["expires_in", "loginUrl", "token"]);
    let token = started.body["token"].as_str().unwrap();
    let pending = poll(&gateway, token, None).await;
    assert_eq!(pending.status, 404);
    assert_eq!(pending.body["error"], "authorization_pending");
    // The whole old-client flow (tests/common `login()`: headless start, cookie-less polls).
    let redirect = login(&gateway, &mock, &authorize_query("old2"), "").await;
    let done_keys = exchange(&gateway, &redirect).await;
    assert_eq!(done_keys.0, 200, "{}", done_keys.1);
}

#[tokio::test]
async fn a_headless_start_is_refused_before_ib_for_clients_without_allow_headless_login() {
    let (gateway, mock) = gateway_and_mock("").await;
    // The confidential client has no `allow_headless_login`.
    let refused = start(&gateway, &mock.origin, &confidential_authorize_query("h", None), false).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"], "invalid_request");
    assert!(refused.body["error_description"].as_str().unwrap().contains("must use the sign-in page"));
    assert!(refused.header("set-cookie").is_none());
    // A registered client never may.
    let registration = send(
        http()
            .post(gateway.url("/register"))
            .header("Content-Type", "application/json")
            .body(r#"{"redirect_uris":["http://127.0.0.1:9999/callback"],"client_name":"Headless"}"#),
    )
    .await;
    assert_eq!(registration.status, 201, "{}", registration.text);
    let client_id = registration.body["client_id"].as_str().unwrap();
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        urlencode("http://127.0.0.1:9999/callback"),
        challenge(VERIFIER)
    );
    let refused = start(&gateway, &mock.origin, &query, false).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(ib_login_starts(&mock).await, 0, "IB was called for a refused start");
    // Both may sign in through the page.
    for query in [confidential_authorize_query("p", None), query] {
        let started = start(&gateway, &mock.origin, &query, true).await;
        assert_eq!(started.status, 200, "{}", started.text);
        assert!(started.header("set-cookie").is_some());
    }
    assert_eq!(ib_login_starts(&mock).await, 2);
}

#[tokio::test]
async fn the_sign_in_page_names_the_client_and_the_redirect_host_escaped() {
    let (gateway, _mock) = gateway_and_mock("").await;
    let page = send(http().get(gateway.url(&format!("/authorize?{}", authorize_query("c"))))).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("to let <strong>mcp-public-client</strong>"), "{}", page.text);
    assert!(page.text.contains("<strong>127.0.0.1:8765</strong>"), "{}", page.text);

    let registration = send(http().post(gateway.url("/register")).header("Content-Type", "application/json").body(
        r#"{"redirect_uris":["https://evil.example.com/cb"],"client_name":"<img src=x onerror=alert(1)> & \"Co\""}"#,
    ))
    .await;
    assert_eq!(registration.status, 201, "{}", registration.text);
    let client_id = registration.body["client_id"].as_str().unwrap();
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        urlencode("https://evil.example.com/cb"),
        challenge(VERIFIER)
    );
    let page = send(http().get(gateway.url(&format!("/authorize?{query}")))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("&lt;img src=x onerror=alert(1)&gt; &amp; &quot;Co&quot;"), "{}", page.text);
    assert!(!page.text.contains("<img"), "{}", page.text);
    assert!(page.text.contains("(returning to\n<strong>evil.example.com</strong>)"), "{}", page.text);
}

// Task A: bounds of every stored parameter.

#[tokio::test]
async fn a_60_kib_state_is_refused_before_ib_is_called_or_anything_is_stored() {
    let (gateway, mock) = gateway_and_mock("").await;
    let state = "s".repeat(60 * 1024);
    for page in [false, true] {
        let refused = start(&gateway, &mock.origin, &authorize_query(&state), page).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.body["error"], "invalid_request");
        assert_eq!(refused.body["error_description"], "Parameter state is longer than 512 bytes");
        assert!(refused.header("set-cookie").is_none());
    }
    // The browser's first visit: the error is shown, not redirected, so the state is never echoed.
    let shown = send(http().get(gateway.url(&format!("/authorize?{}", authorize_query(&state))))).await;
    assert_eq!(shown.status, 400);
    assert!(shown.header("location").is_none());
    assert!(shown.text.contains("Parameter state is longer than 512 bytes") && !shown.text.contains(&state));
    assert_eq!(ib_login_starts(&mock).await, 0, "IB was asked to start a login");
}

#[tokio::test]
async fn every_stored_parameter_has_a_limit_at_its_boundary() {
    let (gateway, mock) = gateway_and_mock("").await;
    let base = |state: &str, scope: &str| {
        format!(
            "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&scope={}&state={state}&code_challenge={}&code_challenge_method=S256",
            urlencode(REDIRECT_URI),
            urlencode(scope),
            challenge(VERIFIER)
        )
    };
    let too_long = |name: &str, max: usize| format!("Parameter {name} is longer than {max} bytes");

    // state: 512 accepted, 513 refused.
    let accepted = start(&gateway, &mock.origin, &base(&"s".repeat(512), "profile"), false).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let refused = start(&gateway, &mock.origin, &base(&"s".repeat(513), "profile"), false).await;
    assert_eq!((refused.status, refused.body["error_description"].clone()), (400, too_long("state", 512).into()));

    // scope: 256 accepted (extra spaces separate nothing), 257 refused.
    let scope = format!("profile{}", " ".repeat(249));
    assert_eq!(scope.len(), 256);
    let accepted = start(&gateway, &mock.origin, &base("sc", &scope), false).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let refused = start(&gateway, &mock.origin, &base("sc", &format!("{scope} ")), false).await;
    assert_eq!((refused.status, refused.body["error_description"].clone()), (400, too_long("scope", 256).into()));
    assert_eq!(ib_login_starts(&mock).await, 2);

    // platform_url: 512 passes the length check (and is then refused by the platform policy), 513 is refused.
    for (length, expected) in [(512, None), (513, Some(too_long("platform_url", 512)))] {
        let platform = format!("{}{}", mock.origin, "/".repeat(length - mock.origin.len()));
        let answer = start(&gateway, &platform, &base("pu", "profile"), false).await;
        assert_eq!(answer.status, 400, "{}", answer.text);
        let description = answer.body["error_description"].as_str().unwrap().to_string();
        match expected {
            Some(expected) => assert_eq!(description, expected),
            None => assert!(description.starts_with("platform_url: "), "{description}"),
        }
    }

    // redirect_uri: 2048 passes the length check (and is not registered), 2049 is refused.
    for (length, expected) in
        [(2048, "redirect_uri is not registered for this client".to_string()), (2049, too_long("redirect_uri", 2048))]
    {
        let uri = format!("{REDIRECT_URI}{}", "x".repeat(length - REDIRECT_URI.len()));
        let query = format!(
            "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
            urlencode(&uri),
            challenge(VERIFIER)
        );
        let answer = start(&gateway, &mock.origin, &query, false).await;
        assert_eq!((answer.status, answer.body["error_description"].as_str()), (400, Some(expected.as_str())));
    }

    // client_id: 128 is looked up (unknown), 129 is refused.
    for (length, status, expected) in [(128, 401, "Unknown client".to_string()), (129, 400, too_long("client_id", 128))]
    {
        let query =
            format!("response_type=code&client_id={}&redirect_uri={}", "c".repeat(length), urlencode(REDIRECT_URI));
        let answer = start(&gateway, &mock.origin, &query, false).await;
        assert_eq!((answer.status, answer.body["error_description"].as_str()), (status, Some(expected.as_str())));
    }
    assert_eq!(ib_login_starts(&mock).await, 2, "only the two accepted starts reached IB");
}
