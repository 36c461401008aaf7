//! Daemon commands: `serve`, `token create|list|revoke`, `config example`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use djaudit::daemon::{self, auth, Config};
use djaudit::ledger::{Actor, Ledger};

use super::{print_json, read_input_file, CliError, CmdResult};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); `djaudit config example` prints one with the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API bearer token; it is printed once on stdout, only its SHA-256 is kept.
    Create {
        /// The djaudit user the token authenticates as.
        #[arg(long)]
        user: String,
        /// Days until the token expires (default: until revoked).
        #[arg(long, value_name = "DAYS")]
        expires: Option<u32>,
        /// A service account token, which may act for end users (`X-On-Behalf-Of`).
        #[arg(long)]
        service: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token (a running daemon refuses it within its `token_cache`, 1s by default).
    Revoke {
        /// The token's id (from `token list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented configuration with the default values.
    Example,
}

fn os_actor() -> Actor {
    Actor::cli(&std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

impl From<auth::TokenError> for CliError {
    fn from(e: auth::TokenError) -> CliError {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

impl From<daemon::DaemonError> for CliError {
    fn from(e: daemon::DaemonError) -> CliError {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::storage(e)
        }
    }
}

pub fn serve(data: &Path, a: ServeArgs) -> CmdResult {
    let config = match &a.config {
        Some(path) => {
            let text = read_input_file(path)?;
            Config::from_toml(&text)
                .map_err(|e| CliError::input(anyhow!("`{}`: {e}", path.display())))?
        }
        None => Config::default(),
    };
    let data = config.data_dir_or(data).to_owned();
    // Fail before binding when there is no ledger.
    Ledger::open(&data)?;
    // Held to the end: dropping it writes out the log lines still queued.
    let _log = daemon::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::storage)?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| CliError::input(anyhow!("cannot listen on {}: {e}", config.listen)))?;
        daemon::run(listener, config, data, shutdown_signal()).await?;
        Ok::<_, CliError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub fn token(data: &Path, c: TokenCommand) -> CmdResult {
    match c {
        TokenCommand::Create {
            user,
            expires,
            service,
        } => {
            let mut ledger = Ledger::open(data)?;
            let t = auth::create(&mut ledger, &user, expires, service, os_actor())?;
            eprintln!(
                "created token {} for {} `{}`{}; store it now, it is not shown again",
                t.info.id,
                if service { "service account" } else { "user" },
                t.info.user,
                t.info
                    .expires
                    .as_deref()
                    .map(|e| format!(", expires {e}"))
                    .unwrap_or_default()
            );
            if !t.known_user {
                eprintln!(
                    "warning: `{}` is not a user of the projection yet; the policy denies it everything until it is",
                    t.info.user
                );
            }
            println!("{}", t.token);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { json } => {
            let ledger = Ledger::open(data)?;
            let tokens = auth::list(ledger.conn())?;
            if json {
                print_json(&tokens)?;
            } else {
                println!(
                    "{:>5}  {:<24} {:<8} {:<24} {:<24} revoked",
                    "id", "user", "service", "created", "expires"
                );
                for t in tokens {
                    println!(
                        "{:>5}  {:<24} {:<8} {:<24} {:<24} {}",
                        t.id,
                        t.user,
                        if t.service { "yes" } else { "no" },
                        t.created,
                        t.expires.as_deref().unwrap_or("-"),
                        t.revoked.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id } => {
            let mut ledger = Ledger::open(data)?;
            let t = auth::revoke(&mut ledger, id, os_actor())?;
            println!("revoked token {} of `{}`", t.id, t.user);
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn config(c: ConfigCommand) -> CmdResult {
    match c {
        ConfigCommand::Example => {
            print!("{}", daemon::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
    }
}
