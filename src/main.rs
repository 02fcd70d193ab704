//! The `waybill` binary: parses arguments, installs logging, turns signals
//! into a shutdown token and maps errors to exit codes (64 for bad config).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use waybill::config::Config;

/// The global allocator, by cargo feature (docs/performance.md, "Allocator").
mod global_alloc;

/// Exit code for a config that does not validate (EX_USAGE).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "waybill",
    version,
    about = "Turns ERP, WMS and carrier traffic into business transactions"
)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` for log pipelines.
    #[arg(long, global = true, env = "WAYBILL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the listeners of a routes file and the admin surface.
    Run {
        /// The routes file.
        #[arg(long, short, env = "WAYBILL_CONFIG")]
        config: PathBuf,
        /// Where the admin surface listens, overriding the file's `admin.bind`.
        #[arg(long, env = "WAYBILL_ADMIN")]
        admin: Option<SocketAddr>,
        /// How long SIGTERM waits for in-flight exchanges before closing them.
        #[arg(long, env = "WAYBILL_DRAIN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
        drain_timeout: Duration,
    },
    /// Validate a routes file and print every mistake in it.
    Check {
        /// The routes file.
        file: PathBuf,
    },
    /// Run simulated ERP, WMS and carrier services behind sidecars and drive orders through them.
    Demo {
        /// How many orders to drive.
        #[arg(long, default_value_t = 200)]
        orders: usize,
        /// Time compression: simulated seconds per real second.
        #[arg(long, default_value_t = waybill::demo::DEFAULT_SPEED)]
        speed: f64,
        /// Seed of the simulated variety (splits, failures, duplicates).
        #[arg(long, default_value_t = waybill::demo::DEFAULT_SEED)]
        seed: u64,
        /// Keep serving the simulated systems, sidecars and admin API after the orders are done, until Ctrl-C.
        #[arg(long)]
        keep_running: bool,
        /// Where the admin API and metrics listen.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging(cli.log_format);
    match cli.command {
        Command::Check { file } => check(&file),
        Command::Run {
            config,
            admin,
            drain_timeout,
        } => {
            let mut config = match Config::load(&config) {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            if let Some(admin) = admin {
                config.admin.bind = admin;
            }
            runtime(|stop| waybill::app::run(config, stop, drain_timeout))
        }
        Command::Demo {
            orders,
            speed,
            seed,
            keep_running,
            admin,
        } => {
            let options = waybill::demo::DemoOptions {
                orders,
                speed,
                seed,
                keep_running,
                admin,
            };
            runtime(|stop| async move {
                let mut out = std::io::stdout();
                waybill::demo::run(options, stop, &mut out)
                    .await
                    .map(|_| ())
            })
        }
    }
}

fn check(file: &std::path::Path) -> ExitCode {
    match Config::load_with_warnings(file) {
        Ok((config, warnings)) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            println!(
                "{}: ok ({} listeners, {} routes, {} milestones, {} flows)",
                file.display(),
                config.listeners.len(),
                config.routes.len(),
                config.milestones.len(),
                config.flows.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Runs `job` on a multi-threaded runtime with a shutdown token that
/// SIGTERM or Ctrl-C cancels; a second signal exits at once.
fn runtime<F, Fut>(job: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let stop = CancellationToken::new();
        // Registered before the job starts (not in the spawned task, which
        // may run later): a SIGTERM right after start-up drains too.
        match signal(SignalKind::terminate()) {
            Ok(term) => {
                tokio::spawn(watch_signals(term, stop.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGTERM"),
        }
        match job(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn watch_signals(mut term: Signal, stop: CancellationToken) {
    for received in 0.. {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        if received == 0 {
            tracing::info!(signal = name, "stopping");
            stop.cancel();
        } else {
            tracing::warn!(signal = name, "second signal; exiting now");
            std::process::exit(130);
        }
    }
}

/// Logs to stderr, filtered by `WAYBILL_LOG` (else `RUST_LOG`, else `info`).
fn install_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAYBILL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}
