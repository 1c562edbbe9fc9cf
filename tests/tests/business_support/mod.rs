//! What the business API tests share: a business set up through the admin API, Graph calls
//! with its token, and a webhook receiver that records what it is sent and can be told to
//! fail, hang or refuse the verification request.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use courier_tests::DEADLINE;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// A Graph API version as clients put it in paths.
pub const V: &str = "v23.0";

/// One business with one number and a system-user token, created through the admin API.
pub struct Business {
    pub http: reqwest::Client,
    pub base: String,
    pub admin_token: String,
    pub id: String,
    pub app_id: String,
    pub app_secret: String,
    pub number_id: String,
    pub phone: String,
    pub user_id: String,
    pub token: String,
}

/// An answer: HTTP status and JSON body.
pub type Answer = (u16, Value);

pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = http.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the business API answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("every answer is JSON, not {text:?} ({status})"));
    (status, value)
}

/// The Graph error code of an answer (panics if it is not a Graph error object).
pub fn code(answer: &Answer) -> u64 {
    answer.1["error"]["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a Graph error: {answer:?}"))
}

impl Business {
    /// Creates a business named `name` with number `phone` and a token, on the business API at
    /// `base` administered with `admin_token`.
    pub async fn create(base: &str, admin_token: &str, name: &str, phone: &str) -> Business {
        let http = reqwest::Client::new();
        let admin = |path: &str| format!("{base}/admin/v1{path}");
        let post = reqwest::Method::POST;
        let (status, created) = call(
            &http,
            post.clone(),
            &admin("/businesses"),
            Some(admin_token),
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(status, 200, "{created}");
        let id = created["id"].as_str().expect("business id").to_owned();
        let (status, number) = call(
            &http,
            post.clone(),
            &admin(&format!("/businesses/{id}/phone_numbers")),
            Some(admin_token),
            Some(json!({ "phone": phone, "verified_name": name })),
        )
        .await;
        assert_eq!(status, 200, "{number}");
        let (status, token) = call(
            &http,
            post,
            &admin(&format!("/businesses/{id}/tokens")),
            Some(admin_token),
            Some(json!({ "name": "tests" })),
        )
        .await;
        assert_eq!(status, 200, "{token}");
        Business {
            http,
            base: base.to_owned(),
            admin_token: admin_token.to_owned(),
            app_id: created["app_id"].as_str().expect("app id").to_owned(),
            app_secret: created["app_secret"].as_str().expect("secret").to_owned(),
            id,
            number_id: number["id"].as_str().expect("number id").to_owned(),
            phone: number["phone"].as_str().expect("phone").to_owned(),
            user_id: number["user_id"].as_str().expect("user id").to_owned(),
            token: token["access_token"].as_str().expect("token").to_owned(),
        }
    }

    pub fn graph(&self, path: &str) -> String {
        format!("{}/{V}/{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Answer {
        call(
            &self.http,
            reqwest::Method::GET,
            &self.graph(path),
            Some(&self.token),
            None,
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        call(
            &self.http,
            reqwest::Method::POST,
            &self.graph(path),
            Some(&self.token),
            Some(body),
        )
        .await
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        call(
            &self.http,
            method,
            &format!("{}/admin/v1{path}", self.base),
            Some(&self.admin_token),
            body,
        )
        .await
    }

    /// `POST /{number}/messages`.
    pub async fn send(&self, body: Value) -> Answer {
        self.post(&format!("{}/messages", self.number_id), body)
            .await
    }

    /// Sends a text to `phone`; the `wamid` of an accepted message.
    pub async fn send_text(&self, phone: &str, text: &str) -> Result<String, Answer> {
        let answer = self
            .send(json!({
                "messaging_product": "whatsapp",
                "to": phone,
                "type": "text",
                "text": { "body": text },
            }))
            .await;
        wamid(answer)
    }

    /// Creates (auto-approved) template `name` with one body parameter.
    pub async fn create_template(&self, name: &str) {
        let answer = self
            .post(
                &format!("{}/message_templates", self.id),
                json!({
                    "name": name,
                    "language": "en_US",
                    "category": "UTILITY",
                    "components": [{ "type": "BODY", "text": "Your order {{1}} is on its way" }],
                }),
            )
            .await;
        assert_eq!(answer.0, 200, "{answer:?}");
        assert_eq!(answer.1["status"], "APPROVED", "{answer:?}");
    }

    /// Sends template `name` to `phone` with `order` as its parameter.
    pub async fn send_template(
        &self,
        phone: &str,
        name: &str,
        order: &str,
    ) -> Result<String, Answer> {
        let answer = self
            .send(json!({
                "messaging_product": "whatsapp",
                "to": phone,
                "type": "template",
                "template": {
                    "name": name,
                    "language": { "code": "en_US" },
                    "components": [{
                        "type": "body",
                        "parameters": [{ "type": "text", "text": order }],
                    }],
                },
            }))
            .await;
        wamid(answer)
    }

    /// Subscribes the business's app with `receiver` as its callback.
    pub async fn subscribe(&self, receiver: &Receiver) -> Answer {
        self.post(
            &format!("{}/subscribed_apps", self.id),
            json!({
                "override_callback_uri": receiver.url(),
                "verify_token": receiver.verify_token,
            }),
        )
        .await
    }
}

fn wamid(answer: Answer) -> Result<String, Answer> {
    if answer.0 != 200 {
        return Err(answer);
    }
    Ok(answer.1["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an accepted send names its wamid: {answer:?}"))
        .to_owned())
}

/// How the receiver answers webhook POSTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// 500 Internal Server Error.
    Fail,
    /// Answers only after this long (longer than the service's timeout: a receiver that never
    /// answers in time).
    Hang(Duration),
}

/// One POST the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub body: Bytes,
    pub signature: Option<String>,
    /// Whether the receiver answered it 200.
    pub accepted: bool,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a webhook body is JSON")
    }
}

#[derive(Default)]
struct Inner {
    hits: Vec<Hit>,
    verifications: Vec<(String, String, String)>,
}

/// A webhook receiver on 127.0.0.1: answers the verification handshake for its token, records
/// every POST with its signature header.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub verify_token: String,
    inner: Arc<Mutex<Inner>>,
    mode: Arc<Mutex<Mode>>,
    /// POSTs to fail before `mode` applies (a flaky receiver).
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start(verify_token: &str) -> Receiver {
        Receiver::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), verify_token).await
    }

    pub async fn start_at(addr: SocketAddr, verify_token: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let receiver = Receiver {
            addr: listener.local_addr().expect("address"),
            verify_token: verify_token.to_owned(),
            inner: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            fail_first: Arc::default(),
        };
        let router = Router::new()
            .route("/hook", get(verify).post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    pub fn fail_next(&self, count: usize) {
        self.fail_first.store(count, Ordering::SeqCst);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.lock().expect("hits").hits.clone()
    }

    /// The verification requests seen: (mode, verify token, challenge).
    pub fn verifications(&self) -> Vec<(String, String, String)> {
        self.inner.lock().expect("hits").verifications.clone()
    }

    /// The accepted webhook payloads.
    pub fn accepted(&self) -> Vec<Value> {
        self.hits()
            .iter()
            .filter(|h| h.accepted)
            .map(Hit::json)
            .collect()
    }

    /// The text bodies of the accepted message webhooks, in the order they were accepted.
    pub fn delivered_texts(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .filter_map(|p| {
                change_value(p)?["messages"][0]["text"]["body"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Waits until an accepted webhook has a change value matching `wanted`; returns the
    /// whole payload.
    pub async fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = std::time::Instant::now();
        loop {
            for payload in self.accepted() {
                if let Some(value) = change_value(&payload)
                    && wanted(value)
                {
                    return payload;
                }
            }
            assert!(
                started.elapsed() < DEADLINE,
                "no webhook with {what} arrived; accepted so far: {:#?}",
                self.accepted()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` POSTs (accepted or not) arrived.
    pub async fn wait_for_hits(&self, count: usize) {
        let started = std::time::Instant::now();
        while self.hits().len() < count {
            assert!(
                started.elapsed() < DEADLINE,
                "only {} webhook attempts arrived, not {count}",
                self.hits().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a message webhook with text `body`; returns the message object.
    pub async fn message_with_text(&self, body: &str) -> Value {
        let payload = self
            .wait_for(&format!("text {body:?}"), |value| {
                value["messages"][0]["text"]["body"] == body
            })
            .await;
        change_value(&payload).expect("a value")["messages"][0].clone()
    }

    /// Waits for status `status` of `wamid`; returns the whole change value.
    pub async fn status(&self, wamid: &str, status: &str) -> Value {
        let payload = self
            .wait_for(&format!("status {status} of {wamid}"), |value| {
                value["statuses"][0]["id"] == wamid && value["statuses"][0]["status"] == status
            })
            .await;
        change_value(&payload).expect("a value").clone()
    }
}

/// `entry[0].changes[0].value` of a webhook payload.
pub fn change_value(payload: &Value) -> Option<&Value> {
    payload["entry"][0]["changes"][0].get("value")
}

/// The signature the Cloud API puts on a body: HMAC-SHA256 under the app secret.
pub fn expected_signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn verify(
    State(receiver): State<Receiver>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, String) {
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    let (mode, token, challenge) = (
        param("hub.mode"),
        param("hub.verify_token"),
        param("hub.challenge"),
    );
    receiver.inner.lock().expect("hits").verifications.push((
        mode.clone(),
        token.clone(),
        challenge.clone(),
    ));
    if mode == "subscribe" && token == receiver.verify_token {
        (StatusCode::OK, challenge)
    } else {
        (StatusCode::FORBIDDEN, "wrong verify token".into())
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mode = *receiver.mode.lock().expect("mode");
    let accepted = !failing && mode != Mode::Fail;
    if let (false, Mode::Hang(delay)) = (failing, mode) {
        receiver.record(body, signature, false);
        tokio::time::sleep(delay).await;
        return StatusCode::OK;
    }
    receiver.record(body, signature, accepted);
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl Receiver {
    fn record(&self, body: Bytes, signature: Option<String>, accepted: bool) {
        self.inner.lock().expect("hits").hits.push(Hit {
            body,
            signature,
            accepted,
        });
    }
}
