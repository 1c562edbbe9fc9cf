//! The result of a run: what agents write as JSON, what the controller merges, what reports and
//! thresholds read.
//!
//! Latencies are HdrHistograms of microseconds with two significant digits (1% resolution), stored as their recorded (value, count) pairs:
//! rebuilding a histogram from them gives back the same histogram, so results from several
//! agents (processes or machines) merge exactly.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram records, in microseconds (one hour).
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Names of the latency series.
pub mod series {
    /// From the scheduled send time to the message arriving at the recipient.
    pub const DELIVERY: &str = "delivery";
    /// From the scheduled send time to the server's "sent" acknowledgement.
    pub const SERVER_ACK: &str = "server_ack";
    /// From starting to connect to the Welcome frame (TCP + upgrade + authentication).
    pub const CONNECT: &str = "connect";
    /// Group messages: from the scheduled send time to the arrival at the *last* member.
    pub const FAN_OUT: &str = "fan_out";
    /// How late the generator sent, compared with the schedule (its own health).
    pub const SEND_LAG: &str = "send_lag";
    /// Business: from the scheduled send time of a consumer's message to its webhook.
    pub const WEBHOOK: &str = "webhook";
    /// Business: from the scheduled send time of an API message to its `delivered` webhook.
    pub const STATUS: &str = "status";
}

/// A latency histogram in a mergeable, serializable form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// (value in µs, count) for every recorded value bucket, ascending.
    pub counts: Vec<(u64, u64)>,
}

impl Hist {
    pub fn new_histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("valid histogram bounds")
    }

    pub fn from_histogram(histogram: &Histogram<u64>) -> Hist {
        Hist {
            counts: histogram
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    pub fn to_histogram(&self) -> Histogram<u64> {
        let mut histogram = Hist::new_histogram();
        for (value, count) in &self.counts {
            histogram.saturating_record_n(*value, *count);
        }
        histogram
    }

    pub fn merge(&mut self, other: &Hist) {
        let mut histogram = self.to_histogram();
        // Same bounds on both sides: adding cannot fail.
        let _ = histogram.add(other.to_histogram());
        *self = Hist::from_histogram(&histogram);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum()
    }

    /// The value at `quantile` (0.0..=1.0) in µs; 0 when empty.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.counts.is_empty() {
            return 0;
        }
        self.to_histogram().value_at_quantile(quantile)
    }
}

/// Counters and latencies of one interval (one second by default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Seconds since the start of the measured phase, at the end of the interval.
    pub t: f64,
    /// Messages the schedule asked for in this interval (open model), summed over agents.
    pub target: u64,
    pub sent: u64,
    /// "sent" acknowledgements received.
    pub acked: u64,
    /// Messages that arrived at their recipients.
    pub delivered: u64,
    pub errors: u64,
    /// Open connections at the end of the interval.
    pub connections: u64,
    /// Connections opened in the interval.
    pub connects: u64,
    pub latency: BTreeMap<String, Hist>,
}

/// A sample of a process's resource use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    pub t: f64,
    /// CPU time used since the previous sample, as percent of one core.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// Everything one run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub scenario: String,
    /// The scenario's parameters as given (for the report).
    pub parameters: serde_json::Value,
    pub started_unix_ms: u64,
    /// Length of the measured phase in seconds (set-up and warm-up excluded).
    pub duration_secs: f64,
    /// How many agent results were merged into this one.
    pub agents: u32,
    pub intervals: Vec<Interval>,
    /// Cumulative latencies over the measured phase, by series name.
    pub latency: BTreeMap<String, Hist>,
    /// Errors by kind (e.g. "connect", "rejected:RATE_LIMITED", "closed").
    pub errors: BTreeMap<String, u64>,
    /// Samples of the server process (when its pid is known).
    pub server: Vec<ProcessSample>,
    /// Samples of the generator processes.
    pub generator: Vec<ProcessSample>,
    /// Facts worth reading next to the figures (the generator fell behind, and the like).
    pub notes: Vec<String>,
    /// Scenario-specific figures (for example memory per idle connection).
    pub figures: BTreeMap<String, f64>,
    /// Where the server's CPU time went during the measured phase (`--profile`).
    #[serde(default)]
    pub profile: Option<crate::cpu_profile::CpuProfile>,
}

impl RunResult {
    pub fn total(&self, counter: impl Fn(&Interval) -> u64) -> u64 {
        self.intervals.iter().map(counter).sum()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Derived figures shared by the thresholds and the reports.
impl RunResult {
    /// What error percentages are relative to: messages sent, or attempted connections (opened
    /// plus failed, i.e. error kinds `connect` and `connect:*`) when nothing was sent. Returns the
    /// count and a short description of it.
    pub fn error_base(&self) -> (u64, &'static str) {
        let sent = self.total(|i| i.sent);
        if sent > 0 {
            return (sent, "sent messages");
        }
        let failed: u64 = self
            .errors
            .iter()
            .filter(|(kind, _)| *kind == "connect" || kind.starts_with("connect:"))
            .map(|(_, count)| count)
            .sum();
        (self.total(|i| i.connects) + failed, "connection attempts")
    }

    /// `count` per second of measured duration; `None` when the duration is not positive.
    pub fn per_second(&self, count: u64) -> Option<f64> {
        (self.duration_secs > 0.0).then(|| count as f64 / self.duration_secs)
    }
}
