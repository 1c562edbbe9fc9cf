//! Pass/fail conditions on a run, such as `p99<50ms`, `server_ack.max<=1s`, `errors<0.1%` or
//! `rate>=9500`.
//!
//! Grammar (spaces are ignored):
//!
//! ```text
//! [series.]stat OP value[unit]   series: delivery (default), server_ack, connect, send_lag, fan_out,
//!                                 webhook, status (business)
//!                                stat:   p50, p90, p95, p99, p999 (or p99.9), max, mean
//!                                unit:   us, ms (default), s
//! errors OP value%               percent of sent messages (of connection attempts if none sent)
//! errors OP count                absolute number of errors
//! rate OP value[/s]              delivered messages per second over the measured duration
//! OP: <, <=, >, >=
//! ```
//!
//! Latency thresholds read the cumulative histograms of the run; one over an empty series fails
//! with the actual value "no data".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::result::{RunResult, series};

const SERIES: [&str; 7] = [
    series::DELIVERY,
    series::SERVER_ACK,
    series::CONNECT,
    series::SEND_LAG,
    series::FAN_OUT,
    series::WEBHOOK,
    series::STATUS,
];

/// A parsed threshold; see the module documentation for the grammar.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    pub op: Op,
    /// In the metric's own unit (the latency unit, percent, count, or messages per second).
    pub value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Metric {
    Latency {
        series: &'static str,
        stat: Stat,
        unit: Unit,
    },
    ErrorPercent,
    ErrorCount,
    Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Us,
    Ms,
    S,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// The outcome of one threshold on one result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The threshold, in canonical form.
    pub threshold: String,
    /// The measured value, in the threshold's unit (or "no data").
    pub actual: String,
    pub passed: bool,
}

/// Why a threshold did not parse; every message quotes the whole threshold.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error("empty threshold (expected e.g. 'p99<50ms', 'errors<0.1%' or 'rate>=1000')")]
    Empty,
    #[error("no comparison in '{input}' (expected one of <, <=, >, >=)")]
    MissingOperator { input: String },
    #[error("unsupported comparison '{op}' in '{input}' (expected one of <, <=, >, >=)")]
    BadOperator { op: String, input: String },
    #[error("nothing before the comparison in '{input}' (expected a statistic, errors or rate)")]
    MissingMetric { input: String },
    #[error(
        "unknown series '{series}' in '{input}' (expected delivery, server_ack, connect, send_lag, fan_out, webhook, status)"
    )]
    UnknownSeries { series: String, input: String },
    #[error(
        "unknown statistic '{stat}' in '{input}' (expected p50, p90, p95, p99, p999, max, mean, errors or rate)"
    )]
    UnknownStatistic { stat: String, input: String },
    #[error("missing value after the comparison in '{input}'")]
    MissingValue { input: String },
    #[error("invalid number '{value}' in '{input}' (expected a non-negative number)")]
    InvalidNumber { value: String, input: String },
    #[error("unknown unit '{unit}' in '{input}' (expected {expected})")]
    UnknownUnit {
        unit: String,
        input: String,
        expected: &'static str,
    },
}

impl Stat {
    const ALL: [(&'static str, Stat); 7] = [
        ("p50", Stat::P50),
        ("p90", Stat::P90),
        ("p95", Stat::P95),
        ("p99", Stat::P99),
        ("p999", Stat::P999),
        ("max", Stat::Max),
        ("mean", Stat::Mean),
    ];

    fn parse(name: &str) -> Option<Stat> {
        let name = if name == "p99.9" { "p999" } else { name };
        Stat::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    fn name(self) -> &'static str {
        Stat::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

impl Unit {
    fn parse(name: &str) -> Option<Unit> {
        match name {
            "us" => Some(Unit::Us),
            "ms" | "" => Some(Unit::Ms),
            "s" => Some(Unit::S),
            _ => None,
        }
    }

    fn micros(self) -> f64 {
        match self {
            Unit::Us => 1.0,
            Unit::Ms => 1_000.0,
            Unit::S => 1_000_000.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Us => "us",
            Unit::Ms => "ms",
            Unit::S => "s",
        }
    }
}

impl Op {
    fn holds(self, actual: f64, limit: f64) -> bool {
        match self {
            Op::Lt => actual < limit,
            Op::Le => actual <= limit,
            Op::Gt => actual > limit,
            Op::Ge => actual >= limit,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, value) = (self.op, self.value);
        match &self.metric {
            Metric::Latency { series, stat, unit } => {
                write!(f, "{series}.{}{op}{value}{}", stat.name(), unit.name())
            }
            Metric::ErrorPercent => write!(f, "errors{op}{value}%"),
            Metric::ErrorCount => write!(f, "errors{op}{value}"),
            Metric::Rate => write!(f, "rate{op}{value}"),
        }
    }
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(input: &str) -> Result<Threshold, ThresholdError> {
        let original = input.trim().to_string();
        let compact: String = original.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            return Err(ThresholdError::Empty);
        }
        let input = || original.clone();

        let at = compact
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| ThresholdError::MissingOperator { input: input() })?;
        let (lhs, rest) = compact.split_at(at);
        let op_len = rest.find(|c| !"<>=!".contains(c)).unwrap_or(rest.len());
        let (op, rhs) = rest.split_at(op_len);
        let op = match op {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            other => {
                return Err(ThresholdError::BadOperator {
                    op: other.into(),
                    input: input(),
                });
            }
        };
        if lhs.is_empty() {
            return Err(ThresholdError::MissingMetric { input: input() });
        }
        if rhs.is_empty() {
            return Err(ThresholdError::MissingValue { input: input() });
        }

        let split = rhs
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rhs.len());
        let (number, unit) = rhs.split_at(split);
        let value = number
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| ThresholdError::InvalidNumber {
                value: rhs.into(),
                input: input(),
            })?;
        let bad_unit = |expected| ThresholdError::UnknownUnit {
            unit: unit.into(),
            input: input(),
            expected,
        };

        let metric = match lhs {
            "errors" => match unit {
                "%" => Metric::ErrorPercent,
                "" => Metric::ErrorCount,
                _ => return Err(bad_unit("'%' or a plain count")),
            },
            "rate" => match unit {
                "" | "/s" => Metric::Rate,
                _ => return Err(bad_unit("a plain number of messages per second, or '/s'")),
            },
            _ => {
                let (series, stat) = split_series(lhs, &original)?;
                let stat = Stat::parse(stat).ok_or_else(|| ThresholdError::UnknownStatistic {
                    stat: stat.into(),
                    input: input(),
                })?;
                let unit = Unit::parse(unit).ok_or_else(|| bad_unit("us, ms or s"))?;
                Metric::Latency { series, stat, unit }
            }
        };
        Ok(Threshold { metric, op, value })
    }
}

/// Splits `series.stat` (or a bare `stat`) into the series name and the statistic.
fn split_series<'a>(lhs: &'a str, input: &str) -> Result<(&'static str, &'a str), ThresholdError> {
    for name in SERIES {
        if let Some(stat) = lhs.strip_prefix(name).and_then(|s| s.strip_prefix('.')) {
            return Ok((name, stat));
        }
    }
    match lhs.split_once('.') {
        Some((series, _)) if lhs != "p99.9" => Err(ThresholdError::UnknownSeries {
            series: series.into(),
            input: input.into(),
        }),
        _ => Ok((series::DELIVERY, lhs)),
    }
}

impl Threshold {
    /// Checks the threshold against a run.
    pub fn evaluate(&self, result: &RunResult) -> Verdict {
        let measured = match &self.metric {
            Metric::Latency { series, stat, unit } => {
                latency_us(result, series, *stat).map(|us| (us / unit.micros(), unit.name()))
            }
            Metric::ErrorPercent => {
                let (base, _) = result.error_base();
                (base > 0).then(|| (result.error_count() as f64 * 100.0 / base as f64, "%"))
            }
            Metric::ErrorCount => Some((result.error_count() as f64, "")),
            Metric::Rate => result
                .per_second(result.total(|i| i.delivered))
                .map(|rate| (rate, "/s")),
        };
        let (actual, passed) = match measured {
            Some((value, suffix)) => (
                format_value(value, suffix),
                self.op.holds(value, self.value),
            ),
            None => ("no data".to_string(), false),
        };
        Verdict {
            threshold: self.to_string(),
            actual,
            passed,
        }
    }
}

fn format_value(value: f64, suffix: &str) -> String {
    match suffix {
        "" => format!("{value}"),
        "us" => format!("{value:.0}us"),
        "s" | "%" => format!("{value:.3}{suffix}"),
        _ => format!("{value:.2}{suffix}"),
    }
}

/// The statistic of a cumulative latency series, in µs; `None` when the series is empty.
fn latency_us(result: &RunResult, series: &str, stat: Stat) -> Option<f64> {
    let hist = result.latency.get(series).filter(|h| h.count() > 0)?;
    let histogram = hist.to_histogram();
    let quantile = |q: f64| histogram.value_at_quantile(q) as f64;
    Some(match stat {
        Stat::P50 => quantile(0.5),
        Stat::P90 => quantile(0.9),
        Stat::P95 => quantile(0.95),
        Stat::P99 => quantile(0.99),
        Stat::P999 => quantile(0.999),
        Stat::Max => histogram.max() as f64,
        Stat::Mean => histogram.mean(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::result::{Hist, Interval};

    fn parse(s: &str) -> Threshold {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn error(s: &str) -> String {
        match s.parse::<Threshold>() {
            Ok(t) => panic!("{s} parsed as {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_good_thresholds() {
        let t = parse("p99<50ms");
        assert_eq!(t.op, Op::Lt);
        assert_eq!(t.value, 50.0);
        assert_eq!(
            t.metric,
            Metric::Latency {
                series: series::DELIVERY,
                stat: Stat::P99,
                unit: Unit::Ms
            }
        );
        assert_eq!(
            parse(" server_ack.max <= 1.5 s ").to_string(),
            "server_ack.max<=1.5s"
        );
        assert_eq!(
            parse("connect.p999>=200us").to_string(),
            "connect.p999>=200us"
        );
        assert_eq!(parse("send_lag.mean > 3").to_string(), "send_lag.mean>3ms");
        assert_eq!(parse("p99.9<7ms").to_string(), "delivery.p999<7ms");
        assert_eq!(parse("errors < 0.1%").metric, Metric::ErrorPercent);
        assert_eq!(parse("errors<=5").metric, Metric::ErrorCount);
        assert_eq!(parse("rate>=9500/s").to_string(), "rate>=9500");
        for s in [
            "p50<1ms",
            "delivery.p90>2us",
            "errors<0.5%",
            "errors<3",
            "rate>10",
        ] {
            assert_eq!(parse(&parse(s).to_string()), parse(s), "round trip of {s}");
        }
    }

    #[test]
    fn rejects_bad_thresholds() {
        assert_eq!(
            error("p98<5ms"),
            "unknown statistic 'p98' in 'p98<5ms' (expected p50, p90, p95, p99, p999, max, mean, errors or rate)"
        );
        assert!(error("").contains("empty"));
        assert!(error("p99 50ms").contains("no comparison in 'p99 50ms'"));
        assert!(error("p99=50ms").contains("unsupported comparison '='"));
        assert!(error("p99<<50ms").contains("unsupported comparison '<<'"));
        assert!(error("<50ms").contains("nothing before"));
        assert!(error("p99<").contains("missing value"));
        assert!(error("p99<fast").contains("invalid number 'fast'"));
        assert!(error("p99<-5ms").contains("invalid number '-5ms'"));
        assert!(error("p99<5min").contains("unknown unit 'min'"));
        assert!(error("p99<5%").contains("unknown unit '%'"));
        assert!(error("errors<5ms").contains("unknown unit 'ms'"));
        assert!(error("rate>5%").contains("unknown unit '%'"));
        assert!(error("deliver.p99<5ms").contains("unknown series 'deliver'"));
    }

    fn result() -> RunResult {
        let mut h = Hist::new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 100).expect("in range"); // 0.1 ms .. 100 ms
        }
        RunResult {
            duration_secs: 10.0,
            intervals: vec![Interval {
                sent: 1000,
                delivered: 900,
                connects: 4,
                ..Interval::default()
            }],
            latency: BTreeMap::from([(series::DELIVERY.to_string(), Hist::from_histogram(&h))]),
            errors: BTreeMap::from([("closed".to_string(), 2)]),
            ..RunResult::default()
        }
    }

    fn check(s: &str, r: &RunResult) -> Verdict {
        parse(s).evaluate(r)
    }

    #[test]
    fn evaluates_latency() {
        let r = result();
        let v = check("p99<100ms", &r);
        assert!(v.passed, "{v:?}");
        assert_eq!(v.threshold, "delivery.p99<100ms");
        assert!(
            v.actual.starts_with("99.") && v.actual.ends_with("ms"),
            "{}",
            v.actual
        );
        assert!(!check("p50<10ms", &r).passed);
        assert!(check("p50<=0.06s", &r).passed);
        assert!(check("max>=99000us", &r).passed);
        assert!(check("mean>40", &r).passed);
        let v = check("server_ack.p99<100ms", &r);
        assert_eq!((v.actual.as_str(), v.passed), ("no data", false));
    }

    #[test]
    fn evaluates_errors_and_rate() {
        let mut r = result();
        let v = check("errors<0.5%", &r);
        assert_eq!((v.actual.as_str(), v.passed), ("0.200%", true));
        assert!(!check("errors<0.1%", &r).passed);
        assert!(check("errors<=2", &r).passed);
        assert!(!check("errors<2", &r).passed);
        let v = check("rate>=90", &r);
        assert_eq!((v.actual.as_str(), v.passed), ("90.00/s", true));
        assert!(!check("rate>90", &r).passed);

        // Nothing sent: percent of connection attempts (4 opened + 4 failed).
        r.intervals[0].sent = 0;
        r.errors = BTreeMap::from([("connect".to_string(), 4)]);
        assert_eq!(check("errors<60%", &r).actual, "50.000%");
        r.duration_secs = 0.0;
        assert_eq!(check("rate>1", &r).actual, "no data");
        assert_eq!(check("errors<1%", &RunResult::default()).actual, "no data");
    }
}
