//! The per-request work of a proxied call, piece by piece: verifying an access token (full signature check
//! and the verified-token cache hit that replaces it), the session rule, parsing and binding the route,
//! rewriting the upstream request headers, the W3C trace context (a client's `traceparent` continued and
//! ours written for IB; what every request pays with span export off), the IB host's address from the DNS
//! cache, and the Redis store's local session cache (a hit, and keeping what a read found).
//!
//!   cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 3

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::Duration;

use ib_oauth_gateway::auth::access_token;
use ib_oauth_gateway::auth::token_cache::VerifiedTokens;
use ib_oauth_gateway::config::{self, SigningAlgorithm};
use ib_oauth_gateway::gateway::{route, upstream};
use ib_oauth_gateway::keys::SigningKeys;
use ib_oauth_gateway::session::{rules, IbSid, IbUser, Limits, Session, SessionGrant, SessionId};
use ib_oauth_gateway::store::cache::SessionCache;
use ib_oauth_gateway::store::now_unix;
use ib_oauth_gateway::trace::{SpanId, TraceContext};
use pingora::http::RequestHeader;

fn session(now: u64) -> Session {
    let grant = SessionGrant {
        sid: IbSid::new("ib-session-id"),
        platform_url: "https://acme.intelligencebank.com".into(),
        api_v3_url: "https://lbv3us1.intelligencebank.com".into(),
        ib_client_id: "AbC1".into(),
        user: IbUser {
            uuid: "4f1c2b1e-8d7a-4e0b-9a57-0c6f5d2e9b11".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: None,
            login_time: Some(now),
        },
        login_timeout_hours: Some(8),
        oauth_client_id: "mcp-public-client".into(),
        scope: "profile".into(),
        resource: None,
    };
    Session::start(SessionId::generate(), grant, now, 120)
}

/// Sessions in the session cache while timing it, so a hit is not on a one-entry map.
const CACHED_SESSIONS: usize = 10_000;

fn benches(c: &mut Criterion) {
    let config = config::load_str("server:\n  public_url: https://gateway.example.com\n").unwrap();
    let now = now_unix();
    let session = session(now);
    for algorithm in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256] {
        let keys = SigningKeys::ephemeral(algorithm).unwrap();
        let (token, _) = access_token::issue(&keys, &config, &session, now).unwrap();
        let resources =
            ib_oauth_gateway::resource::Resources::new(&access_token::audience(&config), &config.oauth.resources)
                .unwrap();
        c.bench_function(&format!("access_token_verify_full_{algorithm:?}"), |b| {
            b.iter(|| {
                access_token::verify(&keys, &config, access_token::Audience::Own(&resources), black_box(&token), now)
                    .unwrap()
            })
        });
        let cache = VerifiedTokens::new(100_000);
        cache.verify(&keys, &config, &resources, &token, now).unwrap();
        c.bench_function(&format!("access_token_verify_cached_{algorithm:?}"), |b| {
            b.iter(|| cache.verify(&keys, &config, &resources, black_box(&token), now).unwrap())
        });
    }
    let limits = Limits { max_refresh_count: 120, near_expiry_margin: 300 };
    c.bench_function("session_access_status", |b| b.iter(|| rules::access_status(black_box(&session), now, &limits)));
    let raw =
        "/proxy/lbv3us1.intelligencebank.com/api/3.0.0/AbC1/resource.limit(100).order(createTime:-1)?verbose=null";
    c.bench_function("route_parse_and_bind", |b| {
        b.iter(|| route::bind(&route::parse(black_box(raw)).unwrap(), &session).unwrap())
    });
    let target = route::bind(&route::parse(raw).unwrap(), &session).unwrap();
    c.bench_function("rewrite_upstream_request", |b| {
        b.iter(|| {
            let mut request = RequestHeader::build("GET", raw.as_bytes(), Some(6)).unwrap();
            request.append_header("Authorization", "Bearer x").unwrap();
            request.append_header("Accept", "application/json").unwrap();
            upstream::rewrite_request(&mut request, &target, "ib-session-id", &[], true, "req").unwrap();
            request
        })
    });
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.bench_function("trace_context_continue_and_propagate", |b| {
        b.iter(|| {
            let trace = TraceContext::accept(Some(black_box(traceparent)), None, 1.0, false);
            trace.traceparent(SpanId::random()).to_string()
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let dns = upstream::DnsCache::new(60);
    runtime.block_on(dns.resolve("localhost:8443", "localhost", 8443)).expect("localhost resolves");
    c.bench_function("dns_resolve_cached", |b| {
        b.to_async(&runtime).iter(|| dns.resolve(black_box("localhost:8443"), "localhost", 8443))
    });

    let cache = SessionCache::new(100_000, Duration::from_secs(60));
    cache.set_live(true);
    // As if a heartbeat had just come back, for longer than the bench runs.
    cache.confirm(std::time::Instant::now(), Duration::from_secs(3_600));
    let sessions: Vec<Session> = (0..CACHED_SESSIONS).map(|_| self::session(now)).collect();
    for cached in &sessions {
        cache.keep(cache.begin_read(), cached);
    }
    let mut next = 0;
    c.bench_function("session_cache_hit", |b| {
        b.iter(|| {
            next = (next + 1) % sessions.len();
            cache.get(black_box(&sessions[next].id)).expect("cached")
        })
    });
    c.bench_function("session_cache_keep", |b| {
        b.iter(|| {
            next = (next + 1) % sessions.len();
            cache.keep(cache.begin_read(), black_box(&sessions[next]))
        })
    });
    // A full cache keeping sessions it does not hold (more sessions than `session_cache_max_entries`): each keep
    // makes room, a shard at a time.
    let full = SessionCache::new(CACHED_SESSIONS / 4, Duration::from_secs(60));
    full.set_live(true);
    full.confirm(std::time::Instant::now(), Duration::from_secs(3_600));
    c.bench_function("session_cache_keep_when_full", |b| {
        b.iter(|| {
            next = (next + 1) % sessions.len();
            full.keep(full.begin_read(), black_box(&sessions[next]))
        })
    });
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
