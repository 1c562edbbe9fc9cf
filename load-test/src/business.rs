//! The business scenario: one business number of the business API (the WhatsApp Cloud API
//! compatible service) and `users` consumers, all online as client-SDK devices.
//!
//! At each tick of the rate profile the business sends one text through
//! `POST /{version}/{number}/messages` to the next consumer (open model: the request is made on
//! schedule whatever the service does), and that consumer writes one text to the business.
//! Every text carries its scheduled send time, so the harness times:
//! - `server_ack`: schedule → the API's answer (the message is in the durable outbox);
//! - `delivery`: schedule → the consumer's device decrypted the business's message;
//! - `webhook`: schedule → the consumer's message arrived at the webhook receiver the harness
//!   runs (signature checked), through the platform, the number's device and the dispatcher;
//! - `status`: schedule → the `delivered` status of the business's message at the receiver.
//!
//! So a rate R asks for R API messages/s through one number and about 3R webhooks/s (each
//! inbound message, and `sent` and `delivered` of each outbound one). Each run creates its
//! business, number and token through the admin API, and registers its consumers (devices with
//! their state in memory) with fresh numbers. The service's limits must allow the rate
//! (`business.throughput_per_number`, `business.pair_burst`, `business.pair_per_minute`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use courier_client::{Api, Client, ConnectOptions, Messenger, StateFile};
use courier_protocol::UserId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::{behind_schedule_note, parameters, ready_and_wait, source, wait_for_line};
use crate::open_loop;
use crate::plan::Plan;
use crate::recorder::{Counter, Recorder, unix_micros};
use crate::result::{RunResult, series};

/// The Graph version the scenario puts in its paths.
const VERSION: &str = "v23.0";
/// The verify token of the receiver's subscription.
const VERIFY_TOKEN: &str = "courier-load";

/// The business the scenario sends from, as the admin API created it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LoadBusiness {
    id: String,
    app_secret: String,
    number_id: String,
    phone: String,
    user_id: String,
    token: String,
}

async fn admin(
    http: &reqwest::Client,
    plan: &Plan,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let url = format!("{}/admin/v1{path}", plan.business_url.trim_end_matches('/'));
    let response = http
        .post(&url)
        .bearer_auth(&plan.business_admin_token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the business API at {url}"))?;
    let status = response.status();
    let value: Value = response
        .json()
        .await
        .context("the admin API answers JSON")?;
    if !status.is_success() {
        bail!("{path}: {status}: {}", value["error"]["message"]);
    }
    Ok(value)
}

/// A new business with one number and a token (each run its own, so that no webhook of an
/// earlier run reaches this run's receiver).
async fn business(http: &reqwest::Client, plan: &Plan) -> anyhow::Result<LoadBusiness> {
    let created = admin(http, plan, "/businesses", json!({ "name": "Load Co" })).await?;
    let id = created["id"].as_str().context("business id")?.to_owned();
    // A random number of the 555 test range (load users count up from the bottom of it).
    let random = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into()?);
    let phone = format!("+1555{:07}", random % 10_000_000);
    let number = admin(
        http,
        plan,
        &format!("/businesses/{id}/phone_numbers"),
        json!({ "phone": phone, "verified_name": "Load Co" }),
    )
    .await?;
    let token = admin(
        http,
        plan,
        &format!("/businesses/{id}/tokens"),
        json!({ "name": "courier-load" }),
    )
    .await?;
    let business = LoadBusiness {
        id,
        app_secret: created["app_secret"].as_str().context("secret")?.to_owned(),
        number_id: number["id"].as_str().context("number id")?.to_owned(),
        phone: number["phone"].as_str().context("phone")?.to_owned(),
        user_id: number["user_id"].as_str().context("user id")?.to_owned(),
        token: token["access_token"].as_str().context("token")?.to_owned(),
    };
    Ok(business)
}

fn graph(plan: &Plan, path: &str) -> String {
    format!(
        "{}/{VERSION}/{path}",
        plan.business_url.trim_end_matches('/')
    )
}

/// What the webhook receiver shares with the scenario.
struct Receiver {
    app_secret: String,
    recorder: Arc<Recorder>,
    /// wamid → scheduled send time of the business's messages, until their `delivered`.
    outbound: Mutex<HashMap<String, u64>>,
    /// Consumers whose window-opening message has arrived.
    opened: Mutex<std::collections::HashSet<String>>,
}

async fn verify(Query(query): Query<HashMap<String, String>>) -> (StatusCode, String) {
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    if param("hub.verify_token") == VERIFY_TOKEN {
        (StatusCode::OK, param("hub.challenge"))
    } else {
        (StatusCode::FORBIDDEN, String::new())
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = unix_micros();
    let signed = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| given == signature(&receiver.app_secret, &body));
    if !signed {
        receiver.recorder.error("webhook_signature");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        receiver.recorder.error("webhook_json");
        return StatusCode::BAD_REQUEST;
    };
    for entry in payload["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            let value = &change["value"];
            for message in value["messages"].as_array().into_iter().flatten() {
                let text = message["text"]["body"].as_str().unwrap_or_default();
                match text.parse::<u64>() {
                    Ok(scheduled) => {
                        receiver
                            .recorder
                            .latency(series::WEBHOOK, now.saturating_sub(scheduled));
                    }
                    Err(_) => {
                        let from = message["from"].as_str().unwrap_or_default().to_owned();
                        receiver
                            .opened
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(from);
                    }
                }
            }
            for status in value["statuses"].as_array().into_iter().flatten() {
                match status["status"].as_str() {
                    Some("delivered") => {
                        let id = status["id"].as_str().unwrap_or_default();
                        let scheduled = receiver
                            .outbound
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(id);
                        if let Some(scheduled) = scheduled {
                            receiver
                                .recorder
                                .latency(series::STATUS, now.saturating_sub(scheduled));
                        }
                    }
                    Some("failed") => receiver.recorder.error("status_failed"),
                    _ => {}
                }
            }
        }
    }
    StatusCode::OK
}

/// `sha256=<HMAC-SHA256 of the body under the app secret>`, as the receiver must check it.
fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn start_receiver(receiver: Arc<Receiver>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/", axum::routing::get(verify).post(receive))
        .with_state(receiver);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("webhook receiver failed: {error}");
        }
    });
    Ok(addr)
}

/// A consumer device registered for this run, its state in memory (a state file written per
/// message would make the generator the bottleneck).
async fn consumer(plan: &Plan, api: &Api) -> anyhow::Result<Client> {
    let random = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into()?);
    let phone = format!("+1555{:07}", random % 10_000_000);
    api.request_code(&phone).await?;
    let code = api.pending_code(&plan.admin_token, &phone).await?.code;
    Ok(Client::register(&plan.server, &phone, &code, "load", StateFile::memory()).await?)
}

/// The business scenario (one agent).
pub async fn run(plan: &Plan, index: u32) -> anyhow::Result<RunResult> {
    let api = Api::new(&plan.server)?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?;
    let business = business(&http, plan)
        .await
        .context("setting up the load business")?;
    let (first, count) = plan.slice(index);
    let clients: Vec<_> = futures_util::stream::iter(first..first + count)
        .map(|_| consumer(plan, &api))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()
        .context("registering consumer load users")?;
    wait_for_line("PROVISIONED", "CONNECT").await?;
    let recorder = Arc::new(Recorder::new());
    let receiver = Arc::new(Receiver {
        app_secret: business.app_secret.clone(),
        recorder: Arc::clone(&recorder),
        outbound: Mutex::new(HashMap::new()),
        opened: Mutex::new(Default::default()),
    });
    let receiver_addr = start_receiver(Arc::clone(&receiver)).await?;
    let subscribed = http
        .post(graph(plan, &format!("{}/subscribed_apps", business.id)))
        .bearer_auth(&business.token)
        .json(&json!({
            "override_callback_uri": format!("http://{receiver_addr}/"),
            "verify_token": VERIFY_TOKEN,
        }))
        .send()
        .await?;
    if !subscribed.status().is_success() {
        bail!("subscribing the receiver: {}", subscribed.text().await?);
    }
    let business_user: UserId = business.user_id.parse().context("business user id")?;
    let mut consumers: Vec<(Arc<Messenger>, String)> = Vec::with_capacity(clients.len());
    for (i, client) in clients.iter().enumerate() {
        let started = Instant::now();
        let options = ConnectOptions {
            bind: source(plan, i),
            ..ConnectOptions::default()
        };
        let (messenger, events) = client.connect_with(&options).await?;
        recorder.latency(series::CONNECT, started.elapsed().as_micros() as u64);
        recorder.connection_opened();
        crate::encrypted::listen(events, Arc::clone(&recorder));
        let wa_id: String = client
            .phone()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        consumers.push((Arc::new(messenger), wa_id));
    }
    // Each consumer writes first: the customer-service window opens for free-form texts.
    for (messenger, _) in &consumers {
        messenger
            .send_text(business_user, "hello")
            .await
            .context("opening a consumer's window")?;
    }
    let started = Instant::now();
    while receiver
        .opened
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len()
        < consumers.len()
    {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the consumers' first messages did not all reach the webhook receiver");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ready_and_wait().await?;
    let messages_url = graph(plan, &format!("{}/messages", business.number_id));
    let phase = open_loop::run(
        plan.profile.clone(),
        plan.warmup_secs,
        plan.duration_secs,
        &recorder,
        |n, scheduled| {
            let (messenger, wa_id) = consumers[n as usize % consumers.len()].clone();
            let recorder = Arc::clone(&recorder);
            let receiver = Arc::clone(&receiver);
            let (http, url, token) = (http.clone(), messages_url.clone(), business.token.clone());
            tokio::spawn(async move {
                recorder.latency(series::SEND_LAG, unix_micros().saturating_sub(scheduled));
                recorder.count(Counter::Sent, 1);
                let body = json!({
                    "messaging_product": "whatsapp", "to": wa_id, "type": "text",
                    "text": { "body": scheduled.to_string() },
                });
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {
                        let answer: Value = response.json().await.unwrap_or_default();
                        if let Some(wamid) = answer["messages"][0]["id"].as_str() {
                            receiver
                                .outbound
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(wamid.to_owned(), scheduled);
                        }
                        recorder.count(Counter::Acked, 1);
                        recorder
                            .latency(series::SERVER_ACK, unix_micros().saturating_sub(scheduled));
                    }
                    Ok(response) => {
                        let answer: Value = response.json().await.unwrap_or_default();
                        recorder.error(format!("api:{}", answer["error"]["code"]));
                    }
                    Err(_) => recorder.error("api:transport"),
                }
                if let Err(error) = messenger
                    .send_text(business_user, &scheduled.to_string())
                    .await
                {
                    let kind = match error {
                        courier_client::ClientError::Rejected { .. } => "rejected",
                        courier_client::ClientError::Transport(_) => "transport",
                        _ => "other",
                    };
                    recorder.error(format!("consumer_send:{kind}"));
                }
            });
        },
    )
    .await;
    let generator = phase.finish(Duration::from_secs(3)).await;
    let mut result = recorder.finish("business", parameters(plan));
    result.duration_secs = plan.duration_secs;
    result.generator = generator;
    behind_schedule_note(&mut result);
    Ok(result)
}
