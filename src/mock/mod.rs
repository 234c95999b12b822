//! A mock IntelligenceBank platform and API host: a real HTTP(S) server for tests, benches and the demo.
//!
//! It follows the contract page (`/work/shared/reference/intelligencebank-api.md`): the Browser Login
//! (`/v1/auth/app/token`, `/auth/`, `/v1/auth/app/info`) and API v3 (`/api/3.0.0/{clientid}/...`, `sid`
//! header, 401 for an unknown session). API calls are echoed back as JSON so a test can see exactly what the
//! gateway forwarded; bodies are streamed both ways, never buffered, so 1 GiB transfers cost no memory.
//! Test control endpoints live under `/_mock/` (see [`routes`]). One server can be both platform and API host:
//! by default `apiV3url` is the mock's own origin.

mod api;
mod body;
mod routes;
mod state;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

pub use api::pattern_byte;
use state::MockState;

/// How the mock platform answers. `Default` is IB's defaults with the account `mockclient`.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// `content.info.logintimeoutperiod` in hours; `None` leaves the field out.
    pub login_timeout_hours: Option<u32>,
    /// `content.session.loginTime` is now plus this many seconds (negative: a login that began earlier).
    pub login_time_offset_seconds: i64,
    /// `content.info.apiV3url`; `None`: the mock's own origin, so one server is platform and API host.
    pub api_v3_url: Option<String>,
    /// `content.info.clientid`, and the only account API v3 paths may name.
    pub client_id: String,
    /// While a login is pending, answer `200` with no `content.session.sid` instead of `404`
    /// (the other pending signal some IB clients check).
    pub pending_as_ok_without_session: bool,
    /// Over TLS, offer `h2` as well as `http/1.1` by ALPN (as IB's CDN-fronted hosts do), and speak what the
    /// client picks. Off: `http/1.1` only. Plain HTTP is always HTTP/1.1.
    pub http2: bool,
}

impl Default for MockSettings {
    fn default() -> Self {
        MockSettings {
            login_timeout_hours: Some(120),
            login_time_offset_seconds: 0,
            api_v3_url: None,
            client_id: "mockclient".into(),
            pending_as_ok_without_session: false,
            http2: false,
        }
    }
}

/// A running mock platform. Dropping the handle stops it too (without waiting).
#[derive(Debug)]
pub struct MockHandle {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub origin: String,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// `origin` followed by `path_and_query`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }

    /// Stops accepting, lets open connections finish their current request, and waits for the accept loop.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Serves the mock platform on `listener`, over TLS when `tls` names a PEM certificate chain and key.
/// Returns once the server task is running.
pub async fn serve(
    listener: TcpListener,
    tls: Option<(PathBuf, PathBuf)>,
    settings: MockSettings,
) -> Result<MockHandle, String> {
    let addr = listener.local_addr().map_err(|e| format!("mock platform: no local address: {e}"))?;
    let acceptor = match &tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key, settings.http2)?),
        None => None,
    };
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => format!("[{}]", Ipv6Addr::LOCALHOST),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let origin = format!("{scheme}://{host}:{}", addr.port());
    let state = Arc::new(MockState::new(settings, origin.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, acceptor, state, shutdown_rx));
    Ok(MockHandle { origin, shutdown, task: Some(task) })
}

/// For a CLI subcommand: serves on `listen` until SIGTERM or ctrl-c, printing the origin on stdout first.
pub fn run_blocking(listen: &str, tls: Option<(PathBuf, PathBuf)>, settings: MockSettings) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("mock platform: cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let listener =
            TcpListener::bind(listen).await.map_err(|e| format!("mock platform: cannot listen on {listen}: {e}"))?;
        let handle = serve(listener, tls, settings).await?;
        {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", handle.origin);
            let _ = stdout.flush();
        }
        log::info!("mock IntelligenceBank platform listening on {}", handle.origin);
        wait_for_signal().await;
        handle.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm => {}
    }
}

fn tls_acceptor(cert: &Path, key: &Path, http2: bool) -> Result<TlsAcceptor, String> {
    crate::ib::install_crypto_provider();
    let open = |path: &Path| {
        std::fs::File::open(path)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("mock platform: cannot read {}: {e}", path.display()))
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("mock platform: {} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("mock platform: {} holds no certificate", cert.display()));
    }
    let private_key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| format!("mock platform: {} is not a PEM private key: {e}", key.display()))?
        .ok_or_else(|| format!("mock platform: {} holds no private key", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| format!("mock platform: unusable certificate or key: {e}"))?;
    config.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    state: Arc<MockState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            // A send or a dropped handle: either way, stop.
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::debug!("mock platform: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        state.count_connection();
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(stream, acceptor.clone(), state.clone(), shutdown.clone()));
    }
}

async fn serve_connection(
    stream: TcpStream,
    acceptor: Option<TlsAcceptor>,
    state: Arc<MockState>,
    shutdown: watch::Receiver<bool>,
) {
    match acceptor {
        None => serve_http(TokioIo::new(stream), false, state, shutdown).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls) => {
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                if h2 {
                    state.count_h2_connection();
                }
                serve_http(TokioIo::new(tls), h2, state, shutdown).await
            }
            Err(e) => log::debug!("mock platform: TLS handshake failed: {e}"),
        },
    }
}

/// HTTP/1.1, or h2 when ALPN picked it.
async fn serve_http<I>(io: I, h2: bool, state: Arc<MockState>, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(routes::handle(request, &state).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                log::debug!("mock platform: connection ended: {e}");
            }
        }
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
