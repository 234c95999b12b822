//! The `ib-oauth-gateway` command: run the gateway, check a configuration, or generate a signing key.

use clap::{Parser, Subcommand};
use ib_oauth_gateway::config::{self, SigningAlgorithm};
use ib_oauth_gateway::{logging, server};
use pingora::server::configuration::Opt;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "ib-oauth-gateway", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The gateway's YAML configuration.
    #[arg(long, short = 'c', default_value = "conf/gateway.yaml")]
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
    /// Validate a configuration file and exit (0: valid, 2: invalid).
    CheckConfig { file: String },
    /// Write a new signing key pair (private key mode 0600) and print the YAML to use it.
    Keygen {
        #[arg(long, default_value = "EdDSA", value_parser = parse_algorithm)]
        algorithm: SigningAlgorithm,
        #[arg(long, default_value = ".")]
        out: std::path::PathBuf,
        #[arg(long)]
        kid: Option<String>,
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

fn load_config(path: &str) -> Result<config::Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("error: {path}: {e}");
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
