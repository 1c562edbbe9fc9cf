//! The controller: checks the plan, starts the agents, shows live progress, samples the server,
//! merges the agents' results exactly and writes `result.json` and `report.html`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::cpu_profile::{self, CpuProfile, ProfileError};
use crate::plan::{Plan, ScenarioKind};
use crate::result::{Interval, RunResult, series};
use crate::sampler::ProcessSampler;
use crate::threshold::Threshold;
use crate::{merge, report};

enum AgentLine {
    Provisioned,
    Ready,
    Interval(u32, Box<Interval>),
    Done,
    Exited(u32),
}

/// Runs `plan`; `Ok(true)` when every threshold passed.
pub async fn run(plan: Plan) -> anyhow::Result<bool> {
    plan.validate()
        .map_err(|e| anyhow::anyhow!("invalid plan: {e}"))?;
    let thresholds = plan
        .thresholds
        .iter()
        .map(|t| t.parse::<Threshold>())
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("cannot create {}", plan.out.display()))?;
    check_server(&plan.server).await?;

    let plan_path = plan.out.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan)?)?;
    let mut server = plan.server_pid.map(ProcessSampler::new);

    let (lines_tx, mut lines) = mpsc::channel(1024);
    let mut children = Vec::new();
    for index in 0..plan.agents {
        children.push(spawn_agent(&plan_path, &plan.out, index, lines_tx.clone())?);
    }
    drop(lines_tx);

    eprintln!("setting up {} agent(s): registering users…", plan.agents);
    let mut exited = Vec::new();
    let mut provisioned = 0;
    while provisioned + exited.len() < plan.agents as usize {
        match lines.recv().await {
            Some(AgentLine::Provisioned) => provisioned += 1,
            Some(AgentLine::Exited(index)) => exited.push(index),
            Some(_) => {}
            None => break,
        }
    }
    let baseline_rss = server.as_ref().and_then(|s| s.rss_bytes());
    tell_agents(&mut children, "CONNECT").await;
    eprintln!("connecting users…");
    let mut ready = 0;
    while ready + exited.len() < plan.agents as usize {
        match lines.recv().await {
            Some(AgentLine::Ready) => ready += 1,
            Some(AgentLine::Exited(index)) => exited.push(index),
            Some(_) => {}
            None => break,
        }
    }
    if ready == 0 {
        anyhow::bail!("no agent got ready (see their messages above)");
    }
    let connected_rss = server.as_ref().and_then(|s| s.rss_bytes());
    tell_agents(&mut children, "GO").await;
    eprintln!(
        "running {:?} for {} s",
        plan.scenario,
        plan.duration_secs + plan.warmup_secs
    );

    let started = Instant::now();
    let profiling = start_profile(&plan);
    let mut by_second: BTreeMap<usize, Vec<Interval>> = BTreeMap::new();
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut server_samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut done = 0;
    while done + exited.len() < plan.agents as usize {
        tokio::select! {
            line = lines.recv() => match line {
                Some(AgentLine::Interval(index, interval)) => {
                    let k = seen.entry(index).or_default();
                    by_second.entry(*k).or_default().push(*interval);
                    *k += 1;
                    if let Some(intervals) = by_second.get(&(*k - 1))
                        && intervals.len() == ready
                    {
                        progress(intervals);
                    }
                }
                Some(AgentLine::Done) => done += 1,
                Some(AgentLine::Exited(index)) => {
                    if !exited.contains(&index) {
                        exited.push(index);
                    }
                }
                Some(AgentLine::Ready | AgentLine::Provisioned) => {}
                None => break,
            },
            _ = tick.tick() => {
                if let Some(sampler) = server.as_mut()
                    && let Some(sample) = sampler.sample(started.elapsed().as_secs_f64())
                {
                    server_samples.push(sample);
                }
            }
        }
    }
    for mut child in children {
        // Agents exit by themselves once done; wait so none is left behind.
        let _ = child.wait().await;
    }
    let mut profile_notes = Vec::new();
    let profile = match profiling {
        Some(task) if done == 0 => {
            task.abort();
            profile_notes.push("no CPU profile: no agent finished its run".to_owned());
            None
        }
        Some(task) => {
            eprintln!("folding the CPU profile…");
            let folded = match task.await {
                Ok(folded) => folded.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            folded
                .map_err(|error| profile_notes.push(format!("no CPU profile: {error}")))
                .ok()
        }
        None => None,
    };

    let mut results = Vec::new();
    let mut notes = Vec::new();
    for index in 0..plan.agents {
        let path = plan.out.join(format!("agent-{index}.json"));
        match std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                serde_json::from_slice::<RunResult>(&bytes).map_err(anyhow::Error::from)
            }) {
            Ok(result) => results.push(result),
            Err(error) => notes.push(format!(
                "agent {index} wrote no result ({error}); figures are partial"
            )),
        }
    }
    if results.is_empty() {
        anyhow::bail!("no agent produced a result");
    }
    let mut result = merge::merge(results);
    result.notes.extend(notes);
    result.notes.extend(profile_notes);
    result.server = server_samples;
    result.profile = profile;
    if plan.scenario == ScenarioKind::Idle
        && let (Some(before), Some(after)) = (baseline_rss, connected_rss)
    {
        let connections = result
            .figures
            .get("connections_total")
            .copied()
            .unwrap_or(0.0);
        if connections > 0.0 {
            result.figures.insert(
                "server_bytes_per_connection".into(),
                (after.saturating_sub(before)) as f64 / connections,
            );
            result
                .figures
                .insert("server_rss_before_bytes".into(), before as f64);
            result
                .figures
                .insert("server_rss_connected_bytes".into(), after as f64);
        }
    }
    let verdicts: Vec<_> = thresholds.iter().map(|t| t.evaluate(&result)).collect();
    write_outputs(&plan.out, &result, &verdicts)?;
    println!("{}", report::summary(&result, &verdicts));
    println!("result: {}", plan.out.join("result.json").display());
    println!("report: {}", plan.out.join("report.html").display());
    Ok(verdicts.iter().all(|v| v.passed))
}

/// Starts profiling the server when the measured phase begins (after the warm-up), for its
/// length; the task ends with the folded profile.
fn start_profile(plan: &Plan) -> Option<tokio::task::JoinHandle<Result<CpuProfile, ProfileError>>> {
    let settings = plan.cpu_profile.clone()?;
    let pid = plan.server_pid?;
    let out = plan.out.clone();
    let warmup = Duration::from_secs_f64(plan.warmup_secs);
    let duration = Duration::from_secs_f64(plan.duration_secs);
    let title = format!(
        "courier-server (pid {pid}) during a {:?} run",
        plan.scenario
    );
    Some(tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        cpu_profile::start(pid, duration, &settings, &out)?
            .finish(&title)
            .await
    }))
}

/// Writes a command line to every agent.
async fn tell_agents(children: &mut [Child], command: &str) {
    for child in children {
        if let Some(stdin) = child.stdin.as_mut() {
            // An agent that already exited is reported when results are collected.
            let _ = stdin.write_all(format!("{command}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }
}

/// Writes `result.json` and `report.html` into `out`.
pub fn write_outputs(
    out: &Path,
    result: &RunResult,
    verdicts: &[crate::threshold::Verdict],
) -> anyhow::Result<()> {
    std::fs::write(out.join("result.json"), serde_json::to_vec(result)?)?;
    std::fs::write(out.join("report.html"), report::html(result, verdicts))?;
    Ok(())
}

async fn check_server(url: &str) -> anyhow::Result<()> {
    let health = format!("{}/healthz", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&health)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("server unreachable at {url}"))?;
    if !response.status().is_success() {
        anyhow::bail!("server at {url} answered {} to /healthz", response.status());
    }
    Ok(())
}

fn spawn_agent(
    plan_path: &Path,
    out: &Path,
    index: u32,
    lines: mpsc::Sender<AgentLine>,
) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find this program to start agents")?;
    let mut child = Command::new(exe)
        .arg("agent")
        .arg("--plan")
        .arg(plan_path)
        .arg("--index")
        .arg(index.to_string())
        .arg("--result")
        .arg(out.join(format!("agent-{index}.json")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start an agent")?;
    let stdout = child.stdout.take().context("agent stdout")?;
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let parsed = if line == "PROVISIONED" {
                Some(AgentLine::Provisioned)
            } else if line == "READY" {
                Some(AgentLine::Ready)
            } else if line == "DONE" {
                Some(AgentLine::Done)
            } else if let Some(json) = line.strip_prefix("INTERVAL ") {
                serde_json::from_str(json)
                    .ok()
                    .map(|i| AgentLine::Interval(index, Box::new(i)))
            } else {
                None
            };
            if let Some(parsed) = parsed
                && lines.send(parsed).await.is_err()
            {
                return;
            }
        }
        // The controller may have stopped listening; nothing else to do.
        let _ = lines.send(AgentLine::Exited(index)).await;
    });
    Ok(child)
}

/// One line of live progress from the agents' intervals of one second.
fn progress(intervals: &[Interval]) {
    let mut merged = Interval::default();
    for interval in intervals {
        merged.t = merged.t.max(interval.t);
        merged.target += interval.target;
        merged.sent += interval.sent;
        merged.acked += interval.acked;
        merged.delivered += interval.delivered;
        merged.errors += interval.errors;
        merged.connections += interval.connections;
        merged.connects += interval.connects;
        for (name, hist) in &interval.latency {
            merged.latency.entry(name.clone()).or_default().merge(hist);
        }
    }
    let p = |series: &str, q: f64| {
        merged
            .latency
            .get(series)
            .map(|h| h.quantile_us(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    };
    eprintln!(
        "t={:>5.1}s target={:>7} sent={:>7} acked={:>7} delivered={:>7} conns={:>6} connects={:>5} \
         errors={:>4} delivery p50={:.2}ms p99={:.2}ms ack p99={:.2}ms",
        merged.t,
        merged.target,
        merged.sent,
        merged.acked,
        merged.delivered,
        merged.connections,
        merged.connects,
        merged.errors,
        p(series::DELIVERY, 0.5),
        p(series::DELIVERY, 0.99),
        p(series::SERVER_ACK, 0.99),
    );
}
