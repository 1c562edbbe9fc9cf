//! The terminal summary of a run.
//!
//! The figures are first gathered into [`Section`]s (a title and a table of text cells), which
//! this module renders as aligned plain text and the HTML report renders as `<table>`s.

use std::fmt::Write as _;

use crate::cpu_profile::{CpuProfile, Share};
use crate::result::{ProcessSample, RunResult, series};
use crate::threshold::Verdict;

/// One titled table of the summary. Without a header, rows are `label, value` pairs.
pub(crate) struct Section {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Section {
    fn new(title: impl Into<String>, header: &[&str]) -> Section {
        let header = header.iter().map(|h| h.to_string()).collect();
        Section {
            title: title.into(),
            header,
            rows: Vec::new(),
        }
    }

    fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(cells.to_vec());
    }
}

/// The summary as plain text, for the terminal.
pub fn summary(result: &RunResult, verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for section in sections(result, verdicts) {
        let _ = writeln!(out, "{}", section.title);
        let mut lines = section.rows.clone();
        if !section.header.is_empty() {
            lines.insert(0, section.header.clone());
        }
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .filter_map(|l| l.get(c))
                    .map(|s| s.chars().count())
                    .max()
            })
            .map(Option::unwrap_or_default)
            .collect();
        for line in &lines {
            let mut text = String::from(" ");
            for (c, cell) in line.iter().enumerate() {
                let width = widths[c];
                // Tables with a header hold figures: right-align all but the first column.
                if c > 0 && !section.header.is_empty() {
                    let _ = write!(text, "  {cell:>width$}");
                } else {
                    let _ = write!(text, "  {cell:<width$}");
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        }
        out.push('\n');
    }
    out
}

/// The sections of the summary; empty sections are left out. `verdicts` may be empty.
pub(crate) fn sections(result: &RunResult, verdicts: &[Verdict]) -> Vec<Section> {
    let mut all = vec![
        run(result),
        throughput(result),
        latency(result),
        errors(result),
    ];
    all.push(processes("Server process", &result.server));
    all.push(processes("Generator processes (total)", &result.generator));
    if let Some(profile) = &result.profile {
        all.extend(profile_sections(profile));
    }

    let mut figures = Section::new("Figures", &[]);
    for (key, value) in &result.figures {
        figures.row([key.clone(), format!("{value}")]);
    }
    let mut notes = Section::new("Notes", &[]);
    for note in &result.notes {
        notes.row([format!("- {note}")]);
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    let title = format!(
        "Thresholds: {} passed, {failed} failed",
        verdicts.len() - failed
    );
    let mut thresholds = Section::new(title, &[]);
    for v in verdicts {
        let outcome = if v.passed { "PASS" } else { "FAIL" };
        thresholds.row([
            outcome.into(),
            v.threshold.clone(),
            format!("(actual {})", v.actual),
        ]);
    }
    all.extend([figures, notes, thresholds]);
    all.retain(|s| !s.rows.is_empty());
    all
}

fn run(result: &RunResult) -> Section {
    let mut s = Section::new(format!("Scenario {}", result.scenario), &[]);
    s.row(["parameters".into(), parameters(&result.parameters)]);
    s.row(["duration".into(), format!("{:.1} s", result.duration_secs)]);
    s.row(["agents".into(), result.agents.to_string()]);
    s
}

/// Parameters on one line: `key=value, ...` for an object, compact JSON otherwise.
pub(crate) fn parameters(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => "none".into(),
        other => other.to_string(),
    }
}

fn throughput(result: &RunResult) -> Section {
    let mut s = Section::new("Throughput", &["", "total", "per second", "of target"]);
    let target = result.total(|i| i.target);
    let totals = [
        ("target", target),
        ("sent", result.total(|i| i.sent)),
        ("acked", result.total(|i| i.acked)),
        ("delivered", result.total(|i| i.delivered)),
    ];
    for (name, total) in totals {
        let rate = result
            .per_second(total)
            .map_or("-".into(), |r| format!("{r:.1}"));
        let share = if target > 0 {
            percent(total, target)
        } else {
            "-".into()
        };
        s.row([name.into(), total.to_string(), rate, share]);
    }
    s
}

fn latency(result: &RunResult) -> Section {
    let header = ["series", "count", "p50", "p90", "p99", "p99.9", "max"];
    let mut s = Section::new("Latency (ms)", &header);
    let known = [
        series::DELIVERY,
        series::SERVER_ACK,
        series::CONNECT,
        series::SEND_LAG,
    ];
    let others = result
        .latency
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k));
    for name in known.into_iter().chain(others) {
        let Some(hist) = result.latency.get(name).filter(|h| h.count() > 0) else {
            continue;
        };
        let h = hist.to_histogram();
        let ms = |us: u64| format!("{:.2}", us as f64 / 1000.0);
        let q = |q: f64| ms(h.value_at_quantile(q));
        s.row([
            name.into(),
            hist.count().to_string(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            ms(h.max()),
        ]);
    }
    s
}

fn errors(result: &RunResult) -> Section {
    let (base, of) = result.error_base();
    let mut s = Section::new(
        format!("Errors (percent of {base} {of})"),
        &["kind", "count", "%"],
    );
    let share = |count| {
        if base > 0 {
            percent(count, base)
        } else {
            "-".into()
        }
    };
    for (kind, count) in &result.errors {
        s.row([kind.clone(), count.to_string(), share(*count)]);
    }
    let total = result.error_count();
    s.row(["total".into(), total.to_string(), share(total)]);
    s
}

fn processes(title: &str, samples: &[ProcessSample]) -> Section {
    let mut s = Section::new(title, &[]);
    if samples.is_empty() {
        return s;
    }
    let avg = samples.iter().map(|p| p.cpu_percent).sum::<f64>() / samples.len() as f64;
    let peak = samples.iter().map(|p| p.cpu_percent).fold(0.0, f64::max);
    let rss = samples.iter().map(|p| p.rss_bytes).max().unwrap_or(0);
    s.row([
        "CPU".into(),
        format!("avg {avg:.1}%, peak {peak:.1}% (of one core)"),
    ]);
    s.row(["RSS".into(), format!("peak {:.1} MB", rss as f64 / 1e6)]);
    s
}

/// Functions listed per table of the profile.
const PROFILE_ROWS: usize = 12;
/// Longest function name shown (generic Rust names run long; the flame graph has them whole).
const NAME_CHARS: usize = 110;

/// Where the server's time went: by thread kind, and the top functions (self and total).
fn profile_sections(profile: &CpuProfile) -> Vec<Section> {
    let mut threads = Section::new(
        format!(
            "Server CPU profile: {:.1} s of CPU in {:.0} s, sampled at {} Hz ({}), by thread",
            profile.cpu_seconds, profile.seconds, profile.frequency_hz, profile.flamegraph
        ),
        &["thread", "CPU ms", "share"],
    );
    for share in &profile.threads {
        threads.row([
            share.name.clone(),
            format!("{:.0}", share.cpu_ms),
            format!("{:.1}%", share.percent),
        ]);
    }
    let table = |title: &str, shares: &[Share]| {
        let mut s = Section::new(title, &["", "CPU ms", "share"]);
        for share in shares.iter().take(PROFILE_ROWS) {
            let mut name: String = share.name.chars().take(NAME_CHARS).collect();
            if name.len() < share.name.len() {
                name.push('…');
            }
            s.row([
                name,
                format!("{:.0}", share.cpu_ms),
                format!("{:.1}%", share.percent),
            ]);
        }
        s
    };
    vec![
        threads,
        table(
            "Server CPU profile: by component (crate of the function on top of the stack)",
            &profile.components,
        ),
        table(
            "Server CPU profile: on top of the stack (self)",
            &profile.self_time,
        ),
        table(
            "Server CPU profile: the server's own functions, anywhere in the stack (total)",
            &profile.total_time,
        ),
    ]
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::result::{Hist, Interval};

    #[test]
    fn summary_lists_figures_and_verdicts() {
        let mut h = Hist::new_histogram();
        h.record(1500).expect("in range");
        let result = RunResult {
            scenario: "fanout".into(),
            parameters: serde_json::json!({"rate": 100, "room": "big"}),
            duration_secs: 2.0,
            agents: 1,
            intervals: vec![Interval {
                target: 200,
                sent: 200,
                delivered: 198,
                ..Interval::default()
            }],
            latency: BTreeMap::from([(series::DELIVERY.into(), Hist::from_histogram(&h))]),
            errors: BTreeMap::from([("closed".into(), 2)]),
            server: vec![ProcessSample {
                t: 1.0,
                cpu_percent: 40.0,
                rss_bytes: 50_000_000,
            }],
            notes: vec!["generator fell behind".into()],
            figures: BTreeMap::from([("bytes_per_conn".into(), 2048.0)]),
            ..RunResult::default()
        };
        let verdicts = [Verdict {
            threshold: "delivery.p99<1ms".into(),
            actual: "1.50ms".into(),
            passed: false,
        }];
        let text = summary(&result, &verdicts);
        // Compare with runs of spaces collapsed: the column widths are not the point here.
        let flat = text
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        for needle in [
            "Scenario fanout",
            "rate=100, room=big",
            "delivered 198 99.0 99.00%",
            "delivery 1 1.50 1.50",
            "closed 2 1.00%",
            "avg 40.0%, peak 40.0%",
            "peak 50.0 MB",
            "bytes_per_conn 2048",
            "- generator fell behind",
            "FAIL delivery.p99<1ms (actual 1.50ms)",
        ] {
            assert!(flat.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("Generator"));
        assert!(summary(&RunResult::default(), &[]).contains("Scenario"));
    }
}
