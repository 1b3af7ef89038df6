//! kinfrad's own process metrics under their conventional names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, …), read from `/proc/self` at scrape time. A fact that
//! cannot be read is absent from the scrape, never shown as 0.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

/// What `/proc/self` told, each `None` when it could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3, the state, first).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// Field `n` (1-based, as proc(5) numbers them) of the stat line, parsed.
fn field<T: std::str::FromStr>(fields: &[&str], n: usize) -> Option<T> {
    fields.get(n.checked_sub(3)?)?.parse().ok()
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/<pid>/limits` ("unlimited": absent).
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Process {
    /// From the texts of `/proc/self/stat`, `/proc/stat` and `/proc/self/limits`, the number of
    /// open descriptors, the clock tick and the page size (each `None` when unreadable).
    pub fn from_texts(
        stat: Option<&str>,
        proc_stat: Option<&str>,
        limits: Option<&str>,
        open_fds: Option<u64>,
        ticks: Option<u64>,
        page: Option<u64>,
    ) -> Process {
        let fields = stat.and_then(stat_fields).unwrap_or_default();
        let ticks = ticks.filter(|t| *t > 0);
        let cpu = match (field::<u64>(&fields, 14), field::<u64>(&fields, 15), ticks) {
            (Some(u), Some(s), Some(t)) => Some((u + s) as f64 / t as f64),
            _ => None,
        };
        let start = match (
            field::<u64>(&fields, 22),
            ticks,
            proc_stat.and_then(boot_time),
        ) {
            (Some(st), Some(t), Some(boot)) => Some(boot as f64 + st as f64 / t as f64),
            _ => None,
        };
        Process {
            cpu_seconds: cpu,
            resident_bytes: field::<u64>(&fields, 24)
                .zip(page)
                .map(|(p, size)| p * size),
            virtual_bytes: field(&fields, 23),
            open_fds,
            max_fds: limits.and_then(max_open_files),
            start_time_seconds: start,
        }
    }

    /// Read this process's facts now.
    pub fn read() -> Process {
        let text = |p: &str| std::fs::read_to_string(p).ok();
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.filter_map(Result::ok).count() as u64);
        // SAFETY: sysconf only reads a system constant.
        let sysconf = |name| u64::try_from(unsafe { libc::sysconf(name) }).ok();
        Process::from_texts(
            text("/proc/self/stat").as_deref(),
            text("/proc/stat").as_deref(),
            text("/proc/self/limits").as_deref(),
            fds,
            sysconf(libc::_SC_CLK_TCK),
            sysconf(libc::_SC_PAGESIZE),
        )
    }

    /// The families of what was read (none for what was not).
    pub fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(v) = self.cpu_seconds {
            enc.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent by kinfrad, in seconds.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&v, None)?;
        }
        let gauges: [(&str, &str, Option<f64>); 5] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                self.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes.",
                self.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                self.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "The limit of open file descriptors.",
                self.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "When kinfrad started, in seconds since the Unix epoch.",
                self.start_time_seconds,
            ),
        ];
        for (name, help, v) in gauges {
            if let Some(v) = v {
                enc.encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (kin frad) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 \
        7 0 123400 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn reads_the_proc_texts() {
        let p = Process::from_texts(
            Some(STAT),
            Some("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            1024                 524288               files\n",
            ),
            Some(12),
            Some(100),
            Some(4096),
        );
        assert_eq!(p.cpu_seconds, Some(3.0));
        assert_eq!(p.virtual_bytes, Some(104_857_600));
        assert_eq!(p.resident_bytes, Some(2560 * 4096));
        assert_eq!(p.open_fds, Some(12));
        assert_eq!(p.max_fds, Some(1024));
        assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 1234.0));
    }

    #[test]
    fn what_cannot_be_read_is_absent() {
        let p = Process::from_texts(Some("garbage"), None, None, None, Some(0), None);
        assert_eq!(p, Process::default());
        let p = Process::from_texts(
            None,
            None,
            Some("Max open files            unlimited            unlimited            files\n"),
            None,
            None,
            None,
        );
        assert_eq!(p.max_fds, None);
    }

    #[test]
    fn this_process_reads() {
        let p = Process::read();
        assert!(p.open_fds.is_some_and(|n| n > 0), "{p:?}");
        assert!(p.resident_bytes.is_some_and(|n| n > 0), "{p:?}");
    }
}
