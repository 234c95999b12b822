//! The `ib-oauth-gateway` command: run the gateway, check or print a configuration, check a running gateway's
//! health, or generate a signing key.

use clap::{Parser, Subcommand};
use ib_oauth_gateway::config::{self, SigningAlgorithm};
#[cfg(feature = "mock")]
use ib_oauth_gateway::mock::{self, MockSettings};
use ib_oauth_gateway::settings::Settings;
use ib_oauth_gateway::{logging, server};
use pingora::server::configuration::Opt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// mimalloc serves every allocation (unless built with the `system-allocator` feature): the proxy path allocates
/// per request, and mimalloc gave 1.25x the throughput of glibc's malloc when the allocator was chosen (0.77
/// against 0.62 of the pass-through's), at a higher resident set under load (67 MiB against 46 MiB).
/// `make bench` (benches/load.sh) measures both in every run: its "glibc malloc" row.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the configuration is when no file is named: `$IBGW_CONFIG`, else this.
const DEFAULT_CONFIG: &str = "conf/gateway.yaml";

#[derive(Parser, Debug)]
#[command(name = "ib-oauth-gateway", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The gateway's YAML configuration.
    #[arg(long, short = 'c', env = "IBGW_CONFIG", default_value = DEFAULT_CONFIG)]
    config: String,
    /// Take the listening sockets from a running instance (Pingora zero-downtime upgrade).
    #[arg(long, short = 'u')]
    upgrade: bool,
    /// Run in the background.
    #[arg(long, short = 'd')]
    daemon: bool,
    /// Check the configuration, start nothing, and exit.
    #[arg(long, short = 't')]
    test: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file and exit (0: valid; 2: invalid, one line per problem).
    CheckConfig {
        #[arg(env = "IBGW_CONFIG", default_value = DEFAULT_CONFIG)]
        file: String,
    },
    /// Print the effective configuration (every default filled in) as YAML, secrets redacted.
    PrintConfig {
        #[arg(env = "IBGW_CONFIG", default_value = DEFAULT_CONFIG)]
        file: String,
    },
    /// Ask a running gateway's admin listener for /readyz (exit 0: ready; 1: not ready or not answering).
    /// For container health checks: needs no curl.
    Health {
        /// The configuration whose server.admin_listen to ask (0.0.0.0 and [::] mean this host).
        #[arg(long, short = 'c', env = "IBGW_CONFIG", default_value = DEFAULT_CONFIG)]
        config: String,
        /// Ask this URL instead of the configuration's admin listener, e.g. http://127.0.0.1:9090/readyz
        /// (plain HTTP; no path means /readyz).
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Write a new signing key pair (private key mode 0600) and print the YAML to use it.
    Keygen {
        #[arg(long, default_value = "EdDSA", value_parser = parse_algorithm)]
        algorithm: SigningAlgorithm,
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
        #[arg(long)]
        kid: Option<String>,
    },
    /// Run the mock IntelligenceBank platform (tests, benches, demo): Browser Login API and an echoing API v3.
    #[cfg(feature = "mock")]
    MockPlatform {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Serve HTTPS with this certificate and key (PEM).
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        tls: Option<Vec<std::path::PathBuf>>,
        /// `logintimeoutperiod` the mock reports, in hours (0: leave the field out).
        #[arg(long, default_value_t = 120)]
        login_timeout_hours: u32,
        /// The `apiV3url` the mock reports (default: its own origin).
        #[arg(long)]
        api_v3_url: Option<String>,
        /// Offer HTTP/2 by ALPN as well as HTTP/1.1 (needs `--tls`): try `upstream.http2` against it.
        #[arg(long, requires = "tls")]
        http2: bool,
    },
    /// Start the mock platform and a development gateway (conf/dev.yaml) together, and print the URL to open.
    #[cfg(feature = "mock")]
    Demo {
        #[arg(long, default_value = "conf/dev.yaml")]
        config: String,
        #[arg(long, default_value = "127.0.0.1:8181")]
        mock_listen: String,
    },
}

fn parse_algorithm(text: &str) -> Result<SigningAlgorithm, String> {
    match text {
        "EdDSA" => Ok(SigningAlgorithm::EdDSA),
        "ES256" => Ok(SigningAlgorithm::ES256),
        "RS256" => Ok(SigningAlgorithm::RS256),
        _ => Err("one of EdDSA, ES256, RS256".into()),
    }
}

/// Exit code for an invalid configuration.
const EXIT_BAD_CONFIG: u8 = 2;

/// Reads the configuration into [`Settings`] (the file validated, keys parsed, secrets and the CA file read), or
/// prints every problem, one line each (`error: PATH: KEY: message`), and gives the exit code for an invalid
/// configuration. `check-config`, `print-config` and the commands that run the gateway all read it this way.
fn load_settings(path: &str) -> Result<Settings, ExitCode> {
    let settings = config::load_all(path).and_then(Settings::try_from);
    settings.map_err(|errors| refuse_config(path, errors.iter()))
}

/// Prints configuration problems (`error: PATH: KEY: message`) and gives the exit code for an invalid
/// configuration.
fn refuse_config<'a>(path: &str, errors: impl Iterator<Item = &'a config::ConfigError>) -> ExitCode {
    for e in errors {
        if e.key == path {
            // The file itself (cannot be read): name it once.
            eprintln!("error: {path}: {}", e.message);
        } else {
            eprintln!("error: {path}: {e}");
        }
    }
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// Runs the gateway on `settings` until it stops; a start-up failure exits 1.
fn run(settings: Settings, path: &str, opt: Opt) -> ExitCode {
    match server::run(settings, path, opt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => match load_settings(&file) {
            Ok(_) => {
                println!("{file}: ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::PrintConfig { file }) => match load_settings(&file) {
            // Secrets serialize as where they come from (`file:PATH`, `env:NAME`) or `***`, never their value.
            Ok(settings) => match serde_norway::to_string(&*settings.config) {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Some(Command::Health { config, url, timeout_ms }) => health(&config, url.as_deref(), timeout_ms),
        Some(Command::Keygen { algorithm, out, kid }) => {
            match ib_oauth_gateway::keys::keygen(algorithm, &out, kid.as_deref()) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "mock")]
        Some(Command::MockPlatform { listen, tls, login_timeout_hours, api_v3_url, http2 }) => {
            let settings = MockSettings {
                login_timeout_hours: (login_timeout_hours > 0).then_some(login_timeout_hours),
                api_v3_url,
                http2,
                ..MockSettings::default()
            };
            let tls = tls.map(|paths| (paths[0].clone(), paths[1].clone()));
            match mock::run_blocking(&listen, tls, settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "mock")]
        Some(Command::Demo { config, mock_listen }) => demo(&config, &mock_listen),
        None => {
            // Before anything else: from here on a SIGHUP reloads the configuration, never ends the process.
            server::reload::ignore_hangup_until_ready();
            let settings = match load_settings(&cli.config) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            logging::init(&settings.config.logging);
            let opt = Opt { upgrade: cli.upgrade, daemon: cli.daemon, test: cli.test, ..Opt::default() };
            run(settings, &cli.config, opt)
        }
    }
}

/// The whole flow on one machine: the mock platform in a thread, the gateway in the foreground.
#[cfg(feature = "mock")]
fn demo(config_path: &str, mock_listen: &str) -> ExitCode {
    let settings = match load_settings(config_path) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let config = settings.config.clone();
    if !config.platforms.allow_insecure_loopback {
        eprintln!("error: {config_path}: platforms.allow_insecure_loopback must be true for the demo");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    logging::init(&config.logging);
    let listen = mock_listen.to_string();
    std::thread::spawn(move || {
        if let Err(e) = mock::run_blocking(&listen, None, MockSettings::default()) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    });
    let base = config.server.public_url.trim_end_matches('/').to_string();
    let verifier = "demo-verifier-0123456789-0123456789-0123456789";
    let challenge = ib_oauth_gateway::tokens::b64(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let redirect = format!("http://127.0.0.1:{}/callback", mock_listen.rsplit(':').next().unwrap_or("8181"));
    println!("\nib-oauth-gateway demo\n");
    println!("1. Open in a browser:\n   {base}/authorize?response_type=code&client_id=mcp-public-client&redirect_uri={redirect}&scope=profile&state=demo&code_challenge={challenge}&code_challenge_method=S256\n");
    println!("2. Enter the platform URL http://{mock_listen} and press the login button in the popup.\n");
    println!("3. The browser lands on {redirect}?code=...; exchange the code:\n   curl -s {base}/token -d grant_type=authorization_code -d client_id=mcp-public-client -d redirect_uri={redirect} -d code_verifier={verifier} -d code=CODE\n");
    run(settings, config_path, Opt::default())
}

/// `health`: one plain HTTP/1.1 GET of the admin listener's `/readyz` (or `url`); exit 0 on `200`, else 1.
fn health(config_path: &str, url: Option<&str>, timeout_ms: u64) -> ExitCode {
    let target = match url {
        Some(url) => readyz_target_of_url(url),
        None => readyz_target_of_config(config_path),
    };
    let timeout = Duration::from_millis(timeout_ms.max(1));
    let result =
        target.and_then(|(addr, host, path)| http_status(addr, &host, &path, timeout).map(|s| (s, host, path)));
    match result {
        Ok((200, _, _)) => ExitCode::SUCCESS,
        Ok((status, host, path)) => {
            eprintln!("unhealthy: http://{host}{path} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin listener of a configuration file, as an address to connect to (a wildcard address means this host).
/// Only `server.admin_listen` is needed: the file is parsed, but secrets are not resolved.
fn readyz_target_of_config(path: &str) -> Result<(SocketAddr, String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read file: {e}"))?;
    let config: config::Config = serde_norway::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let listen = &config.server.admin_listen;
    let mut addr = listen.addr().ok_or_else(|| format!("{path}: server.admin_listen: `{listen}` is not an address"))?;
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr =
            if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        addr.set_ip(loopback);
    }
    Ok((addr, addr.to_string(), "/readyz".into()))
}

fn readyz_target_of_url(text: &str) -> Result<(SocketAddr, String, String), String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("{text}: only http:// (the admin listener is plain HTTP)"));
    }
    let host = url.host_str().ok_or_else(|| format!("{text}: no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text}: {host} has no address"))?;
    let path = match url.path() {
        "" | "/" => "/readyz".to_string(),
        path => path.to_string(),
    };
    Ok((addr, format!("{host}:{port}"), path))
}

/// The status code of `GET path`, every step bounded by `timeout`.
fn http_status(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ib-oauth-gateway-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("{addr}: {e}"))?;
    // The status line is all we need: `HTTP/1.1 200 OK`.
    let mut head = Vec::new();
    let mut buffer = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let read = stream.read(&mut buffer).map_err(|e| format!("{addr}: {e}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|code| code.parse().ok())) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(format!("{addr}: not an HTTP answer")),
    }
}
