//! Where the server's time goes: a CPU profile of the server process, taken with Linux `perf`
//! during the measured phase, folded into call stacks and drawn as a flame graph.
//!
//! `perf record` samples the process (`cpu-clock`, so it works on machines without hardware
//! counters) for the length of the measured phase; `perf script` turns the samples into text,
//! which inferno folds (one line per distinct stack, rooted at the thread's name, weighted by
//! the nanoseconds of CPU time each sample stands for) and draws.
//! The run keeps `perf.data`, `profile.folded` and `flamegraph.svg` in its output directory and
//! a summary in `result.json`: the share of samples per kind of thread, and the functions with
//! the most samples on top of the stack (self) and anywhere in it (total).
//!
//! Symbols and stacks: release builds keep their symbols and `.eh_frame` unwind tables, so
//! `--profile-call-graph dwarf` (the default) gives whole stacks without frame pointers;
//! `fp` is far cheaper but needs a build with `-C force-frame-pointers=yes`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use inferno::collapse::Collapse;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// How many functions the summary lists.
const TOP: usize = 20;

/// How stacks are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CallGraph {
    /// Copies of the stack unwound with DWARF tables afterwards: whole stacks of any build.
    Dwarf,
    /// Frame pointers: cheap, whole stacks only for builds with frame pointers.
    Fp,
}

/// What to profile and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Samples per second per thread.
    pub frequency_hz: u32,
    pub call_graph: CallGraph,
}

/// Why no profile came out. The run goes on and says so in its notes.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("`perf` was not found (Debian package linux-perf): {0}")]
    NoPerf(std::io::Error),
    #[error("`perf record` failed ({status}): {stderr}")]
    Record { status: String, stderr: String },
    #[error("`perf script` failed ({status}): {stderr}")]
    Script { status: String, stderr: String },
    #[error("the profile holds no samples (did the process run?)")]
    Empty,
    #[error("cannot write the profile: {0}")]
    Io(#[from] std::io::Error),
}

/// One name and its share of the CPU time sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    /// Milliseconds of CPU time.
    pub cpu_ms: f64,
    pub percent: f64,
}

/// The summary of a profile, kept in `result.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuProfile {
    /// CPU time sampled, in seconds (over all threads).
    pub cpu_seconds: f64,
    pub frequency_hz: u32,
    /// Seconds sampled.
    pub seconds: f64,
    /// CPU time per kind of thread (numbers in thread names replaced by `N`).
    pub threads: Vec<Share>,
    /// Functions on top of the stack: where the CPU was when sampled.
    pub self_time: Vec<Share>,
    /// CPU time on top of the stack by component: the crate of the function (`kernel` for
    /// kernel frames, `native` for C libraries such as libc's allocator).
    #[serde(default)]
    pub components: Vec<Share>,
    /// The project's own functions (`courier_*` crates) anywhere in the stack, counted once
    /// per sample: which parts of the server the time is spent under.
    pub total_time: Vec<Share>,
    /// The flame graph, relative to the run's output directory.
    pub flamegraph: String,
}

/// A `perf record` under way.
pub struct Recording {
    child: Child,
    data: PathBuf,
    out: PathBuf,
    settings: Settings,
    seconds: f64,
}

/// Starts sampling process `pid` for `duration`; files go to `out`.
pub fn start(
    pid: u32,
    duration: Duration,
    settings: &Settings,
    out: &Path,
) -> Result<Recording, ProfileError> {
    let data = out.join("perf.data");
    let call_graph = match settings.call_graph {
        // 16 KiB of stack per sample covers the deepest async stacks seen in the server.
        CallGraph::Dwarf => "dwarf,16384",
        CallGraph::Fp => "fp",
    };
    let child = Command::new("perf")
        .args(["record", "--quiet", "-e", "cpu-clock", "-F"])
        .arg(settings.frequency_hz.to_string())
        .args(["--call-graph", call_graph, "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .arg("--")
        .arg("sleep")
        .arg(format!("{:.3}", duration.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ProfileError::NoPerf)?;
    Ok(Recording {
        child,
        data,
        out: out.to_owned(),
        settings: settings.clone(),
        seconds: duration.as_secs_f64(),
    })
}

impl Recording {
    /// Waits for the recording to end, then folds it, writes `profile.folded` and
    /// `flamegraph.svg`, and returns the summary.
    pub async fn finish(self, title: &str) -> Result<CpuProfile, ProfileError> {
        let output = self.child.wait_with_output().await?;
        if !output.status.success() {
            return Err(ProfileError::Record {
                status: output.status.to_string(),
                stderr: last_lines(&output.stderr),
            });
        }
        let script = Command::new("perf")
            .args(["script", "--no-inline", "-i"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(ProfileError::NoPerf)?;
        if !script.status.success() {
            return Err(ProfileError::Script {
                status: script.status.to_string(),
                stderr: last_lines(&script.stderr),
            });
        }
        let folded = fold(&script.stdout)?;
        if folded.is_empty() {
            return Err(ProfileError::Empty);
        }
        std::fs::write(self.out.join("profile.folded"), &folded)?;
        let mut profile = summarize(&folded);
        if profile.cpu_seconds == 0.0 {
            return Err(ProfileError::Empty);
        }
        profile.frequency_hz = self.settings.frequency_hz;
        profile.seconds = self.seconds;
        let svg = flame_graph(&folded, title)?;
        std::fs::write(self.out.join("flamegraph.svg"), svg)?;
        profile.flamegraph = "flamegraph.svg".into();
        Ok(profile)
    }
}

/// Folds `perf script` output into `stack weight` lines, each stack rooted at the thread name
/// and weighted by its samples' periods (nanoseconds, with `cpu-clock`); kernel frames end in
/// `_[k]`.
pub fn fold(script: &[u8]) -> Result<String, ProfileError> {
    let mut options = inferno::collapse::perf::Options::default();
    options.annotate_kernel = true;
    let mut folder = inferno::collapse::perf::Folder::from(options);
    let mut folded = Vec::new();
    folder.collapse(script, &mut folded)?;
    String::from_utf8(folded)
        .map_err(|e| ProfileError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Draws the folded stacks as an interactive SVG flame graph.
pub fn flame_graph(folded: &str, title: &str) -> Result<Vec<u8>, ProfileError> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "ns of CPU".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)?;
    Ok(svg)
}

/// Shares per thread kind and the top functions by self and total CPU time.
pub fn summarize(folded: &str) -> CpuProfile {
    let mut total_ns = 0u64;
    let mut threads: HashMap<String, u64> = HashMap::new();
    let mut self_time: HashMap<String, u64> = HashMap::new();
    let mut components: HashMap<String, u64> = HashMap::new();
    let mut total_time: HashMap<String, u64> = HashMap::new();
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        let mut frames = stack.split(';');
        let Some(thread) = frames.next() else {
            continue;
        };
        total_ns += count;
        *threads.entry(thread_kind(thread)).or_default() += count;
        let functions: Vec<String> = frames.map(function_name).collect();
        let leaf = functions
            .last()
            .cloned()
            .unwrap_or_else(|| "[unknown]".into());
        *components.entry(component(&leaf)).or_default() += count;
        *self_time.entry(leaf).or_default() += count;
        let mut seen = HashSet::new();
        for function in functions {
            if is_project_function(&function) && seen.insert(function.clone()) {
                *total_time.entry(function).or_default() += count;
            }
        }
    }
    let ranked = |counts: HashMap<String, u64>, limit: usize| -> Vec<Share> {
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        // Ties broken by name so that the same profile always reads the same.
        counts.sort_unstable_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
        counts
            .into_iter()
            .take(limit)
            .map(|(name, n)| Share {
                name,
                cpu_ms: n as f64 / 1e6,
                percent: if total_ns == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / total_ns as f64
                },
            })
            .collect()
    };
    CpuProfile {
        cpu_seconds: total_ns as f64 / 1e9,
        threads: ranked(threads, usize::MAX),
        self_time: ranked(self_time, TOP),
        components: ranked(components, TOP),
        total_time: ranked(total_time, TOP),
        ..CpuProfile::default()
    }
}

/// A thread's name with its numbers replaced by `N`, so that a pool's threads add up:
/// `actix-rt|system:0|arbiter:3` becomes `actix-rt|system:N|arbiter:N`.
fn thread_kind(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_number = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            out.push(c);
            in_number = false;
        }
    }
    out
}

/// The component a frame belongs to: its crate, `kernel`, or `native` (C code without a Rust
/// path, such as libc's allocator or `memcmp`).
fn component(frame: &str) -> String {
    if frame.ends_with("_[k]") {
        return "kernel".into();
    }
    let path = frame.trim_start_matches('<');
    let Some((first, _)) = path.split_once("::") else {
        return "native".into();
    };
    // `<u64 as core::iter::Step>::forward`: a primitive type's method belongs to the trait's
    // crate.
    let krate = first.rsplit(" as ").next().unwrap_or(first);
    if krate.is_empty() || krate.contains(' ') {
        "native".into()
    } else {
        krate.to_owned()
    }
}

/// Whether a frame is a function of the project's own crates.
fn is_project_function(frame: &str) -> bool {
    frame.trim_start_matches('<').starts_with("courier_")
}

/// A frame's function without the hash suffix of legacy Rust symbols (`::h0123456789abcdef`).
fn function_name(frame: &str) -> String {
    match frame.rsplit_once("::h") {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => frame.to_owned(),
    }
}

/// The end of a tool's error output, enough to say what went wrong.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two samples as `perf script` prints them (with DWARF stacks; leaf first).
    const SCRIPT: &str = "\
actix-rt|system 1234/1240  1000.000001:   5050505 cpu-clock:
\t    55d0a0001000 fjall::memtable::Memtable::get::h0123456789abcdef+0x10 (/srv/courier-server)
\t    55d0a0002000 courier_store::embedded::queues::Engine::enqueue+0x20 (/srv/courier-server)
\t    55d0a0003000 std::sys::thread::Thread::new::thread_start+0x30 (/srv/courier-server)

tokio-runtime-w 1234/1241  1000.000002:   5050505 cpu-clock:
\t    ffffffff81000000 finish_task_switch+0x40 ([kernel.kallsyms])
\t    55d0a0004000 courier_server::gateway::connection::run+0x50 (/srv/courier-server)
\t    55d0a0003000 std::sys::thread::Thread::new::thread_start+0x30 (/srv/courier-server)

actix-rt|system 1234/1242  1000.000003:   5050505 cpu-clock:
\t    55d0a0001000 fjall::memtable::Memtable::get::h0123456789abcdef+0x10 (/srv/courier-server)
\t    55d0a0005000 courier_store::embedded::queues::Engine::ack_queue+0x20 (/srv/courier-server)
\t    55d0a0003000 std::sys::thread::Thread::new::thread_start+0x30 (/srv/courier-server)

";

    #[test]
    fn folds_and_summarizes_perf_script_output() {
        let folded = fold(SCRIPT.as_bytes()).unwrap();
        assert!(
            folded
                .lines()
                .any(|l| l.starts_with("tokio-runtime-w;") && l.contains("finish_task_switch_[k]")),
            "kernel frames are marked: {folded}"
        );
        let profile = summarize(&folded);
        // Three samples of 5,050,505 ns each.
        assert!((profile.cpu_seconds - 0.015_151_515).abs() < 1e-9);
        assert_eq!(profile.threads[0].name, "actix-rt|system");
        assert!((profile.threads[0].cpu_ms - 10.10101).abs() < 1e-3);
        assert_eq!(profile.self_time[0].name, "fjall::memtable::Memtable::get");
        assert!((profile.self_time[0].percent - 66.666).abs() < 0.01);
        let total: HashMap<_, _> = profile
            .total_time
            .iter()
            .map(|s| (s.name.as_str(), s.percent))
            .collect();
        assert!((total["courier_store::embedded::queues::Engine::enqueue"] - 33.333).abs() < 0.01);
        assert!((total["courier_server::gateway::connection::run"] - 33.333).abs() < 0.01);
        assert!(
            !total.contains_key("std::sys::thread::Thread::new::thread_start"),
            "only the project's functions are totalled"
        );
        let components: HashMap<_, _> = profile
            .components
            .iter()
            .map(|s| (s.name.as_str(), s.percent))
            .collect();
        assert!((components["fjall"] - 66.666).abs() < 0.01);
        assert!((components["kernel"] - 33.333).abs() < 0.01);
    }

    #[test]
    fn a_recursive_function_counts_once_per_sample() {
        let profile = summarize(
            "main;courier_x::f;courier_x::g;courier_x::f 4000000\nmain;courier_x::h 1000000\n",
        );
        let f = profile
            .total_time
            .iter()
            .find(|s| s.name == "courier_x::f")
            .unwrap();
        assert!((f.cpu_ms - 4.0).abs() < 1e-9);
        assert!((f.percent - 80.0).abs() < 1e-9);
        assert_eq!(profile.self_time[0].name, "courier_x::f");
        assert!((profile.cpu_seconds - 0.005).abs() < 1e-12);
    }

    #[test]
    fn thread_numbers_and_symbol_hashes_are_folded_away() {
        assert_eq!(
            thread_kind("actix-rt|system:0|arbiter:13"),
            "actix-rt|system:N|arbiter:N"
        );
        assert_eq!(thread_kind("tokio-runtime-w"), "tokio-runtime-w");
        assert_eq!(function_name("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(function_name("a::b::hello"), "a::b::hello");
        assert_eq!(
            component("<byteview::ByteView as core::cmp::Ord>::cmp"),
            "byteview"
        );
        assert_eq!(component("lsm_tree::table::Block::decode"), "lsm_tree");
        assert_eq!(component("__memcmp_evex_movbe"), "native");
        assert_eq!(
            component("<u64 as core::iter::range::Step>::forward"),
            "core"
        );
        assert_eq!(component("finish_task_switch.isra.0_[k]"), "kernel");
    }

    #[test]
    fn the_flame_graph_is_an_svg_with_the_functions() {
        let svg = flame_graph("main;work 3\nmain;idle 1\n", "a test").unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("work"));
        assert!(svg.contains("a test"));
    }

    /// Profiles a real process end to end: a child of this test binary spinning in a named
    /// function. Needs `perf` (the test suite installs linux-perf).
    #[tokio::test]
    async fn profiles_a_running_process() {
        let out = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cpu_profile::tests::spin",
                "--ignored",
                "--nocapture",
            ])
            .env("COURIER_PROFILE_SPIN", "1")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let settings = Settings {
            frequency_hz: 499,
            call_graph: CallGraph::Dwarf,
        };
        let recording = start(pid, Duration::from_secs(2), &settings, out.path()).unwrap();
        let profile = recording.finish("spin").await.unwrap();
        child.kill().await.unwrap();
        // Two seconds of a process spinning on one core.
        assert!(profile.cpu_seconds > 1.0, "{profile:?}");
        assert!(
            profile
                .total_time
                .iter()
                .any(|s| s.name.contains("spin_in_a_named_function") && s.percent > 50.0),
            "{profile:?}"
        );
        assert!(
            profile.components.iter().any(|c| c.name == "courier_load"),
            "{profile:?}"
        );
        assert!(out.path().join("flamegraph.svg").exists());
        assert!(out.path().join("profile.folded").exists());
    }

    #[test]
    #[ignore = "the process profiled by profiles_a_running_process"]
    fn spin() {
        if std::env::var_os("COURIER_PROFILE_SPIN").is_some() {
            std::hint::black_box(spin_in_a_named_function(std::time::Instant::now()));
        }
    }

    #[inline(never)]
    fn spin_in_a_named_function(started: std::time::Instant) -> u64 {
        let mut x = 0u64;
        while started.elapsed() < Duration::from_secs(30) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        x
    }

    #[tokio::test]
    async fn a_process_that_does_not_exist_is_a_clear_error() {
        let out = tempfile::tempdir().unwrap();
        let settings = Settings {
            frequency_hz: 99,
            call_graph: CallGraph::Fp,
        };
        let recording = start(
            u32::MAX - 1,
            Duration::from_millis(200),
            &settings,
            out.path(),
        );
        let error = match recording {
            Ok(recording) => recording.finish("none").await.unwrap_err(),
            Err(error) => error,
        };
        assert!(matches!(error, ProfileError::Record { .. }), "{error}");
    }
}
