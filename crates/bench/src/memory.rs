//! Memory of the server process, read from `/proc/<pid>/status` (Linux).
//!
//! `VmHWM` ("high water mark") is the peak resident set size of the process
//! since it started: the most physical memory it has held at any one time.
//! `VmRSS` is its resident set at the moment of sampling. Both are in KiB.

use serde_json::{json, Value};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySample {
    pub vm_hwm_kib: u64,
    pub vm_rss_kib: u64,
}

impl MemorySample {
    pub fn describe(&self) -> String {
        format!(
            "VmHWM (peak RSS) {}, VmRSS {}",
            mib(self.vm_hwm_kib),
            mib(self.vm_rss_kib)
        )
    }

    pub fn to_json(self) -> Value {
        json!({"vm_hwm_kib": self.vm_hwm_kib, "vm_rss_kib": self.vm_rss_kib})
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Samples the process `pid`.
pub fn sample(pid: u32) -> anyhow::Result<MemorySample> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {path}: {e} (is the server still running?)"))?;
    parse_status(&text).ok_or_else(|| anyhow::anyhow!("{path} has no VmHWM/VmRSS lines"))
}

/// Reads a pid written by a launcher, such as a pid file.
pub fn read_pid_file(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the pid file {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("the pid file {} does not hold a process id", path.display()))
}

fn parse_status(text: &str) -> Option<MemorySample> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    Some(MemorySample {
        vm_hwm_kib: field("VmHWM")?,
        vm_rss_kib: field("VmRSS")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_peak_and_current_resident_set() {
        let status = "Name:\tmercato\nVmPeak:\t 2000000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   80000 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(status),
            Some(MemorySample {
                vm_hwm_kib: 81234,
                vm_rss_kib: 80000
            })
        );
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc status is readable");
        assert!(s.vm_rss_kib > 0 && s.vm_hwm_kib >= s.vm_rss_kib, "{s:?}");
    }

    #[test]
    fn reads_a_pid_file() {
        let dir = std::env::temp_dir().join(format!("mercato-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("server.pid");
        std::fs::write(&file, "4242\n").expect("write");
        assert_eq!(read_pid_file(&file).expect("pid"), 4242);
        std::fs::write(&file, "not a pid").expect("write");
        assert!(read_pid_file(&file).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
