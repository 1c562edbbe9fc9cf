//! Where a running agent counts and times things, one interval at a time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::result::{Hist, Interval, RunResult};

/// Counters of an interval.
#[derive(Clone, Copy, Debug)]
pub enum Counter {
    Target,
    Sent,
    Acked,
    Delivered,
    Connects,
}

#[derive(Default)]
struct Current {
    interval: Interval,
    histograms: BTreeMap<&'static str, Histogram<u64>>,
}

struct State {
    measuring: bool,
    current: Current,
    intervals: Vec<Interval>,
    cumulative: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    connections: u64,
    measure_started: Option<Instant>,
}

/// Thread-safe recorder of one agent's run.
pub struct Recorder {
    state: Mutex<State>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            state: Mutex::new(State {
                measuring: false,
                current: Current::default(),
                intervals: Vec::new(),
                cumulative: BTreeMap::new(),
                errors: BTreeMap::new(),
                connections: 0,
                measure_started: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the measured phase: what happened before (set-up, warm-up) is not counted.
    /// Starts the measured phase; once started, later calls change nothing.
    pub fn start_measuring(&self) {
        let mut state = self.lock();
        if state.measuring {
            return;
        }
        state.measuring = true;
        state.measure_started = Some(Instant::now());
        state.current = Current::default();
    }

    pub fn count(&self, counter: Counter, n: u64) {
        let mut state = self.lock();
        if !state.measuring {
            return;
        }
        let interval = &mut state.current.interval;
        match counter {
            Counter::Target => interval.target += n,
            Counter::Sent => interval.sent += n,
            Counter::Acked => interval.acked += n,
            Counter::Delivered => interval.delivered += n,
            Counter::Connects => interval.connects += n,
        }
    }

    /// Records a latency in microseconds on `series` (see [`crate::result::series`]).
    pub fn latency(&self, series: &'static str, micros: u64) {
        let mut state = self.lock();
        if !state.measuring {
            return;
        }
        let value = micros.max(1);
        state
            .current
            .histograms
            .entry(series)
            .or_insert_with(Hist::new_histogram)
            .saturating_record(value);
        state
            .cumulative
            .entry(series)
            .or_insert_with(Hist::new_histogram)
            .saturating_record(value);
    }

    pub fn error(&self, kind: impl Into<String>) {
        let mut state = self.lock();
        if !state.measuring {
            return;
        }
        state.current.interval.errors += 1;
        *state.errors.entry(kind.into()).or_default() += 1;
    }

    /// Messages delivered since measuring started (all intervals, the current one included).
    pub fn total_delivered(&self) -> u64 {
        let state = self.lock();
        state.intervals.iter().map(|i| i.delivered).sum::<u64>() + state.current.interval.delivered
    }

    pub fn connection_opened(&self) {
        self.lock().connections += 1;
    }

    pub fn connection_closed(&self) {
        let mut state = self.lock();
        state.connections = state.connections.saturating_sub(1);
    }

    /// Closes the current interval at `t` seconds and returns it (for progress output).
    pub fn rotate(&self, t: f64) -> Interval {
        let mut state = self.lock();
        let current = std::mem::take(&mut state.current);
        let mut interval = current.interval;
        interval.t = t;
        interval.connections = state.connections;
        interval.latency = current
            .histograms
            .iter()
            .map(|(name, h)| ((*name).to_owned(), Hist::from_histogram(h)))
            .collect();
        if state.measuring {
            state.intervals.push(interval.clone());
        }
        interval
    }

    /// Everything measured, as a result.
    pub fn finish(&self, scenario: &str, parameters: serde_json::Value) -> RunResult {
        let state = self.lock();
        let duration_secs = state
            .measure_started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            .saturating_sub((duration_secs * 1000.0) as u64);
        RunResult {
            scenario: scenario.to_owned(),
            parameters,
            started_unix_ms,
            duration_secs,
            agents: 1,
            intervals: state.intervals.clone(),
            latency: state
                .cumulative
                .iter()
                .map(|(name, h)| ((*name).to_owned(), Hist::from_histogram(h)))
                .collect(),
            errors: state.errors.clone(),
            ..RunResult::default()
        }
    }
}

/// Microseconds since the Unix epoch: the clock scheduled send times travel in.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::series;

    #[test]
    fn nothing_is_counted_before_measuring_starts() {
        let recorder = Recorder::new();
        recorder.count(Counter::Sent, 5);
        recorder.latency(series::DELIVERY, 100);
        recorder.error("warmup");
        recorder.start_measuring();
        recorder.count(Counter::Sent, 2);
        recorder.latency(series::DELIVERY, 250);
        recorder.error("closed");
        recorder.rotate(1.0);
        let result = recorder.finish("chat", serde_json::json!({}));
        assert_eq!(result.total(|i| i.sent), 2);
        assert_eq!(result.latency[series::DELIVERY].count(), 1);
        assert_eq!(result.errors.len(), 1);
        assert_eq!(result.intervals.len(), 1);
    }
}
