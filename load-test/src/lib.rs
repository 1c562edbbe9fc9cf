//! The Courier load-testing harness.
//!
//! Layout:
//! - [`cli`]: the `courier-load` command line (`run`, `echo`, `merge`).
//! - [`plan`]: what to run (scenario, rate profile, users, agents), from flags or TOML.
//! - [`profile`]: rate profiles (constant, ramp, step, spike) and the send schedule.
//! - [`open_loop`]: the open-model send loop and the measured phase, shared by scenarios.
//! - [`controller`]: starts agents, live progress, samples the server, merges, reports.
//! - [`agent`]: one process's share of the users, per scenario (chat, idle, churn, storm).
//! - [`driver`]: one load connection (scheduled writer, timing reader).
//! - [`encrypted`]: the chat scenario with real end-to-end encryption through the client SDK.
//! - [`business`]: the business scenario: the Cloud API path, consumers and a webhook receiver.
//! - [`provision`]: registering load users through the real API.
//! - [`recorder`]: counters and HdrHistograms per interval.
//! - [`sampler`]: CPU and memory of processes from `/proc`.
//! - [`cpu_profile`]: a `perf` profile of the server: where its time goes, as a flame graph.
//! - [`echo`]: the raw loopback ceiling (TCP echo).
//! - [`result`]: what a run measured ([`result::RunResult`]), mergeable across agents.
//! - [`merge`]: exact merging of agents' results.
//! - [`threshold`]: pass/fail conditions such as `p99<50ms` or `errors<0.1%`.
//! - [`report`]: the terminal summary and the HTML report with time-series plots.
//!
//! Latency is measured from each message's *scheduled* send time (open model), so a slow
//! server cannot hide behind a generator that waits for it (no coordinated omission).

pub mod agent;
pub mod business;
pub mod cli;
pub mod controller;
pub mod cpu_profile;
pub mod driver;
pub mod echo;
pub mod encrypted;
pub mod merge;
pub mod open_loop;
pub mod plan;
pub mod profile;
pub mod provision;
pub mod recorder;
pub mod report;
pub mod result;
pub mod sampler;
pub mod threshold;
