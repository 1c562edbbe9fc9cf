//! The chat scenario with real end-to-end encryption: every load user is a full client-SDK
//! device (X3DH on the first message to each partner, then the Double Ratchet), and latency is
//! measured to the decrypted message at the recipient. Devices keep their keys and sessions in
//! the users cache, so later runs reuse them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use courier_client::{Api, Client, ConnectOptions, Event, Messenger, StateFile};
use courier_protocol::UserId;
use futures_util::StreamExt;

use crate::agent::{behind_schedule_note, parameters, ready_and_wait, source, wait_for_line};
use crate::open_loop;
use crate::plan::Plan;
use crate::provision::phone_of;
use crate::recorder::{Counter, Recorder, unix_micros};
use crate::result::{RunResult, series};

/// An SDK device for load user `index`, registered once and then reopened from the cache.
async fn device(plan: &Plan, api: &Api, index: u64) -> anyhow::Result<Client> {
    let server_key: String = plan
        .server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = plan
        .users_cache
        .join(format!("encrypted-{server_key}"))
        .join(index.to_string());
    if let Ok(client) = Client::open(StateFile::at(&dir)) {
        return Ok(client);
    }
    let phone = phone_of(index);
    api.request_code(&phone).await?;
    let code = api.pending_code(&plan.admin_token, &phone).await?.code;
    Ok(Client::register(&plan.server, &phone, &code, "load", StateFile::at(&dir)).await?)
}

/// Counts and times decrypted messages as they arrive (the business scenario's too).
pub(crate) fn listen(mut events: tokio::sync::mpsc::Receiver<Event>, recorder: Arc<Recorder>) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Message { text, .. } => {
                    if let Ok(scheduled) = text.parse::<u64>() {
                        recorder.latency(series::DELIVERY, unix_micros().saturating_sub(scheduled));
                        recorder.count(Counter::Delivered, 1);
                    }
                }
                Event::DecryptionFailed { .. } => recorder.error("decryption_failed"),
                Event::Closed { code, .. } if code != 1000 => {
                    recorder.error(format!("closed:{code}"));
                    recorder.connection_closed();
                }
                _ => {}
            }
        }
    });
}

/// Agent `index`'s share of an encrypted chat run.
pub async fn chat(plan: &Plan, index: u32) -> anyhow::Result<RunResult> {
    let api = Api::new(&plan.server)?;
    let (first, count) = plan.slice(index);
    let clients: Vec<Client> = futures_util::stream::iter(first..first + count)
        .map(|i| device(plan, &api, i))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .context("registering encrypted load users")?;
    wait_for_line("PROVISIONED", "CONNECT").await?;
    let recorder = Arc::new(Recorder::new());
    let mut messengers: Vec<(Arc<Messenger>, UserId)> = Vec::with_capacity(clients.len());
    for (i, client) in clients.iter().enumerate() {
        let started = Instant::now();
        let options = ConnectOptions {
            bind: source(plan, i),
            ..ConnectOptions::default()
        };
        let (messenger, events) = client.connect_with(&options).await?;
        recorder.latency(series::CONNECT, started.elapsed().as_micros() as u64);
        recorder.connection_opened();
        listen(events, Arc::clone(&recorder));
        messengers.push((Arc::new(messenger), client.user_id()));
    }
    ready_and_wait().await?;
    let partner = |i: usize| {
        let j = if i.is_multiple_of(2) {
            (i + 1) % messengers.len()
        } else {
            i - 1
        };
        messengers[j].1
    };
    let share = 1.0 / f64::from(plan.agents);
    let phase = open_loop::run(
        plan.profile.scaled(share),
        plan.warmup_secs,
        plan.duration_secs,
        &recorder,
        |n, scheduled| {
            let i = n as usize % messengers.len();
            let messenger = Arc::clone(&messengers[i].0);
            let to = partner(i);
            let recorder = Arc::clone(&recorder);
            tokio::spawn(async move {
                recorder.latency(series::SEND_LAG, unix_micros().saturating_sub(scheduled));
                recorder.count(Counter::Sent, 1);
                match messenger.send_text(to, &scheduled.to_string()).await {
                    Ok(_) => {
                        recorder.count(Counter::Acked, 1);
                        recorder
                            .latency(series::SERVER_ACK, unix_micros().saturating_sub(scheduled));
                    }
                    Err(error) => recorder.error(format!("send:{}", error_kind(&error))),
                }
            });
        },
    )
    .await;
    let generator = phase.finish(Duration::from_secs(2)).await;
    let mut result = recorder.finish("chat (encrypted)", parameters(plan));
    result.duration_secs = plan.duration_secs;
    result.generator = generator;
    behind_schedule_note(&mut result);
    Ok(result)
}

fn error_kind(error: &courier_client::ClientError) -> &'static str {
    match error {
        courier_client::ClientError::Rejected { .. } => "rejected",
        courier_client::ClientError::Transport(_) => "transport",
        courier_client::ClientError::Crypto(_) => "crypto",
        _ => "other",
    }
}
