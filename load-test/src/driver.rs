//! One load connection: a writer task that sends on schedule and a reader task that times what
//! comes back, both around a split gateway connection. Payloads are pre-encrypted (random
//! bytes of the configured size carrying the scheduled send time): the server never decrypts,
//! so the generator spends its CPU on load, not on cryptography.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_client::{ConnectOptions, GatewayConnection, GatewayReceiver, GatewaySender, Incoming};
use courier_protocol::v1::{
    Ack, CiphertextType, ClientFrame, DeviceCiphertext, ErrorCode, GroupSend, SendMessage,
    client_frame, delivery, server_frame,
};
use courier_protocol::{DeviceAddress, GroupId};
use tokio::sync::{Semaphore, mpsc};

use crate::provision::LoadUser;
use crate::recorder::{Counter, Recorder, unix_micros};
use crate::result::series;

/// Deliveries acknowledged together (cumulative ack).
const ACK_BATCH: u32 = 32;
/// Longest an acknowledgement waits for its batch to fill.
const ACK_DELAY: Duration = Duration::from_millis(5);

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Send one message to `to`, scheduled at `scheduled_us` (µs since the Unix epoch).
    Send {
        scheduled_us: u64,
        to: DeviceAddress,
        id: u64,
    },
    /// Send one message to a group (all members but the sender receive it).
    GroupSend {
        scheduled_us: u64,
        group: GroupId,
        id: u64,
    },
    Ack(u64),
}

/// Counts arrivals of each group message so that the arrival at the last member is timed.
#[derive(Default)]
pub struct FanOut {
    /// Members that receive each message (the group's size minus the sender).
    pub expected: u64,
    arrivals: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
}

impl FanOut {
    pub fn new(expected: u64) -> Self {
        FanOut {
            expected,
            arrivals: Default::default(),
        }
    }

    /// Records one arrival of the message scheduled at `scheduled`; `true` for the last one.
    fn arrived(&self, scheduled: u64) -> bool {
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
        let count = arrivals.entry(scheduled).or_default();
        *count += 1;
        if *count >= self.expected {
            arrivals.remove(&scheduled);
            return true;
        }
        false
    }
}

/// A connected load user.
pub struct Link {
    pub address: DeviceAddress,
    commands: mpsc::Sender<Command>,
}

impl Link {
    /// Queues a send without waiting; `false` when the connection is backed up or gone.
    pub fn offer(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// Queues a send, waiting for room (closed model).
    pub async fn send(&self, command: Command) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// A sender for tasks that feed this link.
    pub fn sender(&self) -> mpsc::Sender<Command> {
        self.commands.clone()
    }

    /// Closes the connection (the writer sends a close frame).
    pub fn close(self) {
        drop(self.commands);
    }
}

/// Settings shared by every connection of an agent.
#[derive(Clone)]
pub struct LinkSettings {
    pub gateway_url: String,
    pub payload_bytes: usize,
    /// In the closed model, each SendResult returns a permit to this user's semaphore.
    pub closed_window: Option<usize>,
    /// Group scenario: where arrivals are counted.
    pub fan_out: Option<Arc<FanOut>>,
    /// Unique per run and agent: message ids must not repeat across runs, or the server
    /// rightly treats them as duplicates of earlier messages.
    pub run_id: String,
}

/// Connects `user` (from `bind`, if given), timing the connect.
pub async fn open(
    user: &LoadUser,
    bind: Option<IpAddr>,
    settings: &LinkSettings,
    recorder: Arc<Recorder>,
) -> Result<(Link, Option<Arc<Semaphore>>), courier_client::ClientError> {
    let started = Instant::now();
    let options = ConnectOptions {
        bind,
        ..ConnectOptions::default()
    };
    let (connection, _welcome) =
        GatewayConnection::connect(&settings.gateway_url, &user.credentials, &options).await?;
    recorder.latency(series::CONNECT, started.elapsed().as_micros() as u64);
    recorder.count(Counter::Connects, 1);
    recorder.connection_opened();
    let (sender, receiver) = connection.split();
    let (commands, command_rx) = mpsc::channel(1024);
    let (acks, ack_rx) = mpsc::channel(64);
    let permits = settings
        .closed_window
        .map(|window| Arc::new(Semaphore::new(window)));
    tokio::spawn(write_loop(
        sender,
        command_rx,
        ack_rx,
        settings.run_id.clone(),
        settings.payload_bytes,
        Arc::clone(&recorder),
    ));
    tokio::spawn(read_loop(
        receiver,
        acks,
        Arc::clone(&recorder),
        permits.clone(),
        settings.fan_out.clone(),
    ));
    Ok((
        Link {
            address: user.address(),
            commands,
        },
        permits,
    ))
}

/// Sends commands until the link is closed (its command channel dropped); acknowledgements
/// from the reader come on a channel of their own so that they never keep a link open.
async fn write_loop(
    mut sender: GatewaySender,
    mut commands: mpsc::Receiver<Command>,
    mut acks: mpsc::Receiver<Command>,
    run_id: String,
    payload_bytes: usize,
    recorder: Arc<Recorder>,
) {
    let filler = vec![0x5a_u8; payload_bytes.saturating_sub(8)];
    loop {
        let command = tokio::select! {
            command = commands.recv() => match command {
                Some(command) => command,
                None => break,
            },
            Some(ack) = acks.recv() => ack,
        };
        let frame = match command {
            Command::Send {
                scheduled_us,
                to,
                id,
            } => {
                let now = unix_micros();
                recorder.latency(series::SEND_LAG, now.saturating_sub(scheduled_us));
                let mut body = Vec::with_capacity(8 + filler.len());
                body.extend_from_slice(&scheduled_us.to_be_bytes());
                body.extend_from_slice(&filler);
                recorder.count(Counter::Sent, 1);
                ClientFrame {
                    request_id: scheduled_us,
                    body: Some(client_frame::Body::Send(SendMessage {
                        recipient: to.user.to_string(),
                        client_message_id: format!("{run_id}-{id}"),
                        timestamp_ms: now / 1000,
                        ciphertexts: vec![DeviceCiphertext {
                            device_id: to.device,
                            r#type: CiphertextType::Message as i32,
                            body,
                        }],
                    })),
                }
            }
            Command::GroupSend {
                scheduled_us,
                group,
                id,
            } => {
                let now = unix_micros();
                recorder.latency(series::SEND_LAG, now.saturating_sub(scheduled_us));
                let mut ciphertext = Vec::with_capacity(8 + filler.len());
                ciphertext.extend_from_slice(&scheduled_us.to_be_bytes());
                ciphertext.extend_from_slice(&filler);
                recorder.count(Counter::Sent, 1);
                ClientFrame {
                    request_id: scheduled_us,
                    body: Some(client_frame::Body::GroupSend(GroupSend {
                        group_id: group.to_string(),
                        client_message_id: format!("{run_id}-{id}"),
                        timestamp_ms: now / 1000,
                        ciphertext,
                    })),
                }
            }
            Command::Ack(seq) => ClientFrame {
                request_id: 0,
                body: Some(client_frame::Body::Ack(Ack { up_to_seq: seq })),
            },
        };
        if sender.send(&frame).await.is_err() {
            recorder.error("write");
            return;
        }
    }
    sender.close().await;
}

async fn read_loop(
    mut receiver: GatewayReceiver,
    commands: mpsc::Sender<Command>,
    recorder: Arc<Recorder>,
    permits: Option<Arc<Semaphore>>,
    fan_out: Option<Arc<FanOut>>,
) {
    let mut pending_ack: Option<u64> = None;
    let mut unacked = 0u32;
    loop {
        let incoming = if pending_ack.is_some() {
            match tokio::time::timeout(ACK_DELAY, receiver.recv()).await {
                Ok(incoming) => incoming,
                Err(_) => {
                    flush(&commands, &mut pending_ack, &mut unacked).await;
                    continue;
                }
            }
        } else {
            receiver.recv().await
        };
        let frame = match incoming {
            Ok(Incoming::Frame(frame)) => frame,
            Ok(Incoming::Closed { code, .. }) => {
                if code != 1000 {
                    recorder.error(format!("closed:{code}"));
                }
                break;
            }
            Err(_) => {
                recorder.error("read");
                break;
            }
        };
        match frame.body {
            Some(server_frame::Body::SendResult(result)) => {
                if result.status == ErrorCode::Ok as i32 {
                    recorder.count(Counter::Acked, 1);
                    let now = unix_micros();
                    recorder.latency(series::SERVER_ACK, now.saturating_sub(result.request_id));
                } else {
                    let code = ErrorCode::try_from(result.status)
                        .map(|c| c.as_str_name())
                        .unwrap_or("UNKNOWN");
                    recorder.error(format!("rejected:{code}"));
                }
                if let Some(permits) = &permits {
                    permits.add_permits(1);
                }
            }
            Some(server_frame::Body::Delivery(delivery)) => {
                let stamped = match &delivery.content {
                    Some(delivery::Content::Envelope(envelope)) => stamp(&envelope.ciphertext),
                    Some(delivery::Content::GroupEnvelope(envelope)) => stamp(&envelope.ciphertext),
                    _ => None,
                };
                if let Some(scheduled) = stamped {
                    let age = unix_micros().saturating_sub(scheduled);
                    recorder.latency(series::DELIVERY, age);
                    recorder.count(Counter::Delivered, 1);
                    if let Some(fan_out) = &fan_out
                        && fan_out.arrived(scheduled)
                    {
                        recorder.latency(series::FAN_OUT, age);
                    }
                }
                pending_ack = Some(delivery.seq);
                unacked += 1;
                if unacked >= ACK_BATCH {
                    flush(&commands, &mut pending_ack, &mut unacked).await;
                }
            }
            Some(server_frame::Body::Error(error)) => {
                let code = ErrorCode::try_from(error.code)
                    .map(|c| c.as_str_name())
                    .unwrap_or("UNKNOWN");
                recorder.error(format!("error:{code}"));
            }
            _ => {}
        }
    }
    recorder.connection_closed();
}

/// The scheduled send time a load payload starts with.
fn stamp(ciphertext: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = ciphertext.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

async fn flush(commands: &mpsc::Sender<Command>, pending: &mut Option<u64>, unacked: &mut u32) {
    if let Some(seq) = pending.take() {
        // The writer is gone only when the connection is closing.
        let _ = commands.send(Command::Ack(seq)).await;
    }
    *unacked = 0;
}
