//! The admin API's door, on real gateway processes: without `admin.token` the `/admin/` paths do not exist;
//! with one, a missing or wrong bearer token is `401 invalid_token` (RFC 6750), `/metrics` needs the token
//! only with `admin.protect_metrics`, and the probes never need it. The token never reaches the log.

mod common;

use common::*;

const TOKEN: &str = "admin-token-0123456789abcdef0123456789";

async fn get(url: String, token: Option<&str>) -> Answer {
    let request = http().get(url);
    send(match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_admin_api_is_404_and_probes_and_metrics_stay_open() {
    let gateway = GatewayProcess::start("");
    for method in [reqwest::Method::POST, reqwest::Method::GET] {
        let answer = send(http().request(method.clone(), format!("{}/admin/reload", gateway.admin))).await;
        assert_eq!(answer.status, 404, "{method}");
        assert_eq!(answer.body["error"], "not_found");
        assert_eq!(answer.header("www-authenticate"), None);
    }
    let with_token = send(http().post(format!("{}/admin/reload", gateway.admin)).bearer_auth(TOKEN)).await;
    assert_eq!(with_token.status, 404, "a token means nothing when none is configured");
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(format!("{}{path}", gateway.admin), None).await.status, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_is_401_invalid_token_and_protected_metrics_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let gateway = GatewayProcess::start(&format!(
        "admin:\n  token: {{file: {}}}\n  protect_metrics: true\n",
        token_file.display()
    ));
    let reload = format!("{}/admin/reload", gateway.admin);

    let missing = send(http().post(&reload)).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"], "invalid_token");
    assert!(missing.body["error_description"].as_str().unwrap().contains("Bearer"));
    assert_eq!(missing.header("www-authenticate"), Some(r#"Bearer realm="admin""#));
    assert_eq!(missing.header("cache-control"), Some("no-store"));

    let wrong_token = "admin-token-0123456789abcdef012345678X";
    for wrong in [
        http().post(&reload).bearer_auth(wrong_token),
        http().post(&reload).basic_auth("admin", Some(TOKEN)),
        http().post(&reload).header("Authorization", format!("Bearer {TOKEN}x")),
    ] {
        let refused = send(wrong).await;
        assert_eq!(refused.status, 401);
        assert_eq!(refused.body["error"], "invalid_token");
        let challenge = refused.header("www-authenticate").unwrap();
        assert!(challenge.starts_with(r#"Bearer realm="admin", error="invalid_token""#), "{challenge}");
        assert!(!refused.text.contains(TOKEN) && !refused.text.contains(wrong_token), "{}", refused.text);
    }
    // An unknown admin path says nothing to a caller without the token, and is 404 to one with it.
    assert_eq!(get(format!("{}/admin/nothing", gateway.admin), None).await.status, 401);
    assert_eq!(get(format!("{}/admin/nothing", gateway.admin), Some(TOKEN)).await.status, 404);

    let metrics = format!("{}/metrics", gateway.admin);
    let refused = get(metrics.clone(), None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some(r#"Bearer realm="admin""#));
    assert_eq!(get(metrics.clone(), Some(wrong_token)).await.status, 401);
    let scraped = get(metrics, Some(TOKEN)).await;
    assert_eq!(scraped.status, 200);
    assert!(scraped.text.contains("ibgw_build_info"), "{}", scraped.text);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(get(format!("{}{path}", gateway.admin), None).await.status, 200, "{path} stays open for probes");
        assert_eq!(get(format!("{}{path}", gateway.admin), Some(wrong_token)).await.status, 200, "{path}");
    }
    assert_log_free_of(&gateway, &[TOKEN]);
}

#[test]
fn a_short_admin_token_stops_the_gateway_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, "server:\n  public_url: https://a.example\nadmin:\n  token: short-admin-token\n").unwrap();
    let out = std::process::Command::new(BIN).arg("check-config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin.token: must be at least 32 characters"), "{stderr}");
    assert!(!stderr.contains("short-admin-token"), "the error never shows the token: {stderr}");
}
