//! gcp-aws-bridge: read the configuration, start logging, serve until
//! SIGTERM (finishing requests in flight for at most 8 s), or run a command.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use gcp_aws_bridge::aws::AwsOptions;
use gcp_aws_bridge::cli::{self, Mode};
use gcp_aws_bridge::config::{Config, ConfigError};
use gcp_aws_bridge::google::identity::IdTokenSource;
use gcp_aws_bridge::http::app::{router, warn_if_open, AppState};
use gcp_aws_bridge::http::credential_server::{self, ServerConfig, ServerState};
use gcp_aws_bridge::http::server;
use gcp_aws_bridge::services;
use gcp_aws_bridge::telemetry;
use gcp_aws_bridge::telemetry::LogFormat;

/// mimalloc rather than glibc's malloc: a request allocates and frees many
/// small buffers across worker threads, where glibc spends about a fifth of
/// the CPU time of a small PUT (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long requests in flight may take after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// How long the aborts of the uploads of requests cut at the end of the
/// grace may take (Cloud Run sends SIGKILL 10 s after SIGTERM).
const ABORT_GRACE: Duration = Duration::from_millis(1500);

fn config_failed(e: &ConfigError) -> ExitCode {
    for line in &e.0 {
        eprintln!("configuration error: {line}");
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match cli::parse_args(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Mode::Version => {
            println!("gcp-aws-bridge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match mode {
        Mode::Serve => Config::from_env(),
        _ => Config::from_env_for_cli(),
    };
    // The credential server's own settings; their problems are listed with
    // the others.
    let server_config = match mode {
        Mode::CredentialServer => Some(ServerConfig::from_env()),
        _ => None,
    };
    let (config, server_config) = match (config, server_config) {
        (Ok(c), None) => (c, None),
        (Ok(c), Some(Ok(s))) => (c, Some(s)),
        (Err(mut e), Some(Err(s))) => {
            e.0.extend(s.0);
            return config_failed(&e);
        }
        (Err(e), _) | (_, Some(Err(e))) => return config_failed(&e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        match (mode, server_config) {
            (Mode::Serve, _) => serve(config).await,
            (Mode::CredentialServer, Some(s)) => credential_server(config, s).await,
            (Mode::Sync, _) => sync(&args[1..], config).await,
            (Mode::Verify(args), _) => verify(&args, config).await,
            (mode, _) => command(mode, config).await,
        }
    })
}

async fn credential_server(config: Config, server: ServerConfig) -> ExitCode {
    telemetry::init(
        config.telemetry.log_format,
        config.telemetry.google_cloud_project.clone(),
    );
    let ids = match IdTokenSource::from_settings(&config.identity) {
        Ok(i) => std::sync::Arc::new(i),
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let roles = services::roles(&config, ids, &AwsOptions::default());
    let ServerConfig {
        addr,
        health_addr,
        token,
    } = server;
    let state = ServerState::new(token, &roles, AwsOptions::default().time_source);
    match credential_server::serve(addr, health_addr, state, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("credential server on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The set-up of a command-line mode: warnings to stderr (stdout carries
/// the answer only) and the identity source; an unusable identity
/// configuration is said on stderr and fails.
fn cli_identity(config: &Config) -> Result<std::sync::Arc<IdTokenSource>, ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .try_init();
    IdTokenSource::from_settings(&config.identity)
        .map(std::sync::Arc::new)
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::FAILURE
        })
}

async fn command(mode: Mode, config: Config) -> ExitCode {
    let ids = match cli_identity(&config) {
        Ok(ids) => ids,
        Err(code) => return code,
    };
    if let Mode::Credentials(args) = &mode {
        let roles = services::roles(&config, ids, &AwsOptions::default());
        let xdg = std::env::var("XDG_CACHE_HOME").ok();
        let home = std::env::var("HOME").ok();
        return match cli::cached_credentials_json(
            &config,
            &roles,
            args,
            xdg.as_deref(),
            home.as_deref(),
        )
        .await
        {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e @ cli::CredentialsError::UnknownRole(_)) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    let aws = services::aws(&config, ids, AwsOptions::default());
    match gcp_aws_bridge::aws::whoami(&aws).await {
        Ok(who) => {
            println!("{}", serde_json::json!(who));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn sync(args: &[String], config: Config) -> ExitCode {
    let args = match gcp_aws_bridge::cli::sync::parse_sync_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let ids = match cli_identity(&config) {
        Ok(ids) => ids,
        Err(code) => return code,
    };
    let aws = services::aws(&config, ids, AwsOptions::default());
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    match gcp_aws_bridge::cli::sync::run(&args, &config, &aws, &mut out, tty).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `verify`: 0 when every object has its replica, 1 when something
/// differs, 2 when nothing could be concluded (as `diff`).
async fn verify(args: &gcp_aws_bridge::cli::verify::VerifyArgs, config: Config) -> ExitCode {
    let ids = match cli_identity(&config) {
        Ok(ids) => ids,
        Err(_) => return ExitCode::from(2),
    };
    let aws = services::aws(&config, ids, AwsOptions::default());
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    match gcp_aws_bridge::cli::verify::run(args, &config, &aws, &mut out, tty).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("verify: {e}");
            ExitCode::from(2)
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed here, before
/// the listener opens, so a signal that comes with the first requests is
/// never missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    telemetry::init(
        if config.telemetry.log_format == LogFormat::Text {
            LogFormat::Text
        } else {
            LogFormat::Json
        },
        config.telemetry.google_cloud_project.clone(),
    );
    warn_if_open(&config);
    let port = config.server.port;
    let state = match AppState::new(config, AwsOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let signalled = shutdown_signal();
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on 0.0.0.0:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port, version = env!("CARGO_PKG_VERSION"), "listening");
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let running = state.clone();
    // HTTP/1.1 and h2c, with a header-read timeout (src/http/server.rs).
    let server = server::serve(
        listener,
        router(state),
        server::ServeOptions::default(),
        async move {
            signalled.await;
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stopping_tx.send(());
        },
    );
    let grace = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = server => {}
        _ = grace => {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; exiting");
            // Their multipart uploads are aborted, not left behind.
            running.cancel_requests();
            if !gcp_aws_bridge::aws::s3::settle_aborts(ABORT_GRACE).await {
                tracing::warn!("aborts of multipart uploads still running after {ABORT_GRACE:?}");
            }
        }
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
