//! Helpers shared by `bad_input_gateway.rs` and `bad_input_http.rs`: raw gateway frames, raw
//! HTTP requests, and the "everyone else still works" check that follows every bad input.
//!
//! Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use courier_client::{Client, Event, GatewayConnection, Incoming};
use courier_protocol::http::ErrorBody;
use courier_protocol::v1::{
    CiphertextType, ClientFrame, DeviceCiphertext, Envelope, Error as ErrorFrame, ErrorCode, Ping,
    SendMessage, SendResult, client_frame, delivery, server_frame,
};
use courier_tests::{DEADLINE, TestServer, messages, unique_phone};
use tokio::sync::mpsc;

/// How long a negative check ("nothing more arrives") waits. Only ever used to show that
/// something does NOT happen; no test asserts that something happens within it.
pub const QUIET: Duration = Duration::from_millis(700);

/// A raw gateway connection of `client`'s device.
pub async fn raw(server: &TestServer, client: &Client) -> GatewayConnection {
    let (connection, welcome) = GatewayConnection::connect(
        &server.gateway_url(),
        &client.credentials(),
        &Default::default(),
    )
    .await
    .expect("raw gateway connection");
    assert_eq!(welcome.user_id, client.user_id().to_string());
    assert_eq!(welcome.device_id, client.address().device);
    connection
}

/// The next thing the server sends, or a panic after [`DEADLINE`].
pub async fn recv(connection: &mut GatewayConnection) -> Incoming {
    tokio::time::timeout(DEADLINE, connection.recv())
        .await
        .expect("a frame or a close within the deadline")
        .expect("a readable server frame")
}

/// The body of the next frame; panics if the connection closes instead.
pub async fn next_body(connection: &mut GatewayConnection) -> server_frame::Body {
    match recv(connection).await {
        Incoming::Frame(frame) => frame.body.expect("a server frame with a body"),
        Incoming::Closed { code, reason } => {
            panic!("connection closed ({code} {reason}) while a frame was expected")
        }
    }
}

/// The next `Error` frame, skipping deliveries and queue-empty markers.
pub async fn next_error(connection: &mut GatewayConnection) -> ErrorFrame {
    loop {
        match next_body(connection).await {
            server_frame::Body::Error(error) => return error,
            server_frame::Body::Delivery(_) | server_frame::Body::QueueEmpty(_) => {}
            other => panic!("expected an Error frame, got {other:?}"),
        }
    }
}

/// Reads until the server closes; returns the close code and every frame read before it.
pub async fn closed(connection: &mut GatewayConnection) -> (u16, Vec<server_frame::Body>) {
    let mut before = Vec::new();
    loop {
        match recv(connection).await {
            Incoming::Frame(frame) => before.extend(frame.body),
            Incoming::Closed { code, .. } => return (code, before),
        }
    }
}

/// Whether nothing at all arrives within [`QUIET`].
pub async fn assert_quiet(connection: &mut GatewayConnection, what: &str) {
    // GatewayConnection::recv only polls the WebSocket stream, so dropping it loses nothing.
    if let Ok(incoming) = tokio::time::timeout(QUIET, connection.recv()).await {
        panic!("{what}: expected nothing more, got {incoming:?}");
    }
}

/// A ClientFrame with a send of a fake ciphertext to each of `devices` of `recipient`.
///
/// The server never decrypts, so any non-empty body will do for checks on the server side.
pub fn send_frame(request_id: u64, recipient: &str, id: &str, devices: &[u32]) -> ClientFrame {
    send_frame_sized(request_id, recipient, id, devices, 0)
}

/// Like [`send_frame`], with ciphertext bodies of `body_len` bytes (0: a short body naming `id`).
pub fn send_frame_sized(
    request_id: u64,
    recipient: &str,
    id: &str,
    devices: &[u32],
    body_len: usize,
) -> ClientFrame {
    let body = if body_len == 0 {
        fake_ciphertext(id)
    } else {
        vec![0x5a; body_len]
    };
    ClientFrame {
        request_id,
        body: Some(client_frame::Body::Send(SendMessage {
            recipient: recipient.to_owned(),
            client_message_id: id.to_owned(),
            timestamp_ms: 1,
            ciphertexts: devices
                .iter()
                .map(|&device_id| DeviceCiphertext {
                    device_id,
                    r#type: CiphertextType::Message as i32,
                    body: body.clone(),
                })
                .collect(),
        })),
    }
}

/// The body [`send_frame`] uses for message `id`.
pub fn fake_ciphertext(id: &str) -> Vec<u8> {
    format!("opaque ciphertext of {id}").into_bytes()
}

/// Sends `frame` and returns the SendResult answering it (other frames are skipped; an Error
/// frame answering it panics).
pub async fn request(connection: &mut GatewayConnection, frame: &ClientFrame) -> SendResult {
    connection.send(frame).await.expect("frame sent");
    loop {
        match next_body(connection).await {
            server_frame::Body::SendResult(result) if result.request_id == frame.request_id => {
                return result;
            }
            server_frame::Body::Error(error) => {
                panic!("expected a SendResult, got {error:?}")
            }
            _ => {}
        }
    }
}

/// Sends `frame` and asserts that the server answers with status OK.
pub async fn send_ok(connection: &mut GatewayConnection, frame: &ClientFrame) -> SendResult {
    let result = request(connection, frame).await;
    assert_eq!(
        result.status,
        ErrorCode::Ok as i32,
        "send refused: {result:?}"
    );
    result
}

/// Sends a Ping and waits for its Pong: the connection still works.
pub async fn ping_pong(connection: &mut GatewayConnection, nonce: u64) {
    let ping = ClientFrame {
        request_id: 0,
        body: Some(client_frame::Body::Ping(Ping { nonce })),
    };
    connection.send(&ping).await.expect("ping sent");
    loop {
        match next_body(connection).await {
            server_frame::Body::Pong(pong) => {
                assert_eq!(pong.nonce, nonce);
                return;
            }
            server_frame::Body::Delivery(_) | server_frame::Body::QueueEmpty(_) => {}
            other => panic!("expected a Pong, got {other:?}"),
        }
    }
}

/// Every envelope pushed until the QueueEmpty marker, as (seq, envelope). Not acknowledged.
pub async fn queue_until_empty(connection: &mut GatewayConnection) -> Vec<(u64, Envelope)> {
    let mut found = Vec::new();
    loop {
        match next_body(connection).await {
            server_frame::Body::Delivery(delivery) => match delivery.content {
                Some(delivery::Content::Envelope(envelope)) => {
                    found.push((delivery.seq, envelope));
                }
                other => panic!("expected an envelope, got {other:?}"),
            },
            server_frame::Body::QueueEmpty(_) => return found,
            other => panic!("expected deliveries, got {other:?}"),
        }
    }
}

/// The client message ids of `envelopes`.
pub fn ids(envelopes: &[(u64, Envelope)]) -> Vec<String> {
    envelopes
        .iter()
        .map(|(_, e)| e.client_message_id.clone())
        .collect()
}

/// The next `count` deliveries (their envelopes), skipping nothing else but QueueEmpty.
pub async fn deliveries(connection: &mut GatewayConnection, count: usize) -> Vec<(u64, Envelope)> {
    let mut found = Vec::new();
    while found.len() < count {
        match next_body(connection).await {
            server_frame::Body::Delivery(delivery) => match delivery.content {
                Some(delivery::Content::Envelope(envelope)) => {
                    found.push((delivery.seq, envelope));
                }
                other => panic!("expected an envelope, got {other:?}"),
            },
            server_frame::Body::QueueEmpty(_) => {}
            other => panic!("expected deliveries, got {other:?}"),
        }
    }
    found
}

/// Two freshly registered users exchange a message each way: the server is up and serves
/// everybody else normally.
pub async fn others_can_chat(server: &TestServer) {
    let a = server.register(&unique_phone()).await;
    let b = server.register(&unique_phone()).await;
    let (a_chat, mut a_events) = a.connect().await.expect("a connects");
    let (b_chat, mut b_events) = b.connect().await.expect("b connects");
    let sent = a_chat
        .send_text(b.user_id(), "are you still there?")
        .await
        .expect("a's message is sent");
    let got = messages(&mut b_events, 1).await;
    assert_eq!(
        got[0],
        (a.user_id(), sent.id, "are you still there?".into())
    );
    let reply = b_chat
        .send_text(a.user_id(), "yes, all fine")
        .await
        .expect("b's reply is sent");
    let got = messages(&mut a_events, 1).await;
    assert_eq!(got[0], (b.user_id(), reply.id, "yes, all fine".into()));
}

/// Asserts that no `Event::Message` arrives within [`QUIET`].
pub async fn assert_no_more_messages(events: &mut mpsc::Receiver<Event>) {
    let deadline = tokio::time::Instant::now() + QUIET;
    while let Ok(event) = tokio::time::timeout_at(deadline, events.recv()).await {
        match event {
            Some(Event::Message { id, text, .. }) => {
                panic!("unexpected extra message {id} {text:?}")
            }
            Some(_) => {}
            None => return,
        }
    }
}

/// A raw HTTP answer: status, headers and the body parsed as JSON (Null if it is not JSON).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub async fn of(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        Answer {
            status,
            headers,
            text,
        }
    }

    /// The error body; panics if the body is not the documented [`ErrorBody`].
    pub fn error(&self) -> ErrorBody {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "status {} without an error body ({e}): {:?}",
                self.status, self.text
            )
        })
    }

    /// Asserts the status and the error `code`; returns the error message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        let body = self.error();
        assert_eq!(
            (self.status, body.error.code.as_str()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        assert!(!body.error.message.is_empty(), "an error message is given");
        body.error.message
    }
}

/// Sends `body` raw (any bytes, any content type) with `method` to `path`.
pub async fn raw_http(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", server.url()));
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    Answer::of(request.send().await.expect("HTTP answer")).await
}

/// POSTs `json` (any text) as `application/json`.
pub async fn post_json(server: &TestServer, path: &str, json: &str) -> Answer {
    raw_http(
        server,
        reqwest::Method::POST,
        path,
        Some("application/json"),
        None,
        Some(json.as_bytes().to_vec()),
    )
    .await
}
