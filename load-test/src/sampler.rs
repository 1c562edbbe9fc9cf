//! CPU and memory of a process, read from `/proc` (Linux).

use std::time::Instant;

use crate::result::ProcessSample;

/// Clock ticks per second of `/proc/<pid>/stat` (100 on Linux/x86-64 and arm64).
const TICKS_PER_SEC: f64 = 100.0;

/// Samples one process: each call returns the CPU used since the previous call.
pub struct ProcessSampler {
    pid: u32,
    last_ticks: Option<u64>,
    last_at: Instant,
}

impl ProcessSampler {
    pub fn new(pid: u32) -> Self {
        let mut sampler = ProcessSampler {
            pid,
            last_ticks: None,
            last_at: Instant::now(),
        };
        sampler.last_ticks = sampler.cpu_ticks();
        sampler
    }

    /// This process.
    pub fn own() -> Self {
        ProcessSampler::new(std::process::id())
    }

    fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }

    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// A sample at `t`; `None` when the process is gone.
    pub fn sample(&mut self, t: f64) -> Option<ProcessSample> {
        let ticks = self.cpu_ticks()?;
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        let used = ticks.saturating_sub(self.last_ticks.unwrap_or(ticks)) as f64 / TICKS_PER_SEC;
        self.last_ticks = Some(ticks);
        self.last_at = now;
        let cpu_percent = if elapsed > 0.0 {
            used / elapsed * 100.0
        } else {
            0.0
        };
        Some(ProcessSample {
            t,
            cpu_percent,
            rss_bytes: self.rss_bytes().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut sampler = ProcessSampler::own();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let sample = sampler.sample(1.0).expect("own process");
        assert!(sample.rss_bytes > 0);
        assert!(sample.cpu_percent >= 0.0);
        assert!(ProcessSampler::new(u32::MAX).sample(0.0).is_none());
    }
}
