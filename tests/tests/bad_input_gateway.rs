//! Bad input on the gateway: malformed and oversized frames, text frames, refused sends, bad
//! credentials, clients that never acknowledge or that flood, replaced and removed devices.
//!
//! Every test checks, where it applies, (a) the documented error code or close code, (b) that
//! the server stays up and other users are unaffected, and (c) that nothing already accepted
//! ("sent") is lost.

mod bad_input_support;

use bad_input_support::*;
use courier_client::{ClientError, Credentials, Event, GatewayConnection, ReceiptKind, StateFile};
use courier_protocol::v1::{ClientFrame, ErrorCode, server_frame};
use courier_protocol::{DeviceAddress, UserId, close};
use courier_tests::{TestServer, messages, unique_phone, wait_for};
use prost::Message as _;

#[tokio::test]
async fn malformed_binary_frames_get_malformed_frame_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let bob_device = bob.address().device;
    let mut conn = raw(&server, &alice).await;

    send_ok(&mut conn, &send_frame(1, &bob_id, "before", &[bob_device])).await;

    let valid = send_frame(2, &bob_id, "never-sent", &[bob_device]).encode_to_vec();
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("an over-long varint", vec![0xff; 16]),
        // Field 1 (request_id, a varint) sent as length-delimited.
        ("a field with the wrong wire type", vec![0x0a, 0x01, 0x00]),
        ("a truncated frame", valid[..valid.len() - 4].to_vec()),
        ("a tag without its value", vec![0x08]),
    ];
    for (what, bytes) in garbage {
        assert!(
            ClientFrame::decode(bytes.as_slice()).is_err(),
            "test precondition: {what} is not a ClientFrame"
        );
        conn.send_raw(bytes).await.expect("garbage sent");
        let error = next_error(&mut conn).await;
        assert_eq!(
            (error.code, error.request_id),
            (ErrorCode::MalformedFrame as i32, 0),
            "{what}: {error:?}"
        );
        assert!(
            !error.message.is_empty(),
            "{what}: the error explains itself"
        );
    }

    // A frame that decodes but has no body is malformed too; its request id is echoed.
    conn.send(&ClientFrame {
        request_id: 9,
        body: None,
    })
    .await
    .expect("frame sent");
    let error = next_error(&mut conn).await;
    assert_eq!(
        (error.code, error.request_id),
        (ErrorCode::MalformedFrame as i32, 9)
    );

    // The same connection still works.
    ping_pong(&mut conn, 42).await;
    send_ok(&mut conn, &send_frame(3, &bob_id, "after", &[bob_device])).await;

    // Bob gets exactly what was accepted around the garbage, intact.
    let mut bob_conn = raw(&server, &bob).await;
    let queue = queue_until_empty(&mut bob_conn).await;
    assert_eq!(ids(&queue), ["before", "after"]);
    for (_, envelope) in &queue {
        assert_eq!(envelope.sender_user, alice.user_id().to_string());
        assert_eq!(
            envelope.ciphertext,
            fake_ciphertext(&envelope.client_message_id)
        );
    }
    others_can_chat(&server).await;
}

#[tokio::test]
async fn text_frames_get_malformed_frame_and_the_connection_stays_up() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let bob_device = bob.address().device;
    let mut conn = raw(&server, &alice).await;

    send_ok(&mut conn, &send_frame(1, &bob_id, "before", &[bob_device])).await;
    for text in [r#"{"send":{"recipient":"someone"}}"#, "", "hello server"] {
        conn.send_text(text).await.expect("text frame sent");
        let error = next_error(&mut conn).await;
        assert_eq!(
            (error.code, error.request_id),
            (ErrorCode::MalformedFrame as i32, 0),
            "text frame {text:?}: {error:?}"
        );
        assert!(!error.message.is_empty());
    }

    ping_pong(&mut conn, 7).await;
    send_ok(&mut conn, &send_frame(2, &bob_id, "after", &[bob_device])).await;

    let mut bob_conn = raw(&server, &bob).await;
    assert_eq!(
        ids(&queue_until_empty(&mut bob_conn).await),
        ["before", "after"]
    );
    others_can_chat(&server).await;
}

/// A send frame of exactly `len` encoded bytes.
fn frame_of_exactly(
    len: usize,
    request_id: u64,
    recipient: &str,
    id: &str,
    device: u32,
) -> Vec<u8> {
    (len.saturating_sub(300)..len)
        .map(|body_len| send_frame_sized(request_id, recipient, id, &[device], body_len))
        .find(|frame| frame.encoded_len() == len)
        .unwrap_or_else(|| panic!("no send frame of exactly {len} bytes"))
        .encode_to_vec()
}

#[tokio::test]
async fn oversized_frame_gets_frame_too_large_then_close_1009_and_nothing_accepted_is_lost() {
    const LIMIT: usize = 4096;
    let server = TestServer::start_with(|c| c.gateway.max_frame_bytes = LIMIT).await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let carol = server.register(&unique_phone()).await;
    let carol_id = carol.user_id().to_string();
    let carol_device = carol.address().device;

    let (mut bob_raw, welcome) = GatewayConnection::connect(
        &server.gateway_url(),
        &bob.credentials(),
        &Default::default(),
    )
    .await
    .expect("bob connects");
    assert_eq!(
        welcome.max_frame_bytes as usize, LIMIT,
        "the limit is announced"
    );
    assert!(queue_until_empty(&mut bob_raw).await.is_empty());

    // Alice's message is sent and pushed to Bob's device, which has not acknowledged it yet.
    let (alice_chat, _alice_events) = alice.connect().await.expect("alice connects");
    let sent = alice_chat
        .send_text(bob.user_id(), "sent before the big frame")
        .await
        .expect("sent");
    assert_eq!(ids(&deliveries(&mut bob_raw, 1).await), [sent.id.as_str()]);

    // A frame of exactly the limit is fine...
    let at_limit = frame_of_exactly(LIMIT, 1, &carol_id, "at-limit", carol_device);
    bob_raw.send_raw(at_limit).await.expect("sent");
    match next_body(&mut bob_raw).await {
        server_frame::Body::SendResult(result) => {
            assert_eq!(
                (result.request_id, result.status),
                (1, ErrorCode::Ok as i32)
            );
        }
        other => panic!("expected the SendResult of the frame at the limit, got {other:?}"),
    }

    // ...one over it is refused with FRAME_TOO_LARGE, then the socket closes 1009.
    let too_big = send_frame_sized(2, &carol_id, "too-big", &[carol_device], LIMIT + 500);
    assert!(too_big.encoded_len() > LIMIT);
    bob_raw.send(&too_big).await.expect("sent");
    let error = next_error(&mut bob_raw).await;
    assert_eq!(error.code, ErrorCode::FrameTooLarge as i32, "{error:?}");
    assert!(!error.message.is_empty());
    let (code, after) = closed(&mut bob_raw).await;
    assert_eq!(
        code,
        close::MESSAGE_TOO_BIG,
        "frames before the close: {after:?}"
    );

    // Bob reconnects and gets the message that was pushed but not yet acknowledged.
    let (_bob_chat, mut bob_events) = bob.connect().await.expect("bob reconnects");
    let got = messages(&mut bob_events, 1).await;
    assert_eq!(
        got[0],
        (
            alice.user_id(),
            sent.id.clone(),
            "sent before the big frame".into()
        )
    );
    // Carol gets what Bob sent before, and not the refused frame.
    let mut carol_raw = raw(&server, &carol).await;
    assert_eq!(ids(&queue_until_empty(&mut carol_raw).await), ["at-limit"]);

    // The conversation goes on.
    let later = alice_chat
        .send_text(bob.user_id(), "still there?")
        .await
        .expect("sent");
    let got = messages(&mut bob_events, 1).await;
    assert_eq!(got[0].1, later.id);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn unknown_recipient_and_malformed_recipient_ids_are_refused_with_their_codes() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let mut conn = raw(&server, &alice).await;

    let nobody = UserId::random().to_string();
    let result = request(&mut conn, &send_frame(1, &nobody, "to-nobody", &[1])).await;
    assert_eq!(
        result.status,
        ErrorCode::UnknownRecipient as i32,
        "{result:?}"
    );
    assert_eq!(
        (result.request_id, result.client_message_id.as_str()),
        (1, "to-nobody")
    );

    let malformed = [
        "not-a-user-id".to_owned(),
        String::new(),
        "12345".to_owned(),
        format!("{bob_id}0"),
        bob_id.replace('-', "_"),
    ];
    for (n, recipient) in malformed.iter().enumerate() {
        let request_id = 10 + n as u64;
        let result = request(&mut conn, &send_frame(request_id, recipient, "bad", &[1])).await;
        assert_eq!(
            (result.status, result.request_id),
            (ErrorCode::InvalidArgument as i32, request_id),
            "recipient {recipient:?}: {result:?}"
        );
        assert!(!result.message.is_empty());
    }

    // The connection works, and only the valid message reaches Bob.
    send_ok(&mut conn, &send_frame(20, &bob_id, "valid", &[1])).await;
    let mut bob_conn = raw(&server, &bob).await;
    assert_eq!(ids(&queue_until_empty(&mut bob_conn).await), ["valid"]);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn sends_with_bad_fields_are_refused_with_invalid_argument_and_nothing_is_queued() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let device = bob.address().device;
    let mut conn = raw(&server, &alice).await;

    let mut cases: Vec<(&str, ClientFrame)> = Vec::new();
    cases.push(("an empty message id", send_frame(1, &bob_id, "", &[device])));
    let long_id = "x".repeat(129);
    cases.push((
        "a message id over 128 bytes",
        send_frame(2, &bob_id, &long_id, &[device]),
    ));
    cases.push(("no ciphertexts", send_frame(3, &bob_id, "none", &[])));
    let mut empty_body = send_frame(4, &bob_id, "empty", &[device]);
    let mut unknown_type = send_frame(5, &bob_id, "untyped", &[device]);
    if let (
        Some(courier_protocol::v1::client_frame::Body::Send(empty)),
        Some(courier_protocol::v1::client_frame::Body::Send(untyped)),
    ) = (empty_body.body.as_mut(), unknown_type.body.as_mut())
    {
        empty.ciphertexts[0].body.clear();
        untyped.ciphertexts[0].r#type = 0;
    }
    cases.push(("an empty ciphertext", empty_body));
    cases.push(("an unspecified ciphertext type", unknown_type));
    cases.push((
        "the same device twice",
        send_frame(6, &bob_id, "twice", &[device, device]),
    ));
    for (what, frame) in &cases {
        let result = request(&mut conn, frame).await;
        assert_eq!(
            (result.status, result.request_id),
            (ErrorCode::InvalidArgument as i32, frame.request_id),
            "{what}: {result:?}"
        );
        assert!(!result.message.is_empty(), "{what}");
    }

    send_ok(&mut conn, &send_frame(7, &bob_id, "valid", &[device])).await;
    let mut bob_conn = raw(&server, &bob).await;
    assert_eq!(ids(&queue_until_empty(&mut bob_conn).await), ["valid"]);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn device_mismatch_names_missing_and_stale_devices_and_queues_nothing() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let device = bob.address().device;
    let mut conn = raw(&server, &alice).await;

    // Only a device Bob does not have: his real one is missing, the other is stale.
    let result = request(&mut conn, &send_frame(1, &bob_id, "m-1", &[device + 6])).await;
    assert_eq!(
        result.status,
        ErrorCode::DeviceMismatch as i32,
        "{result:?}"
    );
    assert_eq!(result.missing_devices, [device]);
    assert_eq!(result.stale_devices, [device + 6]);
    assert_eq!(
        (result.request_id, result.client_message_id.as_str()),
        (1, "m-1")
    );

    // His device and two that do not exist: nothing missing, two stale.
    let frame = send_frame(2, &bob_id, "m-1", &[device, device + 6, device + 7]);
    let result = request(&mut conn, &frame).await;
    assert_eq!(
        result.status,
        ErrorCode::DeviceMismatch as i32,
        "{result:?}"
    );
    assert!(result.missing_devices.is_empty(), "{result:?}");
    let mut stale = result.stale_devices.clone();
    stale.sort_unstable();
    assert_eq!(stale, [device + 6, device + 7]);

    // The refused attempts left no trace: the same message id, now right, is not a duplicate.
    let ok = send_ok(&mut conn, &send_frame(3, &bob_id, "m-1", &[device])).await;
    assert!(
        !ok.duplicate,
        "refused attempts must not count for de-duplication"
    );

    let mut bob_conn = raw(&server, &bob).await;
    let queue = queue_until_empty(&mut bob_conn).await;
    assert_eq!(ids(&queue), ["m-1"]);
    assert_eq!(queue[0].1.ciphertext, fake_ciphertext("m-1"));
    others_can_chat(&server).await;
}

/// The error of connecting to the gateway with `credentials`.
async fn refused_upgrade(server: &TestServer, credentials: &Credentials) -> (u16, String) {
    match GatewayConnection::connect(&server.gateway_url(), credentials, &Default::default()).await
    {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("connected with bad credentials"),
    }
}

#[tokio::test]
async fn gateway_upgrade_without_or_with_wrong_credentials_is_refused_401() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let good = alice.credentials();

    let wrong_password = Credentials {
        address: good.address,
        password: "not-the-password".into(),
    };
    let unknown_device = Credentials {
        address: DeviceAddress::new(good.address.user, good.address.device + 40),
        password: good.password.clone(),
    };
    let unknown_user = Credentials {
        address: DeviceAddress::new(UserId::random(), 1),
        password: good.password.clone(),
    };
    for (what, credentials) in [
        ("a wrong password", &wrong_password),
        ("an unknown device", &unknown_device),
        ("an unknown user", &unknown_user),
    ] {
        assert_eq!(
            refused_upgrade(&server, credentials).await,
            (401, "unauthorized".to_owned()),
            "{what}"
        );
    }

    // A well-formed WebSocket upgrade without any Authorization, or with a malformed one.
    for authorization in [None, Some("Bearer abc"), Some("Basic !!!"), Some("Basic ")] {
        let mut upgrade = reqwest::Client::new()
            .get(server.gateway_url().replacen("ws://", "http://", 1))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(authorization) = authorization {
            upgrade = upgrade.header("authorization", authorization);
        }
        let answer = Answer::of(upgrade.send().await.expect("an HTTP answer")).await;
        answer.assert_error(401, "unauthorized");
        assert!(
            answer.headers.contains_key("www-authenticate"),
            "401 names the scheme"
        );
    }

    // The real credentials still work, and so does everybody else.
    let mut conn = raw(&server, &alice).await;
    ping_pong(&mut conn, 1).await;
    others_can_chat(&server).await;
}

#[tokio::test]
async fn a_device_that_never_acks_gets_one_push_window_then_everything_once_on_a_real_client() {
    const WINDOW: usize = 8;
    const SENT: usize = 20;
    let server = TestServer::start_with(|c| c.gateway.push_window = WINDOW).await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;

    let mut bob_raw = raw(&server, &bob).await;
    assert!(queue_until_empty(&mut bob_raw).await.is_empty());

    let (alice_chat, mut alice_events) = alice.connect().await.expect("alice connects");
    let mut sent = Vec::new();
    for i in 0..SENT {
        let message = alice_chat
            .send_text(bob.user_id(), &format!("m{i}"))
            .await
            .expect("every message is accepted although Bob does not ack");
        sent.push(message.id);
    }

    // Only one window's worth is pushed to a device that never acknowledges.
    let pushed = deliveries(&mut bob_raw, WINDOW).await;
    assert_eq!(ids(&pushed), sent[..WINDOW]);
    assert!(pushed.windows(2).all(|w| w[0].0 < w[1].0), "seqs increase");
    assert_quiet(&mut bob_raw, "a device with a full push window").await;

    // The real client replaces the raw connection...
    let (_bob_chat, mut bob_events) = bob.connect().await.expect("bob connects");
    let (code, frames) = closed(&mut bob_raw).await;
    assert_eq!(code, close::REPLACED);
    assert!(
        frames
            .iter()
            .all(|f| !matches!(f, server_frame::Body::Delivery(_))),
        "nothing more was pushed to the raw connection: {frames:?}"
    );

    // ...and receives every message exactly once, in order.
    let got = messages(&mut bob_events, SENT).await;
    let expected: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(i, id)| (alice.user_id(), id.clone(), format!("m{i}")))
        .collect();
    assert_eq!(got, expected);
    wait_for(&mut bob_events, |e| matches!(e, Event::QueueEmpty)).await;
    assert_no_more_messages(&mut bob_events).await;

    // Alice hears "delivered" for each; by then every ack is applied.
    let mut delivered = Vec::new();
    while delivered.len() < SENT {
        if let Event::Receipt {
            kind: ReceiptKind::Delivered,
            ids,
            ..
        } = wait_for(&mut alice_events, |e| matches!(e, Event::Receipt { .. })).await
        {
            delivered.extend(ids);
        }
    }
    delivered.sort();
    let mut all = sent.clone();
    all.sort();
    assert_eq!(delivered, all);

    // Nothing is left to deliver again.
    let mut bob_again = raw(&server, &bob).await;
    assert!(queue_until_empty(&mut bob_again).await.is_empty());
}

/// How a flood ended.
struct Flood {
    close_code: u16,
    /// Client message ids of the sends answered OK during the flood.
    accepted: Vec<String>,
    rate_limited: usize,
    malformed: usize,
}

/// Sends frames made by `frame` (given a request id) as fast as the rules below allow, until
/// the server closes the connection.
///
/// Frames go out in pipelined batches. Each batch is exactly as long as the shortest way to
/// the close (`tokens` more accepted frames, then refusals until more than `max_violations` in
/// a row), so the server has read everything it was sent when it closes. Otherwise a close with
/// unread data would make the kernel answer with a reset, which can swallow the close frame.
async fn flood(
    conn: &mut GatewayConnection,
    tokens: u32,
    max_violations: u32,
    mut frame: impl FnMut(u64) -> Outgoing,
) -> Flood {
    let mut outcome = Flood {
        close_code: 0,
        accepted: Vec::new(),
        rate_limited: 0,
        malformed: 0,
    };
    let mut in_a_row = 0u32;
    let mut next = 1000u64;
    let mut batch = tokens + max_violations + 1;
    loop {
        assert!(
            next < 1500,
            "the server never closed the flooding connection"
        );
        let first = next;
        for _ in 0..batch {
            match frame(next) {
                Outgoing::Binary(bytes) => conn.send_raw(bytes).await.expect("frame sent"),
                Outgoing::Text(text) => conn.send_text(&text).await.expect("frame sent"),
            }
            next += 1;
        }
        for request_id in first..next {
            match recv(conn).await {
                courier_client::Incoming::Frame(frame) => match frame.body {
                    Some(server_frame::Body::SendResult(result)) => {
                        assert_eq!(
                            (result.request_id, result.status),
                            (request_id, ErrorCode::Ok as i32),
                            "{result:?}"
                        );
                        outcome.accepted.push(result.client_message_id);
                        in_a_row = 0;
                    }
                    Some(server_frame::Body::Error(error))
                        if error.code == ErrorCode::RateLimited as i32 =>
                    {
                        assert!(!error.message.is_empty());
                        outcome.rate_limited += 1;
                        in_a_row += 1;
                    }
                    Some(server_frame::Body::Error(error))
                        if error.code == ErrorCode::MalformedFrame as i32 =>
                    {
                        outcome.malformed += 1;
                        in_a_row = 0;
                    }
                    other => panic!("unexpected answer to frame {request_id}: {other:?}"),
                },
                courier_client::Incoming::Closed { code, .. } => {
                    assert_eq!(
                        request_id,
                        next - 1,
                        "closed before reading every frame of the batch"
                    );
                    outcome.close_code = code;
                    return outcome;
                }
            }
        }
        batch = max_violations + 1 - in_a_row;
    }
}

enum Outgoing {
    Binary(Vec<u8>),
    Text(String),
}

#[tokio::test]
async fn a_flooding_connection_is_rate_limited_then_closed_1008_and_nobody_else_notices() {
    const BURST: u32 = 10;
    const VIOLATIONS: u32 = 3;
    let server = TestServer::start_with(|c| {
        c.gateway.frames_per_sec = 1;
        c.gateway.frame_burst = BURST;
        c.gateway.max_rate_violations = VIOLATIONS;
    })
    .await;
    let flooder = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let device = bob.address().device;

    let mut conn = raw(&server, &flooder).await;
    assert!(queue_until_empty(&mut conn).await.is_empty());
    send_ok(
        &mut conn,
        &send_frame(1, &bob_id, "before-flood", &[device]),
    )
    .await;

    // The flood and an unrelated conversation at the same time.
    let flooding = flood(&mut conn, BURST - 1, VIOLATIONS, |request_id| {
        let id = format!("flood-{request_id}");
        Outgoing::Binary(send_frame(request_id, &bob_id, &id, &[device]).encode_to_vec())
    });
    let (outcome, ()) = tokio::join!(flooding, others_can_chat(&server));

    assert!(
        outcome.rate_limited > 0,
        "the flooder was told to slow down"
    );
    assert_eq!(outcome.close_code, close::POLICY_VIOLATION);
    assert!(outcome.accepted.len() >= (BURST - 1) as usize);

    // What was answered OK is delivered, what was refused is not.
    let mut expected = vec!["before-flood".to_owned()];
    expected.extend(outcome.accepted);
    let mut bob_conn = raw(&server, &bob).await;
    assert_eq!(ids(&queue_until_empty(&mut bob_conn).await), expected);

    // The limit is per connection: the flooder can connect again.
    let mut again = raw(&server, &flooder).await;
    ping_pong(&mut again, 3).await;
}

#[tokio::test]
async fn a_connection_flooding_with_malformed_frames_is_rate_limited_too() {
    const BURST: u32 = 10;
    const VIOLATIONS: u32 = 3;
    let server = TestServer::start_with(|c| {
        c.gateway.frames_per_sec = 1;
        c.gateway.frame_burst = BURST;
        c.gateway.max_rate_violations = VIOLATIONS;
    })
    .await;
    let flooder = server.register(&unique_phone()).await;
    let mut conn = raw(&server, &flooder).await;
    assert!(queue_until_empty(&mut conn).await.is_empty());

    // Garbage costs the server as much as any frame: it must count against the same limit.
    let outcome = flood(&mut conn, BURST, VIOLATIONS, |request_id| {
        if request_id % 2 == 0 {
            Outgoing::Binary(vec![0xff; 16])
        } else {
            Outgoing::Text("garbage".into())
        }
    })
    .await;
    assert!(outcome.malformed > 0);
    assert!(
        outcome.rate_limited > 0,
        "the flooder was told to slow down"
    );
    assert_eq!(outcome.close_code, close::POLICY_VIOLATION);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn a_second_connection_of_the_same_device_replaces_the_first_with_4000() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let bob_id = bob.user_id().to_string();
    let device = bob.address().device;

    let mut first = raw(&server, &bob).await;
    assert!(queue_until_empty(&mut first).await.is_empty());
    let mut alice_conn = raw(&server, &alice).await;
    send_ok(&mut alice_conn, &send_frame(1, &bob_id, "m1", &[device])).await;
    assert_eq!(ids(&deliveries(&mut first, 1).await), ["m1"]);

    let mut second = raw(&server, &bob).await;
    let (code, frames) = closed(&mut first).await;
    assert_eq!(code, close::REPLACED, "frames before the close: {frames:?}");

    // What the first connection had not acknowledged comes again on the second.
    assert_eq!(ids(&queue_until_empty(&mut second).await), ["m1"]);
    ping_pong(&mut second, 5).await;
    send_ok(&mut alice_conn, &send_frame(2, &bob_id, "m2", &[device])).await;
    assert_eq!(ids(&deliveries(&mut second, 1).await), ["m2"]);

    // The SDK reports the replacement as a close with 4000; the newer connection works.
    let carol = server.register(&unique_phone()).await;
    let dave = server.register(&unique_phone()).await;
    let (_old_chat, mut old_events) = dave.connect().await.expect("dave connects");
    let (_new_chat, mut new_events) = dave.connect().await.expect("dave connects again");
    match wait_for(&mut old_events, |e| matches!(e, Event::Closed { .. })).await {
        Event::Closed { code, .. } => assert_eq!(code, close::REPLACED),
        _ => unreachable!(),
    }
    let (carol_chat, _carol_events) = carol.connect().await.expect("carol connects");
    let sent = carol_chat
        .send_text(dave.user_id(), "which phone is this?")
        .await
        .expect("sent");
    let got = messages(&mut new_events, 1).await;
    assert_eq!(
        got[0],
        (carol.user_id(), sent.id, "which phone is this?".into())
    );
}

#[tokio::test]
async fn registering_a_number_again_closes_the_old_device_4001_and_revokes_its_credentials() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;

    let (alice_chat, mut alice_events) = alice.connect().await.expect("alice connects");
    let mut old = raw(&server, &bob).await;
    assert!(queue_until_empty(&mut old).await.is_empty());
    let first = alice_chat
        .send_text(bob.user_id(), "to the old phone")
        .await
        .expect("sent");
    assert_eq!(ids(&deliveries(&mut old, 1).await), [first.id]);

    // The number moves to a new phone.
    courier_client::Client::request_code(&server.url(), &bob.phone())
        .await
        .expect("code requested");
    let code = server.codes.code_for(&bob.phone());
    let new_bob = courier_client::Client::register(
        &server.url(),
        &bob.phone(),
        &code,
        "new phone",
        StateFile::memory(),
    )
    .await
    .expect("registered again");
    assert_eq!(new_bob.user_id(), bob.user_id(), "same account");
    assert_ne!(new_bob.address().device, bob.address().device, "new device");

    let (code, _) = closed(&mut old).await;
    assert_eq!(code, close::DEVICE_REMOVED);

    // The old credentials are dead on HTTP and on the gateway.
    match bob.api().prekey_count(&bob.credentials()).await {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (401, "unauthorized"));
        }
        other => panic!("old credentials still accepted: {other:?}"),
    }
    assert_eq!(
        refused_upgrade(&server, &bob.credentials()).await,
        (401, "unauthorized".to_owned())
    );

    // Alice still has a session with the old device only; her client repairs the device
    // mismatch and the new phone gets the message.
    let (new_chat, mut new_events) = new_bob.connect().await.expect("new phone connects");
    let second = alice_chat
        .send_text(bob.user_id(), "to the new phone")
        .await
        .expect("sent");
    let got = messages(&mut new_events, 1).await;
    assert_eq!(
        got[0],
        (alice.user_id(), second.id, "to the new phone".into())
    );
    let reply = new_chat
        .send_text(alice.user_id(), "new phone, who dis")
        .await
        .expect("sent");
    let got = messages(&mut alice_events, 1).await;
    assert_eq!(
        got[0],
        (bob.user_id(), reply.id, "new phone, who dis".into())
    );
    others_can_chat(&server).await;
}

/// A client that closes (code 1000) gets the close answered: the WebSocket closing handshake
/// completes instead of the server dropping the connection, which the client would see as a
/// reset.
#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    for _ in 0..3 {
        let (sender, mut receiver) = raw(&server, &alice).await.split();
        sender.close().await;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                match receiver.recv().await {
                    // Frames the server sent before it read the close (QueueEmpty).
                    Ok(courier_client::Incoming::Frame(_)) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("an answer in time");
        match answer {
            Ok(courier_client::Incoming::Closed { code, .. }) => assert_eq!(code, 1000),
            other => panic!("expected the close to be answered, got {other:?}"),
        }
    }
}
