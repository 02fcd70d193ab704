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
    let workers = match workers(std::env::var_os(WORKERS_ENV)) {
        Ok(workers) => workers,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    let runtime = match builder.enable_all().build() {
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

/// The variable that sets how many threads run the proxy (tokio's own name
/// for it, read here so that a bad value is a clear error, not a panic).
const WORKERS_ENV: &str = "TOKIO_WORKER_THREADS";

/// How many threads run the proxy: `TOKIO_WORKER_THREADS` when set, else
/// the CPUs this process may use (its affinity mask and cgroup CPU quota, as
/// `available_parallelism` reads them: a sidecar limited to one CPU gets 1).
/// One thread means tokio's current-thread scheduler, which spares the
/// work-stealing scheduler's cross-thread bookkeeping where no other thread
/// could run anything (linkerd2-proxy makes the same choice).
fn workers(set: Option<std::ffi::OsString>) -> Result<usize, String> {
    let Some(value) = set else {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    };
    value
        .to_str()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            format!(
                "{WORKERS_ENV} must be a whole number of threads, at least 1, not {:?}",
                value.to_string_lossy()
            )
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
    // Colours only for a person at a terminal, not for log pipelines. A
    // failed write to stderr (its reader gone) is dropped: reporting it
    // would write to stderr again, which panics the logging task (the
    // signal watcher, say, so SIGTERM would no longer stop waybill).
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_default_to_the_cpus_this_process_may_use() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(workers(None), Ok(cpus));
    }

    #[test]
    fn workers_follow_tokio_worker_threads() {
        assert_eq!(workers(Some("1".into())), Ok(1));
        assert_eq!(workers(Some(" 3 ".into())), Ok(3));
    }

    #[test]
    fn a_bad_worker_count_is_an_error_naming_the_variable_and_the_value() {
        for bad in ["0", "two", "", "-1"] {
            let message = workers(Some(bad.into())).expect_err(bad);
            assert!(
                message.starts_with("TOKIO_WORKER_THREADS must be a whole number"),
                "{message}"
            );
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }
}
