//! The sidecar's own process metrics, read from `/proc/self` at each
//! scrape, under the standard names every Prometheus client library uses
//! (so stock dashboards and alerts work unchanged):
//!
//! | metric | source |
//! |---|---|
//! | `process_cpu_seconds_total` | `/proc/self/stat` utime + stime |
//! | `process_start_time_seconds` | `/proc/self/stat` starttime + `/proc/stat` btime |
//! | `process_resident_memory_bytes` | `/proc/self/status` `VmRSS` |
//! | `process_virtual_memory_bytes` | `/proc/self/status` `VmSize` |
//! | `process_open_fds` | entries of `/proc/self/fd` |
//! | `process_max_fds` | `/proc/self/limits` "Max open files" (soft) |
//!
//! Memory comes from `status` (kB) rather than `statm` (pages) so no page
//! size is needed, and clock ticks are taken as 100 per second, the fixed
//! `USER_HZ` of Linux's user-space ABI (Prometheus's own procfs reader does
//! the same). Where `/proc` is missing (not Linux) or a file cannot be read,
//! the metrics it would give are left out of that scrape rather than
//! reported as zero.

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Adds the process collector to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register_collector(Box::new(ProcessCollector));
}

/// Reads `/proc/self` on every scrape; holds nothing.
#[derive(Debug)]
struct ProcessCollector;

/// One scrape's worth of readings; `None` where the source was unreadable.
#[derive(Debug, Default, PartialEq)]
struct Readings {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl Readings {
    fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let times = stat.as_deref().and_then(parse_stat);
        let boot = fs::read_to_string("/proc/stat")
            .ok()
            .as_deref()
            .and_then(parse_boot_time);
        let status = fs::read_to_string("/proc/self/status").ok();
        let kb = |field| status.as_deref().and_then(|s| parse_status_kb(s, field));
        Readings {
            cpu_seconds: times.map(|t| t.cpu_ticks / TICKS_PER_SECOND),
            start_time_seconds: times
                .zip(boot)
                .map(|(t, boot)| boot + t.start_ticks / TICKS_PER_SECOND),
            resident_bytes: kb("VmRSS:").map(|kb| kb * 1024.0),
            virtual_bytes: kb("VmSize:").map(|kb| kb * 1024.0),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as f64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .as_deref()
                .and_then(parse_max_open_files),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = Readings::read();
        if let Some(v) = r.cpu_seconds {
            let counter = ConstCounter::new(v);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                r.start_time_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                r.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                r.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                r.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                r.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let gauge = ConstGauge::new(v);
                let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
                gauge.encode(metric)?;
            }
        }
        Ok(())
    }
}

/// CPU and start time from `/proc/<pid>/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StatTimes {
    cpu_ticks: f64,
    start_ticks: f64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted from
/// the last `)`: utime, stime and starttime are fields 14, 15 and 22.
fn parse_stat(text: &str) -> Option<StatTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(StatTimes {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Name:   1234 kB` line of `/proc/<pid>/status`, in kB.
fn parse_status_kb(text: &str, field: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit of "Max open files" in `/proc/<pid>/limits`.
fn parse_max_open_files(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis_of_the_command_name() {
        let stat = "4242 (way bill) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 8 0 12345 100000000 2000 18446744073709551615";
        let times = parse_stat(stat).expect("parses");
        assert_eq!(times.cpu_ticks, 300.0);
        assert_eq!(times.start_ticks, 12345.0);
    }

    #[test]
    fn a_truncated_stat_line_gives_nothing_rather_than_a_wrong_number() {
        assert_eq!(parse_stat("4242 (waybill) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_memory_lines_are_read_in_kilobytes() {
        let status = "Name:\twaybill\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(2048.0));
        assert_eq!(parse_status_kb(status, "VmSize:"), Some(123456.0));
        assert_eq!(parse_status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn boot_time_and_the_soft_open_file_limit_are_found() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764230000\nprocesses 9\n"),
            Some(1_764_230_000.0)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024.0));
    }

    #[test]
    fn the_collector_exports_the_standard_process_metrics_on_linux() {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        if !std::path::Path::new("/proc/self/stat").exists() {
            eprintln!("no /proc on this system; nothing to check");
            return;
        }
        for name in [
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing from:\n{text}"
            );
        }
        assert!(text.contains("# TYPE process_cpu_seconds counter"));
    }
}
