//! A `waybill run` process for end-to-end tests: started on a config file,
//! its admin and first listener addresses read from its JSON log, killed
//! and reaped when dropped so a failing test leaves no process behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound on starting and stopping.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running `waybill run`.
pub struct Waybill {
    child: Child,
    pub admin: SocketAddr,
    /// The first listener's address.
    pub edge: SocketAddr,
    log: mpsc::Receiver<String>,
}

impl Waybill {
    pub fn start(config: &Path) -> Waybill {
        Self::start_with(config, &[], &mut |_| {})
    }

    /// [`Waybill::start`] with extra environment variables, handing every
    /// log line before `waybill started` to `seen`.
    pub fn start_with(
        config: &Path,
        env: &[(&str, &str)],
        seen: &mut dyn FnMut(&Value),
    ) -> Waybill {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waybill"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env("WAYBILL_LOG", "info")
            .env("OTEL_TRACES_EXPORTER", "none")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start waybill");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, log) = mpsc::channel();
        // Drains stderr for the process's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut waybill = Waybill {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            edge: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = waybill
                .log
                .recv_timeout(left)
                .expect("waybill logs `waybill started` in time");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let fields = &entry["fields"];
            seen(fields);
            if fields["message"] == "state recovered" {
                eprintln!(
                    "  recovered: {} snapshot transactions, {} journal observations, {} ticks, {} skipped",
                    fields["transactions"], fields["observations"], fields["ticks"], fields["skipped"]
                );
            }
            if fields["message"] == "waybill started" {
                waybill.admin = fields["admin"]
                    .as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("admin address");
                // `[("edge", 127.0.0.1:PORT)]`
                let listeners = fields["listeners"].as_str().expect("listeners");
                let start = listeners.find(", ").expect("listener address") + 2;
                let end = listeners[start..].find(')').expect("listener end") + start;
                waybill.edge = listeners[start..end].parse().expect("listener address");
                return waybill;
            }
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit; returns its status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "waybill did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Waybill {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
