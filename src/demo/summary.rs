//! The report printed at the end of the demo: what the sidecar made of the
//! traffic (transactions, flow durations against their SLOs, upstream
//! failures, retries and duplicates, the exceptions it opened, extraction
//! problems, freight cost quoted and invoiced), set next to what the driver knows it did, so a reader can see
//! the two agree. Every sidecar figure comes from the sidecar (its
//! transactions, its exceptions API, its metrics); the summary only counts.
//!
//! The summary reads transactions and exceptions through the small views
//! below rather than the correlator's own types, so it can be computed (and
//! tested) from any source: the in-process correlator, or the admin API's JSON.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use super::driver::{how_injected, Injected, Tally};
use crate::config::{Amount, Config, Role};
use crate::correlate::ExceptionEntry;
use crate::extract::Key;
use crate::state::{Names, Status, Transaction};

// === views ===

/// A key as `(kind, value)` strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyName {
    pub kind: String,
    pub value: String,
}

/// What the summary needs of one transaction.
#[derive(Debug, Clone, Default)]
pub struct TransactionView {
    pub root: Option<KeyName>,
    pub keys: Vec<KeyName>,
    pub complete: bool,
    pub milestones: Vec<MilestoneView>,
    pub flows: Vec<FlowView>,
    pub exchanges: Vec<ExchangeView>,
    pub attempts: Vec<AttemptView>,
    /// The milestone the transaction is stuck at, if any.
    pub stuck: Option<String>,
    pub measures: Vec<MeasureView>,
}

/// One measure value on one object.
#[derive(Debug, Clone)]
pub struct MeasureView {
    pub measure: String,
    pub role: Role,
    pub unit: String,
    pub amount: Amount,
}

/// One recorded milestone of one object.
#[derive(Debug, Clone)]
pub struct MilestoneView {
    pub milestone: String,
    pub object: KeyName,
    /// When it first happened.
    pub at: SystemTime,
    /// How many times it was seen again after the first.
    pub repeats: u32,
}

/// One measured flow.
#[derive(Debug, Clone)]
pub struct FlowView {
    pub flow: String,
    pub duration: Duration,
    pub within_slo: bool,
}

/// One exchange of the timeline.
#[derive(Debug, Clone)]
pub struct ExchangeView {
    pub status: u16,
    pub operation: Option<String>,
}

/// One exception the sidecar opened, as its exceptions API lists it.
#[derive(Debug, Clone)]
pub struct ExceptionView {
    pub kind: String,
    pub owner: String,
    pub open: bool,
}

/// Repeated calls of one operation on one object.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub operation: String,
    pub retries: u32,
    pub duplicates: u32,
}

/// The business rules the summary measures against, from the config.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Flows in config order: name and SLO.
    pub flows: Vec<(String, Duration)>,
    /// Every exception kind the config declares (with the built-in
    /// `out_of_order`), so kinds nothing opened still get a row.
    pub kinds: Vec<String>,
}

impl From<&Key> for KeyName {
    fn from(key: &Key) -> Self {
        KeyName {
            kind: key.kind.to_string(),
            value: key.value.to_string(),
        }
    }
}

impl TransactionView {
    /// The view of `t`, config names read from `config`.
    pub fn of(t: &Transaction, config: &Config) -> Self {
        let names = Names::of(config);
        TransactionView {
            root: t.root().map(|k| KeyName::from(&k.to_key())),
            keys: t
                .keys
                .keys(&config.key_kinds)
                .map(|k| KeyName::from(&k))
                .collect(),
            complete: t.status == Status::Complete,
            milestones: t
                .milestones
                .iter()
                .filter_map(|m| t.milestone_record(m, names))
                .map(|m| MilestoneView {
                    milestone: m.milestone.to_string(),
                    object: KeyName::from(&m.object),
                    at: m.at.time(),
                    repeats: m.repeats,
                })
                .collect(),
            flows: t
                .flows
                .iter()
                .map(|f| FlowView {
                    flow: f
                        .flow
                        .get(names.flows)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    duration: f.duration(),
                    within_slo: f.within_slo,
                })
                .collect(),
            exchanges: t
                .exchanges
                .iter()
                .map(|e| ExchangeView {
                    status: e.status,
                    operation: e
                        .operation
                        .and_then(|o| o.get(names.operations))
                        .map(ToString::to_string),
                })
                .collect(),
            attempts: t
                .attempts()
                .iter()
                .map(|a| AttemptView {
                    operation: a.operation.to_string(),
                    retries: a.retries,
                    duplicates: a.duplicates,
                })
                .collect(),
            stuck: t.stuck().map(ToString::to_string),
            measures: t
                .measures()
                .iter()
                .map(|m| MeasureView {
                    measure: m.measure.to_string(),
                    role: m.role,
                    unit: m.unit.to_string(),
                    amount: m.amount,
                })
                .collect(),
        }
    }
}

impl From<&ExceptionEntry> for ExceptionView {
    fn from(entry: &ExceptionEntry) -> Self {
        let e = &entry.exception;
        ExceptionView {
            kind: e.kind.to_string(),
            owner: e.owner.to_string(),
            open: e.is_open(),
        }
    }
}

impl From<&Config> for Rules {
    fn from(config: &Config) -> Self {
        Rules {
            flows: config
                .flows
                .iter()
                .map(|f| (f.name.to_string(), f.slo))
                .collect(),
            kinds: config
                .exception_kinds
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// What the summary reads from the sidecar's own metrics: counts that no
/// transaction carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SidecarCounts {
    /// Extraction failures by reason, summed over systems (exchanges nobody
    /// could read carry no keys, so no transaction has them).
    pub extraction_problems: BTreeMap<String, u64>,
    /// Requests the idempotency guard answered from a stored response.
    pub guard_replays: u64,
}

impl SidecarCounts {
    /// Reads the counts from a metrics text (either exposition format).
    pub fn from_metrics(metrics: &str) -> Self {
        let mut counts = SidecarCounts::default();
        for (labels, value) in samples(metrics, "waybill_extraction_failures_total") {
            if let Some(reason) = label(labels, "reason") {
                if value > 0 {
                    *counts
                        .extraction_problems
                        .entry(reason.to_owned())
                        .or_default() += value;
                }
            }
        }
        counts.guard_replays = samples(metrics, "waybill_guard_replays_total")
            .map(|(_, value)| value)
            .sum();
        counts
    }
}

/// `(labels, value)` of every sample of counter `name` in a metrics text.
fn samples<'a>(metrics: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, u64)> + 'a {
    metrics.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?,
            None => ("", rest),
        };
        let value = value.split_whitespace().next()?.parse::<f64>().ok()?;
        Some((labels, value as u64))
    })
}

/// The value of label `name` in a sample's label text.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|l| {
        l.trim()
            .strip_prefix(name)?
            .strip_prefix("=\"")?
            .strip_suffix('"')
    })
}

// === Summary ===

/// The demo's result: what the driver did and what the sidecar saw.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The driver's own account.
    pub driver: Tally,
    pub seed: u64,
    pub speed: f64,
    /// Real time the orders took to drive.
    pub elapsed: Duration,
    /// Transactions the correlator holds.
    pub transactions: usize,
    pub complete: usize,
    pub open: usize,
    /// Transactions with no root key (no order): what the sidecar made of
    /// traffic it could not tie to any order.
    pub rootless: usize,
    /// Per flow, in config order.
    pub flows: Vec<FlowStats>,
    /// Exchanges answered 5xx, by operation (`unmatched` when no route matched).
    pub upstream_failures: BTreeMap<String, usize>,
    /// Milestone repeats, by milestone.
    pub duplicates: BTreeMap<String, u64>,
    /// Retries and duplicate calls, by operation (routes with `repeats`).
    pub repeats: BTreeMap<String, RepeatStats>,
    /// Exceptions the sidecar's exceptions API lists, by kind; every kind
    /// the config declares has an entry.
    pub exceptions: BTreeMap<String, ExceptionStats>,
    /// Transactions stuck now, by the milestone they rest at.
    pub stuck: BTreeMap<String, usize>,
    /// What the sidecar's metrics count (extraction problems, guard replays).
    pub counted: SidecarCounts,
    /// Driver deliveries whose tracking code sits in the transaction rooted
    /// at their own order: the tracking-only webhook joined correctly.
    pub tracking_joined: usize,
    /// `freight_cost` the transactions hold, summed exactly by role and
    /// currency (each shipment's value once).
    pub freight_cost: BTreeMap<(Role, String), Amount>,
}

/// The measure the demo compares with what the driver quoted and invoiced.
pub const FREIGHT_COST: &str = "freight_cost";

/// Durations of one flow.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStats {
    pub flow: String,
    pub slo: Duration,
    pub count: usize,
    pub p50: Option<Duration>,
    pub p95: Option<Duration>,
    pub within_slo: usize,
}

impl FlowStats {
    /// Share of measurements within the SLO, 0..=1 (`None` without any).
    pub fn within_share(&self) -> Option<f64> {
        (self.count > 0).then(|| self.within_slo as f64 / self.count as f64)
    }
}

/// Repeated calls of one operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepeatStats {
    /// Attempts that followed a failure.
    pub retries: u64,
    /// Successes after the first with a new idempotency key.
    pub duplicates: u64,
}

/// Exceptions of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionStats {
    /// The owners they were opened for, comma-separated (usually one).
    pub owner: String,
    pub opened: usize,
    /// Still open (not resolved by a later milestone or success).
    pub open: usize,
    /// Resolved by a later milestone or success.
    pub resolved: usize,
}

impl Summary {
    /// Computes everything the sidecar saw from its transactions and the
    /// exceptions its exceptions API lists.
    pub fn observe(
        &mut self,
        transactions: &[TransactionView],
        exceptions: &[ExceptionView],
        rules: &Rules,
        counted: SidecarCounts,
    ) {
        self.transactions = transactions.len();
        self.complete = transactions.iter().filter(|t| t.complete).count();
        self.open = self.transactions - self.complete;
        self.rootless = transactions.iter().filter(|t| t.root.is_none()).count();
        self.flows = rules
            .flows
            .iter()
            .map(|(name, slo)| flow_stats(transactions, name, *slo))
            .collect();
        self.upstream_failures.clear();
        self.duplicates.clear();
        self.repeats.clear();
        self.exceptions = rules
            .kinds
            .iter()
            .map(|k| (k.clone(), ExceptionStats::default()))
            .collect();
        for e in exceptions {
            let stats = self.exceptions.entry(e.kind.clone()).or_default();
            if !stats.owner.split(", ").any(|o| o == e.owner) {
                if !stats.owner.is_empty() {
                    stats.owner.push_str(", ");
                }
                stats.owner.push_str(&e.owner);
            }
            stats.opened += 1;
            stats.open += usize::from(e.open);
            stats.resolved += usize::from(!e.open);
        }
        self.stuck.clear();
        for milestone in transactions.iter().filter_map(|t| t.stuck.as_ref()) {
            *self.stuck.entry(milestone.clone()).or_default() += 1;
        }
        for t in transactions {
            for a in &t.attempts {
                let stats = self.repeats.entry(a.operation.clone()).or_default();
                stats.retries += u64::from(a.retries);
                stats.duplicates += u64::from(a.duplicates);
            }
            for e in t.exchanges.iter().filter(|e| e.status >= 500) {
                let operation = e.operation.clone().unwrap_or_else(|| "unmatched".into());
                *self.upstream_failures.entry(operation).or_default() += 1;
            }
            for m in t.milestones.iter().filter(|m| m.repeats > 0) {
                *self.duplicates.entry(m.milestone.clone()).or_default() += u64::from(m.repeats);
            }
        }
        self.freight_cost.clear();
        for m in transactions
            .iter()
            .flat_map(|t| &t.measures)
            .filter(|m| m.measure == FREIGHT_COST)
        {
            let sum = self
                .freight_cost
                .entry((m.role, m.unit.clone()))
                .or_default();
            *sum = sum.plus(m.amount);
        }
        self.counted = counted;
        self.tracking_joined = tracking_joined(transactions, &self.driver);
    }

    /// Transactions stuck now, at any milestone.
    pub fn stuck_total(&self) -> usize {
        self.stuck.values().sum()
    }

    /// The stats of `flow`, if configured.
    pub fn flow(&self, flow: &str) -> Option<&FlowStats> {
        self.flows.iter().find(|f| f.flow == flow)
    }

    /// Writes the report for a terminal.
    pub fn render(&self, out: &mut impl Write) -> io::Result<()> {
        let d = &self.driver;
        let day = Duration::from_secs(86_400).div_f64(self.speed.max(f64::MIN_POSITIVE));
        writeln!(out)?;
        writeln!(
            out,
            "waybill demo: {} orders in {:.1} s (seed {}, speed x{}: one business day = {:.1} s)",
            d.orders,
            self.elapsed.as_secs_f64(),
            self.seed,
            self.speed,
            day.as_secs_f64(),
        )?;
        writeln!(out)?;

        let mut table = Table::with_text(&["driver", "count", ""]);
        table.row(vec![
            "orders finished".into(),
            d.finished.to_string(),
            format!("of {}", d.orders),
        ]);
        table.row(vec![
            "split orders".into(),
            d.split_orders.to_string(),
            format!("{} shipments in all", d.shipments),
        ]);
        table.row(vec![
            "requests sent".into(),
            d.requests.to_string(),
            "all through the sidecar".into(),
        ]);
        if d.abandoned > 0 {
            table.row(vec![
                "orders abandoned".into(),
                d.abandoned.to_string(),
                d.errors
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "stopped before the end".into()),
            ]);
        }
        table.write(out)?;

        let mut table = Table::with_text(&["transactions", "count", ""]);
        table.row(vec![
            "seen".into(),
            self.transactions.to_string(),
            if self.rootless > 0 {
                format!(
                    "{} with no order; driver sent {} stray invoices",
                    self.rootless, d.stray_invoices
                )
            } else {
                String::new()
            },
        ]);
        table.row(vec![
            "complete".into(),
            self.complete.to_string(),
            String::new(),
        ]);
        table.row(vec!["open".into(), self.open.to_string(), String::new()]);
        let at: Vec<String> = self
            .stuck
            .iter()
            .map(|(milestone, n)| format!("{n} at {milestone}"))
            .collect();
        table.row(vec![
            "stuck now".into(),
            self.stuck_total().to_string(),
            format!(
                "{}driver left {} orders labelled but unshipped",
                at.iter().map(|a| format!("{a}; ")).collect::<String>(),
                d.unshipped_orders
            ),
        ]);
        table.row(vec![
            "tracking joined to order".into(),
            self.tracking_joined.to_string(),
            format!(
                "of {} tracking numbers the carrier issued",
                d.deliveries.len()
            ),
        ]);
        table.write(out)?;

        let mut table = Table::new(&[
            "flow (business time)",
            "count",
            "p50",
            "p95",
            "within SLO",
            "SLO",
        ]);
        for f in &self.flows {
            table.row(vec![
                f.flow.clone(),
                f.count.to_string(),
                f.p50.map_or_else(|| "-".into(), human),
                f.p95.map_or_else(|| "-".into(), human),
                f.within_share()
                    .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0)),
                round_duration(f.slo),
            ]);
        }
        table.write(out)?;

        let mut table = Table::with_text(&["upstream failures (5xx)", "count", ""]);
        for (operation, count) in &self.upstream_failures {
            let note = if operation.ends_with("buy_label") {
                format!(
                    "driver got {} x 503, each followed by another purchase",
                    d.carrier_unavailable
                )
            } else {
                String::new()
            };
            table.row(vec![operation.clone(), count.to_string(), note]);
        }
        table.empty_note("none");
        table.write(out)?;

        let mut table = Table::with_text(&["duplicates (milestone repeats)", "count", ""]);
        for (milestone, count) in &self.duplicates {
            table.row(vec![milestone.clone(), count.to_string(), String::new()]);
        }
        table.empty_note("none");
        table.note(format!(
            "driver booked {} shipments twice with a new key, and resent {} bookings with the same key",
            d.duplicate_bookings, d.booking_retries
        ));
        table.write(out)?;

        let mut table = Table::with_text(&["idempotency guard", "count", ""]);
        table.row(vec![
            "answered from a stored response".into(),
            self.counted.guard_replays.to_string(),
            format!(
                "driver resent {} bookings after a timeout, same Idempotency-Key",
                d.booking_retries
            ),
        ]);
        table.write(out)?;

        let mut table = Table::new(&["repeated calls", "retries", "duplicates"]);
        for (operation, stats) in &self.repeats {
            table.row(vec![
                operation.clone(),
                stats.retries.to_string(),
                stats.duplicates.to_string(),
            ]);
        }
        table.empty_note("none");
        table.write(out)?;

        let injected = d.injected();
        let mut table = Table::with_text(&[
            "exceptions (sidecar)",
            "owner",
            "opened",
            "open",
            "resolved",
            "injected",
            "what the driver did",
        ]);
        let mut kinds: Vec<&str> = self.exceptions.keys().map(String::as_str).collect();
        kinds.extend(injected.keys().copied());
        kinds.sort_unstable();
        kinds.dedup();
        let mut disagree = Vec::new();
        for kind in kinds {
            let stats = self.exceptions.get(kind).cloned().unwrap_or_default();
            let driver = injected.get(kind).copied().unwrap_or_default();
            let expected = ExceptionStats {
                owner: stats.owner.clone(),
                opened: driver.count,
                open: driver.count - driver.resolved,
                resolved: driver.resolved,
            };
            if stats != expected {
                disagree.push(kind);
            }
            table.row(vec![
                kind.to_owned(),
                if stats.owner.is_empty() {
                    "-".into()
                } else {
                    stats.owner.clone()
                },
                stats.opened.to_string(),
                stats.open.to_string(),
                stats.resolved.to_string(),
                injected_cell(driver),
                how_injected(kind).to_owned(),
            ]);
        }
        table.empty_note("none configured");
        table.note("injected: what the driver set up, and how many of those it fixed later".into());
        table.disagreement(&disagree);
        table.write(out)?;

        let mut table = Table::with_text(&["freight cost", "currency", "sidecar", "driver"]);
        let mut disagree = Vec::new();
        for (role, driver) in [
            (Role::Quoted, &d.quoted_cost),
            (Role::Actual, &d.invoiced_cost),
        ] {
            let mut currencies: Vec<&String> = driver.keys().collect();
            currencies.extend(
                self.freight_cost
                    .keys()
                    .filter(|(r, _)| *r == role)
                    .map(|(_, c)| c),
            );
            currencies.sort_unstable();
            currencies.dedup();
            for currency in currencies {
                let seen = self
                    .freight_cost
                    .get(&(role, currency.clone()))
                    .copied()
                    .unwrap_or_default();
                let sent = driver.get(currency).copied().unwrap_or_default();
                if seen != sent {
                    disagree.push(format!("{} {currency}", role.as_str()));
                }
                table.row(vec![
                    role.as_str().to_owned(),
                    currency.clone(),
                    seen.to_string(),
                    sent.to_string(),
                ]);
            }
        }
        table.empty_note("none");
        table.note("quoted: the label's rate; actual: the invoiced amount (a re-sent invoice replaces, never adds)".into());
        table.disagreement(&disagree);
        table.write(out)?;

        let mut table = Table::with_text(&["extraction problems", "count", ""]);
        for (reason, count) in &self.counted.extraction_problems {
            table.row(vec![reason.clone(), count.to_string(), String::new()]);
        }
        table.empty_note("none");
        table.note(format!(
            "driver sent {} truncated JSON bodies and {} invoice lines with no shipment",
            d.malformed_bodies, d.stray_invoices
        ));
        table.write(out)?;
        Ok(())
    }
}

fn flow_stats(transactions: &[TransactionView], name: &str, slo: Duration) -> FlowStats {
    let mut durations: Vec<Duration> = Vec::new();
    let mut within_slo = 0;
    for f in transactions
        .iter()
        .flat_map(|t| &t.flows)
        .filter(|f| f.flow == name)
    {
        durations.push(f.duration);
        within_slo += usize::from(f.within_slo);
    }
    durations.sort();
    FlowStats {
        flow: name.to_owned(),
        slo,
        count: durations.len(),
        p50: percentile(&durations, 0.50),
        p95: percentile(&durations, 0.95),
        within_slo,
    }
}

/// Nearest-rank percentile of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// `3`, or `3 (1 fixed)` when the driver resolved some of them later.
fn injected_cell(injected: Injected) -> String {
    if injected.resolved > 0 {
        format!("{} ({} fixed)", injected.count, injected.resolved)
    } else {
        injected.count.to_string()
    }
}

fn tracking_joined(transactions: &[TransactionView], tally: &Tally) -> usize {
    let mut root_of_key: HashMap<(&str, &str), Option<&str>> = HashMap::new();
    for t in transactions {
        let root = t.root.as_ref().map(|r| r.value.as_str());
        for k in &t.keys {
            root_of_key.insert((k.kind.as_str(), k.value.as_str()), root);
        }
    }
    tally
        .deliveries
        .iter()
        .filter(|d| {
            root_of_key.get(&("tracking", d.tracking_code.as_str()))
                == Some(&Some(d.order_id.as_str()))
        })
        .count()
}

/// A duration in business terms: `42s`, `7m 30s`, `3h 12m`, `2d 4h`.
pub fn human(d: Duration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let s = d.as_secs();
    let (big, big_unit, small, small_unit) = if s >= DAY {
        (s / DAY, "d", s % DAY / HOUR, "h")
    } else if s >= HOUR {
        (s / HOUR, "h", s % HOUR / MINUTE, "m")
    } else if s >= MINUTE {
        (s / MINUTE, "m", s % MINUTE, "s")
    } else {
        return format!("{s}s");
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit} {small}{small_unit}")
    }
}

/// A configured duration in the unit it was most likely written in:
/// `15m`, `4h`, `72h`, `7d`.
pub fn round_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s % (7 * 86_400) == 0 || (s % 86_400 == 0 && s > 3 * 86_400) => {
            format!("{}d", s / 86_400)
        }
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => human(d),
    }
}

// === impl Table ===

/// A small aligned table: the first column left-aligned, the rest
/// right-aligned, except a trailing free-text column when there is one.
struct Table {
    head: Vec<String>,
    /// The last column is free text (remarks), aligned left.
    text_last: bool,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    empty: Option<&'static str>,
}

impl Table {
    fn new(head: &[&str]) -> Self {
        Table {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            text_last: false,
            rows: Vec::new(),
            notes: Vec::new(),
            empty: None,
        }
    }

    /// A table whose last column is free text.
    fn with_text(head: &[&str]) -> Self {
        Table {
            text_last: true,
            ..Table::new(head)
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Printed in place of rows when there are none.
    fn empty_note(&mut self, text: &'static str) {
        self.empty = Some(text);
    }

    /// A line printed under the rows.
    /// Notes what the sidecar and the driver disagree on, if anything.
    fn disagreement(&mut self, items: &[impl AsRef<str>]) {
        if !items.is_empty() {
            let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
            self.note(format!(
                "the sidecar and the driver disagree on: {}",
                items.join(", ")
            ));
        }
    }

    fn note(&mut self, text: String) {
        self.notes.push(text);
    }

    fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.head.len();
        let mut widths: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut dyn Write| -> io::Result<()> {
            let mut text = String::from("  ");
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let left = i == 0 || (self.text_last && i == columns - 1);
                if i > 0 {
                    text.push_str("   ");
                }
                if left {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            writeln!(out, "{}", text.trim_end())
        };
        line(&self.head, out)?;
        if self.rows.is_empty() {
            if let Some(empty) = self.empty {
                writeln!(out, "  {empty}")?;
            }
        }
        for row in &self.rows {
            line(row, out)?;
        }
        for note in &self.notes {
            writeln!(out, "  ({note})")?;
        }
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::driver::{Delivery, Injection};

    fn key(kind: &str, value: &str) -> KeyName {
        KeyName {
            kind: kind.into(),
            value: value.into(),
        }
    }

    fn milestone(name: &str, object: KeyName, at_secs: u64, repeats: u32) -> MilestoneView {
        MilestoneView {
            milestone: name.into(),
            object,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(at_secs),
            repeats,
        }
    }

    #[test]
    fn human_durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(450)), "7m 30s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60 + 5)), "3h 12m");
        assert_eq!(human(Duration::from_secs(24 * 3600)), "1d");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d 4h");
    }

    #[test]
    fn sidecar_counts_sum_extraction_failures_by_reason_and_guard_replays() {
        let text =
            "# HELP waybill_extraction_failures Exchanges extraction could not fully read.\n\
waybill_extraction_failures_total{system=\"wms\",reason=\"malformed_json\"} 2\n\
waybill_extraction_failures_total{system=\"erp\",reason=\"malformed_json\"} 3\n\
waybill_extraction_failures_total{system=\"erp\",reason=\"too_deep\"} 0\n\
waybill_extraction_failures_created{system=\"erp\",reason=\"too_deep\"} 1.7e9\n\
waybill_guard_replays_total{listener=\"carrier-egress\",operation=\"carrier.create_shipment\"} 4\n\
waybill_guard_replays_total{listener=\"wms-inbound\",operation=\"wms.release\"} 1\n";
        let counted = SidecarCounts::from_metrics(text);
        assert_eq!(
            counted.extraction_problems,
            BTreeMap::from([("malformed_json".to_owned(), 5)])
        );
        assert_eq!(counted.guard_replays, 5);
    }

    #[test]
    fn configured_durations_print_as_written() {
        assert_eq!(round_duration(Duration::from_secs(15 * 60)), "15m");
        assert_eq!(round_duration(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(round_duration(Duration::from_secs(72 * 3600)), "72h");
        assert_eq!(round_duration(Duration::from_secs(7 * 86_400)), "7d");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_secs).collect();
        assert_eq!(percentile(&v, 0.5), Some(Duration::from_secs(50)));
        assert_eq!(percentile(&v, 0.95), Some(Duration::from_secs(95)));
        assert_eq!(percentile(&v[..1], 0.95), Some(Duration::from_secs(1)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_counts_the_sidecars_exceptions_by_kind_next_to_what_the_driver_injected() {
        let order = key("order", "SO-1");
        let (s1, s2) = (key("shipment", "SH-1-1"), key("shipment", "SH-1-2"));
        let t = TransactionView {
            root: Some(order.clone()),
            keys: vec![
                order.clone(),
                s1.clone(),
                s2.clone(),
                key("tracking", "1Z1"),
            ],
            complete: false,
            milestones: vec![
                milestone("shipped", s1.clone(), 100, 0),
                milestone("label_created", s2.clone(), 90, 0),
                milestone("shipment_booked", s2.clone(), 50, 1),
            ],
            flows: vec![FlowView {
                flow: "order_to_ship".into(),
                duration: Duration::from_secs(3600),
                within_slo: true,
            }],
            exchanges: vec![
                ExchangeView {
                    status: 503,
                    operation: Some("carrier.buy_label".into()),
                },
                ExchangeView {
                    status: 200,
                    operation: Some("carrier.buy_label".into()),
                },
            ],
            attempts: vec![AttemptView {
                operation: "carrier.buy_label".into(),
                retries: 1,
                duplicates: 0,
            }],
            stuck: Some("label_created".into()),
            measures: [
                ("freight_cost", Role::Quoted, "EUR", "12.50"),
                ("freight_cost", Role::Actual, "EUR", "13.10"),
                ("freight_cost", Role::Actual, "USD", "7"),
                ("parcel_weight", Role::Actual, "kg", "2.5"),
            ]
            .into_iter()
            .map(|(measure, role, unit, amount)| MeasureView {
                measure: measure.into(),
                role,
                unit: unit.into(),
                amount: Amount::parse(amount).unwrap_or_default(),
            })
            .collect(),
        };
        let stray = TransactionView {
            root: None,
            keys: vec![key("invoice", "INV-1"), key("tracking", "1Z9")],
            ..TransactionView::default()
        };
        let exception = |kind: &str, owner: &str, open: bool| ExceptionView {
            kind: kind.into(),
            owner: owner.into(),
            open,
        };
        let exceptions = [
            exception("missing_goods_issue", "erp", true),
            exception("out_of_order", "erp", false),
            exception("out_of_order", "wms", true),
        ];
        let rules = Rules {
            flows: vec![("order_to_ship".into(), Duration::from_secs(86_400))],
            kinds: vec![
                "out_of_order".into(),
                "missing_goods_issue".into(),
                "duplicate_shipment".into(),
            ],
        };
        let injection = |kind: &'static str, resolved: bool| Injection {
            kind,
            order_id: "SO-1".into(),
            object: "SH-1-1".into(),
            resolved,
        };
        let mut summary = Summary {
            speed: 1000.0,
            driver: Tally {
                deliveries: vec![Delivery {
                    order_id: "SO-1".into(),
                    shipment_id: "SH-1-1".into(),
                    tracking_code: "1Z1".into(),
                }],
                injected: vec![
                    injection("missing_goods_issue", false),
                    injection("out_of_order", true),
                ],
                ..Tally::default()
            },
            ..Summary::default()
        };
        summary.observe(
            &[t, stray],
            &exceptions,
            &rules,
            SidecarCounts {
                extraction_problems: BTreeMap::from([("malformed_json".into(), 1)]),
                guard_replays: 0,
            },
        );
        let stats = |kind: &str| {
            summary
                .exceptions
                .get(kind)
                .map(|e| (e.owner.as_str(), e.opened, e.open, e.resolved))
        };
        assert_eq!(stats("missing_goods_issue"), Some(("erp", 1, 1, 0)));
        let cost = |role, currency: &str| {
            summary
                .freight_cost
                .get(&(role, currency.to_owned()))
                .map(ToString::to_string)
        };
        assert_eq!(cost(Role::Quoted, "EUR").as_deref(), Some("12.5"));
        assert_eq!(cost(Role::Actual, "EUR").as_deref(), Some("13.1"));
        assert_eq!(cost(Role::Actual, "USD").as_deref(), Some("7"));
        assert_eq!(summary.freight_cost.len(), 3, "the weight is no cost");
        assert_eq!(stats("out_of_order"), Some(("erp, wms", 2, 1, 1)));
        assert_eq!(
            stats("duplicate_shipment"),
            Some(("", 0, 0, 0)),
            "a declared kind nothing opened still has a row"
        );
        assert_eq!((summary.transactions, summary.rootless), (2, 1));
        assert_eq!(summary.stuck.get("label_created"), Some(&1));
        assert_eq!(summary.upstream_failures.get("carrier.buy_label"), Some(&1));
        assert_eq!(summary.duplicates.get("shipment_booked"), Some(&1));
        assert_eq!(summary.tracking_joined, 1);
        let buy = summary.repeats.get("carrier.buy_label");
        assert_eq!(buy.map(|r| (r.retries, r.duplicates)), Some((1, 0)));
        assert_eq!(summary.flow("order_to_ship").map(|f| f.count), Some(1));

        let mut text = Vec::new();
        summary.render(&mut text).expect("render");
        let text = String::from_utf8(text).expect("utf-8");
        assert!(text.contains("order_to_ship"), "{text}");
        assert!(text.contains("missing_goods_issue"), "{text}");
        assert!(
            text.contains("the sidecar and the driver disagree on: out_of_order"),
            "{text}"
        );
    }
}
