//! An agent: one process running its share of a plan's users, reporting each interval on
//! stdout and its result to a file. The controller starts agents, tells them when to go, and
//! merges what they measured.
//!
//! Lines on stdout: `READY` (set-up done), `INTERVAL <json>` (each second), `DONE` (result
//! written). On stdin the agent waits for `GO` before the measured phase.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use courier_client::Api;

use crate::driver::{self, Command, Link, LinkSettings};
use crate::open_loop;
use crate::plan::{Model, Plan, ScenarioKind};
use crate::provision::{self, LoadUser};
use crate::recorder::{Recorder, unix_micros};
use crate::result::RunResult;
use crate::sampler::ProcessSampler;

/// Runs agent `index` of `plan`, writing its result to `result_path`.
pub async fn run(plan: Plan, index: u32, result_path: &Path) -> anyhow::Result<()> {
    if plan.encrypt || plan.scenario == ScenarioKind::Business {
        let result = if plan.encrypt {
            crate::encrypted::chat(&plan, index).await?
        } else {
            crate::business::run(&plan, index).await?
        };
        std::fs::write(result_path, serde_json::to_vec(&result)?)?;
        println!("DONE");
        return Ok(());
    }
    let api = Api::new(&plan.server)?;
    let (first, count) = plan.slice(index);
    std::fs::create_dir_all(&plan.users_cache)
        .with_context(|| format!("cannot create {}", plan.users_cache.display()))?;
    let server_key: String = plan
        .server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let cache = plan
        .users_cache
        .join(format!("{server_key}-{first}-{count}.json"));
    let users = provision::provision(&api, &plan.admin_token, first, count, 32, Some(&cache))
        .await
        .context("registering load users")?;
    // The controller samples the server between registration and connections (so that memory
    // per connection excludes the accounts), then says CONNECT.
    wait_for_line("PROVISIONED", "CONNECT").await?;
    let recorder = Arc::new(Recorder::new());
    let settings = LinkSettings {
        gateway_url: api.gateway_url(),
        payload_bytes: plan.payload_bytes,
        closed_window: (plan.model == Model::Closed).then_some(plan.window),
        fan_out: None,
        run_id: format!("{:x}-{index}", unix_micros()),
    };
    let share = 1.0 / f64::from(plan.agents);
    let result = match plan.scenario {
        ScenarioKind::Chat => chat(&plan, &users, &settings, &recorder, share).await?,
        ScenarioKind::Idle => idle(&plan, &users, &settings, &recorder).await?,
        ScenarioKind::Churn => churn(&plan, &users, &settings, &recorder, share).await?,
        ScenarioKind::Storm => storm(&plan, &users, &settings, &recorder).await?,
        ScenarioKind::Group => group(&plan, &users, &settings, &recorder).await?,
        ScenarioKind::Business => unreachable!("run by crate::business above"),
    };
    std::fs::write(result_path, serde_json::to_vec(&result)?)?;
    println!("DONE");
    Ok(())
}

pub(crate) fn source(plan: &Plan, i: usize) -> Option<IpAddr> {
    (!plan.source_ips.is_empty()).then(|| plan.source_ips[i % plan.source_ips.len()])
}

/// Connects `users`, `connect_concurrency` at a time.
async fn connect_all(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<Vec<(Link, Option<Arc<tokio::sync::Semaphore>>)>> {
    use futures_util::StreamExt;
    let links: Vec<_> = futures_util::stream::iter(users.iter().enumerate())
        .map(|(i, user)| driver::open(user, source(plan, i), settings, Arc::clone(recorder)))
        .buffered(plan.connect_concurrency.max(1))
        .collect()
        .await;
    links
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .context("connecting load users")
}

/// Announces readiness and waits for the controller's `GO`.
pub(crate) async fn ready_and_wait() -> anyhow::Result<()> {
    wait_for_line("READY", "GO").await
}

/// Prints `announce` and waits until the controller writes `expected` on stdin.
pub(crate) async fn wait_for_line(announce: &str, expected: &str) -> anyhow::Result<()> {
    println!("{announce}");
    let mut line = String::new();
    loop {
        line.clear();
        // One byte at a time: a buffered reader would swallow the next command.
        let mut byte = [0u8; 1];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut tokio::io::stdin(), &mut byte).await?;
            if n == 0 {
                anyhow::bail!("the controller went away before {expected}");
            }
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0] as char);
        }
        if line.trim() == expected {
            return Ok(());
        }
    }
}

/// Rotates intervals each second, printing them and sampling this process, until `stop`.
pub(crate) fn start_ticker(
    recorder: Arc<Recorder>,
    started: Instant,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<crate::result::ProcessSample>> {
    tokio::spawn(async move {
        let mut stop = stop;
        let mut own = ProcessSampler::own();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            let t = started.elapsed().as_secs_f64();
            let interval = recorder.rotate(t);
            if let Some(sample) = own.sample(t) {
                samples.push(sample);
            }
            if let Ok(json) = serde_json::to_string(&interval) {
                println!("INTERVAL {json}");
            }
        }
        let t = started.elapsed().as_secs_f64();
        recorder.rotate(t);
        samples
    })
}

pub(crate) fn parameters(plan: &Plan) -> serde_json::Value {
    let mut value = serde_json::to_value(plan).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.remove("admin_token");
        map.remove("business_admin_token");
    }
    value
}

async fn chat(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
    share: f64,
) -> anyhow::Result<RunResult> {
    let links = connect_all(plan, users, settings, recorder).await?;
    ready_and_wait().await?;
    let addresses: Vec<_> = links.iter().map(|(l, _)| l.address).collect();
    let partner = |i: usize| {
        addresses[if i.is_multiple_of(2) {
            (i + 1) % addresses.len()
        } else {
            i - 1
        }]
    };
    let phase = match plan.model {
        Model::Open => {
            let mut cursor = 0usize;
            open_loop::run(
                plan.profile.scaled(share),
                plan.warmup_secs,
                plan.duration_secs,
                recorder,
                |n, scheduled_us| {
                    let i = cursor % links.len();
                    cursor += 1;
                    let command = Command::Send {
                        scheduled_us,
                        to: partner(i),
                        id: n + 1,
                    };
                    if !links[i].0.offer(command) {
                        recorder.error("generator_backlog");
                    }
                },
            )
            .await
        }
        Model::Closed => {
            let phase = open_loop::Phase::measure_now(recorder);
            let deadline = Instant::now() + Duration::from_secs_f64(plan.duration_secs);
            let mut tasks = Vec::new();
            for (i, (link, permits)) in links.iter().enumerate() {
                let Some(permits) = permits.clone() else {
                    continue;
                };
                let to = partner(i);
                let commands = link_sender(link);
                tasks.push(tokio::spawn(async move {
                    let mut id = 0u64;
                    while Instant::now() < deadline {
                        let Ok(permit) = permits.acquire().await else {
                            break;
                        };
                        permit.forget();
                        id += 1;
                        let command = Command::Send {
                            scheduled_us: unix_micros(),
                            to,
                            id,
                        };
                        if !commands.send(command).await {
                            break;
                        }
                    }
                }));
            }
            for task in tasks {
                // A task ends at the deadline or when its connection is gone.
                let _ = task.await;
            }
            phase
        }
    };
    // Let messages in flight arrive before the books close.
    let generator = phase.finish(Duration::from_secs(2)).await;
    let mut result = recorder.finish("chat", parameters(plan));
    // Rates are over the scheduled phase; the grace period after it only adds late arrivals.
    result.duration_secs = plan.duration_secs;
    result.generator = generator;
    behind_schedule_note(&mut result);
    for (link, _) in links {
        link.close();
    }
    Ok(result)
}

/// A cloneable handle for the closed model's sender tasks.
fn link_sender(link: &Link) -> LinkHandle {
    LinkHandle(link.sender())
}

struct LinkHandle(tokio::sync::mpsc::Sender<Command>);

impl LinkHandle {
    async fn send(&self, command: Command) -> bool {
        self.0.send(command).await.is_ok()
    }
}

pub(crate) fn behind_schedule_note(result: &mut RunResult) {
    let lag = result
        .latency
        .get(crate::result::series::SEND_LAG)
        .map(|h| h.quantile_us(0.99))
        .unwrap_or(0);
    if lag > 10_000 {
        result.notes.push(format!(
            "the generator fell behind its schedule (p99 send lag {:.1} ms): latencies include \
             that delay (no coordinated omission), but the load was not applied on time",
            lag as f64 / 1000.0
        ));
    }
    let busy = result
        .generator
        .iter()
        .map(|s| s.cpu_percent)
        .fold(0.0, f64::max);
    if busy > 90.0 {
        result.notes.push(format!(
            "a generator process peaked at {busy:.0}% CPU: add agents or machines before \
             reading the figures as the server's limit"
        ));
    }
}

async fn idle(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<RunResult> {
    recorder.start_measuring();
    let links = connect_all(plan, users, settings, recorder).await?;
    ready_and_wait().await?;
    // Connections were counted while they opened; the phase only adds the ticker.
    let phase = open_loop::Phase::measure_now(recorder);
    let generator = phase
        .finish(Duration::from_secs_f64(plan.duration_secs))
        .await;
    let mut result = recorder.finish("idle", parameters(plan));
    result.generator = generator;
    result
        .figures
        .insert("connections_total".into(), links.len() as f64);
    for (link, _) in links {
        link.close();
    }
    Ok(result)
}

async fn churn(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
    share: f64,
) -> anyhow::Result<RunResult> {
    ready_and_wait().await?;
    let mut tasks = tokio::task::JoinSet::new();
    let phase = open_loop::run(
        plan.profile.scaled(share),
        0.0,
        plan.duration_secs,
        recorder,
        |n, _scheduled| {
            let i = n as usize % users.len();
            let user = users[i].clone();
            let bind = source(plan, i);
            let settings = settings.clone();
            let recorder = Arc::clone(recorder);
            tasks.spawn(async move {
                match driver::open(&user, bind, &settings, Arc::clone(&recorder)).await {
                    Ok((link, _)) => link.close(),
                    Err(error) => recorder.error(format!("connect:{}", error_kind(&error))),
                }
            });
            while tasks.try_join_next().is_some() {}
        },
    )
    .await;
    while tasks.join_next().await.is_some() {}
    let generator = phase.finish(Duration::ZERO).await;
    let mut result = recorder.finish("churn", parameters(plan));
    result.generator = generator;
    behind_schedule_note(&mut result);
    Ok(result)
}

fn error_kind(error: &courier_client::ClientError) -> String {
    match error {
        courier_client::ClientError::Api { status, .. } => format!("http_{status}"),
        courier_client::ClientError::Transport(_) => "transport".into(),
        _ => "other".into(),
    }
}

async fn storm(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<RunResult> {
    // Even users send, odd users are the offline recipients.
    let (senders, recipients): (Vec<_>, Vec<_>) = users
        .iter()
        .enumerate()
        .partition(|(i, _)| i.is_multiple_of(2));
    let senders: Vec<LoadUser> = senders.into_iter().map(|(_, u)| u.clone()).collect();
    let recipients: Vec<LoadUser> = recipients.into_iter().map(|(_, u)| u.clone()).collect();
    let closed = LinkSettings {
        closed_window: Some(64),
        ..settings.clone()
    };
    let links = connect_all(plan, &senders, &closed, recorder).await?;
    let expected = recipients.len() as u64 * plan.messages_per_user;
    let mut id = 0u64;
    for (i, (link, permits)) in links.iter().enumerate() {
        let to = recipients[i % recipients.len()].address();
        for _ in 0..plan.messages_per_user {
            if let Some(permits) = permits {
                permits.acquire().await?.forget();
            }
            id += 1;
            let command = Command::Send {
                scheduled_us: unix_micros(),
                to,
                id,
            };
            link.send(command).await;
        }
    }
    // Wait until every queued message is acknowledged as sent.
    for (_, permits) in &links {
        if let Some(permits) = permits {
            let _ = permits.acquire_many(64).await?;
        }
    }
    for (link, _) in links {
        link.close();
    }
    ready_and_wait().await?;
    let phase = open_loop::Phase::measure_now(recorder);
    let started = Instant::now();
    let storm_plan = Plan {
        connect_concurrency: recipients.len().max(1),
        ..plan.clone()
    };
    let links = connect_all(&storm_plan, &recipients, settings, recorder).await?;
    let deadline = started + Duration::from_secs_f64(plan.duration_secs.max(1.0));
    let drained = loop {
        let delivered = recorder.total_delivered();
        if delivered >= expected {
            break Some(started.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let generator = phase.finish(Duration::ZERO).await;
    let mut result = recorder.finish("storm", parameters(plan));
    result.generator = generator;
    result
        .figures
        .insert("queued_total".into(), expected as f64);
    match drained {
        Some(secs) => {
            result.figures.insert("drain_secs".into(), secs);
        }
        None => result.notes.push(format!(
            "the queues did not drain within {} s",
            plan.duration_secs
        )),
    }
    result.notes.push(
        "storm: the delivery series is the age of queued messages at delivery, not a latency"
            .into(),
    );
    for (link, _) in links {
        link.close();
    }
    Ok(result)
}

/// Creates a group of `members` on a connection of `creator`; returns its id.
async fn create_group(
    settings: &LinkSettings,
    creator: &LoadUser,
    members: Vec<String>,
) -> anyhow::Result<courier_protocol::GroupId> {
    use courier_protocol::v1::{ClientFrame, ErrorCode, GroupCreate, client_frame, server_frame};
    let (mut connection, _) = courier_client::GatewayConnection::connect(
        &settings.gateway_url,
        &creator.credentials,
        &Default::default(),
    )
    .await?;
    let frame = ClientFrame {
        request_id: 1,
        body: Some(client_frame::Body::CreateGroup(GroupCreate {
            subject: "load test".into(),
            members,
            settings: None,
        })),
    };
    connection.send(&frame).await?;
    loop {
        match connection.recv().await? {
            courier_client::Incoming::Frame(frame) => {
                if let Some(server_frame::Body::GroupResult(result)) = frame.body {
                    anyhow::ensure!(
                        result.status == ErrorCode::Ok as i32,
                        "the server refused the group: {}",
                        result.message
                    );
                    let info = result.group.context("a group result without the group")?;
                    connection.close().await;
                    return Ok(info.group_id.parse()?);
                }
            }
            courier_client::Incoming::Closed { code, reason } => {
                anyhow::bail!("closed while creating the group: {code} {reason}")
            }
        }
    }
}

async fn group(
    plan: &Plan,
    users: &[LoadUser],
    settings: &LinkSettings,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<RunResult> {
    let members = users[1..]
        .iter()
        .map(|u| u.address().user.to_string())
        .collect();
    let group = create_group(settings, &users[0], members).await?;
    let fan_out = Arc::new(driver::FanOut::new(users.len() as u64 - 1));
    let settings = LinkSettings {
        fan_out: Some(Arc::clone(&fan_out)),
        ..settings.clone()
    };
    let links = connect_all(plan, users, &settings, recorder).await?;
    ready_and_wait().await?;
    let phase = open_loop::run(
        plan.profile.clone(),
        plan.warmup_secs,
        plan.duration_secs,
        recorder,
        |n, scheduled_us| {
            let command = Command::GroupSend {
                scheduled_us,
                group,
                id: n + 1,
            };
            if !links[0].0.offer(command) {
                recorder.error("generator_backlog");
            }
        },
    )
    .await;
    let generator = phase.finish(Duration::from_secs(3)).await;
    let mut result = recorder.finish("group", parameters(plan));
    result.duration_secs = plan.duration_secs;
    result.generator = generator;
    result
        .figures
        .insert("group_members".into(), users.len() as f64);
    behind_schedule_note(&mut result);
    for (link, _) in links {
        link.close();
    }
    Ok(result)
}
