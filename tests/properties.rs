//! Property tests (proptest) of everything that parses untrusted input:
//!
//! - the bearer front door (`exchange::bearer_token`) and access-token verification (`auth::access_token`,
//!   `auth::token_cache::VerifiedTokens`); presented refresh tokens and session ids (`tokens`, `session`);
//! - the form / query parser (`exchange::Params`);
//! - the proxy router (`gateway::route::parse` + `bind`): nothing binds to a host other than the session's own,
//!   no dot segment survives;
//! - the W3C trace context (`trace::TraceParent::parse`, `trace::tracestate`): never a panic, and a
//!   `traceparent` written back is the one read;
//! - IB's `/v1/auth/app/info` body, read by `IbClient::poll_login` from a tiny local HTTP server;
//! - the YAML configuration loader (`config::load_str`, `load_str_all`).
//!
//! Each property runs a few hundred to a few thousand cases by default (the whole file takes seconds in the
//! debug profile); `PROPTEST_CASES=N` sets every property to N cases for a longer run, e.g.
//! `PROPTEST_CASES=100000 cargo test --release --test properties`. Failing cases found by these properties
//! are kept below as plain `#[test]`s with the literal input (section "Regressions").

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use ib_oauth_gateway::auth::access_token::{self, Audience, Verified};
use ib_oauth_gateway::auth::token_cache::VerifiedTokens;
use ib_oauth_gateway::config::{self, Config, SigningAlgorithm};
use ib_oauth_gateway::errors::ApiError;
use ib_oauth_gateway::exchange::{bearer_token, Params};
use ib_oauth_gateway::gateway::route::{bind, parse, ProxyRoute, Target};
use ib_oauth_gateway::ib::{IbClient, IbError, LoginPoll, PlatformUrl};
use ib_oauth_gateway::keys::{self, SigningKeys};
use ib_oauth_gateway::session::{IbSid, IbUser, Session, SessionGrant, SessionId};
use ib_oauth_gateway::tokens::RefreshToken;
use ib_oauth_gateway::trace::{self, SpanId, TraceId, TraceParent};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------------------
// Case counts

/// `cases` per property unless `PROPTEST_CASES` is set (then that, for every property). No failure files:
/// a failure found is kept as a named regression test instead.
fn cases(default_cases: u32) -> ProptestConfig {
    let mut config = if std::env::var_os("PROPTEST_CASES").is_some() {
        ProptestConfig::default()
    } else {
        ProptestConfig::with_cases(default_cases)
    };
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------------------------------------
// Shared generators

/// Text that attackers like: separators, encodings of dots, slashes and controls, host look-alikes, Unicode.
const NASTY: &[&str] = &[
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%00",
    "%0a",
    "%0D",
    "%5c",
    "%5C",
    "%25",
    "%252e",
    "%c0%ae",
    "%",
    "%%",
    "%g1",
    "@",
    ":",
    "?",
    "#",
    "\\",
    ";",
    "..;",
    "&",
    "=",
    "+",
    " ",
    "\t",
    "\r",
    "\n",
    "\0",
    "\u{7f}",
    "evil.com",
    "lbv3us1.intelligencebank.com",
    "acme.intelligencebank.com",
    "LBV3US1.intelligencebank.com",
    "lbv3us1.intelligencebank.com.",
    "lbv3us1.intelligencebank.com.evil.com",
    ":443",
    ":8443",
    "127.0.0.1",
    "[::1]",
    "localhost",
    "proxy",
    "api",
    "v3",
    "/proxy/",
    "/api/v3",
    "\u{ff0e}",
    "\u{3002}",
    "\u{2024}",
    "\u{ff0f}",
    "é",
    "\u{202e}",
    "\u{feff}",
];

fn nasty_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select(NASTY).prop_map(str::to_string),
        1 => "[ -~]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
    ]
}

fn nasty_string() -> impl Strategy<Value = String> {
    vec(nasty_piece(), 0..10).prop_map(|pieces| pieces.concat())
}

/// Any string: arbitrary Unicode, printable ASCII, or pieces of [`NASTY`].
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~]{0,40}", nasty_string()]
}

// ---------------------------------------------------------------------------------------------------------
// The bearer front door and access tokens

const NOW: u64 = 1_700_000_000;

struct TokenFixture {
    keys: SigningKeys,
    config: Config,
    session: Session,
    token: String,
}

fn gateway_config() -> Config {
    config::load_str("server:\n  public_url: \"https://gateway.example.com\"\n").expect("test configuration is valid")
}

fn grant(api_v3_url: &str, platform_url: &str, client_id: &str, user_uuid: &str, scope: &str) -> SessionGrant {
    SessionGrant {
        sid: IbSid::new("s3cr3t"),
        platform_url: platform_url.into(),
        api_v3_url: api_v3_url.into(),
        ib_client_id: client_id.into(),
        user: IbUser {
            uuid: user_uuid.into(),
            first_name: String::new(),
            last_name: String::new(),
            email: None,
            login_time: None,
        },
        login_timeout_hours: Some(8),
        oauth_client_id: "client".into(),
        scope: scope.into(),
        resource: None,
    }
}

fn default_session() -> Session {
    let grant =
        grant("https://lbv3us1.intelligencebank.com", "https://acme.intelligencebank.com", "AbC1", "u-1", "profile");
    Session::start(SessionId::generate(), grant, NOW, 120)
}

fn token_fixture() -> &'static TokenFixture {
    static FIXTURE: OnceLock<TokenFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = SigningKeys::ephemeral(SigningAlgorithm::EdDSA).expect("ephemeral key");
        let config = gateway_config();
        let session = default_session();
        let (token, _) = access_token::issue(&keys, &config, &session, NOW).expect("issue");
        assert!(matches!(
            access_token::verify(&keys, &config, Audience::Own(&resources_of(&config)), &token, NOW),
            Ok(Verified::Valid(_))
        ));
        TokenFixture { keys, config, session, token }
    })
}

/// Neither the verifier nor the verified-token cache accepts `token` (signed or expired).
fn refused(token: &str) -> Result<(), TestCaseError> {
    let f = token_fixture();
    let direct = access_token::verify(&f.keys, &f.config, Audience::Own(&resources_of(&f.config)), token, NOW);
    prop_assert!(direct.is_err(), "verify accepted {token:?}: {direct:?}");
    // A cache that already holds the genuine token must not be fooled by a near miss either.
    let cache = VerifiedTokens::new(16);
    prop_assert!(matches!(
        cache.verify(&f.keys, &f.config, &resources_of(&f.config), &f.token, NOW),
        Ok(Verified::Valid(_))
    ));
    let cached = cache.verify(&f.keys, &f.config, &resources_of(&f.config), token, NOW);
    prop_assert!(cached.is_err(), "the token cache accepted {token:?}: {cached:?}");
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any_text().prop_map(Value::String),
    ]
}

/// Arbitrary JSON, with object keys drawn partly from `keys` (so the reader's own fields turn up).
fn json_value(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![3 => select(keys).prop_map(str::to_string), 1 => any_text()];
    json_leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const JWT_KEYS: &[&str] = &["alg", "kid", "typ", "iss", "aud", "sub", "exp", "iat", "jti", "ses", "scope", "client_id"];

fn near_valid_claims() -> impl Strategy<Value = Value> {
    let audience = "https://gateway.example.com";
    (
        select(vec![json!(audience), json!(format!("{audience}/")), json!([audience]), json!("x"), Value::Null]),
        select(vec![json!(NOW + 600), json!(NOW - 600), json!(u64::MAX), json!(-1), json!("soon"), Value::Null]),
        select(vec![json!(NOW), json!(NOW + 10_000), json!(0), Value::Null]),
        json_value(JWT_KEYS),
    )
        .prop_map(|(aud, exp, iat, extra)| {
            json!({
                "iss": aud, "aud": aud, "sub": "u-1", "client_id": "client", "scope": "profile", "jti": "j",
                "iat": iat, "exp": exp, "ses": "AAAAAAAAAAAAAAAAAAAAAA", "x": extra,
            })
        })
}

fn header_strategy() -> impl Strategy<Value = Value> {
    let kid = token_fixture().keys.current_kid().to_string();
    (
        select(vec!["EdDSA", "ES256", "RS256", "HS256", "HS512", "none", "None", "", "eddsa"]),
        prop_oneof![Just(Some(kid)), Just(None), any_text().prop_map(Some)],
        select(vec![Some("at+jwt"), Some("JWT"), None]),
    )
        .prop_map(|(alg, kid, typ)| {
            let mut header = json!({ "alg": alg });
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            if let Some(typ) = typ {
                header["typ"] = json!(typ);
            }
            header
        })
}

proptest! {
    #![proptest_config(cases(4000))]

    /// Any header value: no panic; a token comes back only from `Bearer <token>`, trimmed and non-empty.
    #[test]
    fn bearer_header_never_panics_and_only_yields_bearer_tokens(
        raw in prop_oneof![
            vec(any::<u8>(), 0..64),
            (select(vec!["Bearer ", "bearer ", "BEARER ", "Bearer", "Basic ", "Bearer  ", " Bearer ", "Bearer\t"]),
             "[ -~\t]{0,40}").prop_map(|(scheme, rest)| format!("{scheme}{rest}").into_bytes()),
        ]
    ) {
        prop_assert_eq!(bearer_token(None).ok(), Some(None));
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        match bearer_token(Some(&value)) {
            Ok(Some(token)) => {
                let text = std::str::from_utf8(&raw).expect("a token comes only from an ASCII header");
                let (scheme, rest) = text.split_once(' ').expect("Bearer SP token");
                prop_assert!(scheme.eq_ignore_ascii_case("bearer"));
                prop_assert_eq!(token, rest.trim());
                prop_assert!(!token.is_empty());
            }
            Ok(None) => prop_assert!(false, "a present header never reads as absent"),
            Err(e) => prop_assert!(matches!(e, ApiError::InvalidToken(_)), "{e:?}"),
        }
    }

    /// `Bearer <token68>` gives back exactly the token.
    #[test]
    fn bearer_token_round_trips(token in "[A-Za-z0-9._~+/=-]{1,200}") {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a valid header");
        prop_assert_eq!(bearer_token(Some(&value)).ok(), Some(Some(token.as_str())));
    }

    /// Arbitrary strings as access tokens never panic and never verify.
    #[test]
    fn arbitrary_strings_never_verify(token in prop_oneof![
        any_text(),
        // Three dot-separated segments of base64url-ish text.
        ("[A-Za-z0-9_-]{0,40}", "[A-Za-z0-9_-]{0,40}", "[A-Za-z0-9_=+/-]{0,90}")
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
    ]) {
        refused(&token)?;
    }

    /// JWT-shaped tokens with any header (our kid or not, any alg), near-valid claims and a random signature
    /// never verify.
    #[test]
    fn forged_jwts_never_verify(
        header in header_strategy(),
        claims in prop_oneof![near_valid_claims(), json_value(JWT_KEYS)],
        signature in vec(any::<u8>(), 0..80),
    ) {
        let token = format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(&signature));
        refused(&token)?;
        // The same with no signature at all (`alg: none` style).
        refused(&format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes())))?;
    }

    /// A genuine token with one byte changed (to any other ASCII byte) never verifies.
    #[test]
    fn a_token_with_one_byte_changed_never_verifies(at in any::<Index>(), byte in 0u8..0x80) {
        let mut bytes = token_fixture().token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        refused(&String::from_utf8(bytes).expect("ASCII"))?;
    }

    /// A genuine token truncated, extended, or with a byte removed or inserted never verifies.
    #[test]
    fn a_token_cut_or_extended_never_verifies(at in any::<Index>(), insert in "[ -~]{1,4}", how in 0u8..4) {
        let token = token_fixture().token.clone();
        let i = at.index(token.len());
        let changed = match how {
            0 => token[..i].to_string(),
            1 => format!("{token}{insert}"),
            2 => format!("{}{}", &token[..i], &token[i + 1..]),
            _ => format!("{}{insert}{}", &token[..i], &token[i..]),
        };
        prop_assume!(changed != token);
        refused(&changed)?;
    }

    /// Issued tokens verify with exactly the claims they were issued with, whatever the user's strings.
    #[test]
    fn issued_tokens_round_trip(uuid in any_text(), scope in any_text(), client in any_text()) {
        let f = token_fixture();
        let mut grant = (*f.session.grant).clone();
        grant.user.uuid = uuid.clone();
        grant.scope = scope.clone();
        grant.oauth_client_id = client.clone();
        let session = Session::start(SessionId::generate(), grant, NOW, 120);
        let (token, exp) = access_token::issue(&f.keys, &f.config, &session, NOW).expect("issue");
        match access_token::verify(&f.keys, &f.config, Audience::Own(&resources_of(&f.config)), &token, NOW) {
            Ok(Verified::Valid(claims)) => {
                prop_assert_eq!(&claims.sub, &uuid);
                prop_assert_eq!(&claims.scope, &scope);
                prop_assert_eq!(&claims.client_id, &client);
                prop_assert_eq!(claims.exp, exp);
                prop_assert_eq!(&claims.ses, &session.id.to_string());
            }
            other => prop_assert!(false, "issued token did not verify: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Tokens signed by any other key never verify: a fresh Ed25519 key under our kid or its own, or HMAC
    /// keyed with our public key (algorithm confusion).
    #[test]
    fn tokens_signed_by_another_key_never_verify(
        use_our_kid in any::<bool>(),
        hmac_secret in prop_oneof![Just(None), vec(any::<u8>(), 0..64).prop_map(Some)],
        hmac_with_our_public_key in any::<bool>(),
    ) {
        let f = token_fixture();
        let claims = access_token::verify(&f.keys, &f.config, Audience::Own(&resources_of(&f.config)), &f.token, NOW).expect("genuine").claims().clone();
        // Another key of the same algorithm, signing with its own kid.
        let other = SigningKeys::ephemeral(SigningAlgorithm::EdDSA).expect("ephemeral key");
        refused(&other.sign(&claims).expect("sign"))?;

        let (private_pem, _) = keys::generate_pem(SigningAlgorithm::EdDSA).expect("key pair");
        let kid = if use_our_kid { f.keys.current_kid().to_string() } else { "other".to_string() };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".into());
        let ed = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("PEM");
        refused(&jsonwebtoken::encode(&header, &claims, &ed).expect("sign"))?;

        let secret = match hmac_secret {
            Some(secret) if !hmac_with_our_public_key => secret,
            _ => f.keys.jwks()["keys"][0]["x"].as_str().expect("Ed25519 JWK x").as_bytes().to_vec(),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid);
        refused(&jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&secret)).expect("sign"))?;
    }
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Presented refresh tokens and session ids: no panic; what parses names a well-formed session id (so it
    /// can name no other store key), and generated refresh tokens parse back to their session.
    #[test]
    fn refresh_tokens_and_session_ids_parse_only_their_own_shape(
        text in prop_oneof![
            any_text(),
            ("[A-Za-z0-9_-]{20,24}", "[A-Za-z0-9_=+/.-]{41,45}").prop_map(|(a, b)| format!("{a}.{b}")),
        ],
    ) {
        if let Some(id) = SessionId::parse(&text) {
            prop_assert_eq!(id.as_str(), text.as_str());
            prop_assert!(text.len() == 22 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        if let Some((id, token)) = RefreshToken::parse(&text) {
            prop_assert_eq!(token.expose(), text.as_str());
            let prefix = format!("{}.", id.as_str());
            prop_assert!(text.starts_with(&prefix), "{text:?}");
            prop_assert_eq!(SessionId::parse(id.as_str()), Some(id));
        }
        let id = SessionId::generate();
        let generated = RefreshToken::generate(&id);
        prop_assert_eq!(RefreshToken::parse(generated.expose()), Some((id, generated.clone())));
    }
}

// ---------------------------------------------------------------------------------------------------------
// The form / query parser

/// Every `%` is followed by two hex digits.
fn well_formed_percents(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes
        .iter()
        .enumerate()
        .all(|(i, b)| *b != b'%' || bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)))
}

fn form_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["code", "state", "a", "a b", "é", "x=y", "&", "+"]).prop_map(str::to_string),
        1 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn form_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), any_text(), "[ -~]{0,20}"]
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Any text parses or is refused, without panicking; malformed percent-encoding is always refused, and
    /// text without `%` always parses.
    #[test]
    fn form_parser_never_panics(text in prop_oneof![any_text(), nasty_string(), "[a-z=&%0-9A-F+]{0,30}"], name in form_name()) {
        let parsed = Params::parse(&text);
        if !well_formed_percents(&text) {
            prop_assert!(matches!(parsed, Err(ApiError::InvalidRequest(_))), "{text:?} parsed");
        }
        if !text.contains('%') {
            prop_assert!(parsed.is_ok(), "{text:?} refused");
        }
        if let Ok(params) = parsed {
            let got = params.get(&name);
            if let Ok(Some(value)) = got {
                prop_assert!(!value.is_empty(), "empty values count as absent");
            }
        }
    }

    /// Encoded name/value pairs decode back: `get` is the one non-empty value, absent, or refused when
    /// repeated — against a model, with `+` and `%20` spellings of a space.
    #[test]
    fn form_parser_decodes_what_was_encoded(
        pairs in vec((form_name(), form_value()), 0..8),
        plus in any::<bool>(),
        probe in form_name(),
    ) {
        let text = if plus {
            form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish()
        } else {
            let encode = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
            pairs.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect::<Vec<_>>().join("&")
        };
        let params = Params::parse(&text).expect("well-formed encoding parses");
        let mut names: Vec<&String> = pairs.iter().map(|(n, _)| n).collect();
        names.push(&probe);
        for name in names {
            let values: Vec<&str> = pairs.iter().filter(|(n, v)| n == name && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
            match (values.as_slice(), params.get(name)) {
                ([], Ok(None)) => {}
                ([one], Ok(Some(got))) => prop_assert_eq!(*one, got),
                ([_, _, ..], Err(ApiError::InvalidRequest(_))) => {}
                (expected, got) => prop_assert!(false, "{name:?} in {text:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The proxy router

const API_ORIGINS: &[&str] = &[
    "https://lbv3us1.intelligencebank.com",
    "https://lbv3eu1.intelligencebank.com",
    "http://127.0.0.1:18080",
    "https://127.0.0.1:8443",
];
const PLATFORM_ORIGINS: &[&str] =
    &["https://acme.intelligencebank.com", "https://x-y.eu.intelligencebank.com", "http://127.0.0.1:18081"];
/// Stand-ins in generated targets for the session's own authorities.
const OWN_API: &str = "\u{e000}";
const OWN_PLATFORM: &str = "\u{e001}";

fn authority_of(origin: &str) -> &str {
    origin.split_once("://").expect("scheme").1
}

fn route_session() -> impl Strategy<Value = Session> {
    (select(API_ORIGINS), select(PLATFORM_ORIGINS), "[A-Za-z0-9_-]{1,16}").prop_map(|(api, platform, client_id)| {
        Session::start(SessionId::generate(), grant(api, platform, &client_id, "u-1", "profile"), NOW, 120)
    })
}

fn target_prefix() -> impl Strategy<Value = String> {
    select(vec![
        "",
        "/",
        "/proxy/",
        "/proxy",
        "/api/v3",
        "/api/v3/",
        "/api/v3?",
        "/proxy/\u{e000}/",
        "/proxy/\u{e001}/",
        "/proxy/\u{e000}",
        "/proxy/\u{e001}?",
    ])
    .prop_map(str::to_string)
}

fn raw_target() -> impl Strategy<Value = String> {
    let piece = prop_oneof![4 => nasty_piece(), 1 => select(vec![OWN_API, OWN_PLATFORM]).prop_map(str::to_string)];
    prop_oneof![
        4 => (target_prefix(), vec(piece, 0..12)).prop_map(|(prefix, pieces)| prefix + &pieces.concat()),
        1 => any::<String>(),
        1 => "/[ -~]{0,40}",
    ]
}

fn substitute(raw: &str, session: &Session) -> String {
    raw.replace(OWN_API, authority_of(&session.grant.api_v3_url))
        .replace(OWN_PLATFORM, authority_of(&session.grant.platform_url))
}

/// The path part of what goes upstream is safe: after full percent-decoding no `.`/`..` segment (split on `/`
/// and `\`), and no NUL, CR, LF or backslash, raw or decoded.
fn assert_safe_upstream_path(path_and_query: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        !path_and_query.iter().any(|b| matches!(b, 0 | b'\r' | b'\n' | b'\\')),
        "raw control or backslash in {:?}",
        String::from_utf8_lossy(path_and_query)
    );
    let path = path_and_query.split(|b| *b == b'?').next().unwrap_or_default();
    let decoded: Vec<u8> = percent_encoding::percent_decode(path).collect();
    prop_assert!(
        !decoded.iter().any(|b| matches!(b, 0 | b'\r' | b'\n' | b'\\')),
        "encoded control or backslash in {:?}",
        String::from_utf8_lossy(path)
    );
    for segment in decoded.split(|b| *b == b'/') {
        prop_assert!(segment != b"." && segment != b"..", "dot segment in {:?}", String::from_utf8_lossy(path));
    }
    prop_assert!(path.starts_with(b"/"), "path {:?} is not absolute", String::from_utf8_lossy(path));
    Ok(())
}

/// The target is exactly one of the session's two origins.
fn assert_own_host(target: &Target, session: &Session) -> Result<(), TestCaseError> {
    let own = [&session.grant.api_v3_url, &session.grant.platform_url];
    let matches = own.iter().any(|origin| {
        let tls = origin.starts_with("https://");
        let authority = authority_of(origin);
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse::<u16>().expect("port")),
            None => (authority, if tls { 443 } else { 80 }),
        };
        target.authority == authority && target.host == host && target.port == port && target.tls == tls
    });
    prop_assert!(matches, "{target:?} is not one of {own:?}");
    Ok(())
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Any raw target: parse never panics; whatever binds goes to the session's own host with a safe path;
    /// a `/proxy/{host}` route binds exactly when `{host}` is one of the session's own authorities.
    #[test]
    fn routes_bind_only_to_the_sessions_own_hosts(raw in raw_target(), session in route_session()) {
        let raw = substitute(&raw, &session);
        let Ok(route) = parse(&raw) else { return Ok(()) };
        let bound = bind(&route, &session);
        if let ProxyRoute::Host { authority, .. } = &route {
            let own = [authority_of(&session.grant.api_v3_url), authority_of(&session.grant.platform_url)];
            if own.contains(&authority.as_str()) {
                prop_assert!(bound.is_ok(), "{raw:?}: own host refused: {bound:?}");
            } else {
                prop_assert_eq!(&bound, &Err(ApiError::HostNotAllowed), "{:?}", raw);
            }
        }
        if let Ok(target) = bound {
            assert_own_host(&target, &session)?;
            assert_safe_upstream_path(&target.path_and_query)?;
        }
    }

    /// `/api/v3/...` always goes to the API host under `/api/3.0.0/{clientid}`, the rest byte for byte.
    #[test]
    fn api_v3_routes_go_to_the_api_host_under_the_client_id(
        tail in prop_oneof![nasty_string(), "[ -~]{0,40}", any::<String>()],
        session in route_session(),
    ) {
        let raw = format!("/api/v3/{tail}");
        let Ok(route) = parse(&raw) else { return Ok(()) };
        prop_assert!(matches!(route, ProxyRoute::ApiV3 { .. }), "{raw:?}: {route:?}");
        let target = bind(&route, &session).expect("an /api/v3 route always binds");
        prop_assert_eq!(&target.authority, authority_of(&session.grant.api_v3_url));
        let expected = format!("/api/3.0.0/{}/{tail}", session.grant.ib_client_id);
        prop_assert_eq!(String::from_utf8_lossy(&target.path_and_query), expected);
        assert_safe_upstream_path(&target.path_and_query)?;
    }

    /// `/proxy/{own host}/...` forwards the path and query byte for byte.
    #[test]
    fn proxy_routes_to_an_own_host_keep_the_path(
        tail in prop_oneof![nasty_string(), "[ -~]{0,40}", any::<String>()],
        platform in any::<bool>(),
        session in route_session(),
    ) {
        let origin = if platform { &session.grant.platform_url } else { &session.grant.api_v3_url };
        let raw = format!("/proxy/{}/{tail}", authority_of(origin));
        let Ok(route) = parse(&raw) else { return Ok(()) };
        let target = bind(&route, &session).expect("an own-host route binds");
        prop_assert_eq!(&target.authority, authority_of(origin));
        prop_assert_eq!(String::from_utf8_lossy(&target.path_and_query), format!("/{tail}"));
        assert_safe_upstream_path(&target.path_and_query)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The W3C trace context

/// Strings near the `traceparent` shape: right lengths and dashes with arbitrary (often hex) characters, later
/// versions with a tail, and plain garbage.
fn near_traceparent() -> impl Strategy<Value = String> {
    let fields = ("[0-9a-fA-F]{2}", "[0-9a-f]{31}[0-9a-fA-F]", "[0-9a-f]{15}[0-9a-fA-F]", "[0-9a-fA-F]{2}");
    prop_oneof![
        fields.prop_map(|(v, t, p, f)| format!("{v}-{t}-{p}-{f}")),
        (fields, "[-a-z0-9]{0,8}").prop_map(|((v, t, p, f), tail)| format!("{v}-{t}-{p}-{f}{tail}")),
        Just("00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string()),
        "[0-9a-f-]{50,60}",
        any_text(),
        nasty_string(),
    ]
}

proptest! {
    #![proptest_config(cases(5000))]

    /// Anything a client sends is read or refused, never a panic; what is read has non-zero ids and was
    /// lowercase hex.
    #[test]
    fn traceparent_parsing_never_panics(value in near_traceparent()) {
        if let Ok(parsed) = TraceParent::parse(&value) {
            prop_assert!(value.len() >= 55);
            prop_assert_eq!(&parsed.to_string()[3..], &value[3..55]);
            prop_assert_ne!(parsed.trace_id.to_bytes(), [0u8; 16]);
            prop_assert_ne!(parsed.parent_id.to_bytes(), [0u8; 8]);
            if value.starts_with("00") {
                prop_assert_eq!(parsed.to_string(), value, "format ∘ parse is the identity on version 00");
            }
        }
    }

    #[test]
    fn a_written_traceparent_is_read_back(trace_id in any::<[u8; 16]>(), parent_id in any::<[u8; 8]>(), flags in any::<u8>()) {
        let (Some(trace_id), Some(parent_id)) = (TraceId::from_bytes(trace_id), SpanId::from_bytes(parent_id)) else {
            return Ok(());
        };
        let written = TraceParent { trace_id, parent_id, flags };
        prop_assert_eq!(TraceParent::parse(&written.to_string()), Ok(written));
    }

    /// A `tracestate` is passed on whole or not at all, and never longer than the bound.
    #[test]
    fn tracestate_is_bounded_and_passed_on_unchanged(fields in vec(prop_oneof![any_text(), "[a-z0-9@=,_ -]{0,80}"], 0..4)) {
        let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
        if let Some(kept) = trace::tracestate(refs.iter().copied()) {
            prop_assert!(kept.len() <= trace::MAX_TRACESTATE_BYTES);
            prop_assert_eq!(kept, refs.join(","));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// IB's /v1/auth/app/info body, through IbClient::poll_login

/// A keep-alive HTTP/1.1 server on 127.0.0.1 answering `GET ...?token=T` with 200 and the body registered
/// for `T`, and the client and runtime that talk to it.
struct InfoServer {
    runtime: tokio::runtime::Runtime,
    client: IbClient,
    platform: PlatformUrl,
    bodies: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    next_token: AtomicU64,
}

impl InfoServer {
    fn get() -> &'static InfoServer {
        static SERVER: OnceLock<InfoServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
            let bodies = Arc::new(Mutex::new(HashMap::new()));
            let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
            let origin = format!("http://{}", listener.local_addr().expect("address"));
            runtime.spawn(serve_info(listener, bodies.clone()));
            let yaml =
                "server:\n  public_url: \"https://gateway.example.com\"\nplatforms:\n  allow_insecure_loopback: true\n";
            let config = config::load_str(yaml).expect("test configuration is valid");
            let client = {
                let _guard = runtime.enter();
                IbClient::new(&config).expect("client")
            };
            let platform = client.policy().validate(&origin).expect("loopback platform");
            InfoServer { runtime, client, platform, bodies, next_token: AtomicU64::new(0) }
        })
    }

    fn poll(&self, body: Vec<u8>) -> Result<LoginPoll, IbError> {
        let token = format!("t{}", self.next_token.fetch_add(1, Ordering::Relaxed));
        self.bodies.lock().expect("bodies").insert(token.clone(), body);
        let result = self.runtime.block_on(self.client.poll_login(&self.platform, &token));
        self.bodies.lock().expect("bodies").remove(&token);
        result
    }
}

async fn serve_info(listener: tokio::net::TcpListener, bodies: Arc<Mutex<HashMap<String, Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut socket, _)) = listener.accept().await {
        let _ = socket.set_nodelay(true);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let end = loop {
                    if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                buffer.drain(..end);
                let target = head.split(' ').nth(1).unwrap_or_default();
                let token = target.split_once("token=").map(|(_, t)| t).unwrap_or_default();
                let body = bodies.lock().expect("bodies").get(token).cloned().unwrap_or_default();
                let mut reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                reply.extend_from_slice(&body);
                if socket.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

const INFO_KEYS: &[&str] = &[
    "SID",
    "content",
    "session",
    "info",
    "sid",
    "userUuid",
    "useruuid",
    "clientid",
    "apiV3url",
    "loginTime",
    "logintimeoutperiod",
    "firstname",
    "lastname",
];

fn maybe(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        4 => select(values).prop_map(Some),
        1 => json_leaf().prop_map(Some),
    ]
}

/// A login answer shaped like IB's, each field present or not, well-formed or not.
fn info_body() -> impl Strategy<Value = Value> {
    let sid = maybe(vec![json!("s3cr3t"), json!(""), json!(12), Value::Null, json!(["s"])]);
    let uuid = maybe(vec![json!("u-1"), json!(""), json!(1)]);
    let info_uuid = maybe(vec![json!("u-2"), json!("")]);
    let client_id = maybe(vec![
        json!("Abc_12-x"),
        json!(""),
        json!("a/b"),
        json!(".."),
        json!("a?b"),
        json!("a.b"),
        json!("a%2fb"),
        json!("x".repeat(128)),
        json!("x".repeat(129)),
        json!(7),
    ]);
    let api = maybe(vec![
        json!("https://lbv3us1.intelligencebank.com"),
        json!("lbv3us1.intelligencebank.com"),
        json!("https://lbv3us1.intelligencebank.com/"),
        json!("http://127.0.0.1:18080"),
        json!("https://evil.com"),
        json!("https://lbv3us1.intelligencebank.com.evil.com"),
        json!("https://lbv3us1.intelligencebank.com@evil.com"),
        json!("http://lbv3us1.intelligencebank.com"),
        json!("https://lbv3us1.intelligencebank.com:8443"),
        json!("https://lbv3us1.intelligencebank.com/api"),
        json!("https://169.254.169.254"),
        json!("https://localhost"),
        json!(""),
    ]);
    let number = || {
        maybe(vec![
            json!(8),
            json!("8"),
            json!(" 8 "),
            json!(8.0),
            json!(8.5),
            json!(-1),
            json!(1e300),
            json!(u64::MAX),
            json!("x"),
            json!(1_609_227_014),
        ])
    };
    (sid, uuid, info_uuid, client_id, api, number(), number(), any::<bool>(), json_value(INFO_KEYS)).prop_map(
        |(sid, uuid, info_uuid, client_id, api, login_time, timeout, extra_at_top, extra)| {
            let mut session = serde_json::Map::new();
            let mut info = serde_json::Map::new();
            let put = |map: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>| {
                if let Some(value) = value {
                    map.insert(key.to_string(), value);
                }
            };
            put(&mut session, "sid", sid);
            put(&mut session, "userUuid", uuid);
            put(&mut session, "loginTime", login_time);
            put(&mut info, "useruuid", info_uuid);
            put(&mut info, "clientid", client_id);
            put(&mut info, "apiV3url", api);
            put(&mut info, "logintimeoutperiod", timeout);
            put(&mut info, "firstname", Some(json!("Ada")));
            let mut body = json!({ "SID": "app", "content": { "session": session, "info": info } });
            if extra_at_top {
                body["extra"] = extra;
            } else {
                body["content"]["info"]["extra"] = extra;
            }
            body
        },
    )
}

/// What `poll_login` reported for a 200 answer with `body` is one of the three documented outcomes, and a
/// completed login carries only what passed the checks.
fn check_login_poll(body: &[u8], result: Result<LoginPoll, IbError>) -> Result<(), TestCaseError> {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        prop_assert_eq!(result, Err(IbError::BadResponse("the login status is not JSON")));
        return Ok(());
    };
    let non_empty = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let session = &json["content"]["session"];
    let info = &json["content"]["info"];
    match result {
        Ok(LoginPoll::Pending) => prop_assert!(non_empty(&session["sid"]).is_none(), "pending with a sid"),
        Ok(LoginPoll::Complete(login)) => {
            prop_assert_eq!(Some(login.sid.expose().to_string()), non_empty(&session["sid"]));
            prop_assert!(!login.sid.expose().is_empty());
            let uuid = non_empty(&session["userUuid"]).or_else(|| non_empty(&info["useruuid"]));
            prop_assert_eq!(Some(login.user_uuid.clone()), uuid);
            let id = &login.client_id;
            prop_assert_eq!(Some(id.clone()), non_empty(&info["clientid"]));
            prop_assert!(!id.is_empty() && id.len() <= 128, "client id {id:?}");
            prop_assert!(!id.contains(['/', '?', '%', '#', '\\']) && !id.contains(".."), "client id {id:?}");
            let raw_api = non_empty(&info["apiV3url"]).expect("a completed login has an apiV3url");
            let policy = InfoServer::get().client.policy();
            prop_assert_eq!(policy.validate(&raw_api), Ok(login.api_v3_url.clone()));
            prop_assert_eq!(login.email, None);
        }
        Err(IbError::BadResponse(_)) => {
            prop_assert!(non_empty(&session["sid"]).is_some(), "refused an answer without a sid");
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2000))]

    /// IB-shaped answers, each field well-formed or not.
    #[test]
    fn login_info_answers_are_pending_complete_or_refused(body in info_body()) {
        let bytes = body.to_string().into_bytes();
        let result = InfoServer::get().poll(bytes.clone());
        check_login_poll(&bytes, result)?;
    }

    /// Arbitrary JSON values.
    #[test]
    fn arbitrary_json_login_answers_never_panic(body in json_value(INFO_KEYS)) {
        let bytes = body.to_string().into_bytes();
        let result = InfoServer::get().poll(bytes.clone());
        check_login_poll(&bytes, result)?;
    }

    /// Arbitrary bytes, and JSON text cut short.
    #[test]
    fn arbitrary_byte_login_answers_never_panic(
        body in prop_oneof![
            vec(any::<u8>(), 0..200),
            (info_body(), any::<Index>()).prop_map(|(json, at)| {
                let text = json.to_string().into_bytes();
                let cut = at.index(text.len() + 1);
                text[..cut].to_vec()
            }),
        ]
    ) {
        let result = InfoServer::get().poll(body.clone());
        check_login_poll(&body, result)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The YAML configuration loader

/// Every section of the schema and its keys, from the defaults (sections whose value is a map).
fn schema() -> &'static BTreeMap<String, Vec<String>> {
    static SCHEMA: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let value = serde_json::to_value(Config::default()).expect("the defaults serialise");
        let mut schema = BTreeMap::new();
        for (section, keys) in value.as_object().expect("a map") {
            let keys = keys.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            schema.insert(section.clone(), keys);
        }
        schema
    })
}

fn yaml_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_leaf(),
        select(vec![
            json!("0.0.0.0:8080"),
            json!("https://gateway.example.com"),
            json!("redis://127.0.0.1:6379"),
            json!("redis://:pw@127.0.0.1"),
            json!("a\nb"),
            json!("`"),
            json!("\r"),
            json!(0),
            json!(-1),
            json!(1e20),
            json!("redis"),
            json!("memory"),
            json!("EdDSA"),
            json!("*"),
            json!(true),
            json!({ "env": "IBGW_PROPERTY_TEST_UNSET" }),
            json!({ "env": "A\0B" }),
            json!({ "env": "" }),
            json!({ "file": "/nonexistent/secret" }),
            json!({ "file": "" }),
            json!({ "file": "a\0b" }),
        ]),
    ]
}

/// A YAML value for a key: scalars, lists, maps (some with the schema's own keys).
fn yaml_value() -> impl Strategy<Value = Value> {
    let all_keys: Vec<String> = schema().values().flatten().cloned().collect();
    let key = prop_oneof![3 => select(all_keys), 1 => any_text()];
    yaml_scalar().prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A configuration document: known sections (sometimes unknown ones) with known keys (sometimes unknown
/// ones) and any values.
fn config_document() -> impl Strategy<Value = Value> {
    let sections: Vec<String> = schema().keys().cloned().collect();
    let section = prop_oneof![6 => select(sections), 1 => any_text()];
    let body = vec((any::<Index>(), any::<bool>(), yaml_value()), 0..5);
    btree_map(section, body, 0..5).prop_map(|sections| {
        let mut document = serde_json::Map::new();
        for (name, entries) in sections {
            let keys = schema().get(&name).cloned().unwrap_or_default();
            let mut map = serde_json::Map::new();
            for (at, known, value) in entries {
                let key = if known && !keys.is_empty() {
                    keys[at.index(keys.len())].clone()
                } else {
                    format!("k{}", at.index(100))
                };
                map.insert(key, value);
            }
            document.insert(name, Value::Object(map));
        }
        if !document.contains_key("server") {
            document.insert("server".into(), json!({ "public_url": "https://gateway.example.com" }));
        }
        Value::Object(document)
    })
}

/// YAML-looking text: lines of `key: value` at random indentation, some of them broken.
fn yaml_text() -> impl Strategy<Value = String> {
    let sections: Vec<String> = schema().keys().cloned().collect();
    let all_keys: Vec<String> = schema().values().flatten().cloned().collect();
    let line = (
        0usize..6,
        prop_oneof![select(sections), select(all_keys), "[ -~]{0,8}"],
        prop_oneof![
            select(vec![
                "",
                " 1",
                " x",
                " [",
                " {",
                " - a",
                " &a x",
                " *a",
                " !!binary x",
                " \"\\u0000\"",
                " |",
                " >-",
                " ~",
                " 'q"
            ])
            .prop_map(str::to_string),
            "[ -~]{0,12}".prop_map(|s| format!(" {s}"))
        ],
        select(vec![":", ": ", "", "- ", "? "]),
    )
        .prop_map(|(indent, key, value, colon)| format!("{}{key}{colon}{value}", " ".repeat(indent)));
    vec(line, 0..12).prop_map(|lines| lines.join("\n"))
}

fn check_config_text(text: &str) -> Result<(), TestCaseError> {
    let all = config::load_str_all(text);
    let first = config::load_str(text);
    match (all, first) {
        (Ok(_), Ok(_)) => {}
        (Err(errors), Err(first)) => {
            prop_assert!(!errors.is_empty());
            prop_assert_eq!(&first, errors.iter().next().expect("non-empty"));
            // Every problem is one line: a non-empty key and a message without line breaks.
            for error in errors.iter() {
                prop_assert!(!error.key.is_empty(), "empty key: {error:?} for {text:?}");
                prop_assert!(!error.key.contains(['\n', '\r']), "multi-line key: {error:?} for {text:?}");
                prop_assert!(!error.message.contains(['\n', '\r']), "multi-line message: {error:?} for {text:?}");
            }
        }
        (all, first) => prop_assert!(false, "load_str_all {all:?} and load_str {first:?} disagree for {text:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Arbitrary text never panics the loader; every error names a key, on one line.
    #[test]
    fn config_loader_never_panics_on_any_text(text in prop_oneof![any::<String>(), "[ -~\n\t]{0,200}", yaml_text()]) {
        check_config_text(&text)?;
    }

    /// YAML documents of the schema's sections and keys with any values: same.
    #[test]
    fn config_loader_never_panics_on_yaml_documents(document in config_document()) {
        let text = serde_norway::to_string(&document).expect("YAML");
        check_config_text(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Regressions: failing cases found by the properties above, kept with their literal input.

/// Found by `config_loader_never_panics_on_any_text` (`&A:\t`) and `..._on_yaml_documents` (`'': {}`): an
/// unknown key that is empty is reported under an empty `key` (`server.` when nested), so `check-config`
/// prints `: unknown field ...` naming no key.
#[test]
fn regression_an_empty_unknown_key_still_names_a_key() {
    for text in ["&A:\t", "'': {}\n", "server:\n  \"\": 1\n"] {
        let error = config::load_str(text).expect_err("an unknown key is refused");
        assert!(!error.key.is_empty() && !error.key.ends_with('.'), "{text:?}: {error:?}");
    }
}

/// Found by the same properties: the unknown key's name is appended to `key` as written, so a key with a
/// line break gives a multi-line `key` (the message is flattened to one line, the key is not), and
/// `check-config`'s one line per problem becomes two.
#[test]
fn regression_an_unknown_key_with_a_line_break_gives_a_one_line_key() {
    for text in ["\"a\\nb\": 1\n", "server:\n  \"x\\ny\": 1\n", "server:\n  \"x\\ry\": 1\n"] {
        let errors = config::load_str_all(text).expect_err("an unknown key is refused");
        for error in errors.iter() {
            assert!(!error.key.contains(['\n', '\r']), "{text:?}: {error:?}");
        }
        assert_eq!(errors.to_string().lines().count(), errors.len(), "one line per problem for {text:?}");
    }
}

/// Seen while probing the above: semantic messages quote the offending value as written, so a value with a
/// line break makes a multi-line message (`ConfigErrors` promises one line per problem).
#[test]
fn regression_a_value_with_a_line_break_gives_a_one_line_message() {
    let text = "server:\n  public_url: https://a.example\n  listen: [\"a\\nb\"]\n";
    let errors = config::load_str_all(text).expect_err("not an address");
    assert_eq!(errors.to_string().lines().count(), errors.len(), "{errors:?}");
}

/// The gateway's RFC 8707 resources under `config`, as a running gateway reads them.
fn resources_of(config: &ib_oauth_gateway::config::Config) -> ib_oauth_gateway::resource::Resources {
    let public_url = access_token::audience(config);
    ib_oauth_gateway::resource::Resources::new(&public_url, &config.oauth.resources).expect("resources")
}
