//! Command-line interface of `courier-load`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::cpu_profile::{CallGraph, Settings};
use crate::plan::{Model, Plan, ScenarioKind};
use crate::profile::Profile;
use crate::result::RunResult;
use crate::threshold::Threshold;
use crate::{agent, controller, echo, merge, report};

#[derive(Parser)]
#[command(
    name = "courier-load",
    version,
    about = "Load harness for a Courier deployment"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario against a running server: live progress, summary, result.json,
    /// report.html, and a non-zero exit if a threshold fails.
    Run(Box<RunArgs>),
    /// Measure the raw loopback ceiling (TCP echo round trips per second).
    Echo {
        #[arg(long, default_value_t = 10)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        bytes: usize,
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Merge agents' result files (e.g. from several machines) into one result and report.
    Merge {
        /// Result files written by agents or runs.
        files: Vec<PathBuf>,
        #[arg(long, default_value = "load-results")]
        out: PathBuf,
        #[arg(long = "threshold")]
        thresholds: Vec<String>,
    },
    /// Internal: one agent process of a run (started by `run`).
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        index: u32,
        #[arg(long)]
        result: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A TOML plan file (the fields of the flags below, snake_case); flags are then ignored.
    #[arg(long)]
    file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "chat")]
    scenario: ScenarioKind,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The admin token (else read from --admin-token-file).
    #[arg(long, env = "COURIER_ADMIN_TOKEN")]
    admin_token: Option<String>,
    #[arg(long, default_value = "data/admin.token")]
    admin_token_file: PathBuf,
    /// Business scenario: the business API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8090")]
    business_url: String,
    /// Business scenario: its admin token (else read from --business-admin-token-file).
    #[arg(long, env = "COURIER_BUSINESS_ADMIN_TOKEN")]
    business_admin_token: Option<String>,
    #[arg(long, default_value = "data/business-admin.token")]
    business_admin_token_file: PathBuf,
    #[arg(long, default_value_t = 100)]
    users: u64,
    /// Rate profile: N, constant:N, ramp:FROM:TO, step:START:STEP:EVERY_SECS,
    /// spike:BASE:PEAK:AT_SECS:FOR_SECS (messages/s for chat, connections/s for churn).
    #[arg(long, default_value = "1000")]
    rate: Profile,
    #[arg(long, value_enum, default_value = "open")]
    model: Model,
    /// Messages in flight per user (closed model).
    #[arg(long, default_value_t = 1)]
    window: usize,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Comma-separated local addresses to connect from (127.0.0.2,127.0.0.3,…).
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    #[arg(long, default_value_t = 1)]
    agents: u32,
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    #[arg(long, default_value_t = 10)]
    messages_per_user: u64,
    #[arg(long, default_value_t = 0)]
    user_offset: u64,
    /// The server's pid (same machine), to sample its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Pass/fail condition, repeatable: "p99<25ms", "server_ack.p99<10ms", "errors<0.1%",
    /// "rate>=45000".
    #[arg(long = "threshold")]
    thresholds: Vec<String>,
    #[arg(long, default_value = "load-results")]
    out: PathBuf,
    /// Where registered load users are kept for the next runs.
    #[arg(long, default_value = ".courier-load/users")]
    users_cache: PathBuf,
    /// Chat: encrypt every message for real with the client SDK (loads the generator too).
    #[arg(long)]
    encrypt: bool,
    /// Profile the server with `perf` during the measured phase (needs --server-pid): a flame
    /// graph and where the time goes, in the report.
    #[arg(long)]
    profile: bool,
    /// Samples per second per thread of the profile.
    #[arg(long, default_value_t = 199)]
    profile_frequency: u32,
    /// How the profile captures stacks: dwarf (any build) or fp (builds with frame pointers).
    #[arg(long, value_enum, default_value = "dwarf")]
    profile_call_graph: CallGraph,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl RunArgs {
    fn into_plan(self) -> anyhow::Result<Plan> {
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let plan: Plan = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("malformed plan file {}: {e}", file.display()))?;
            return Ok(plan);
        }
        let admin_token = match self.admin_token {
            Some(token) => token,
            None => std::fs::read_to_string(&self.admin_token_file)
                .with_context(|| {
                    format!(
                        "cannot read the admin token from {} (use --admin-token)",
                        self.admin_token_file.display()
                    )
                })?
                .trim()
                .to_owned(),
        };
        let business_admin_token = match (self.scenario, self.business_admin_token) {
            (_, Some(token)) => token,
            (ScenarioKind::Business, None) => {
                std::fs::read_to_string(&self.business_admin_token_file)
                    .with_context(|| {
                        format!(
                            "cannot read the business admin token from {} (use \
                             --business-admin-token)",
                            self.business_admin_token_file.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
            (_, None) => String::new(),
        };
        Ok(Plan {
            scenario: self.scenario,
            server: self.server,
            admin_token,
            users: self.users,
            profile: self.rate,
            model: self.model,
            window: self.window,
            duration_secs: self.duration.as_secs_f64(),
            warmup_secs: self.warmup.as_secs_f64(),
            payload_bytes: self.payload_bytes,
            source_ips: self.source_ips,
            agents: self.agents,
            connect_concurrency: self.connect_concurrency,
            messages_per_user: self.messages_per_user,
            user_offset: self.user_offset,
            server_pid: self.server_pid,
            thresholds: self.thresholds,
            out: self.out,
            users_cache: self.users_cache,
            encrypt: self.encrypt,
            business_url: self.business_url,
            business_admin_token,
            cpu_profile: self.profile.then_some(Settings {
                frequency_hz: self.profile_frequency,
                call_graph: self.profile_call_graph,
            }),
        })
    }
}

/// Runs the command; the exit code is 0 when everything passed.
pub async fn run(args: Args) -> anyhow::Result<bool> {
    match args.command {
        Command::Run(run) => controller::run(run.into_plan()?).await,
        Command::Echo {
            connections,
            bytes,
            duration,
        } => {
            let rate = echo::measure(connections, bytes, duration).await?;
            println!(
                "loopback TCP echo: {rate:.0} round trips/s ({connections} connections, \
                 {bytes}-byte messages, {:.0} s)",
                duration.as_secs_f64()
            );
            Ok(true)
        }
        Command::Merge {
            files,
            out,
            thresholds,
        } => {
            let thresholds = thresholds
                .iter()
                .map(|t| t.parse::<Threshold>())
                .collect::<Result<Vec<_>, _>>()?;
            let mut results = Vec::new();
            for file in &files {
                let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
                let result: RunResult = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{} is not a result file: {e}", file.display()))?;
                results.push(result);
            }
            anyhow::ensure!(!results.is_empty(), "no result files given");
            let result = merge::merge(results);
            let verdicts: Vec<_> = thresholds.iter().map(|t| t.evaluate(&result)).collect();
            std::fs::create_dir_all(&out)?;
            controller::write_outputs(&out, &result, &verdicts)?;
            println!("{}", report::summary(&result, &verdicts));
            Ok(verdicts.iter().all(|v| v.passed))
        }
        Command::Agent {
            plan,
            index,
            result,
        } => {
            let bytes = std::fs::read(&plan)?;
            let plan: Plan = serde_json::from_slice(&bytes)?;
            agent::run(plan, index, &result).await?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
