//! The standard `process_*` metrics Prometheus' Go client exports (Alertmanager has them), read
//! from `/proc/self` at scrape time. Linux only: elsewhere nothing is exported.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on every Linux platform we run on).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the process metrics on each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    /// Unix seconds at start.
    pub start_time: f64,
}

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub resident_bytes: f64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// The soft limit on file descriptors.
    pub max_fds: f64,
}

/// Parses `/proc/self/stat`, `/proc/self/status` and `/proc/self/limits` texts.
pub fn parse(stat: &str, status: &str, limits: &str, open_fds: usize) -> Sample {
    // Fields after the parenthesised command name, which may itself contain spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `after` starts at field 3.
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |v| v * 1024.0)
    };
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    Sample {
        cpu_seconds: (ticks(14) + ticks(15)) / TICKS_PER_SECOND,
        resident_bytes: kb("VmRSS:"),
        virtual_bytes: kb("VmSize:"),
        open_fds: open_fds as f64,
        max_fds,
    }
}

fn read() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    Some(parse(&stat, &status, &limits, fds))
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = read() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            ("process_open_fds", "Number of open file descriptors.", s.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", s.max_fds),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                self.start_time,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (tocsin (main)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        let status = "Name:\ttocsin\nVmSize:\t  204800 kB\nVmRSS:\t   10240 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let s = parse(stat, status, limits, 12);
        assert_eq!(
            s,
            Sample {
                cpu_seconds: 3.0,
                resident_bytes: 10_485_760.0,
                virtual_bytes: 209_715_200.0,
                open_fds: 12.0,
                max_fds: 1024.0,
            }
        );
    }
}
