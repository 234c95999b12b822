//! `/authorize` against a real gateway process and the mock platform: every stored parameter is bounded
//! (refused before IB is called or anything is stored).

mod common;

use common::*;

/// How many times the mock was asked to start an IB login (`POST /v1/auth/app/token`).
async fn ib_login_starts(mock: &ib_oauth_gateway::mock::MockHandle) -> u64 {
    mock_stats(mock).await["requests"]["token"].as_u64().unwrap_or(0)
}

/// A JSON start of `query` at the mock's platform.
async fn start(gateway: &GatewayProcess, origin: &str, query: &str) -> Answer {
    let url = gateway.url(&format!("/authorize?{query}&platform_url={}", urlencode(origin)));
    send(http().get(url).header("Accept", "application/json")).await
}

// Task A: bounds of every stored parameter.

#[tokio::test]
async fn a_60_kib_state_is_refused_before_ib_is_called_or_anything_is_stored() {
    let (gateway, mock) = gateway_and_mock("").await;
    let state = "s".repeat(60 * 1024);
    let refused = start(&gateway, &mock.origin, &authorize_query(&state)).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"], "invalid_request");
    assert_eq!(refused.body["error_description"], "Parameter state is longer than 512 bytes");
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
    let accepted = start(&gateway, &mock.origin, &base(&"s".repeat(512), "profile")).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let refused = start(&gateway, &mock.origin, &base(&"s".repeat(513), "profile")).await;
    assert_eq!((refused.status, refused.body["error_description"].clone()), (400, too_long("state", 512).into()));

    // scope: 256 accepted (extra spaces separate nothing), 257 refused.
    let scope = format!("profile{}", " ".repeat(249));
    assert_eq!(scope.len(), 256);
    let accepted = start(&gateway, &mock.origin, &base("sc", &scope)).await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    let refused = start(&gateway, &mock.origin, &base("sc", &format!("{scope} "))).await;
    assert_eq!((refused.status, refused.body["error_description"].clone()), (400, too_long("scope", 256).into()));
    assert_eq!(ib_login_starts(&mock).await, 2);

    // platform_url: 512 passes the length check (and is then refused by the platform policy), 513 is refused.
    for (length, expected) in [(512, None), (513, Some(too_long("platform_url", 512)))] {
        let platform = format!("{}{}", mock.origin, "/".repeat(length - mock.origin.len()));
        let answer = start(&gateway, &platform, &base("pu", "profile")).await;
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
        let answer = start(&gateway, &mock.origin, &query).await;
        assert_eq!((answer.status, answer.body["error_description"].as_str()), (400, Some(expected.as_str())));
    }

    // client_id: 128 is looked up (unknown), 129 is refused.
    for (length, status, expected) in [(128, 401, "Unknown client".to_string()), (129, 400, too_long("client_id", 128))]
    {
        let query =
            format!("response_type=code&client_id={}&redirect_uri={}", "c".repeat(length), urlencode(REDIRECT_URI));
        let answer = start(&gateway, &mock.origin, &query).await;
        assert_eq!((answer.status, answer.body["error_description"].as_str()), (status, Some(expected.as_str())));
    }
    assert_eq!(ib_login_starts(&mock).await, 2, "only the two accepted starts reached IB");
}
