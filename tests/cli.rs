//! The `waybill` binary as users run it: `check` on good and broken routes
//! files, and `run` serving until SIGTERM, then draining and exiting 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn waybill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waybill"))
}

#[test]
fn check_accepts_the_shipped_example() {
    let out = waybill()
        .args(["check", "examples/logistics.yaml"])
        .output()
        .expect("run waybill check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("examples/logistics.yaml: ok"), "{stdout}");
}

#[test]
fn check_reports_every_broken_config_with_file_line_and_exit_64() {
    let dir = std::path::Path::new("tests/configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("tests/configs exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = waybill()
            .arg("check")
            .arg(&path)
            .output()
            .expect("run waybill check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{}: {stderr}", path.display());
        // Every error line reads `error: file:line:column: field: message`.
        let prefix = format!("error: {}:", path.display());
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with(&prefix), "{}: {first}", path.display());
        let line_number = first[prefix.len()..].split(':').next().unwrap_or_default();
        assert!(
            line_number.parse::<usize>().is_ok(),
            "{}: no line number in {first}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} broken configs");
}

#[test]
fn run_serves_until_sigterm_then_drains_and_exits_zero() {
    // One thread: tokio's current-thread scheduler (what a sidecar limited
    // to one CPU gets); two: the multi-threaded one.
    for (workers, runtime) in [
        ("1", "runtime=CurrentThread workers=1"),
        ("2", "runtime=MultiThread workers=2"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut running, start_line, _logs) = start(&dir, workers);
        assert!(start_line.contains(runtime), "{start_line}");
        let admin = start_line
            .split("admin=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the start line names the admin address");
        assert_eq!(get(admin, "/healthz"), "ok\n", "{workers} worker(s)");
        running.stop_and_expect_clean_exit();
    }
}

#[test]
fn sigterm_still_stops_waybill_when_nobody_reads_its_logs() {
    // The log reader goes away (a pipeline restarting, `| head`): logging
    // then fails, which must not stop SIGTERM from draining and exiting.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut running, _start_line, logs) = start(&dir, "1");
    drop(logs);
    running.stop_and_expect_clean_exit();
}

#[test]
fn run_refuses_a_bad_worker_count_with_exit_64() {
    let out = waybill()
        .args(["run", "--config", "examples/logistics.yaml"])
        .env("TOKIO_WORKER_THREADS", "zero")
        .output()
        .expect("run waybill run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(
            "TOKIO_WORKER_THREADS must be a whole number of threads, at least 1, not \"zero\""
        ),
        "{stderr}"
    );
}

/// A `waybill run` started by a test, killed if the test fails first.
struct Running(std::process::Child);

impl Running {
    /// Sends SIGTERM and expects exit status 0 within 30 s.
    fn stop_and_expect_clean_exit(&mut self) {
        let pid = self.0.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("send SIGTERM");
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "waybill did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status {status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `waybill run` on a routes file in `dir` with
/// `TOKIO_WORKER_THREADS=workers` and waits (at most 30 s) for its start
/// line; returns it and the rest of its log.
fn start(
    dir: &tempfile::TempDir,
    workers: &str,
) -> (
    Running,
    String,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "systems: [wms]\nkeys: [order]\nlisteners:\n  - { name: edge, bind: 127.0.0.1:0, upstream: http://127.0.0.1:9, system: wms }\nmilestones: []\nroutes: []\n",
    )
    .expect("write routes");
    let mut child = waybill()
        .args(["run", "--config"])
        .arg(&routes)
        .args(["--admin", "127.0.0.1:0"])
        .env("WAYBILL_LOG", "info")
        .env("TOKIO_WORKER_THREADS", workers)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waybill run");
    let stderr = child.stderr.take().expect("stderr");
    let running = Running(child);
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if line.contains("waybill started") {
            return (running, line, lines);
        }
        assert!(Instant::now() < deadline, "no start line");
    }
    panic!("waybill's log ended before its start line");
}

/// The body of a plain HTTP/1.0 GET (the connection closes after it).
fn get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin surface");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
