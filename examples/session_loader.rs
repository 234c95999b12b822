//! Bench-only session loader for `benches/load.sh`: writes many live sessions straight into the store a
//! gateway configuration names (through the crate's public store API, not through browser logins), and writes
//! an access token for each (and refresh tokens for the first few) to files the load generators read.
//!
//! The sessions copy one real session, made by the real OAuth flow against the mock platform (so they carry an
//! IB `sid` the mock accepts), each with its own id, its own user and its own copy of the grant, as sessions of
//! distinct logins would. Access tokens are signed with the gateway's own key (the configuration must name a
//! key file: `ib-oauth-gateway keygen`), so the gateway accepts them.
//!
//! With `--memory-rss`, the same sessions also go into an in-process memory store first and the loader prints
//! how much its own resident memory grew: what N sessions cost the memory store.
//!
//! With `--serve GATEWAY_YAML` (a memory-store configuration), the loader then becomes that gateway: it drops
//! everything but the memory store it filled and serves it (`server::run_with_store`, the same server as
//! `ib-oauth-gateway`), so the bench measures a memory-store gateway holding N sessions, its throughput and its
//! resident memory, in one process. The tokens it wrote are valid there too (same sessions, same key).
//!
//! Usage: `session_loader --config GATEWAY_YAML --template-token FILE --count N --access-out FILE
//!         [--refresh-out FILE --refresh-count M] [--memory-rss] [--serve MEMORY_GATEWAY_YAML]`
//! The template token is read from a file (never from the command line); no token is printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use clap::Parser;
use futures_util::{stream, StreamExt, TryStreamExt};
use ib_oauth_gateway::auth::access_token;
use ib_oauth_gateway::config::{self, Config};
use ib_oauth_gateway::server;
use ib_oauth_gateway::session::{rules, Session, SessionId};
use ib_oauth_gateway::settings::Settings;
use ib_oauth_gateway::store::{self, memory::MemoryStore, now_unix, TokenStore};
use ib_oauth_gateway::tokens::RefreshToken;

#[derive(Parser, Debug)]
struct Args {
    /// The gateway's configuration (store, signing key, issuer).
    #[arg(long)]
    config: String,
    /// A file holding one access token of a real session, the template.
    #[arg(long)]
    template_token: String,
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Where to write one access token per line.
    #[arg(long)]
    access_out: String,
    /// Where to write refresh tokens (one per line) of the first `refresh_count` sessions.
    #[arg(long)]
    refresh_out: Option<String>,
    #[arg(long, default_value_t = 0)]
    refresh_count: usize,
    /// Also load the sessions into an in-process memory store and print its resident-memory growth.
    #[arg(long)]
    memory_rss: bool,
    /// Then serve the memory store as the gateway this (memory-store) configuration describes.
    #[arg(long)]
    serve: Option<String>,
    /// Concurrent store writes.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

/// The gateway's allocator (as in `src/main.rs`): with `--serve` this process is the gateway being measured.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "system-allocator"))]
unsafe extern "C" {
    /// mimalloc's "return free memory to the system" (in the mimalloc library the allocator links).
    fn mi_collect(force: bool);
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("session_loader: {message}");
    std::process::exit(1);
}

/// This process's resident set in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Session `i`: the template's grant (copied, as each login has its own) with its own id and user.
fn session_from(template: &Session, i: usize) -> Session {
    let mut grant = (*template.grant).clone();
    grant.user.uuid = format!("bench-user-{i:06}");
    Session {
        id: SessionId::generate(),
        grant: Arc::new(grant),
        sid_created_at: template.sid_created_at,
        sid_expiry: template.sid_expiry,
        refresh_count: 0,
        last_refresh_at: None,
        state: template.state,
    }
}

/// Creates `sessions` in `store`, `concurrency` at a time; returns each with its refresh token.
async fn create_all(
    store: &dyn TokenStore,
    config: &Config,
    sessions: Vec<Session>,
    concurrency: usize,
) -> Vec<(Session, RefreshToken)> {
    let now = now_unix();
    let ttl = config.tokens.refresh_token_ttl_seconds;
    stream::iter(sessions)
        .map(|session| async move {
            let refresh = RefreshToken::generate(&session.id);
            let expires_at = rules::refresh_token_expiry(&session, now, ttl);
            store.create_session(&session, &refresh.hash(), expires_at, now).await?;
            Ok::<_, store::StoreError>((session, refresh))
        })
        .buffered(concurrency)
        .try_collect()
        .await
        .unwrap_or_else(|e| fail(format!("creating sessions: {e}")))
}

fn writer(path: &str) -> std::io::BufWriter<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| fail(format!("{path}: {e}")));
    std::io::BufWriter::new(file)
}

fn main() {
    let args = Args::parse();
    let served = args.serve.as_ref().map(|path| {
        let config = config::load_all(path).and_then(Settings::try_from);
        (path.clone(), config.unwrap_or_else(|e| fail(format!("{path}: {e}"))))
    });
    // The loading runs in a runtime of its own, ended before the server starts its own runtimes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("cannot start a runtime: {e}")));
    let memory = runtime.block_on(load(&args, served.as_ref().map(|(_, settings)| &*settings.config)));
    drop(runtime);
    if let (Some((path, settings)), Some(memory)) = (served, memory) {
        // What loading freed goes back to the system, so the served gateway's RSS is its own: the store, and
        // what serving adds (the verified-token cache, ...), not the loader's garbage.
        #[cfg(not(feature = "system-allocator"))]
        // SAFETY: mimalloc's own collection call, with no pointer passed; any thread may make it.
        unsafe {
            mi_collect(true)
        };
        ib_oauth_gateway::logging::init(&settings.config.logging);
        let opt = pingora::server::configuration::Opt::default();
        if let Err(e) = server::run_with_store(settings, &path, opt, memory) {
            fail(e);
        }
    }
}

/// Loads the sessions; returns the filled memory store when one was asked for (`--memory-rss`, `--serve`).
async fn load(args: &Args, served: Option<&Config>) -> Option<Arc<dyn TokenStore>> {
    let settings = config::load_all(&args.config).and_then(Settings::try_from);
    let settings = settings.unwrap_or_else(|e| fail(format!("{}: {e}", args.config)));
    let (config, keys) = (&*settings.config, &*settings.keys);
    if settings.ephemeral_key {
        fail("the configuration has no signing.current key: the gateway would not accept these tokens");
    }
    let token = std::fs::read_to_string(&args.template_token).unwrap_or_else(|e| fail(e));
    let now = now_unix();
    let claims =
        match access_token::verify(keys, config, access_token::Audience::Own(&settings.resources), token.trim(), now) {
            Ok(access_token::Verified::Valid(claims)) => claims,
            _ => fail("the template token is not a valid access token of this configuration"),
        };
    let id = claims.session_id().unwrap_or_else(|| fail("the template token names no session"));
    let store = store::from_config(config).await.unwrap_or_else(|e| fail(e));
    let template = match store.get_session(&id).await {
        Ok(Some(session)) => session,
        Ok(None) => fail("the template session is not in the store"),
        Err(e) => fail(e),
    };

    let sessions: Vec<Session> = (0..args.count).map(|i| session_from(&template, i)).collect();

    let mut kept: Option<Arc<dyn TokenStore>> = None;
    if args.memory_rss || served.is_some() {
        let memory = MemoryStore::new(&served.unwrap_or(config).store.memory);
        // The sessions to insert exist already (they are cloned in): what grows is the store's own copies.
        let copies: Vec<Session> =
            sessions.iter().map(|s| Session { grant: Arc::new((*s.grant).clone()), ..s.clone() }).collect();
        let before = rss_kib();
        let created = create_all(&memory, config, copies, args.concurrency).await;
        // The refresh tokens the loader keeps are not the store's: drop them before measuring.
        drop(created);
        let after = rss_kib();
        let count = memory.session_count().await.unwrap_or_else(|e| fail(e));
        println!(
            "memory_store_sessions={count} rss_before_kib={before} rss_after_kib={after} growth_kib={} bytes_per_session={}",
            after.saturating_sub(before),
            after.saturating_sub(before) * 1024 / (count.max(1)),
        );
        kept = Some(Arc::new(memory));
    }

    let started = std::time::Instant::now();
    let created = create_all(store.as_ref(), config, sessions, args.concurrency).await;
    let elapsed = started.elapsed().as_secs_f64();

    let mut access = writer(&args.access_out);
    let mut refresh = args.refresh_out.as_deref().map(writer);
    for (i, (session, refresh_token)) in created.iter().enumerate() {
        let (token, _) = access_token::issue(keys, config, session, now).unwrap_or_else(|e| fail(e));
        writeln!(access, "{token}").unwrap_or_else(|e| fail(e));
        if let Some(out) = refresh.as_mut().filter(|_| i < args.refresh_count) {
            writeln!(out, "{}", refresh_token.expose()).unwrap_or_else(|e| fail(e));
        }
    }
    access.flush().unwrap_or_else(|e| fail(e));
    if let Some(out) = refresh.as_mut() {
        out.flush().unwrap_or_else(|e| fail(e));
    }
    let count = store.session_count().await.unwrap_or_else(|e| fail(e));
    println!(
        "store={} created={} in {elapsed:.1}s ({:.0}/s) sessions_in_store={count}",
        store.backend(),
        created.len(),
        created.len() as f64 / elapsed.max(1e-9)
    );
    kept
}
