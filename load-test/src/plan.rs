//! What to run: a scenario and its parameters, from flags or a TOML file.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// The scenarios the harness runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioKind {
    /// One-to-one messages between pairs of users, at the profile's rate (messages/s).
    Chat,
    /// Connections opened and held (soak); reports server memory per connection.
    Idle,
    /// Connections opened and closed at the profile's rate (connections/s).
    Churn,
    /// Recipients offline while messages queue up, then all reconnect at once.
    Storm,
    /// One group of all users, all online; the first user sends at the profile's rate and the
    /// time to the last member is measured (the `fan_out` series).
    Group,
    /// One business number of the business API sends to online consumers through the Cloud
    /// API path at the profile's rate, and each consumer answers: API, delivery, webhook and
    /// status latencies (`business.rs`).
    Business,
}

/// Open model: sends follow the schedule whatever the server does. Closed model: each user
/// keeps `window` messages in flight and sends the next when one is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    Open,
    Closed,
}

/// A whole run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub scenario: ScenarioKind,
    /// The server's HTTP URL.
    pub server: String,
    /// The admin token (for verification codes of load users).
    pub admin_token: String,
    /// Load users in all (pairs for chat).
    pub users: u64,
    /// The rate over time: messages/s (chat) or connections/s (churn).
    pub profile: Profile,
    pub model: Model,
    /// Messages in flight per user in the closed model.
    pub window: usize,
    /// Length of the measured phase.
    pub duration_secs: f64,
    /// Load before measuring starts (not counted).
    pub warmup_secs: f64,
    /// Size of each pre-encrypted message.
    pub payload_bytes: usize,
    /// Local addresses to connect from, round robin (e.g. 127.0.0.2, 127.0.0.3).
    pub source_ips: Vec<IpAddr>,
    /// Agent processes (each under the per-process limit on open files).
    pub agents: u32,
    /// Connections opened at once during set-up.
    pub connect_concurrency: usize,
    /// Storm: messages queued per offline recipient.
    pub messages_per_user: u64,
    /// First load-user index (different scenarios can use disjoint users).
    pub user_offset: u64,
    /// The server's pid, to sample its CPU and memory (same machine).
    pub server_pid: Option<u32>,
    /// Pass/fail conditions, e.g. "p99<25ms", "errors<0.1%".
    pub thresholds: Vec<String>,
    /// Where result.json and report.html go.
    pub out: PathBuf,
    /// Where registered load users are kept between runs (servers rate-limit verification
    /// codes per number, so users are registered once and reused).
    #[serde(default = "default_users_cache")]
    pub users_cache: PathBuf,
    /// Chat only: encrypt every message for real with the client SDK (X3DH, Double Ratchet)
    /// instead of sending pre-encrypted payloads. Measures the whole path including client
    /// cryptography, which then also loads the generator.
    #[serde(default)]
    pub encrypt: bool,
    /// Profile the server (`server_pid`) with `perf` during the measured phase.
    #[serde(default)]
    pub cpu_profile: Option<crate::cpu_profile::Settings>,
    /// Business scenario: the business API's base URL and its admin token.
    #[serde(default)]
    pub business_url: String,
    #[serde(default)]
    pub business_admin_token: String,
}

fn default_users_cache() -> PathBuf {
    PathBuf::from(".courier-load/users")
}

impl Plan {
    /// Checks what can be checked before anything runs.
    pub fn validate(&self) -> Result<(), String> {
        if self.users == 0 {
            return Err("users must be at least 1".into());
        }
        if self.scenario == ScenarioKind::Chat && self.users < 2 {
            return Err("chat needs at least 2 users".into());
        }
        if self.agents == 0 {
            return Err("agents must be at least 1".into());
        }
        if self.users < u64::from(self.agents) * 2 && self.scenario != ScenarioKind::Churn {
            return Err(format!(
                "{} users cannot be split over {} agents in pairs",
                self.users, self.agents
            ));
        }
        if !(self.duration_secs.is_finite() && self.duration_secs > 0.0) {
            return Err("duration must be positive".into());
        }
        if self.encrypt && self.scenario != ScenarioKind::Chat {
            return Err("--encrypt applies to the chat scenario".into());
        }
        if self.encrypt && self.model == Model::Closed {
            return Err("--encrypt runs the open model only".into());
        }
        if self.scenario == ScenarioKind::Business
            && (self.agents != 1 || self.business_url.is_empty())
        {
            return Err(
                "the business scenario runs in one agent and needs the business API's URL".into(),
            );
        }
        if self.scenario == ScenarioKind::Group && self.agents != 1 {
            return Err("the group scenario runs in one agent (it times the last arrival)".into());
        }
        if self.payload_bytes < 8 {
            return Err("payload must be at least 8 bytes (it carries the send time)".into());
        }
        if self.model == Model::Closed && self.window == 0 {
            return Err("the closed model needs a window of at least 1".into());
        }
        if let Some(profile) = &self.cpu_profile {
            if self.server_pid.is_none() {
                return Err("profiling needs the server's pid (--server-pid)".into());
            }
            if !(1..=10_000).contains(&profile.frequency_hz) {
                return Err("the profile frequency must be 1 to 10,000 samples/s".into());
            }
        }
        let per_agent = self.users / u64::from(self.agents);
        if per_agent > 19_000 {
            return Err(format!(
                "{per_agent} connections per agent exceed what one process can open here \
                 (20,000 files); use more --agents"
            ));
        }
        let peak = self.profile.peak(self.duration_secs);
        if matches!(
            self.scenario,
            ScenarioKind::Chat | ScenarioKind::Churn | ScenarioKind::Group | ScenarioKind::Business
        ) && peak <= 0.0
        {
            return Err("the profile never asks for anything (rate 0)".into());
        }
        if peak > 10_000_000.0 {
            return Err(format!(
                "a rate of {peak}/s is not something to ask of one run"
            ));
        }
        Ok(())
    }

    /// Users `[first, first + count)` handled by agent `index` of `agents`.
    pub fn slice(&self, index: u32) -> (u64, u64) {
        let agents = u64::from(self.agents);
        let base = self.users / agents;
        let mut count = base;
        if u64::from(index) == agents - 1 {
            count += self.users % agents;
        }
        (self.user_offset + u64::from(index) * base, count)
    }
}
