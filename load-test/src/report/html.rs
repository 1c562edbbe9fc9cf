//! The HTML report: one self-contained page (no scripts, no external resources) with the
//! parameters, the verdicts, the summary tables and time-series line charts drawn as inline SVG.
//! A run with `--profile` adds its flame graph, the interactive `flamegraph.svg` beside it.

use std::fmt::Write as _;

use super::summary::{parameters, sections};
use crate::result::{Interval, ProcessSample, RunResult, series};
use crate::threshold::Verdict;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:60em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child{text-align:left}.pass{color:#080;font-weight:bold}.fail{color:#c00;font-weight:bold}\
pre{background:#f4f4f4;padding:.5em}figure{margin:0 0 1.5em}svg{max-width:100%;height:auto}.empty{color:#888}";

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The whole report as one HTML page.
pub fn html(result: &RunResult, verdicts: &[Verdict]) -> String {
    let title = escape(&format!("Courier load test: {}", result.scenario));
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let params = serde_json::to_string_pretty(&result.parameters).unwrap_or_default();
    let _ = write!(
        out,
        "<h2>Parameters</h2>\n<p>{}</p>\n<pre>{}</pre>\n",
        escape(&parameters(&result.parameters)),
        escape(&params)
    );

    out.push_str("<h2>Verdicts</h2>\n");
    if verdicts.is_empty() {
        out.push_str("<p class=\"empty\">No thresholds were given.</p>\n");
    } else {
        out.push_str("<table><tr><th>result</th><th>threshold</th><th>actual</th></tr>\n");
        for v in verdicts {
            let (class, word) = if v.passed {
                ("pass", "PASS")
            } else {
                ("fail", "FAIL")
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td></tr>",
                escape(&v.threshold),
                escape(&v.actual)
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Summary</h2>\n");
    for section in sections(result, &[]) {
        let _ = write!(out, "<h3>{}</h3>\n<table>", escape(&section.title));
        if !section.header.is_empty() {
            out.push_str(&table_row("th", &section.header));
        }
        for row in &section.rows {
            out.push_str(&table_row("td", row));
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2>Time series</h2>\n");
    for chart in charts(result) {
        out.push_str(&chart);
    }
    if let Some(profile) = &result.profile {
        let file = escape(&profile.flamegraph);
        let _ = write!(
            out,
            "<h2>Where the server's time goes</h2>\n<p>Flame graph of {:.1} s of the server's CPU \
             time (width: share of CPU time; click to zoom; the tables above list the top \
             functions): <a href=\"{file}\">{file}</a></p>\n\
             <object data=\"{file}\" type=\"image/svg+xml\" style=\"width:100%\"></object>\n",
            profile.cpu_seconds
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn table_row(cell: &str, cells: &[String]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<{cell}>{}</{cell}>", escape(c)))
        .collect();
    format!("<tr>{cells}</tr>\n")
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

type Series = (&'static str, Vec<(f64, f64)>);

/// All time-series charts of the report.
fn charts(result: &RunResult) -> Vec<String> {
    let ivs = &result.intervals;
    // Interval lengths, from the end times (the first interval starts at 0).
    let lengths: Vec<f64> = (0..ivs.len())
        .map(|i| ivs[i].t - if i == 0 { 0.0 } else { ivs[i - 1].t })
        .map(|d| if d > 0.0 { d } else { 1.0 })
        .collect();
    let per_second = |counter: fn(&Interval) -> u64| -> Vec<(f64, f64)> {
        ivs.iter()
            .zip(&lengths)
            .map(|(i, d)| (i.t, counter(i) as f64 / d))
            .collect()
    };
    let rates: Vec<Series> = vec![
        ("target", per_second(|i| i.target)),
        ("sent", per_second(|i| i.sent)),
        ("acked", per_second(|i| i.acked)),
        ("delivered", per_second(|i| i.delivered)),
    ];
    let connections: Vec<Series> = vec![
        (
            "open connections",
            ivs.iter().map(|i| (i.t, i.connections as f64)).collect(),
        ),
        ("connects/s", per_second(|i| i.connects)),
    ];
    let samples = |from: &[ProcessSample], value: fn(&ProcessSample) -> f64| {
        from.iter().map(|s| (s.t, value(s))).collect::<Vec<_>>()
    };
    let cpu: fn(&ProcessSample) -> f64 = |s| s.cpu_percent;
    let server_cpu = vec![("server CPU", samples(&result.server, cpu))];
    let server_rss = vec![(
        "server RSS",
        samples(&result.server, |s| s.rss_bytes as f64 / 1e6),
    )];
    let generator_cpu = vec![("generator CPU", samples(&result.generator, cpu))];

    let charts: [(&str, &str, Vec<Series>); 6] = [
        ("Rate per second", "messages/s", rates),
        (
            "Latency percentiles per interval",
            "ms",
            latency_series(ivs),
        ),
        ("Connections", "connections", connections),
        ("Server CPU", "% of one core", server_cpu),
        ("Server RSS", "MB", server_rss),
        ("Generator CPU (all agents)", "% of one core", generator_cpu),
    ];
    charts
        .iter()
        .map(|(title, y_label, series)| line_chart(title, "time (s)", y_label, series))
        .collect()
}

/// p50, p99 and p99.9 of delivery and server_ack per interval, in ms (empty intervals skipped).
fn latency_series(intervals: &[Interval]) -> Vec<Series> {
    let mut out = Vec::new();
    let delivery = ["delivery p50", "delivery p99", "delivery p99.9"];
    let server_ack = ["server_ack p50", "server_ack p99", "server_ack p99.9"];
    for (name, labels) in [
        (series::DELIVERY, delivery),
        (series::SERVER_ACK, server_ack),
    ] {
        let mut points: [Vec<(f64, f64)>; 3] = Default::default();
        for interval in intervals {
            let Some(hist) = interval.latency.get(name).filter(|h| h.count() > 0) else {
                continue;
            };
            let h = hist.to_histogram();
            for (line, q) in points.iter_mut().zip([0.5, 0.99, 0.999]) {
                line.push((interval.t, h.value_at_quantile(q) as f64 / 1000.0));
            }
        }
        out.extend(labels.into_iter().zip(points));
    }
    out
}

/// A line chart as an inline SVG `<figure>`, with axes, tick labels and a legend; series without
/// points are left out, and a chart without any point is replaced by a short note.
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, points)| (*name, points.iter().filter(finite).copied().collect()))
        .filter(|(_, points): &(&str, Vec<_>)| !points.is_empty())
        .collect();
    if series.is_empty() {
        return format!("<p class=\"empty\">{}: no data.</p>\n", escape(title));
    }
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let (x_min, x_max) = range(points().map(|p| p.0));
    let (y_min, y_max) = range(points().map(|p| p.1).chain([0.0]));
    let (mut x_ticks, x_step) = ticks(x_min, x_max, 8);
    // The x axis ends at the last point: drop a tick beyond it.
    x_ticks.retain(|x| *x <= x_max + x_step * 1e-9);
    // The y axis extends to the first tick at or above the highest value.
    let (y_ticks, y_step) = ticks(y_min, y_max, 5);
    let y_top = y_ticks.last().copied().unwrap_or(y_max).max(y_max);

    let (legend, legend_bottom) = legend(&series);
    let top = legend_bottom + 14.0;
    let frame = Frame {
        left: 70.0,
        top,
        w: WIDTH - 90.0,
        h: 220.0,
        x: (x_min, x_max),
        y: (y_min, y_top),
    };
    let height = top + frame.h + 45.0;
    let mut svg = format!(
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"{WIDTH}\" height=\"{height}\" font-size=\"12\" role=\"img\">\
         <text x=\"{}\" y=\"20\" font-size=\"15\" font-weight=\"bold\">{}</text>{legend}",
        frame.left,
        escape(title)
    );
    let (left, right, bottom) = (frame.left, frame.left + frame.w, frame.top + frame.h);
    for y in &y_ticks {
        let (py, label) = (frame.sy(*y), tick_label(*y, y_step));
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{py:.1}\" x2=\"{right}\" y2=\"{py:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            left - 6.0,
            py + 4.0
        );
    }
    for x in &x_ticks {
        let (px, label) = (frame.sx(*x), tick_label(*x, x_step));
        let _ = write!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{bottom}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#444\"/>\
             <text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            bottom + 5.0,
            bottom + 18.0
        );
    }
    let _ = write!(
        svg,
        "<path d=\"M{left} {top}V{bottom}H{right}\" fill=\"none\" stroke=\"#444\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        left + frame.w / 2.0,
        height - 8.0,
        escape(x_label),
        top + frame.h / 2.0,
        escape(y_label)
    );
    for (index, (_, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let coords: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", frame.sx(*x), frame.sy(*y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
            coords.join(" ")
        );
        // A single point draws no line: mark it.
        if let [(x, y)] = points.as_slice() {
            let (cx, cy) = (frame.sx(*x), frame.sy(*y));
            let _ = write!(
                svg,
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"{color}\"/>"
            );
        }
    }
    svg.push_str("</svg></figure>\n");
    svg
}

const WIDTH: f64 = 800.0;

/// The plot area of a chart (SVG units) and the data ranges it shows.
struct Frame {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn sx(&self, x: f64) -> f64 {
        self.left + (x - self.x.0) / (self.x.1 - self.x.0) * self.w
    }

    fn sy(&self, y: f64) -> f64 {
        self.top + self.h - (y - self.y.0) / (self.y.1 - self.y.0) * self.h
    }
}

/// The legend entries below the title, flowing left to right and wrapping; and the y of the
/// last row.
fn legend(series: &[(&str, Vec<(f64, f64)>)]) -> (String, f64) {
    let mut legend = String::new();
    let (mut x, mut y) = (70.0, 42.0);
    for (index, (name, _)) in series.iter().enumerate() {
        let w = 30.0 + 7.0 * name.chars().count() as f64;
        if x + w > WIDTH - 20.0 && x > 70.0 {
            (x, y) = (70.0, y + 16.0);
        }
        let color = COLORS[index % COLORS.len()];
        let _ = write!(
            legend,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{y}\">{}</text>",
            y - 4.0,
            x + 18.0,
            escape(name)
        );
        x += w;
    }
    (legend, y)
}

/// The smallest and largest value, widened to a non-empty range.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if max > min {
        (min, max)
    } else {
        (min, min + 1.0)
    }
}

/// Round tick positions (steps of 1, 2 or 5 × 10ⁿ) covering `min..=max`, about `count` of them,
/// the last one at or above `max`; and the step.
fn ticks(min: f64, max: f64, count: usize) -> (Vec<f64>, f64) {
    let raw = (max - min) / count as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step).ceil() as i64;
    let last = (max / step).ceil() as i64;
    ((first..=last).map(|i| i as f64 * step).collect(), step)
}

fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::result::Hist;

    fn full_result() -> RunResult {
        let mut h = Hist::new_histogram();
        h.record(2500).expect("in range");
        let hist = Hist::from_histogram(&h);
        let latency = BTreeMap::from([
            (series::DELIVERY.to_string(), hist.clone()),
            (series::SERVER_ACK.to_string(), hist),
        ]);
        let intervals = (1..=5)
            .map(|t| Interval {
                t: t as f64,
                target: 100,
                sent: 99,
                acked: 98,
                delivered: 97,
                connections: 10,
                connects: 1,
                latency: latency.clone(),
                ..Interval::default()
            })
            .collect();
        let samples: Vec<_> = (1..=5)
            .map(|t| ProcessSample {
                t: t as f64,
                cpu_percent: 30.0,
                rss_bytes: 9_000_000,
            })
            .collect();
        RunResult {
            scenario: "fan<out>".into(),
            parameters: serde_json::json!({"note": "<script>alert(1)</script>", "rate": 100}),
            duration_secs: 5.0,
            agents: 1,
            intervals,
            latency,
            server: samples.clone(),
            generator: samples,
            ..RunResult::default()
        }
    }

    #[test]
    fn one_svg_per_chart_and_escaped_text() {
        let verdicts = [Verdict {
            threshold: "errors<1%".into(),
            actual: "0.000%".into(),
            passed: true,
        }];
        let page = html(&full_result(), &verdicts);
        assert_eq!(page.matches("<svg").count(), 6, "{page}");
        assert!(!page.contains("no data"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("fan&lt;out&gt;"));
        assert!(page.contains("class=\"pass\">PASS"));
        assert!(page.contains("delivery p99.9") && page.contains("connects/s"));
    }

    #[test]
    fn a_profiled_run_shows_where_the_time_goes() {
        let mut result = full_result();
        let mut profile = crate::cpu_profile::summarize(
            "actix-rt|system;courier_server::actors::user::handle;fjall::get 3000000\n\
             tokio-rt-worker;courier_server::gateway::connection::run;memcmp 1000000\n",
        );
        profile.flamegraph = "flamegraph.svg".into();
        result.profile = Some(profile);
        let page = html(&result, &[]);
        assert!(page.contains("<object data=\"flamegraph.svg\""), "{page}");
        assert!(page.contains("by component"));
        assert!(
            page.contains("<td>fjall</td><td>3</td><td>75.0%</td>"),
            "{page}"
        );
        assert!(page.contains("courier_server::actors::user::handle"));
        let text = crate::report::summary(&result, &[]);
        assert!(text.contains("Server CPU profile"), "{text}");
    }

    #[test]
    fn empty_result_has_no_charts() {
        let page = html(&RunResult::default(), &[]);
        assert_eq!(page.matches("<svg").count(), 0);
        assert_eq!(page.matches("no data.").count(), 6);
        assert!(page.ends_with("</html>\n"));
    }

    #[test]
    fn chart_skips_empty_series_and_handles_a_single_point() {
        let chart = line_chart("t", "x", "y", &[("a", vec![(3.0, 3.0)]), ("b", Vec::new())]);
        assert_eq!(chart.matches("<polyline").count(), 1);
        assert!(chart.contains("<circle") && !chart.contains("NaN"));
        assert_eq!(
            ticks(0.0, 97.0, 5),
            (vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0], 20.0)
        );
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }
}
