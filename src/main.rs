//! The `ib-oauth-gateway` command: run the gateway, check or print a configuration, or generate a signing key.

use clap::{Parser, Subcommand};
use ib_oauth_gateway::config::{self, SigningAlgorithm};
use ib_oauth_gateway::ib::mock::{self, MockSettings};
use ib_oauth_gateway::{logging, server};
use pingora::server::configuration::Opt;
use std::process::ExitCode;

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
    },
    /// Start the mock platform and a development gateway (conf/dev.yaml) together, and print the URL to open.
    Demo {
        #[arg(long, default_value = "conf/dev.yaml")]
        config: String,
        #[arg(long, default_value = "127.0.0.1:8081")]
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

/// Loads the configuration, or prints every problem, one line each (`error: PATH: KEY: message`), and gives the
/// exit code for an invalid configuration.
fn load_config(path: &str) -> Result<config::Config, ExitCode> {
    config::load_all(path).map_err(|errors| {
        for e in errors.iter() {
            if e.key == path {
                // The file itself (cannot be read): name it once.
                eprintln!("error: {path}: {}", e.message);
            } else {
                eprintln!("error: {path}: {e}");
            }
        }
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => match load_config(&file) {
            Ok(_) => {
                println!("{file}: ok");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::PrintConfig { file }) => match load_config(&file) {
            // Secrets serialize as where they come from (`file:PATH`, `env:NAME`) or `***`, never their value.
            Ok(config) => match serde_yaml::to_string(&config) {
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
        Some(Command::MockPlatform { listen, tls, login_timeout_hours, api_v3_url }) => {
            let settings = MockSettings {
                login_timeout_hours: (login_timeout_hours > 0).then_some(login_timeout_hours),
                api_v3_url,
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
        Some(Command::Demo { config, mock_listen }) => demo(&config, &mock_listen),
        None => {
            let config = match load_config(&cli.config) {
                Ok(config) => config,
                Err(code) => return code,
            };
            logging::init(&config.logging);
            let opt = Opt { upgrade: cli.upgrade, daemon: cli.daemon, test: cli.test, ..Opt::default() };
            match server::run(config, opt) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The whole flow on one machine: the mock platform in a thread, the gateway in the foreground.
fn demo(config_path: &str, mock_listen: &str) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
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
    let redirect = format!("http://127.0.0.1:{}/callback", mock_listen.rsplit(':').next().unwrap_or("8081"));
    println!("\nib-oauth-gateway demo\n");
    println!("1. Open in a browser:\n   {base}/authorize?response_type=code&client_id=mcp-public-client&redirect_uri={redirect}&scope=profile&state=demo&code_challenge={challenge}&code_challenge_method=S256\n");
    println!("2. Enter the platform URL http://{mock_listen} and press the login button in the popup.\n");
    println!("3. The browser lands on {redirect}?code=...; exchange the code:\n   curl -s {base}/token -d grant_type=authorization_code -d client_id=mcp-public-client -d redirect_uri={redirect} -d code_verifier={verifier} -d code=CODE\n");
    let opt = Opt::default();
    match server::run(config, opt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
