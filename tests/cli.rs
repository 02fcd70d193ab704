//! The `waybill` binary as users run it: `check` on good and broken routes
//! files, and `run` serving until SIGTERM, then draining and exiting 0.

use std::io::{BufRead, BufReader};
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
    let dir = tempfile::tempdir().expect("temp dir");
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waybill run");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = false;
    for line in lines.by_ref() {
        let line = line.expect("log line");
        if line.contains("waybill started") {
            started = true;
            break;
        }
        assert!(Instant::now() < deadline, "no start line");
    }
    assert!(started, "waybill logged its start");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("waybill did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}
