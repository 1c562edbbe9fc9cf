//! Exact merging of several agents' results of one run.
//!
//! Every agent measures the same run from its own process (or machine); the controller merges
//! their [`RunResult`]s into one. Histograms are merged bucket by bucket, so the merged
//! percentiles are exactly those of one histogram that had recorded every value.
//!
//! Intervals are aligned by index: the i-th interval of every agent covers the same second.

use std::collections::BTreeMap;

use crate::result::{Hist, Interval, ProcessSample, RunResult};

/// Merges the results of several agents of one run into one result.
///
/// - scenario and parameters come from the first result; `started_unix_ms` is the earliest
///   (non-zero) start;
/// - `duration_secs` is the longest; `agents` is the sum (a result claiming 0 agents counts as one);
/// - intervals are aligned by index: counters summed, histograms merged, `t` from the longest list;
/// - cumulative latencies are merged per series, errors summed per kind;
/// - server samples come from the first result that has any (only the controller samples it);
/// - generator samples are summed per index (total generator cost);
/// - notes are concatenated without duplicates;
/// - figures whose key ends in `_total` are summed, others come from the first result having them.
///
/// An empty list gives an empty result.
pub fn merge(results: Vec<RunResult>) -> RunResult {
    let mut results = results.into_iter();
    let Some(mut merged) = results.next() else {
        return RunResult::default();
    };
    merged.agents = merged.agents.max(1);
    for other in results {
        merge_into(&mut merged, other);
    }
    merged
}

fn merge_into(merged: &mut RunResult, other: RunResult) {
    merged.started_unix_ms = match (merged.started_unix_ms, other.started_unix_ms) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    };
    merged.duration_secs = merged.duration_secs.max(other.duration_secs);
    merged.agents += other.agents.max(1);

    merge_intervals(&mut merged.intervals, other.intervals);
    merge_histograms(&mut merged.latency, &other.latency);
    for (kind, count) in other.errors {
        *merged.errors.entry(kind).or_default() += count;
    }

    if merged.server.is_empty() {
        merged.server = other.server;
    }
    merge_samples(&mut merged.generator, other.generator);

    for note in other.notes {
        if !merged.notes.contains(&note) {
            merged.notes.push(note);
        }
    }
    for (key, value) in other.figures {
        if key.ends_with("_total") {
            *merged.figures.entry(key).or_default() += value;
        } else {
            merged.figures.entry(key).or_insert(value);
        }
    }
}

/// Adds `other`'s intervals to `merged`'s, index by index. Where `other` is the longer list,
/// its `t` wins (the longest list's times are the reference).
fn merge_intervals(merged: &mut Vec<Interval>, other: Vec<Interval>) {
    let other_is_longer = other.len() > merged.len();
    for (index, interval) in other.into_iter().enumerate() {
        let Some(target) = merged.get_mut(index) else {
            merged.push(interval);
            continue;
        };
        if other_is_longer {
            target.t = interval.t;
        }
        target.target += interval.target;
        target.sent += interval.sent;
        target.acked += interval.acked;
        target.delivered += interval.delivered;
        target.errors += interval.errors;
        target.connections += interval.connections;
        target.connects += interval.connects;
        merge_histograms(&mut target.latency, &interval.latency);
    }
}

fn merge_histograms(merged: &mut BTreeMap<String, Hist>, other: &BTreeMap<String, Hist>) {
    for (series, hist) in other {
        merged.entry(series.clone()).or_default().merge(hist);
    }
}

/// Sums samples index by index; `t` comes from the longer list.
fn merge_samples(merged: &mut Vec<ProcessSample>, other: Vec<ProcessSample>) {
    let other_is_longer = other.len() > merged.len();
    for (index, sample) in other.into_iter().enumerate() {
        let Some(target) = merged.get_mut(index) else {
            merged.push(sample);
            continue;
        };
        if other_is_longer {
            target.t = sample.t;
        }
        target.cpu_percent += sample.cpu_percent;
        target.rss_bytes += sample.rss_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::series;

    fn hist(values: &[u64]) -> Hist {
        let mut h = Hist::new_histogram();
        for v in values {
            h.record(*v).expect("in range");
        }
        Hist::from_histogram(&h)
    }

    fn interval(t: f64, sent: u64, values: &[u64]) -> Interval {
        Interval {
            t,
            target: sent,
            sent,
            acked: sent,
            delivered: sent,
            errors: 1,
            connections: 10,
            connects: 2,
            latency: BTreeMap::from([(series::DELIVERY.to_string(), hist(values))]),
        }
    }

    fn agent(values: &[u64], intervals: Vec<Interval>) -> RunResult {
        RunResult {
            scenario: "fanout".into(),
            duration_secs: intervals.len() as f64,
            agents: 1,
            latency: BTreeMap::from([(series::DELIVERY.to_string(), hist(values))]),
            intervals,
            errors: BTreeMap::from([("closed".to_string(), 2)]),
            ..RunResult::default()
        }
    }

    #[test]
    fn histograms_merge_exactly() {
        let a: Vec<u64> = (1..5000).map(|v| v * 7).collect();
        let b: Vec<u64> = (1..3000).map(|v| v * 131 + 5).collect();
        let all: Vec<u64> = a.iter().chain(&b).copied().collect();
        let merged = merge(vec![
            agent(&a, vec![interval(1.0, 5, &a)]),
            agent(&b, vec![interval(1.0, 7, &b)]),
        ]);
        let expected = hist(&all);
        assert_eq!(merged.latency[series::DELIVERY], expected);
        assert_eq!(merged.intervals[0].latency[series::DELIVERY], expected);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.latency[series::DELIVERY].quantile_us(q),
                expected.quantile_us(q)
            );
        }
    }

    #[test]
    fn counters_add_up() {
        let mut a = agent(&[10], vec![interval(1.0, 5, &[10])]);
        a.started_unix_ms = 2_000;
        a.figures = BTreeMap::from([("rss_per_conn".into(), 4.0), ("msgs_total".into(), 3.0)]);
        a.notes = vec!["behind".into()];
        a.generator = vec![ProcessSample {
            t: 1.0,
            cpu_percent: 50.0,
            rss_bytes: 100,
        }];
        let mut b = agent(&[20], vec![interval(1.0, 7, &[20])]);
        b.started_unix_ms = 1_000;
        b.figures = BTreeMap::from([("rss_per_conn".into(), 9.0), ("msgs_total".into(), 4.0)]);
        b.notes = vec!["behind".into(), "other".into()];
        b.generator = vec![ProcessSample {
            t: 1.0,
            cpu_percent: 25.0,
            rss_bytes: 50,
        }];
        b.server = vec![ProcessSample {
            t: 1.0,
            cpu_percent: 80.0,
            rss_bytes: 1,
        }];

        let m = merge(vec![a, b]);
        assert_eq!(m.agents, 2);
        assert_eq!(m.started_unix_ms, 1_000);
        let i = &m.intervals[0];
        assert_eq!((i.target, i.sent, i.acked, i.delivered), (12, 12, 12, 12));
        assert_eq!((i.errors, i.connections, i.connects), (2, 20, 4));
        assert_eq!(m.errors["closed"], 4);
        assert_eq!(m.figures["rss_per_conn"], 4.0);
        assert_eq!(m.figures["msgs_total"], 7.0);
        assert_eq!(m.notes, vec!["behind".to_string(), "other".to_string()]);
        assert_eq!(m.generator[0].cpu_percent, 75.0);
        assert_eq!(m.generator[0].rss_bytes, 150);
        assert_eq!(m.server.len(), 1);
        assert_eq!(m.latency[series::DELIVERY].count(), 2);
    }

    #[test]
    fn intervals_of_different_lengths() {
        let short = agent(&[1], vec![interval(1.0, 1, &[1])]);
        let long = agent(
            &[1],
            vec![
                interval(1.1, 2, &[2]),
                interval(2.1, 3, &[3]),
                interval(3.1, 4, &[4]),
            ],
        );
        let m = merge(vec![short, long]);
        assert_eq!(m.intervals.len(), 3);
        assert_eq!(m.duration_secs, 3.0);
        assert_eq!(
            m.intervals.iter().map(|i| i.sent).collect::<Vec<_>>(),
            vec![3, 3, 4]
        );
        assert_eq!(
            m.intervals.iter().map(|i| i.t).collect::<Vec<_>>(),
            vec![1.1, 2.1, 3.1]
        );
        assert_eq!(m.intervals[0].latency[series::DELIVERY].count(), 2);
        assert_eq!(m.intervals[2].latency[series::DELIVERY].count(), 1);
    }

    #[test]
    fn empty_input() {
        assert_eq!(merge(Vec::new()), RunResult::default());
        let one = agent(&[5], vec![interval(1.0, 1, &[5])]);
        assert_eq!(merge(vec![one.clone()]), one);
    }
}
