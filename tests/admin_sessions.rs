//! The admin session API against real gateway processes: an operator finds one IB user's sessions and ends
//! them, and every instance refuses them from the next request on. (The store side — the user index on
//! memory, Redis and Redis Cluster — is in tests/store_conformance.rs.)

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
const ADMIN_YAML: &str = "admin:\n  token: admin-token-for-tests-0123456789abcdef\n";
const LEAVER: &str = "00000000-0000-4000-8000-00000000aaaa";
const STAYER: &str = "00000000-0000-4000-8000-00000000bbbb";

async fn admin(gateway: &GatewayProcess, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    let response = http()
        .request(method, format!("{}{path}", gateway.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request");
    let status = response.status();
    let text = response.text().await.expect("admin body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

async fn proxied(gateway: &GatewayProcess, tokens: &Value) -> (StatusCode, Value) {
    let response = get_resource_with(gateway, tokens["access_token"].as_str().unwrap()).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(listing: &Value) -> Vec<String> {
    listing["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_lists_and_ends_one_users_sessions_and_no_others() {
    let audit_dir = tempfile::tempdir().unwrap();
    let audit_path = audit_dir.path().join("audit.log");
    let (gateway, mock) =
        gateway_and_mock(&format!("{ADMIN_YAML}logging:\n  audit: file {}\n", audit_path.display())).await;
    let laptop = tokens_for(&gateway, &mock, &format!("&uuid={LEAVER}")).await;
    let phone = tokens_for(&gateway, &mock, &format!("&uuid={LEAVER}")).await;
    let colleague = tokens_for(&gateway, &mock, &format!("&uuid={STAYER}")).await;

    let (status, listing) = admin(&gateway, reqwest::Method::GET, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["user"], LEAVER);
    assert_eq!(ids(&listing).len(), 2, "{listing}");
    for session in listing["sessions"].as_array().unwrap() {
        assert_eq!(session["user"], LEAVER);
        assert_eq!(session["state"], "active");
        assert_eq!(session["client_id"], PUBLIC_CLIENT);
        assert_eq!(session["refresh_count"], 0);
        assert!(session["sid_expiry"].as_u64().unwrap() > session["created_at"].as_u64().unwrap());
        assert_eq!(session["log_tag"].as_str().unwrap().len(), 12);
    }
    let text = listing.to_string();
    for secret in [&laptop["access_token"], &laptop["refresh_token"], &laptop["sid"], &phone["sid"]] {
        let secret = secret.as_str().unwrap();
        assert!(!text.contains(secret), "the listing shows a token or sid");
    }

    // One session, by id: only that one ends.
    let first = ids(&listing)[0].clone();
    let (status, ended) = admin(&gateway, reqwest::Method::DELETE, &format!("/admin/sessions/{first}")).await;
    assert_eq!(
        (status, &ended["ended"], &ended["session"]["state"]),
        (StatusCode::OK, &Value::Bool(true), &"revoked".into())
    );
    let (status, again) = admin(&gateway, reqwest::Method::DELETE, &format!("/admin/sessions/{first}")).await;
    assert_eq!((status, &again["ended"]), (StatusCode::OK, &Value::Bool(false)), "ending twice changes nothing");
    let (_, shown) = admin(&gateway, reqwest::Method::GET, &format!("/admin/sessions/{first}")).await;
    assert_eq!(shown["status"], "revoked");

    // The rest of the user's sessions, at once.
    let (status, all) = admin(&gateway, reqwest::Method::DELETE, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["ended"], 1, "only the one still active");
    assert!(all["sessions"].as_array().unwrap().iter().all(|s| s["state"] == "revoked"), "{all}");

    for tokens in [&laptop, &phone] {
        let (status, body) = proxied(&gateway, tokens).await;
        assert_eq!(
            (status, body["error_description"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("Session has expired"))
        );
        let (status, body) = refresh(&gateway, tokens["refresh_token"].as_str().unwrap()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }
    assert_eq!(proxied(&gateway, &colleague).await.0, 200, "another user's session is untouched");
    let (_, theirs) = admin(&gateway, reqwest::Method::GET, &format!("/admin/sessions?user={STAYER}")).await;
    assert_eq!(theirs["sessions"][0]["state"], "active");
    assert_log_free_of(&gateway, &[laptop["access_token"].as_str().unwrap(), ADMIN_TOKEN]);

    // Each ending is an audit event naming the session by its log tag, the user and the operator's address.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let operator_events = loop {
        let text = std::fs::read_to_string(&audit_path).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|event| event["event"] == "session_ended_by_operator")
            .collect();
        if events.len() == 2 || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(operator_events.len(), 2, "{operator_events:?}");
    let tags: Vec<&str> =
        listing["sessions"].as_array().unwrap().iter().map(|s| s["log_tag"].as_str().unwrap()).collect();
    for event in &operator_events {
        assert_eq!(event["user"], LEAVER);
        assert_eq!(event["client_id"], PUBLIC_CLIENT);
        assert_eq!(event["client_ip"], "127.0.0.1");
        assert!(tags.contains(&event["session"].as_str().unwrap()), "{event}");
    }
    assert!(!std::fs::read_to_string(&audit_path).unwrap().contains(ADMIN_TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_oauth_shaped_errors() {
    let gateway = GatewayProcess::start(ADMIN_YAML);
    let cases = [
        (reqwest::Method::GET, "/admin/sessions".to_string(), 400, "invalid_request"),
        (reqwest::Method::GET, "/admin/sessions?user=".to_string(), 400, "invalid_request"),
        (reqwest::Method::DELETE, format!("/admin/sessions?user={}", "u".repeat(200)), 400, "invalid_request"),
        (reqwest::Method::GET, "/admin/sessions?user=a&user=b".to_string(), 400, "invalid_request"),
        (reqwest::Method::DELETE, "/admin/sessions/not-a-session".to_string(), 404, "not_found"),
        (reqwest::Method::GET, "/admin/sessions/AAAAAAAAAAAAAAAAAAAAAA".to_string(), 404, "not_found"),
        (reqwest::Method::POST, "/admin/sessions?user=u".to_string(), 405, "method_not_allowed"),
    ];
    for (method, path, status, error) in cases {
        let (got, body) = admin(&gateway, method.clone(), &path).await;
        assert_eq!((got.as_u16(), body["error"].as_str()), (status, Some(error)), "{method} {path}: {body}");
    }
    let (status, empty) = admin(&gateway, reqwest::Method::GET, "/admin/sessions?user=nobody").await;
    assert_eq!((status, empty["sessions"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_api_needs_the_admin_token_and_is_off_without_one() {
    let gateway = GatewayProcess::start(ADMIN_YAML);
    let url = format!("{}/admin/sessions?user={LEAVER}", gateway.admin);
    for request in
        [http().get(&url), http().get(&url).bearer_auth("wrong-token-wrong-token-wrong-token!!"), http().delete(&url)]
    {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let without = GatewayProcess::start("");
    let response = http()
        .get(format!("{}/admin/sessions?user={LEAVER}", without.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "no admin.token: no session API");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ended_on_one_instance_is_refused_by_the_other_at_once() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "local") + ADMIN_YAML;
    let first = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let second = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    let mock = start_mock(ib_oauth_gateway::mock::MockSettings::default()).await;
    let tokens = tokens_for(&first, &mock, &format!("&uuid={LEAVER}")).await;
    assert_eq!(proxied(&second, &tokens).await.0, 200);

    // Any instance lists the user's sessions (the index is in Redis) and ends them for all.
    let (_, listing) = admin(&second, reqwest::Method::GET, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!(ids(&listing).len(), 1, "{listing}");
    let (status, ended) = admin(&second, reqwest::Method::DELETE, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!((status, &ended["ended"]), (StatusCode::OK, &Value::from(1)));
    assert_eq!(proxied(&first, &tokens).await.0, 401, "the instance that issued it refuses it on the next request");
    let (status, _) = refresh(&first, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
}

/// A user with more sessions than one listing holds: the listing says it was cut, and ending by user ends every
/// one of them (page after page), not just the first thousand.
#[tokio::test(flavor = "multi_thread")]
async fn ending_a_user_with_more_sessions_than_a_listing_holds_ends_all_of_them() {
    use common::store::{grant_for, redis_config, store_session};
    use ib_oauth_gateway::session::{Session, SessionId};
    const SESSIONS: usize = ib_oauth_gateway::store::USER_SESSIONS_LIMIT + 1;
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().unwrap();
    let shared = shared_redis_yaml(&redis.url(), keys.path(), "local") + ADMIN_YAML;
    let prefix = shared.split("key_prefix: ").nth(1).and_then(|rest| rest.lines().next()).unwrap().to_string();
    let gateway = GatewayProcess::start_with(&shared, Some("https://gateway.example.com"));
    // The sessions go straight into the gateway's Redis, as a thousand logins would leave them.
    let config = redis_config(ib_oauth_gateway::config::RedisMode::Standalone, vec![redis.url()], &prefix);
    let store = ib_oauth_gateway::store::redis::RedisStore::connect(&config).await.unwrap();
    let now = ib_oauth_gateway::store::now_unix();
    for n in 0..SESSIONS {
        let mut grant = grant_for("client-under-test", Some(now - 1_000 + n as u64), Some(8));
        grant.user.uuid = LEAVER.to_string();
        store_session(&store, &Session::start(SessionId::generate(), grant, now, 120), now).await;
    }

    let (_, listing) = admin(&gateway, reqwest::Method::GET, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!(ids(&listing).len(), ib_oauth_gateway::store::USER_SESSIONS_LIMIT);
    assert_eq!(listing["truncated"], true, "the listing says it was cut");
    let (status, ended) = admin(&gateway, reqwest::Method::DELETE, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((ended["ended"].as_u64(), &ended["complete"]), (Some(SESSIONS as u64), &Value::Bool(true)));
    let (_, after) = admin(&gateway, reqwest::Method::GET, &format!("/admin/sessions?user={LEAVER}")).await;
    assert_eq!((ids(&after).len(), &after["truncated"]), (0, &Value::Bool(false)), "none left: {after}");
}
