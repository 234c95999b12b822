//! MCP authorization as clients speak it today, against a gateway process and the mock platform: a client known
//! by its Client ID Metadata Document (served over real HTTPS by `common::documents`, trusted through the
//! test-only CA setting), RFC 8707 resource indicators and audience-bound tokens, and a read-only agent refused
//! a write with the step-up challenge. Every refusal is checked by its status, error and what it left alone.

mod common;

use std::collections::HashMap;

use common::documents::{document_server, Answer, DocumentServer};
use common::*;
use serde_json::{json, Value};

const MCP_RESOURCE_PATH: &str = "/mcp";

/// A metadata document for `url` whose one redirect URI is the loopback callback (any port, RFC 8252).
fn agent_document(url: &str) -> Value {
    json!({
        "client_id": url,
        "client_name": "Test Agent",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none"
    })
}

async fn documents() -> DocumentServer {
    document_server(|origin| {
        let mut answers = HashMap::new();
        answers.insert("/agent.json", Answer::json(agent_document(&format!("{origin}/agent.json"))));
        // A document that names another URL as its client_id.
        answers.insert("/mismatch.json", Answer::json(agent_document(&format!("{origin}/agent.json"))));
        answers
    })
    .await
}

/// The gateway's YAML under `oauth:` for these tests: metadata documents trusted through the test CA, the MCP
/// path as a second resource, and `dynamic_client_scopes` when given.
fn oauth_yaml(server: &DocumentServer, dynamic_scopes: Option<&str>) -> String {
    let scopes = dynamic_scopes.map(|s| format!("  dynamic_client_scopes: {s}\n")).unwrap_or_default();
    format!(
        "  resources: ['{{public}}{MCP_RESOURCE_PATH}']\n{scopes}  client_id_metadata_documents:\n    test_only_trusted_ca_file: {}\n",
        server.ca_file().display()
    )
}

fn start_gateway(server: &DocumentServer, dynamic_scopes: Option<&str>) -> GatewayProcess {
    start_gateway_with(server, dynamic_scopes, "")
}

/// An MCP server in front of the gateway: a confidential client that may exchange tokens issued for its resource.
const MCP_SERVER: &str = "mcp-server";
const MCP_SERVER_SECRET: &str = "mcp-server-secret-0123456789";
const MCP_SERVER_RESOURCE: &str = "https://mcp.example.com";

fn mcp_server_client_yaml() -> String {
    format!(
        "  clients:\n    - client_id: {MCP_SERVER}\n      client_secret: {MCP_SERVER_SECRET}\n      redirect_uris: ['{MCP_SERVER_RESOURCE}/callback']\n      token_exchange_resource: {MCP_SERVER_RESOURCE}\n    - client_id: {CONFIDENTIAL_CLIENT}\n      client_secret: {CONFIDENTIAL_SECRET}\n      redirect_uris: ['{CONFIDENTIAL_REDIRECT}']\n"
    )
}

/// `extra_oauth` is YAML added under `oauth:`.
fn start_gateway_with(server: &DocumentServer, dynamic_scopes: Option<&str>, extra_oauth: &str) -> GatewayProcess {
    let oauth = oauth_yaml(server, dynamic_scopes) + extra_oauth;
    GatewayProcess::start_config(&[("RUST_LOG", "debug")], |port, admin, dir| {
        let public = format!("http://127.0.0.1:{port}");
        let extra = oauth.replace("{public}", &public);
        format!(
            "server:\n  listen: ['127.0.0.1:{port}']\n  admin_listen: '127.0.0.1:{admin}'\n  public_url: {public}\n  upgrade_sock: {d}/upgrade.sock\n  pid_file: {d}/gateway.pid\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\nplatforms:\n  allow_insecure_loopback: true\noauth:\n{extra}",
            d = dir.display()
        )
    })
}

/// The authorization request of the metadata-document client `client_id`, with `extra` parameters.
fn agent_query(client_id: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={}&redirect_uri={}&state=s&code_challenge={}&code_challenge_method=S256{extra}",
        urlencode(client_id),
        urlencode(REDIRECT_URI),
        challenge(VERIFIER)
    )
}

async fn agent_tokens(
    gateway: &GatewayProcess,
    mock: &ib_oauth_gateway::mock::MockHandle,
    client_id: &str,
    resource: Option<&str>,
) -> Value {
    let extra = resource.map(|r| format!("&resource={}", urlencode(r))).unwrap_or_default();
    let redirect = login(gateway, mock, &agent_query(client_id, &extra), "").await;
    let code = query_param(&redirect, "code").unwrap();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", client_id),
        ("code_verifier", VERIFIER),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    let (status, tokens) = post_form(&gateway.url("/token"), &form).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

/// `/authorize?query` as a JSON caller (the sign-in page's script) sends it.
async fn authorize_json(gateway: &GatewayProcess, query: &str) -> common::http::Answer {
    send(http().get(gateway.url(&format!("/authorize?{query}"))).header("Accept", "application/json")).await
}

/// The claims of an access token (its signature is the gateway's business; the test reads what it says).
fn claims(access_token: &str) -> Value {
    let payload = access_token.split('.').nth(1).unwrap();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metadata_document_client_completes_the_flow_with_a_resource_and_its_token_carries_that_audience() {
    let server = documents().await;
    let gateway = start_gateway(&server, None);
    let mock = start_mock(Default::default()).await;
    let client_id = server.url("/agent.json");
    let mcp = gateway.url(MCP_RESOURCE_PATH);

    // The sign-in page names the document's host as the identity, and the name as the client's own claim.
    let page = send(http().get(gateway.url(&format!("/authorize?{}", agent_query(&client_id, ""))))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("127.0.0.1 (it calls itself Test Agent)"), "{}", page.text);

    let tokens = agent_tokens(&gateway, &mock, &client_id, Some(&mcp)).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["aud"], mcp.as_str());
    assert_eq!(claims(access)["client_id"], client_id.as_str());
    assert!(tokens.get("sid").is_none(), "a metadata-document client never gets the IB session: {tokens}");
    assert_eq!(get_resource_with(&gateway, access).await.status(), 200);
    let userinfo = send(http().get(gateway.url("/userinfo")).bearer_auth(access)).await;
    assert_eq!(userinfo.status, 200, "{}", userinfo.text);
    assert!(userinfo.body.get("ib_session_id").is_none());

    // A refresh may name the same resource; its token keeps the audience.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", &client_id), ("resource", &mcp)];
    let (status, refreshed) = post_form(&gateway.url("/token"), &form).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(claims(refreshed["access_token"].as_str().unwrap())["aud"], mcp.as_str());
    assert_eq!(server.hits("/agent.json"), 1, "the document is fetched once and kept");

    let metrics = scrape(&gateway).await;
    assert_eq!(sample(&metrics, "ibgw_client_metadata_fetches_total{result=\"ok\"}"), 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_names_no_resource_keeps_working_with_the_gateway_as_its_audience() {
    let server = documents().await;
    let gateway = start_gateway(&server, None);
    let mock = start_mock(Default::default()).await;
    let tokens = agent_tokens(&gateway, &mock, &server.url("/agent.json"), None).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["aud"], gateway.base.as_str());
    assert_eq!(get_resource_with(&gateway, access).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_that_is_not_the_gateways_is_invalid_target_and_spends_nothing() {
    let server = documents().await;
    let gateway = start_gateway(&server, None);
    let mock = start_mock(Default::default()).await;
    let client_id = server.url("/agent.json");

    // At /authorize (the redirect URI is trusted by then): JSON for a JSON caller, a redirect for a browser.
    let foreign = format!("&resource={}", urlencode("https://elsewhere.example/mcp"));
    let query = agent_query(&client_id, &foreign);
    let json_answer = authorize_json(&gateway, &query).await;
    assert_eq!(
        (json_answer.status, json_answer.body["error"].as_str()),
        (400, Some("invalid_target")),
        "{}",
        json_answer.text
    );
    let redirected = send(http().get(gateway.url(&format!("/authorize?{query}")))).await;
    let location = redirected.header("location").unwrap_or_default().to_string();
    assert_eq!(redirected.status, 302, "{}", redirected.text);
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_target"), "{location}");
    // A path of the gateway's host that is not one of its resources is another resource (RFC 8707 §2).
    let other_path = agent_query(&client_id, &format!("&resource={}", urlencode(&gateway.url("/other"))));
    let answer = authorize_json(&gateway, &other_path).await;
    assert_eq!(answer.body["error"], "invalid_target", "{}", answer.text);

    // At /token: a refresh naming another resource is refused before the rotation, so the token still works.
    let tokens = agent_tokens(&gateway, &mock, &client_id, None).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let mcp = gateway.url(MCP_RESOURCE_PATH);
    for resource in ["https://elsewhere.example", mcp.as_str()] {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &client_id),
            ("resource", resource),
        ];
        let (status, refused) = post_form(&gateway.url("/token"), &form).await;
        assert_eq!((status, refused["error"].as_str()), (400, Some("invalid_target")), "{resource}: {refused}");
    }
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client_id.as_str())];
    let (status, refreshed) = post_form(&gateway.url("/token"), &form).await;
    assert_eq!(status, 200, "the refused refreshes spent nothing: {refreshed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_agent_reads_and_is_refused_a_write_with_the_step_up_challenge_before_ib() {
    let server = documents().await;
    let gateway = start_gateway(&server, Some("[profile, 'ib:read']"));
    let mock = start_mock(Default::default()).await;
    let tokens = agent_tokens(&gateway, &mock, &server.url("/agent.json"), None).await;
    assert_eq!(tokens["scope"], "profile ib:read");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(get_resource_with(&gateway, access).await.status(), 200);

    let before = mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0);
    let write = send(http().post(gateway.url("/api/v3/resource")).bearer_auth(access).body("{}")).await;
    assert_eq!((write.status, write.body["error"].as_str()), (403, Some("insufficient_scope")), "{}", write.text);
    let challenge = write.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer error=\"insufficient_scope\", scope=\"ib:write\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{}\"", gateway.url("/.well-known/oauth-protected-resource"))),
        "{challenge}"
    );
    assert_eq!(mock_stats(&mock).await["requests"]["api"].as_u64().unwrap_or(0), before, "nothing reached IB");

    // Asking for the write scope is refused: the operator's policy does not give it to such clients.
    let query = agent_query(&server.url("/agent.json"), "&scope=ib:write");
    let answer = authorize_json(&gateway, &query).await;
    assert_eq!(answer.body["error"], "invalid_scope", "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_document_that_breaks_a_rule_is_invalid_client_naming_the_rule_and_writes_nothing() {
    let server = documents().await;
    let gateway = start_gateway(&server, None);
    let query = agent_query(&server.url("/mismatch.json"), "");
    let answer = authorize_json(&gateway, &query).await;
    assert_eq!((answer.status, answer.body["error"].as_str()), (401, Some("invalid_client")), "{}", answer.text);
    let description = answer.body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("client_id"), "{description}");
    let metrics = scrape(&gateway).await;
    assert_eq!(sample(&metrics, "ibgw_client_metadata_fetches_total{result=\"invalid_document\"}"), 1.0);
    // An unknown metadata URL on the same server: the fetch answers 404, and the client is refused.
    let missing = agent_query(&server.url("/missing.json"), "");
    let answer = authorize_json(&gateway, &missing).await;
    assert_eq!(answer.body["error"], "invalid_client", "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_documents_advertise_metadata_documents_the_resources_and_the_scopes() {
    let server = documents().await;
    let gateway = start_gateway(&server, None);
    let metadata = send(http().get(gateway.url("/.well-known/oauth-authorization-server"))).await;
    assert_eq!(metadata.body["client_id_metadata_document_supported"], true);
    assert_eq!(metadata.body["scopes_supported"], json!(["profile", "ib:read", "ib:write"]));
    let own = send(http().get(gateway.url("/.well-known/oauth-protected-resource"))).await;
    assert_eq!(own.body["resource"], gateway.base.as_str());
    let mcp = send(http().get(gateway.url(&format!("/.well-known/oauth-protected-resource{MCP_RESOURCE_PATH}")))).await;
    assert_eq!(mcp.body["resource"], gateway.url(MCP_RESOURCE_PATH).as_str());
    assert_eq!(mcp.body["authorization_servers"], json!([gateway.base]));

    // docs/api.md's example of the authorization-server metadata has exactly the document's members.
    let api = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let example = api.split("`GET /.well-known/oauth-authorization-server`").nth(1);
    let example = example.and_then(|rest| rest.split("```json").nth(1)).and_then(|block| block.split("```").next());
    let example: Value = serde_json::from_str(example.expect("the example in docs/api.md")).unwrap();
    let members = |document: &Value| document.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(members(&example), members(&metadata.body));
}

const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The token exchange of `subject` (of type `subject_type`) by `client`, with `extra` form fields.
async fn exchange_by(
    gateway: &GatewayProcess,
    client: (&str, &str),
    subject: &str,
    subject_type: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject),
        ("subject_token_type", subject_type),
    ];
    form.extend_from_slice(extra);
    let request = http().post(gateway.url("/token")).basic_auth(client.0, Some(client.1)).form(&form);
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A token exchange the gateway must refuse, and the `error` it answers (always with status 400).
struct Refused<'a> {
    what: &'a str,
    client: (&'a str, &'a str),
    subject: &'a str,
    subject_type: &'a str,
    extra: &'a [(&'a str, &'a str)],
    error: &'a str,
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_exchanges_its_clients_token_for_a_gateway_token_of_the_same_session() {
    let server = documents().await;
    let gateway = start_gateway_with(&server, None, &mcp_server_client_yaml());
    let mock = start_mock(Default::default()).await;
    let metadata = send(http().get(gateway.url("/.well-known/oauth-authorization-server"))).await;
    assert_eq!(
        metadata.body["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:token-exchange"])
    );

    // The agent asks the gateway for a token for the MCP server; the gateway's proxy does not take it.
    let tokens = agent_tokens(&gateway, &mock, &server.url("/agent.json"), Some(MCP_SERVER_RESOURCE)).await;
    let subject = tokens["access_token"].as_str().unwrap();
    assert_eq!(claims(subject)["aud"], MCP_SERVER_RESOURCE);
    let passed_through = get_resource_with(&gateway, subject).await;
    assert_eq!(passed_through.status(), 401, "a token for another resource is not the gateway's");

    // The MCP server exchanges it: a gateway token of the same session, no wider, no refresh token.
    let mcp_server = (MCP_SERVER, MCP_SERVER_SECRET);
    let (status, exchanged) =
        exchange_by(&gateway, mcp_server, subject, ACCESS_TOKEN_TYPE, &[("scope", "ib:read")]).await;
    assert_eq!(status, 200, "{exchanged}");
    assert_eq!(exchanged["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(exchanged["scope"], "ib:read");
    assert!(exchanged.get("refresh_token").is_none(), "{exchanged}");
    let access = exchanged["access_token"].as_str().unwrap();
    let (issued, subject_claims) = (claims(access), claims(subject));
    assert_eq!(issued["aud"], gateway.base.as_str());
    assert_eq!(issued["ses"], subject_claims["ses"], "the same session");
    assert_eq!(issued["client_id"], MCP_SERVER);
    assert!(issued["exp"].as_u64() <= subject_claims["exp"].as_u64());
    assert_eq!(get_resource_with(&gateway, access).await.status(), 200);
    let write = send(http().post(gateway.url("/api/v3/resource")).bearer_auth(access).body("{}")).await;
    assert_eq!(write.body["error"], "insufficient_scope", "the narrowed scope holds: {}", write.text);

    // Refusals, each leaving the session alone.
    let id_token = "urn:ietf:params:oauth:token-type:id_token";
    let refusals = [
        Refused {
            what: "a client that is not a resource server",
            client: (CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET),
            subject,
            subject_type: ACCESS_TOKEN_TYPE,
            extra: &[],
            error: "unauthorized_client",
        },
        Refused {
            what: "a subject token for the gateway itself",
            client: mcp_server,
            subject: access,
            subject_type: ACCESS_TOKEN_TYPE,
            extra: &[],
            error: "invalid_request",
        },
        Refused {
            what: "another subject token type",
            client: mcp_server,
            subject,
            subject_type: id_token,
            extra: &[],
            error: "invalid_request",
        },
        Refused {
            what: "a wider scope",
            client: mcp_server,
            subject,
            subject_type: ACCESS_TOKEN_TYPE,
            extra: &[("scope", "ib:write admin")],
            error: "invalid_scope",
        },
        Refused {
            what: "a resource that is not the gateway",
            client: mcp_server,
            subject,
            subject_type: ACCESS_TOKEN_TYPE,
            extra: &[("resource", MCP_SERVER_RESOURCE)],
            error: "invalid_target",
        },
        Refused {
            what: "a made-up token",
            client: mcp_server,
            subject: "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
            subject_type: ACCESS_TOKEN_TYPE,
            extra: &[],
            error: "invalid_request",
        },
    ];
    for refused in refusals {
        let (status, body) =
            exchange_by(&gateway, refused.client, refused.subject, refused.subject_type, refused.extra).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(refused.error)), "{}: {body}", refused.what);
    }

    // Revoking the session (the agent's refresh token) ends the exchanged token too.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let client_id = server.url("/agent.json");
    let (status, _) = post_form(&gateway.url("/revoke"), &[("token", refresh), ("client_id", &client_id)]).await;
    assert_eq!(status, 200);
    assert_eq!(get_resource_with(&gateway, access).await.status(), 401);
    let (status, body) = exchange_by(&gateway, mcp_server, subject, ACCESS_TOKEN_TYPE, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "{body}");
}
