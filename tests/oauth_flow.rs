//! The authorization server end to end: a real gateway process, the mock IntelligenceBank platform over
//! real HTTP, and a standard OAuth client's view of it.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn whole_flow_authorize_login_poll_token_userinfo_refresh_until_the_limit() {
    let (gateway, mock) = gateway_and_mock("tokens:\n  max_refresh_count: 3\n").await;
    let http = http();

    // The page asks for the platform, with a strict CSP and no inline script.
    let page = http.get(gateway.url(&format!("/authorize?{}", authorize_query("xyz")))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("platform_url") && html.contains("/authorize/app.js"));

    let redirect = login(&gateway, &mock, &authorize_query("xyz"), "&logintimeoutperiod=8").await;
    assert!(redirect.starts_with(REDIRECT_URI), "{redirect}");
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&redirect, "iss").as_deref(), Some(gateway.base.as_str()));

    let (status, tokens) = exchange(&gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["logintimeoutperiod"], 8);
    let sid = tokens["sid"].as_str().unwrap().to_string();
    assert!(!sid.is_empty());
    assert_eq!(tokens["clientid"], "mockclient");
    assert_eq!(tokens["apiV3url"], mock.origin.as_str());
    assert_eq!(tokens["platform_url"], mock.origin.as_str());
    assert_eq!(tokens["client_id"], "mockclient");
    let created = tokens["sidCreatedAt"].as_u64().unwrap();
    assert_eq!(tokens["sidExpiry"].as_u64().unwrap(), created + 8 * 3600);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    assert!(!access.contains(&sid), "the access token never carries the IB sid");

    let userinfo: Value =
        http.get(gateway.url("/userinfo")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_eq!(userinfo["updated_at"].as_u64(), Some(created), "updated_at is in seconds");
    assert_eq!(userinfo["ib_client_id"], "mockclient");
    assert_eq!(userinfo["ib_session_id"], sid.as_str());
    assert!(userinfo["sub"].as_str().is_some_and(|s| !s.is_empty()));

    let mut refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    for _ in 1..=3 {
        let (status, next) = refresh(&gateway, &refresh_token).await;
        assert_eq!(status, 200, "{next}");
        assert_eq!(next["sid"], sid.as_str(), "a refresh keeps the IB session");
        assert_eq!(next["sidCreatedAt"].as_u64(), Some(created), "a refresh never resets sidCreatedAt");
        assert_ne!(next["refresh_token"], refresh_token.as_str());
        refresh_token = next["refresh_token"].as_str().unwrap().to_string();
    }
    let (status, refused) = refresh(&gateway, &refresh_token).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(refused["error_description"], "Session refresh limit exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn short_logintimeoutperiod_expires_the_session() {
    let (gateway, mock) = gateway_and_mock("").await;
    let now = ib_oauth_gateway::store::now_unix();
    // IB's shortest timeout is one hour: a login that began an hour ago, less three seconds.
    let login_time = now - 3600 + 3;
    let redirect =
        login(&gateway, &mock, &authorize_query("s"), &format!("&logintimeoutperiod=1&loginTime={login_time}")).await;
    let (status, tokens) = exchange(&gateway, &redirect).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["sidExpiry"].as_u64(), Some(login_time + 3600));
    assert!(tokens["expires_in"].as_u64().unwrap() <= 3, "the access token is capped at the session");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (status, refused) = refresh(&gateway, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, refused["error_description"].as_str()), (400, Some("Session has expired")), "{refused}");
    let userinfo = http().get(gateway.url("/userinfo")).bearer_auth(tokens["access_token"].as_str().unwrap()).send();
    let userinfo = userinfo.await.unwrap();
    assert_eq!(userinfo.status(), 401);
    let challenge = userinfo.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    let body: Value = userinfo.json().await.unwrap();
    assert_eq!(body["error_description"], "Session has expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_the_refresh_token_ends_the_session() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let (status, body) =
        post_form(&gateway.url("/revoke"), &[("token", refresh_token), ("client_id", PUBLIC_CLIENT)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, refused) = refresh(&gateway, refresh_token).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"], "invalid_grant");
    let userinfo = http().get(gateway.url("/userinfo")).bearer_auth(tokens["access_token"].as_str().unwrap()).send();
    assert_eq!(userinfo.await.unwrap().status(), 401);
    // Unknown tokens are answered 200 too (RFC 7009 §2.2).
    let (status, _) = post_form(&gateway.url("/revoke"), &[("token", "nonsense"), ("client_id", PUBLIC_CLIENT)]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_needs_a_confidential_client_and_reports_activity() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let access = tokens["access_token"].as_str().unwrap();
    let (status, body) =
        post_form(&gateway.url("/introspect"), &[("token", access), ("client_id", PUBLIC_CLIENT)]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let introspect = |token: String| {
        let url = gateway.url("/introspect");
        async move {
            let response = http()
                .post(url)
                .basic_auth(CONFIDENTIAL_CLIENT, Some(CONFIDENTIAL_SECRET))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let active = introspect(access.to_string()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], PUBLIC_CLIENT);
    assert_eq!(introspect(tokens["refresh_token"].as_str().unwrap().to_string()).await["active"], true);
    let inactive = introspect("garbage".into()).await;
    assert_eq!(inactive, serde_json::json!({"active": false}));
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_documents_parse_and_point_at_this_gateway() {
    let gateway = GatewayProcess::start("");
    let metadata: Value =
        http().get(gateway.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(metadata["issuer"], gateway.base.as_str());
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    for endpoint in ["authorization_endpoint", "token_endpoint", "registration_endpoint", "jwks_uri"] {
        assert!(metadata[endpoint].as_str().unwrap().starts_with(&gateway.base), "{endpoint}");
    }
    let resource: Value =
        http().get(gateway.url("/.well-known/oauth-protected-resource")).send().await.unwrap().json().await.unwrap();
    assert_eq!(resource["authorization_servers"][0], gateway.base.as_str());
    let jwks: Value = http().get(gateway.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert!(key["kid"].is_string() && key.get("d").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamic_registration_issues_a_usable_public_client() {
    let (gateway, mock) = gateway_and_mock("").await;
    let response = http()
        .post(gateway.url("/register"))
        .json(&serde_json::json!({"redirect_uris": ["http://127.0.0.1:9999/cb"], "client_name": "Claude"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let registered: Value = response.json().await.unwrap();
    let client_id = registered["client_id"].as_str().unwrap();
    let query = format!(
        "response_type=code&client_id={client_id}&redirect_uri={}&state=d&code_challenge={}&code_challenge_method=S256",
        urlencode("http://127.0.0.1:9999/cb"),
        challenge(VERIFIER)
    );
    let redirect = login(&gateway, &mock, &query, "").await;
    let code = query_param(&redirect, "code").unwrap();
    let (status, tokens) = post_form(
        &gateway.url("/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9999/cb"),
            ("client_id", client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    for bad in [
        serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}),
        serde_json::json!({"redirect_uris": []}),
        serde_json::json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
    ] {
        let response = http().post(gateway.url("/register")).json(&bad).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
}

/// Validates the RFC 8414 document with authlib, a standard OAuth library, on Debian's Python
/// (./scripts/test.sh installs python3-authlib).
#[tokio::test(flavor = "multi_thread")]
async fn discovery_metadata_passes_a_standard_oauth_library() {
    let gateway = GatewayProcess::start_with("", Some("https://gateway.example.com"));
    let metadata =
        http().get(gateway.url("/.well-known/oauth-authorization-server")).send().await.unwrap().text().await.unwrap();
    let script = "import json, sys\n\
        from authlib.oauth2.rfc8414 import AuthorizationServerMetadata\n\
        metadata = AuthorizationServerMetadata(json.loads(sys.stdin.read()))\n\
        metadata.validate()\n\
        assert metadata.issuer == 'https://gateway.example.com'\n\
        print('valid')\n";
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with authlib is needed: run ./scripts/test.sh, or apt-get install python3-authlib");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(metadata.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "authlib refused the metadata: {}\n{metadata}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "valid");
}
