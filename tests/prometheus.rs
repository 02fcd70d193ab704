//! The alert rules and dashboards against the real tools and the real
//! sidecar: `promtool check rules` / `promtool test rules` on
//! `alerts/`, the structure of every dashboard in `dashboards/`, and a real
//! Prometheus (Debian `prometheus` package) scraping `waybill demo` every
//! second with the rules loaded, which then answers every query of every
//! dashboard, the flow histogram's p95, and the flow exemplars. The shared
//! Redis store's series exist only in Redis mode: a second live test runs a
//! real `redis-server` and a sidecar in Redis mode under a real Prometheus
//! and checks the series, labels and dashboard queries that name them.
//!
//! The tests read `alerts/*.yaml` and `dashboards/*.json` themselves; they
//! keep no copy of any query. When `promtool` or `prometheus` is missing
//! they skip with a printed reason, unless `CI` is set: then they fail.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use waybill::demo::{Demo, DemoOptions};

mod support;
use support::redis::{RedisServer, PASSWORD};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Orders the demo drives while Prometheus watches, and how fast: about ten
/// seconds of traffic, so one-second scrapes see counters move.
const DEMO_ORDERS: usize = 40;
const DEMO_SPEED: f64 = 60_000.0;
/// Upper bound of every wait on Prometheus (start, first scrape, rules).
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);
/// Metric names of the shared Redis store: exported only by sidecars in
/// Redis mode, so the demo's scrape leaves them to the Redis-mode scrape.
const SHARED_STORE: &str = "waybill_state_shared_";
/// Labels Prometheus's service discovery adds (Kubernetes) or the scrape
/// adds (job, instance): not the sidecar's, so not checked against it.
const TARGET_LABELS: [&str; 4] = ["namespace", "pod", "instance", "job"];

// === tools ===

/// Path of `tool` (from the Debian `prometheus` package) if it runs, else
/// `None` after printing why the caller skips; panics under CI, where a
/// missing tool is a broken setup.
fn tool(tool: &str) -> Option<PathBuf> {
    tool_from(tool, "prometheus")
}

/// [`tool`] from the Debian package `package`.
fn tool_from(tool: &str, package: &str) -> Option<PathBuf> {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return Some(PathBuf::from(tool));
    }
    if std::env::var_os("CI").is_some() {
        panic!("`{tool}` is not installed; CI must install the Debian `{package}` package (ci/test.sh does)");
    }
    eprintln!(
        "SKIPPED: `{tool}` is not installed (apt-get install {package}); \
         under CI this test fails instead"
    );
    None
}

fn alerts_dir() -> PathBuf {
    Path::new(ROOT).join("alerts")
}

fn rule_files() -> Vec<PathBuf> {
    files_with(&alerts_dir(), &["yaml", "yml"])
}

fn dashboard_files() -> Vec<PathBuf> {
    files_with(&Path::new(ROOT).join("dashboards"), &["json"])
}

fn files_with(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| extensions.contains(&x))
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {extensions:?} file in {}",
        dir.display()
    );
    files
}

fn read_yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// === the rules, read from alerts/ ===

/// One rule of a rule file.
#[derive(Debug)]
struct Rule {
    file: PathBuf,
    group: String,
    /// `alert` or `record` name.
    name: String,
    alert: bool,
    expr: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for file in rule_files() {
        let doc = read_yaml(&file);
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            let group_name = group["name"].as_str().unwrap_or_default().to_owned();
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let strings = |key: &str| -> BTreeMap<String, String> {
                    rule[key]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                        .collect()
                };
                let (name, alert) = match (rule["alert"].as_str(), rule["record"].as_str()) {
                    (Some(a), None) => (a.to_owned(), true),
                    (None, Some(r)) => (r.to_owned(), false),
                    _ => panic!(
                        "{}: a rule with neither or both of alert/record: {rule:?}",
                        file.display()
                    ),
                };
                rules.push(Rule {
                    file: file.clone(),
                    group: group_name.clone(),
                    name,
                    alert,
                    expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
                    labels: strings("labels"),
                    annotations: strings("annotations"),
                });
            }
        }
    }
    assert!(!rules.is_empty(), "no rules in alerts/");
    rules
}

#[test]
fn every_rule_file_passes_promtool_check_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    for file in rule_files() {
        let (ok, out) = run(Command::new(&promtool).arg("check").arg("rules").arg(&file));
        assert!(ok, "promtool check rules {}:\n{out}", file.display());
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn every_alert_unit_test_passes_under_promtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let tests = files_with(&alerts_dir().join("tests"), &["yaml", "yml"]);
    for file in tests {
        let (ok, out) = run(Command::new(&promtool).arg("test").arg("rules").arg(&file));
        assert!(ok, "promtool test rules {}:\n{out}", file.display());
    }
}

#[test]
fn every_alert_has_severity_summary_description_and_an_existing_runbook() {
    let runbooks = alerts_dir().join("runbooks");
    let mut problems = Vec::new();
    let alerts: Vec<Rule> = rules().into_iter().filter(|r| r.alert).collect();
    for rule in &alerts {
        let at = format!(
            "{} ({}, group {})",
            rule.name,
            rule.file.display(),
            rule.group
        );
        match rule.labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{at}: severity {other:?}, want critical|warning|info"
            )),
        }
        for key in ["summary", "description"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|v| v.trim().is_empty())
            {
                problems.push(format!("{at}: no `{key}` annotation"));
            }
        }
        let want = format!("alerts/runbooks/{}.md", rule.name);
        if rule.annotations.get("runbook_url") != Some(&want) {
            problems.push(format!(
                "{at}: runbook_url {:?}, want {want:?}",
                rule.annotations.get("runbook_url")
            ));
        }
        let book = runbooks.join(format!("{}.md", rule.name));
        match std::fs::read_to_string(&book) {
            Ok(text) => {
                for section in [
                    "## What it means",
                    "## How to confirm",
                    "## What to do",
                    "## Who owns it",
                ] {
                    if !text.contains(section) {
                        problems.push(format!("{}: no `{section}` section", book.display()));
                    }
                }
            }
            Err(e) => problems.push(format!("{at}: runbook {}: {e}", book.display())),
        }
    }
    // No runbook without its alert.
    let names: HashSet<&str> = alerts.iter().map(|r| r.name.as_str()).collect();
    for book in files_with(&runbooks, &["md"]) {
        let stem = book
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if !names.contains(stem) {
            problems.push(format!("{}: no alert named {stem}", book.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() {
    let mut fires: BTreeSet<String> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    for file in files_with(&alerts_dir().join("tests"), &["yaml", "yml"]) {
        let doc = read_yaml(&file);
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_owned();
                let expected = case["exp_alerts"].as_sequence().map_or(0, |s| s.len());
                if expected > 0 {
                    fires.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    let mut missing = Vec::new();
    for rule in rules().iter().filter(|r| r.alert) {
        if !fires.contains(&rule.name) {
            missing.push(format!("{}: no test case where it fires", rule.name));
        }
        if !quiet.contains(&rule.name) {
            missing.push(format!("{}: no test case where it stays quiet", rule.name));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

// === the dashboards, read from dashboards/ ===

/// One PromQL expression of a dashboard and where it is.
#[derive(Debug, Clone)]
struct Query {
    at: String,
    expr: String,
    /// A `label_values(metric, label)` variable query (Grafana's, not PromQL).
    label_values: Option<(String, String)>,
}

fn dashboard_queries(path: &Path, board: &Value) -> Vec<Query> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let label_values =
        Regex::new(r"^\s*label_values\(\s*(.*?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")
            .expect("regex");
    let mut queries = Vec::new();
    for panel in board["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push(Query {
                    at: format!(
                        "{file} panel {} \"{title}\" target {}",
                        panel["id"], target["refId"]
                    ),
                    expr: expr.to_owned(),
                    label_values: None,
                });
            }
        }
    }
    for var in board["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_default();
        let parsed = label_values
            .captures(q)
            .map(|c| (c[1].to_owned(), c[2].to_owned()));
        queries.push(Query {
            at: format!("{file} variable {}", var["name"]),
            expr: parsed
                .as_ref()
                .map_or_else(|| q.to_owned(), |(m, _)| m.clone()),
            label_values: parsed,
        });
    }
    for ann in board["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = ann["expr"].as_str() {
            queries.push(Query {
                at: format!(
                    "{file} annotation \"{}\"",
                    ann["name"].as_str().unwrap_or_default()
                ),
                expr: expr.to_owned(),
                label_values: None,
            });
        }
    }
    queries
}

/// Replaces Grafana's variables with what a dashboard shows by default:
/// every namespace, pod and system; the order-to-ship flow; a one-minute
/// rate window and a five-minute range (the demo's data is minutes old).
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("${namespace}", ".*")
        .replace("$namespace", ".*")
        .replace("${pod}", ".*")
        .replace("$pod", ".*")
        .replace("${system}", ".*")
        .replace("$system", ".*")
        .replace("${flow}", "order_to_ship")
        .replace("$flow", "order_to_ship")
}

#[test]
fn every_dashboard_is_well_formed() {
    let fixed = Regex::new(r#""type":"prometheus","uid":"([^"]*)""#).expect("regex");
    let mut problems = Vec::new();
    let mut uids = HashSet::new();
    for path in dashboard_files() {
        let board = read_json(&path);
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let mut p = |msg: String| problems.push(format!("{file}: {msg}"));
        if board["schemaVersion"].as_u64().unwrap_or(0) < 36 {
            p(format!(
                "schemaVersion {} is older than Grafana 9",
                board["schemaVersion"]
            ));
        }
        match board["uid"].as_str() {
            Some(uid) if !uid.is_empty() => {
                if !uids.insert(uid.to_owned()) {
                    p(format!("uid {uid} used by another dashboard"));
                }
            }
            _ => p("no uid".into()),
        }
        let vars: BTreeMap<&str, &Value> = board["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        match vars.get("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => p("no `datasource` variable of type datasource for prometheus".into()),
        }
        for name in ["namespace", "pod", "system", "flow"] {
            if !vars.contains_key(name) {
                p(format!("no `{name}` template variable"));
            }
        }
        for (name, v) in &vars {
            if v["type"] == "query" && v["datasource"]["uid"] != "${datasource}" {
                p(format!("variable {name} does not query ${{datasource}}"));
            }
        }
        let mut ids = HashSet::new();
        let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
        for panel in board["panels"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let at = format!("panel {} \"{title}\"", panel["id"]);
            match panel["id"].as_u64() {
                Some(id) if ids.insert(id) => {}
                _ => p(format!("{at}: missing or duplicate id")),
            }
            let g = &panel["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_i64(),
                g["y"].as_i64(),
                g["w"].as_i64(),
                g["h"].as_i64(),
            );
            match (x, y, w, h) {
                (Some(x), Some(y), Some(w), Some(h))
                    if x >= 0 && y >= 0 && w >= 1 && h >= 1 && x + w <= 24 =>
                {
                    if let Some(other) = boxes.iter().find(|(_, ox, oy, ow, oh)| {
                        x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h
                    }) {
                        p(format!("{at}: overlaps {}", other.0));
                    }
                    boxes.push((at.clone(), x, y, w, h));
                }
                _ => p(format!("{at}: invalid gridPos {g}")),
            }
            if panel["type"] == "row" {
                continue;
            }
            if title.is_empty() {
                p(format!("{at}: no title"));
            }
            if panel["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
            {
                p(format!("{at}: no description"));
            }
            if panel["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                p(format!("{at}: no unit"));
            }
            if panel["datasource"]["uid"] != "${datasource}" {
                p(format!(
                    "{at}: datasource is not ${{datasource}}: {}",
                    panel["datasource"]
                ));
            }
            let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
            if targets.is_empty() {
                p(format!("{at}: no query"));
            }
            for t in targets {
                if t["datasource"]["uid"] != "${datasource}" {
                    p(format!(
                        "{at} target {}: datasource is not ${{datasource}}",
                        t["refId"]
                    ));
                }
                if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                    p(format!("{at} target {}: empty expr", t["refId"]));
                }
            }
        }
        // No fixed datasource uid anywhere (annotations included).
        let text = board.to_string();
        for c in fixed.captures_iter(&text) {
            if &c[1] != "${datasource}" {
                p(format!("a fixed Prometheus datasource uid {:?}", &c[1]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dashboards_are_what_build_py_writes() {
    let Ok(status) = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    else {
        eprintln!("SKIPPED: python3 is not installed");
        return;
    };
    assert!(status.success());
    let out = tempfile::tempdir().expect("tempdir");
    let (ok, log) = run(Command::new("python3")
        .arg(Path::new(ROOT).join("dashboards/build.py"))
        .arg(out.path()));
    assert!(ok, "dashboards/build.py failed:\n{log}");
    for path in dashboard_files() {
        let name = path.file_name().expect("file name");
        let built = std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            built == committed,
            "{} differs from what dashboards/build.py writes: run `python3 dashboards/build.py`",
            path.display()
        );
    }
}

// === names the rules and dashboards use ===

/// Metric names an expression reads: identifiers outside quoted strings
/// that start with `waybill_` or `process_`, histogram suffixes stripped.
/// Recording-rule outputs (`level:metric:op`) contain colons and are left out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#).expect("regex");
    let idents = Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").expect("regex");
    let bare = strings.replace_all(expr, "\"\"");
    idents
        .find_iter(&bare)
        .map(|m| m.as_str())
        .filter(|id| {
            !id.contains(':') && (id.starts_with("waybill_") || id.starts_with("process_"))
        })
        .map(strip_histogram_suffix)
        .collect()
}

fn strip_histogram_suffix(name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base.to_owned();
        }
    }
    name.to_owned()
}

/// Sample names in an exposition, with histogram suffixes stripped.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(strip_histogram_suffix)
        .collect()
}

#[test]
fn metric_names_are_read_from_expressions_without_label_values_or_recording_rules() {
    let names = metric_names(
        r#"sum(rate(waybill_flow_duration_seconds_bucket{flow="waybill_fake"}[5m])) / namespace_flow:waybill_flows_missed:ratio_rate5m and on (job) process_open_fds"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["process_open_fds", "waybill_flow_duration_seconds"]
    );
}

/// Every metric name in the rules and dashboards, with where it is used.
fn referenced_names() -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in rules() {
        for name in metric_names(&rule.expr) {
            names
                .entry(name)
                .or_default()
                .push(format!("rule {}", rule.name));
        }
    }
    for path in dashboard_files() {
        let board = read_json(&path);
        for q in dashboard_queries(&path, &board) {
            for name in metric_names(&q.expr) {
                names.entry(name).or_default().push(q.at.clone());
            }
        }
    }
    names
}

// === processes ===

/// A child process killed (and reaped) when dropped, so a failing assertion
/// never leaves a Prometheus behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A Prometheus on a free loopback port with its own storage, scraping
/// `target` every second and evaluating the rule files every second.
struct Prometheus {
    url: String,
    http: reqwest::Client,
    _process: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules: Vec<String> = rule_files()
            .iter()
            .map(|p| format!("  - {}", p.display()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\n\
             scrape_configs:\n  - job_name: waybill\n    static_configs:\n      - targets: ['{target}']\n",
            rules.join("\n")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            _process: KillOnDrop(child),
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `check` until it returns `Some`, for at most [`WAIT`].
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "gave up after {WAIT:?} waiting for {what}; prometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if status.is_success() && body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{status}: {} {}", body["errorType"], body["error"]))
        }
    }

    /// An instant query's result vector (or scalar, as one element).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.get("/api/v1/query", &[("query", expr)]).await?;
        Ok(match data["resultType"].as_str() {
            Some("scalar") | Some("string") => vec![data["result"].clone()],
            _ => data["result"].as_array().cloned().unwrap_or_default(),
        })
    }
}

fn sample_value(sample: &Value) -> f64 {
    let v = if sample["value"].is_array() {
        &sample["value"][1]
    } else {
        &sample[1]
    };
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

// === the live test ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_demo_answers_every_dashboard_query_and_loads_every_rule() {
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        return;
    };
    let demo = Demo::start(DemoOptions {
        orders: DEMO_ORDERS,
        speed: DEMO_SPEED,
        keep_running: false,
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..DemoOptions::default()
    })
    .await
    .expect("demo starts");
    let admin = demo.sidecar().admin_addr();
    let prom = Prometheus::start(&prometheus, admin);

    prom.wait_for("Prometheus to be ready", || async {
        let r = prom
            .http
            .get(format!("{}/-/ready", prom.url))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    prom.wait_for("the first successful scrape of the sidecar", || async {
        let up = prom.query(r#"up{job="waybill"} == 1"#).await.ok()?;
        (!up.is_empty()).then_some(())
    })
    .await;

    let summary = demo
        .drive(&CancellationToken::new())
        .await
        .expect("demo drives");
    assert_eq!(summary.driver.finished, DEMO_ORDERS, "{:?}", summary.driver);

    let http = reqwest::Client::new();
    let scrape = |accept: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{admin}/metrics"))
                .header("accept", accept)
                .send()
                .await
                .expect("GET /metrics");
            let content_type = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            (content_type, r.text().await.expect("metrics body"))
        }
    };
    let (_, openmetrics) = scrape("application/openmetrics-text;version=1.0.0").await;
    let created = openmetrics
        .lines()
        .find_map(|l| l.strip_prefix("waybill_transactions_created_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("waybill_transactions_created_total in /metrics");

    // Prometheus has the final state once it scraped what we just read, and
    // the recording rules have been evaluated on it.
    prom.wait_for("Prometheus to scrape the finished demo", || async {
        let r = prom
            .query("waybill_transactions_created_total")
            .await
            .ok()?;
        (r.first().map(sample_value) == Some(created)).then_some(())
    })
    .await;
    prom.wait_for("the recording rules to be evaluated", || async {
        let r = prom
            .query("namespace_flow:waybill_flows_missed:ratio_rate5m")
            .await
            .ok()?;
        (!r.is_empty()).then_some(())
    })
    .await;

    let mut problems: Vec<String> = Vec::new();

    // 1. promtool check metrics on what the sidecar serves.
    let (content_type, linted) = scrape("text/plain;version=0.0.4").await;
    if !content_type.starts_with("text/plain; version=0.0.4") {
        problems.push(format!(
            "/metrics answered `Accept: text/plain;version=0.0.4` with {content_type:?}"
        ));
    }
    let (ok, lint) = promtool_check_metrics(&promtool, &linted);
    if !ok || !lint.trim().is_empty() {
        problems.push(format!("promtool check metrics:\n{lint}"));
    }

    // 2. Every metric the rules and dashboards name is exported.
    let exported = exported_names(&openmetrics);
    for (name, used_by) in referenced_names() {
        if !exported.contains(&name) && !name.starts_with(SHARED_STORE) {
            problems.push(format!(
                "{name} is not exported by the sidecar, but used by: {}",
                used_by.join("; ")
            ));
        }
    }

    // 3. The p95 of order-to-ship from Prometheus is plausible.
    let bounds: Vec<f64> = openmetrics
        .lines()
        .filter(|l| {
            l.starts_with("waybill_flow_duration_seconds_bucket{")
                && l.contains(r#"flow="order_to_ship""#)
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            le.parse::<f64>().ok().filter(|v| v.is_finite())
        })
        .collect();
    let (lowest, highest) = bounds
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), b| {
            (lo.min(*b), hi.max(*b))
        });
    let p95_expr = r#"histogram_quantile(0.95, sum by (le) (rate(waybill_flow_duration_seconds_bucket{flow="order_to_ship"}[1m])))"#;
    match prom.query(p95_expr).await {
        Ok(result) => {
            let p95 = result.first().map(sample_value).unwrap_or(f64::NAN);
            eprintln!("order_to_ship p95 from Prometheus: {p95} s (buckets {lowest}..{highest})");
            if bounds.is_empty() || !(p95.is_finite() && p95 > 0.0 && p95 <= highest) {
                problems.push(format!(
                    "{p95_expr} = {p95}, want a finite value within the buckets (0, {highest}]"
                ));
            }
        }
        Err(e) => problems.push(format!("{p95_expr}: {e}")),
    }

    // 3b. The freight cost counters: what Prometheus holds per currency is
    // what the demo's carrier invoiced, each shipment once.
    let cost_expr =
        r#"sum by (unit) (waybill_measure_total{measure="freight_cost",role="actual"})"#;
    match prom.query(cost_expr).await {
        Ok(result) => {
            let found: BTreeMap<String, f64> = result
                .iter()
                .filter(|s| sample_value(s) > 0.0)
                .map(|s| {
                    let unit = s["metric"]["unit"].as_str().unwrap_or_default().to_owned();
                    (unit, sample_value(s))
                })
                .collect();
            let sent: BTreeMap<String, f64> = summary
                .driver
                .invoiced_cost
                .iter()
                .map(|(currency, amount)| (currency.clone(), amount.to_f64()))
                .collect();
            let agree = found.len() == sent.len()
                && !sent.is_empty()
                && sent.iter().all(|(c, v)| {
                    found
                        .get(c)
                        .is_some_and(|f| (f - v).abs() < 1e-6 * v.max(1.0))
                });
            if !agree {
                problems.push(format!(
                    "{cost_expr} = {found:?}, want what the demo invoiced: {sent:?}"
                ));
            }
        }
        Err(e) => problems.push(format!("{cost_expr}: {e}")),
    }

    // 4. Every rule loaded and evaluated without error.
    match prom.get("/api/v1/rules", &[]).await {
        Ok(data) => {
            let loaded: BTreeMap<String, (String, String)> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_owned(),
                        (
                            r["health"].as_str().unwrap_or_default().to_owned(),
                            r["lastError"].as_str().unwrap_or_default().to_owned(),
                        ),
                    )
                })
                .collect();
            for rule in rules() {
                match loaded.get(&rule.name) {
                    None => {
                        problems.push(format!("rule {} is not loaded in Prometheus", rule.name))
                    }
                    Some((health, error)) if health == "err" => {
                        problems.push(format!("rule {} has health err: {error}", rule.name))
                    }
                    Some(_) => {}
                }
            }
        }
        Err(e) => problems.push(format!("/api/v1/rules: {e}")),
    }

    // 5. Every dashboard query parses and returns data (those about the
    // shared store: in the Redis-mode test).
    let executed = dashboard_queries_answer(&prom, false, &mut problems).await;
    eprintln!("executed {executed} dashboard queries");

    // 6. Exemplars: in the OpenMetrics scrape, and kept by Prometheus.
    if !openmetrics.contains("# {trace_id=") {
        problems.push("no exemplar (`# {trace_id=`) in the OpenMetrics /metrics".into());
    }
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
        match prom
            .get(
                "/api/v1/query_exemplars",
                &[
                    ("query", "waybill_flow_duration_seconds_bucket"),
                    ("start", &start),
                    ("end", &end),
                ],
            )
            .await
        {
            Ok(data) => {
                let trace_ids: Vec<String> = data
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                    .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
                    .collect();
                let hex32 = Regex::new("^[0-9a-f]{32}$").expect("regex");
                if trace_ids.is_empty() {
                    problems
                        .push("no exemplar with a trace_id from /api/v1/query_exemplars".into());
                } else if let Some(bad) = trace_ids.iter().find(|t| !hex32.is_match(t)) {
                    problems.push(format!(
                        "exemplar trace_id {bad:?} is not 32 lowercase hex digits"
                    ));
                } else {
                    eprintln!(
                        "{} exemplars with trace IDs via /api/v1/query_exemplars",
                        trace_ids.len()
                    );
                }
            }
            Err(e) => problems.push(format!("/api/v1/query_exemplars: {e}")),
        }
    }

    drop(prom);
    demo.shutdown().await.expect("demo shuts down");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Runs every dashboard query that names the shared store's metrics (when
/// `shared`) or none of them (else) against `prom`; each must parse and
/// return data. Returns how many ran.
async fn dashboard_queries_answer(
    prom: &Prometheus,
    shared: bool,
    problems: &mut Vec<String>,
) -> usize {
    let mut executed = 0;
    for path in dashboard_files() {
        let board = read_json(&path);
        for q in dashboard_queries(&path, &board) {
            let about_shared = metric_names(&q.expr)
                .iter()
                .any(|name| name.starts_with(SHARED_STORE));
            if about_shared != shared {
                continue;
            }
            let expr = substitute(&q.expr);
            executed += 1;
            let result = match &q.label_values {
                Some((_, label)) => prom
                    .get(
                        &format!("/api/v1/label/{label}/values"),
                        &[("match[]", expr.as_str())],
                    )
                    .await
                    .map(|d| d.as_array().cloned().unwrap_or_default()),
                None => prom.query(&expr).await,
            };
            match result {
                Err(e) => problems.push(format!("{}: {expr}: {e}", q.at)),
                Ok(rows) if rows.is_empty() => {
                    if q.label_values.is_some() || q.at.contains(" annotation ") {
                        // Variables over labels a plain Prometheus does not
                        // add (namespace, pod) and the restart annotation are
                        // empty here; that they parse is what counts.
                    } else {
                        problems.push(format!("{}: no data for {expr}", q.at));
                    }
                }
                Ok(_) => {}
            }
        }
    }
    executed
}

/// The labels an expression groups by or matches on (`by (a, b)`,
/// `{a="x"}`), except those the scrape or service discovery adds.
fn expression_labels(expr: &str) -> BTreeSet<String> {
    let by = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").expect("regex");
    let matchers = Regex::new(r#"\{([^}]*)\}"#).expect("regex");
    let matcher = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*""#)
        .expect("regex");
    let mut labels = BTreeSet::new();
    for c in by.captures_iter(expr) {
        labels.extend(c[1].split(',').map(|l| l.trim().to_owned()));
    }
    for c in matchers.captures_iter(expr) {
        labels.extend(matcher.captures_iter(&c[1]).map(|m| m[1].to_owned()));
    }
    labels.retain(|l| !l.is_empty() && !TARGET_LABELS.contains(&l.as_str()));
    labels
}

#[test]
fn expression_labels_are_the_grouping_and_matched_labels_of_the_sidecar() {
    let labels = expression_labels(
        r#"sum by (namespace, pod, reason) (rate(waybill_x_total{origin="local", job=~"w.*"}[5m])) > 0"#,
    );
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["origin", "reason"]);
}

// === the live test in Redis mode ===

/// The routes file of a sidecar in Redis mode: one listener to `upstream`,
/// one route with a milestone.
fn redis_mode_config(redis_url: &str, upstream: SocketAddr) -> String {
    format!(
        r#"
admin: {{ bind: 127.0.0.1:0 }}
state: {{ redis: {{ url: '{redis_url}', namespace: prometheus-test }} }}
systems: [erp]
keys: [order]
root: order
listeners:
  - {{ name: edge, bind: 127.0.0.1:0, upstream: http://{upstream}, system: erp }}
milestones:
  - {{ name: order_released, object: order }}
routes:
  - {{ name: erp.release, system: erp, match: {{ method: POST, path: '/orders/{{order_id}}/release' }}, keys: {{ order: {{ path_param: order_id }} }}, milestone: order_released }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_a_sidecar_in_redis_mode_has_every_shared_store_series_the_rules_use(
) {
    let (Some(prometheus), Some(_)) = (
        tool("prometheus"),
        tool_from("redis-server", "redis-server"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let redis_port = free_port();
    let redis = RedisServer::start(redis_port, dir.path()).await;
    let upstream =
        support::serve(axum::Router::new().fallback(axum::routing::post(|| async { "ok" }))).await;
    let config = waybill::config::Config::from_yaml(
        &redis_mode_config(&redis.url(), upstream),
        "redis-mode.yaml",
    )
    .expect("valid config");
    let env = |name: &str| match name {
        "WAYBILL_REDIS_PASSWORD" => Some(PASSWORD.to_owned()),
        "OTEL_TRACES_EXPORTER" => Some("none".to_owned()),
        _ => None,
    };
    let sidecar = waybill::app::start_with_env(config, waybill::clock::Clock::system(), &env)
        .await
        .expect("sidecar starts in Redis mode");
    let prom = Prometheus::start(&prometheus, sidecar.admin_addr());

    // Orders through the sidecar, until Prometheus has seen them come back
    // from the shared log.
    let edge = sidecar.listener_addr("edge").expect("edge listener");
    let http = reqwest::Client::new();
    for i in 0..10 {
        let answer = http
            .post(format!("http://{edge}/orders/SO-{i}/release"))
            .send()
            .await
            .expect("the sidecar answers");
        assert!(answer.status().is_success(), "{}", answer.status());
    }
    prom.wait_for(
        "Prometheus to see the orders applied from the shared log",
        || async {
            let r = prom
                .query(r#"waybill_state_shared_applied_total{origin="local"} >= 10"#)
                .await
                .ok()?;
            (!r.is_empty()).then_some(())
        },
    )
    .await;

    // Rates in the dashboards need a few scrapes.
    prom.wait_for("three scrapes of the sidecar", || async {
        let r = prom
            .query("count_over_time(waybill_state_shared_connected[1m]) >= 3")
            .await
            .ok()?;
        (!r.is_empty()).then_some(())
    })
    .await;

    let mut problems: Vec<String> = Vec::new();
    // 1. Every shared-store metric the rules and dashboards name has data,
    // with every label they group by or match on.
    let mut checked = 0;
    for (name, used_by) in referenced_names() {
        if !name.starts_with(SHARED_STORE) {
            continue;
        }
        checked += 1;
        match prom.query(&name).await {
            Ok(rows) if !rows.is_empty() => {}
            Ok(_) => problems.push(format!(
                "{name} has no data, but is used by: {}",
                used_by.join("; ")
            )),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    assert!(
        checked > 0,
        "no rule or dashboard names a {SHARED_STORE}* metric"
    );
    let shared_rules: Vec<Rule> = rules()
        .into_iter()
        .filter(|r| {
            metric_names(&r.expr)
                .iter()
                .any(|n| n.starts_with(SHARED_STORE))
        })
        .collect();
    for rule in &shared_rules {
        for name in metric_names(&rule.expr) {
            for label in expression_labels(&rule.expr) {
                let expr = format!(r#"{name}{{{label}!=""}}"#);
                match prom.query(&expr).await {
                    Ok(rows) if !rows.is_empty() => {}
                    Ok(_) => problems.push(format!("rule {}: no series {expr}", rule.name)),
                    Err(e) => problems.push(format!("rule {}: {expr}: {e}", rule.name)),
                }
            }
        }
    }
    // 2. Those rules load and evaluate without error.
    match prom.get("/api/v1/rules", &[]).await {
        Ok(data) => {
            let healthy: BTreeSet<String> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .filter(|r| r["health"] != "err")
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            for rule in &shared_rules {
                if !healthy.contains(&rule.name) {
                    problems.push(format!(
                        "rule {} is not loaded, or fails, in Prometheus",
                        rule.name
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("/api/v1/rules: {e}")),
    }
    // 3. The dashboards' shared-store queries answer.
    let executed = dashboard_queries_answer(&prom, true, &mut problems).await;
    eprintln!(
        "Redis mode: {checked} shared-store metrics, {} rules and {executed} dashboard queries checked",
        shared_rules.len()
    );

    // 4. Redis goes away: the unreachable alert's own expression (read
    // from the rules file) finds the sidecar, which it did not before.
    let unreachable = shared_rules
        .iter()
        .find(|r| r.alert && r.expr.contains("waybill_state_shared_connected"))
        .expect("an alert on waybill_state_shared_connected");
    match prom.query(&unreachable.expr).await {
        Ok(rows) if rows.is_empty() => {}
        other => problems.push(format!("{} with Redis up: {other:?}", unreachable.name)),
    }
    redis.stop();
    prom.wait_for(
        "the unreachable alert's expression to find the sidecar",
        || async {
            let rows = prom.query(&unreachable.expr).await.ok()?;
            (!rows.is_empty()).then_some(())
        },
    )
    .await;

    drop(prom);
    sidecar
        .shutdown(Duration::from_secs(1))
        .await
        .expect("clean shutdown");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn promtool_check_metrics(promtool: &Path, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool check metrics");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
