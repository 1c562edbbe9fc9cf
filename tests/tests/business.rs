//! The business API end to end, mounted by the server as in the embedded default: a business
//! is created through the admin API, sends every message type through the Cloud API paths to a
//! consumer using the client SDK, and receives the consumer's messages and its own messages'
//! statuses as signed webhooks. Then the rules (window, throughput, pair rate), bad requests
//! and tokens, and webhook delivery against receivers that fail, hang or are down, across a
//! restart.

mod business_support;

use std::sync::Arc;
use std::time::Duration;

use business_support::{Business, Mode, Receiver, change_value, code, expected_signature};
use courier_business::clock::ManualClock;
use courier_client::{Event, ReceiptKind, rich};
use courier_protocol::UserId;
use courier_protocol::v1::content;
use courier_server::Extensions;
use courier_tests::{TestServer, unique_phone, wait_for};
use serde_json::{Value, json};

/// A server running the business API on a clock the test moves; webhook retries are quick.
async fn server_with(
    clock: Arc<ManualClock>,
    tweak: impl FnOnce(&mut courier_server::Config),
) -> TestServer {
    TestServer::start_with_extensions(
        |config| {
            config.business.webhooks.initial_backoff_ms = 20;
            config.business.webhooks.max_backoff_secs = 1;
            config.business.webhooks.timeout_ms = 500;
            tweak(config);
        },
        Extensions {
            business_clock: Some(clock),
            ..Extensions::default()
        },
    )
    .await
}

fn business_api(server: &TestServer) -> (String, String) {
    let business = server
        .running()
        .business()
        .expect("the server runs the business API");
    (
        format!("http://{}", business.local_addr()),
        business.service().admin_token.clone(),
    )
}

async fn business(server: &TestServer, name: &str) -> Business {
    let (base, admin) = business_api(server);
    Business::create(&base, &admin, name, &unique_phone()).await
}

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// The next 1:1 message event.
async fn next_message(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
) -> (
    String,
    String,
    content::Body,
    Option<courier_protocol::v1::MessageContext>,
) {
    match wait_for(events, |e| matches!(e, Event::Message { .. })).await {
        Event::Message {
            id, text, content, ..
        } => {
            let content = *content;
            (id, text, content.body.expect("a body"), content.context)
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_business_and_a_customer_exchange_every_message_type_with_signed_webhooks() {
    let clock = ManualClock::at_now();
    let server = server_with(clock.clone(), |_| {}).await;
    let acme = business(&server, "Acme").await;
    let receiver = Receiver::start("verify-me").await;

    // A callback that fails the handshake is refused (2200); the right one is registered after
    // answering the challenge.
    let wrong = Receiver::start("another-token").await;
    let refused = acme
        .post(
            &format!("{}/subscribed_apps", acme.id),
            json!({ "override_callback_uri": wrong.url(), "verify_token": "verify-me" }),
        )
        .await;
    assert_eq!(code(&refused), 2200, "{refused:?}");
    let subscribed = acme.subscribe(&receiver).await;
    assert_eq!(subscribed.1["success"], true, "{subscribed:?}");
    let checks = receiver.verifications();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].0.as_str(), checks[0].1.as_str()),
        ("subscribe", "verify-me")
    );
    let (_, listed) = acme.get(&format!("{}/subscribed_apps", acme.id)).await;
    assert_eq!(listed["data"][0]["override_callback_uri"], receiver.url());

    let customer = server.register(&unique_phone()).await;
    let (chat, mut events) = customer.connect().await.unwrap();
    let customer_wa = digits(&customer.phone());

    // Nothing from the customer yet: free-form is outside the window, a template is not.
    let outside = acme.send_text(&customer_wa, "hello?").await.unwrap_err();
    assert_eq!(code(&outside), 131047, "{outside:?}");
    acme.create_template("order_update").await;
    let (_, listed) = acme
        .get(&format!("{}/message_templates?name=order_update", acme.id))
        .await;
    assert_eq!(
        listed["data"][0]["parameter_format"], "POSITIONAL",
        "templates are described with their parameter format: {listed}"
    );
    let template_id = acme
        .send_template(&customer_wa, "order_update", "A-17")
        .await
        .unwrap();
    let (id, text, body, _) = next_message(&mut events).await;
    assert_eq!(id, template_id, "the wamid is the platform's message id");
    assert!(text.contains("A-17"), "{text}");
    let content::Body::Template(template) = body else {
        panic!("a template arrives as a template: {body:?}");
    };
    assert_eq!(template.body, "Your order A-17 is on its way");
    let sent = receiver.status(&template_id, "sent").await;
    assert_eq!(sent["statuses"][0]["recipient_id"], customer_wa);
    let delivered = receiver.status(&template_id, "delivered").await;
    // The user id in the Cloud API's business-scoped shape (`CC.<digits>`), which clients tell
    // apart from phone numbers and group ids.
    let customer_bsuid = courier_business::ids::bsuid(&customer.user_id().to_string());
    assert!(customer_bsuid.starts_with("ZZ."), "{customer_bsuid}");
    assert_eq!(
        delivered["contacts"][0]["user_id"], customer_bsuid,
        "statuses carry contacts[] with user_id"
    );
    assert_eq!(
        delivered["statuses"][0]["recipient_user_id"],
        customer_bsuid
    );

    // The customer writes: a signed webhook in the Cloud API envelope.
    let business_user: UserId = acme.user_id.parse().unwrap();
    assert_eq!(customer.lookup(&acme.phone).await.unwrap(), business_user);
    let hello = chat.send_text(business_user, "hello Acme").await.unwrap();
    let message = receiver.message_with_text("hello Acme").await;
    // The business knows the message by a wamid of its own (derived from the sender device and
    // the platform's message id, so that a redelivery repeats it).
    let hello_wamid = message["id"].as_str().unwrap().to_owned();
    assert!(hello_wamid.starts_with("wamid."), "{hello_wamid}");
    assert_ne!(hello_wamid, hello.id);
    assert_eq!(message["from"], customer_wa);
    assert_eq!(message["type"], "text");
    let hit = receiver
        .hits()
        .into_iter()
        .find(|h| {
            h.accepted
                && change_value(&h.json()).is_some_and(|v| v["messages"][0]["id"] == hello_wamid)
        })
        .unwrap();
    assert_eq!(
        hit.signature.as_deref(),
        Some(expected_signature(&acme.app_secret, &hit.body).as_str()),
        "X-Hub-Signature-256 is the HMAC-SHA256 of the raw body under the app secret"
    );
    let payload = hit.json();
    assert_eq!(payload["object"], "whatsapp_business_account");
    assert_eq!(payload["entry"][0]["id"], acme.id);
    assert_eq!(payload["entry"][0]["changes"][0]["field"], "messages");
    let value = change_value(&payload).unwrap();
    assert_eq!(value["messaging_product"], "whatsapp");
    assert_eq!(value["metadata"]["phone_number_id"], acme.number_id);
    assert_eq!(value["contacts"][0]["wa_id"], customer_wa);
    assert_eq!(value["contacts"][0]["user_id"], customer_bsuid);
    assert_eq!(message["from_user_id"], customer_bsuid);

    // Within the window: a reply with context, buttons, a reaction, mark as read. The reply
    // goes to the sender as the webhook named them (`recipient`, the business-scoped id).
    let reply_id = acme
        .send(json!({
            "messaging_product": "whatsapp", "recipient_type": "individual",
            "recipient": customer_bsuid, "type": "text",
            "context": { "message_id": hello_wamid }, "text": { "body": "How can we help?" },
        }))
        .await;
    assert_eq!(reply_id.0, 200, "{reply_id:?}");
    let (_, text, _, context) = next_message(&mut events).await;
    assert_eq!(text, "How can we help?");
    assert_eq!(context.expect("a reply quotes").message_id, hello.id);

    let buttons = acme
        .send(json!({
            "messaging_product": "whatsapp", "to": customer_wa, "type": "interactive",
            "interactive": {
                "type": "button",
                "body": { "text": "Track or cancel?" },
                "action": { "buttons": [
                    { "type": "reply", "reply": { "id": "track", "title": "Track" } },
                    { "type": "reply", "reply": { "id": "cancel", "title": "Cancel" } },
                ] },
            },
        }))
        .await;
    assert_eq!(buttons.0, 200, "{buttons:?}");
    let buttons_id = buttons.1["messages"][0]["id"].as_str().unwrap().to_owned();
    let (id, _, body, _) = next_message(&mut events).await;
    assert_eq!(id, buttons_id);
    let offered = courier_protocol::v1::Content {
        body: Some(body),
        ..Default::default()
    };
    let picked = rich::choose(&offered, "2").unwrap();
    assert_eq!(picked.id, "cancel");
    let answer = rich::interactive_reply(rich::context(&buttons_id, Some(business_user)), picked);
    chat.send_content_as(business_user, &uuid(), answer)
        .await
        .unwrap();
    let pressed = receiver
        .wait_for("a button reply", |v| {
            v["messages"][0]["type"] == "interactive"
        })
        .await;
    let pressed = &change_value(&pressed).unwrap()["messages"][0];
    assert_eq!(pressed["interactive"]["type"], "button_reply");
    assert_eq!(pressed["interactive"]["button_reply"]["id"], "cancel");
    assert_eq!(pressed["context"]["id"], buttons_id);

    let reacted = acme
        .send(json!({
            // The platform's own user id is a recipient too.
            "messaging_product": "whatsapp", "recipient": customer.user_id().to_string(),
            "type": "reaction",
            "reaction": { "message_id": hello_wamid, "emoji": "👍" },
        }))
        .await;
    assert_eq!(reacted.0, 200, "{reacted:?}");
    let (_, _, body, _) = next_message(&mut events).await;
    let content::Body::Reaction(reaction) = body else {
        panic!("a reaction arrives as a reaction: {body:?}");
    };
    assert_eq!(
        (reaction.message_id.as_str(), reaction.emoji.as_str()),
        (hello.id.as_str(), "👍")
    );

    let read = acme
        .send(
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": hello_wamid }),
        )
        .await;
    assert_eq!(read.1["success"], true, "{read:?}");
    let receipt = wait_for(&mut events, |e| {
        matches!(
            e,
            Event::Receipt {
                kind: ReceiptKind::Read,
                ..
            }
        )
    })
    .await;
    let Event::Receipt { by, ids, .. } = receipt else {
        unreachable!()
    };
    assert_eq!((by, ids), (business_user, vec![hello.id.clone()]));

    // The customer reads the buttons: a read status, after delivered.
    chat.mark_read(business_user, vec![buttons_id.clone()])
        .await
        .unwrap();
    receiver.status(&buttons_id, "read").await;
    let order: Vec<String> = receiver
        .accepted()
        .iter()
        .filter_map(|p| change_value(p).cloned())
        .filter(|v| v["statuses"][0]["id"] == buttons_id)
        .map(|v| v["statuses"][0]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        order,
        ["sent", "delivered", "read"],
        "statuses only move forward, once each"
    );

    // A day later the window has closed again; templates still go.
    clock.advance_ms(25 * 3_600_000);
    let late = acme
        .send_text(&customer_wa, "still there?")
        .await
        .unwrap_err();
    assert_eq!(code(&late), 131047);
    acme.send_template(&customer_wa, "order_update", "A-18")
        .await
        .unwrap();
    let (_, text, _, _) = next_message(&mut events).await;
    assert!(text.contains("A-18"), "{text}");
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_recipient_without_an_account_is_reported_failed_with_131026() {
    let server = server_with(ManualClock::at_now(), |_| {}).await;
    let acme = business(&server, "Acme").await;
    let receiver = Receiver::start("t").await;
    acme.subscribe(&receiver).await;
    acme.create_template("order_update").await;
    let nobody = digits(&unique_phone());
    let wamid = acme
        .send_template(&nobody, "order_update", "A-1")
        .await
        .unwrap();
    let failed = receiver.status(&wamid, "failed").await;
    assert_eq!(
        failed["statuses"][0]["errors"][0]["code"], 131026,
        "{failed}"
    );
}

#[tokio::test]
async fn bad_requests_and_tokens_get_graph_errors() {
    let clock = ManualClock::at_now();
    let server = server_with(clock.clone(), |_| {}).await;
    let acme = business(&server, "Acme").await;
    let other = business(&server, "Other").await;
    let messages = acme.graph(&format!("{}/messages", acme.number_id));
    let http = &acme.http;

    // Broken JSON, an unknown field, a missing recipient: 100, nothing sent.
    let broken = http
        .post(&messages)
        .bearer_auth(&acme.token)
        .header("content-type", "application/json")
        .body("{\"messaging_product\": \"whatsapp\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let broken: Value = broken.json().await.unwrap();
    assert_eq!(broken["error"]["code"], 100, "{broken}");
    let unknown = acme
        .send(
            json!({ "messaging_product": "whatsapp", "to": "1", "type": "text",
                       "text": { "body": "x" }, "colour": "red" }),
        )
        .await;
    assert_eq!(code(&unknown), 100, "{unknown:?}");
    let no_recipient = acme
        .send(json!({ "messaging_product": "whatsapp", "type": "text", "text": { "body": "x" } }))
        .await;
    assert_eq!(code(&no_recipient), 100, "{no_recipient:?}");
    let no_template = acme
        .send_template(&digits(&unique_phone()), "never_created", "x")
        .await
        .unwrap_err();
    assert!(
        (132000..133000).contains(&code(&no_template)),
        "{no_template:?}"
    );

    // Tokens: none, garbage, another business's, revoked, expired: 190 or a refusal.
    let anonymous = business_support::call(
        http,
        reqwest::Method::GET,
        &acme.graph(&acme.number_id),
        None,
        None,
    )
    .await;
    assert_eq!(code(&anonymous), 190, "{anonymous:?}");
    let garbage = business_support::call(
        http,
        reqwest::Method::GET,
        &acme.graph(&acme.number_id),
        Some("EAAGarbage"),
        None,
    )
    .await;
    assert_eq!(code(&garbage), 190, "{garbage:?}");
    let foreign = business_support::call(
        http,
        reqwest::Method::GET,
        &acme.graph(&acme.number_id),
        Some(&other.token),
        None,
    )
    .await;
    // Another business's number looks like no number at all (Graph code 100, subcode 33).
    assert_eq!(code(&foreign), 100, "{foreign:?}");
    assert_eq!(foreign.1["error"]["error_subcode"], 33, "{foreign:?}");
    let foreign_send = business_support::call(
        http,
        reqwest::Method::POST,
        &messages,
        Some(&other.token),
        Some(
            json!({ "messaging_product": "whatsapp", "to": "15550100001", "type": "text",
                     "text": { "body": "not yours" } }),
        ),
    )
    .await;
    assert_eq!(code(&foreign_send), 100, "{foreign_send:?}");
    let (status, own) = acme.get(&acme.number_id).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["id"], acme.number_id);

    let (_, second) = acme
        .admin(
            reqwest::Method::POST,
            &format!("/businesses/{}/tokens", acme.id),
            Some(json!({ "name": "ci" })),
        )
        .await;
    let second_token = second["access_token"].as_str().unwrap().to_owned();
    let with = |token: &str| {
        let url = acme.graph(&acme.number_id);
        let token = token.to_owned();
        async move { business_support::call(http, reqwest::Method::GET, &url, Some(&token), None).await }
    };
    assert_eq!(with(&second_token).await.0, 200);
    let (_, listed) = acme
        .admin(
            reqwest::Method::GET,
            &format!("/businesses/{}/tokens", acme.id),
            None,
        )
        .await;
    assert!(
        !listed.to_string().contains(&second_token),
        "tokens are listed without their secret"
    );
    let revoked = acme
        .admin(
            reqwest::Method::DELETE,
            &format!(
                "/businesses/{}/tokens/{}",
                acme.id,
                second["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(revoked.0, 200, "{revoked:?}");
    assert_eq!(code(&with(&second_token).await), 190);
    assert_eq!(
        with(&acme.token).await.0,
        200,
        "revoking one token leaves the others"
    );

    let (_, expiring) = acme
        .admin(
            reqwest::Method::POST,
            &format!("/businesses/{}/tokens", acme.id),
            Some(json!({ "name": "short", "expires_in_secs": 60 })),
        )
        .await;
    let expiring = expiring["access_token"].as_str().unwrap().to_owned();
    assert_eq!(with(&expiring).await.0, 200);
    clock.advance_ms(61_000);
    assert_eq!(code(&with(&expiring).await), 190);

    // The admin API wants its own token.
    let (status, _) = business_support::call(
        http,
        reqwest::Method::GET,
        &format!("{}/admin/v1/businesses", acme.base),
        Some(&acme.token),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Unknown paths and methods answer Graph errors too.
    let unknown_edge = acme.get(&format!("{}/no_such_edge", acme.number_id)).await;
    assert!(unknown_edge.1["error"]["code"].is_u64(), "{unknown_edge:?}");
}

#[tokio::test]
async fn throughput_and_pair_rate_are_limited_per_number_on_the_service_clock() {
    let clock = ManualClock::at_now();
    let server = server_with(clock.clone(), |config| {
        config.business.throughput_per_number = 3;
        config.business.pair_burst = 100;
    })
    .await;
    let acme = business(&server, "Acme").await;
    acme.create_template("order_update").await;
    let customers: Vec<String> = (0..4).map(|_| digits(&unique_phone())).collect();
    for customer in &customers[..3] {
        acme.send_template(customer, "order_update", "1")
            .await
            .unwrap();
    }
    let limited = acme
        .send_template(&customers[3], "order_update", "1")
        .await
        .unwrap_err();
    assert_eq!(code(&limited), 130429, "{limited:?}");
    assert_eq!(limited.0, 429, "{limited:?}");
    clock.advance_ms(1_000);
    acme.send_template(&customers[3], "order_update", "1")
        .await
        .unwrap();

    let server = server_with(clock.clone(), |config| {
        config.business.throughput_per_number = 1_000;
        config.business.pair_burst = 2;
        config.business.pair_per_minute = 1;
    })
    .await;
    let acme = business(&server, "Acme").await;
    acme.create_template("order_update").await;
    let customer = digits(&unique_phone());
    let elsewhere = digits(&unique_phone());
    for _ in 0..2 {
        acme.send_template(&customer, "order_update", "1")
            .await
            .unwrap();
    }
    let paired = acme
        .send_template(&customer, "order_update", "1")
        .await
        .unwrap_err();
    assert_eq!(code(&paired), 131056, "{paired:?}");
    acme.send_template(&elsewhere, "order_update", "1")
        .await
        .expect("the pair limit is per recipient");
    clock.advance_ms(60_000);
    acme.send_template(&customer, "order_update", "1")
        .await
        .unwrap();
}

/// A customer of `server` who writes `texts` to `acme`.
async fn customer_writes(server: &TestServer, acme: &Business, texts: &[&str]) {
    let customer = server.register(&unique_phone()).await;
    let (chat, _events) = customer.connect().await.unwrap();
    let to: UserId = acme.user_id.parse().unwrap();
    for text in texts {
        chat.send_text(to, text).await.unwrap();
    }
    chat.close().await;
}

#[tokio::test]
async fn a_flaky_or_hanging_receiver_gets_every_webhook_in_order_per_conversation() {
    let server = server_with(ManualClock::at_now(), |_| {}).await;
    let acme = business(&server, "Acme").await;
    let receiver = Receiver::start("t").await;
    acme.subscribe(&receiver).await;

    receiver.fail_next(3);
    customer_writes(&server, &acme, &["one", "two", "three"]).await;
    for text in ["one", "two", "three"] {
        receiver.message_with_text(text).await;
    }
    assert_eq!(
        receiver.delivered_texts(),
        ["one", "two", "three"],
        "each once, in the conversation's order"
    );
    assert!(
        receiver.hits().iter().filter(|h| !h.accepted).count() >= 3,
        "the failed attempts were made and retried"
    );

    // A receiver that does not answer within the timeout is retried like one that fails.
    receiver.set_mode(Mode::Hang(Duration::from_secs(2)));
    customer_writes(&server, &acme, &["four"]).await;
    let attempts = receiver.hits().len();
    receiver.wait_for_hits(attempts + 1).await;
    receiver.set_mode(Mode::Accept);
    receiver.message_with_text("four").await;
}

#[tokio::test]
async fn webhooks_that_keep_failing_go_to_dead_letters_and_replay() {
    let clock = ManualClock::at_now();
    let server = server_with(clock.clone(), |config| {
        config.business.webhooks.max_age_secs = 3_600;
    })
    .await;
    let acme = business(&server, "Acme").await;
    let receiver = Receiver::start("t").await;
    acme.subscribe(&receiver).await;
    receiver.set_mode(Mode::Fail);
    customer_writes(&server, &acme, &["lost?"]).await;
    receiver.wait_for_hits(2).await;
    // Past the maximum age the next failure is final: a dead letter, not a loss.
    clock.advance_ms(3_601_000);
    let started = std::time::Instant::now();
    let dead = loop {
        let (_, dead) = acme
            .admin(reqwest::Method::GET, "/dead-letters", None)
            .await;
        if dead["data"].as_array().is_some_and(|d| !d.is_empty()) {
            break dead;
        }
        assert!(
            started.elapsed() < courier_tests::DEADLINE,
            "no dead letter: {dead}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let letter = &dead["data"][0];
    assert!(letter.to_string().contains(&acme.number_id), "{letter}");
    receiver.set_mode(Mode::Accept);
    let (number, app, seq) = (
        letter["number"].as_str().unwrap(),
        letter["app"].as_str().unwrap(),
        letter["seq"].as_u64().unwrap(),
    );
    let shown = acme
        .admin(
            reqwest::Method::GET,
            &format!("/dead-letters/{number}/{app}/{seq}"),
            None,
        )
        .await;
    assert!(shown.1.to_string().contains("lost?"), "{shown:?}");
    let replayed = acme
        .admin(
            reqwest::Method::POST,
            &format!("/dead-letters/{number}/{app}/{seq}/replay"),
            None,
        )
        .await;
    assert_eq!(replayed.0, 200, "{replayed:?}");
    receiver.message_with_text("lost?").await;
    let (_, dead) = acme
        .admin(reqwest::Method::GET, "/dead-letters", None)
        .await;
    assert_eq!(dead["data"].as_array().map(Vec::len), Some(0), "{dead}");
}

#[tokio::test]
async fn pending_webhooks_and_accepted_messages_survive_a_restart() {
    survive_a_restart(|_| {}).await;
}

/// The same on the cluster store: the server hands its CQL store (a keyspace of its own on
/// the cluster at `COURIER_TEST_CQL`) to the business API.
#[tokio::test]
async fn on_the_cql_store_pending_webhooks_and_accepted_messages_survive_a_restart() {
    let contact_point = courier_tests::cluster_service("COURIER_TEST_CQL", "127.0.0.1:19042");
    let keyspace = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    survive_a_restart(move |config| {
        config.store.backend = "cql".into();
        config.store.cql_contact_points = contact_point.clone();
        config.store.cql_keyspace = keyspace.clone();
        config.store.cql_replication_factor = 1;
    })
    .await;
}

/// Webhooks pending and a device's keys survive a restart of the server on the store that
/// `store` configures.
async fn survive_a_restart(store: impl Fn(&mut courier_server::Config)) {
    let clock = ManualClock::at_now();
    let mut server = server_with(clock.clone(), &store).await;
    let (platform, business_addr) = (
        server.addr(),
        server.running().business().unwrap().local_addr(),
    );
    let data_dir = server.dir.path().to_owned();
    let acme = business(&server, "Acme").await;
    let receiver = Receiver::start("t").await;
    acme.subscribe(&receiver).await;
    receiver.set_mode(Mode::Fail);
    customer_writes(&server, &acme, &["before the restart"]).await;
    receiver.wait_for_hits(1).await;
    server.stop().await;

    receiver.set_mode(Mode::Accept);
    let restarted = server_with(clock.clone(), |config| {
        store(config);
        config.server.listen = platform;
        config.business.listen = business_addr;
        config.store.data_dir = data_dir;
    })
    .await;
    receiver.message_with_text("before the restart").await;
    // The number's device came back with its keys: it still sends.
    acme.create_template("after_restart").await;
    let customer = restarted.register(&unique_phone()).await;
    let (_chat, mut events) = customer.connect().await.unwrap();
    acme.send_template(&digits(&customer.phone()), "after_restart", "B-2")
        .await
        .unwrap();
    let (_, text, _, _) = next_message(&mut events).await;
    assert!(text.contains("B-2"), "{text}");
}

const SERVER: &str = env!("CARGO_BIN_EXE_courier-test-server");

#[tokio::test]
async fn webhooks_pending_at_a_kill_9_are_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node");
    let mut child = courier_tests::ChildServer::spawn_with(
        std::path::Path::new(SERVER),
        &data_dir,
        std::net::SocketAddr::from(([127, 0, 0, 1], courier_tests::free_port())),
        vec![
            (
                "COURIER_BUSINESS__WEBHOOKS__INITIAL_BACKOFF_MS".into(),
                "20".into(),
            ),
            (
                "COURIER_BUSINESS__WEBHOOKS__MAX_BACKOFF_SECS".into(),
                "1".into(),
            ),
        ],
    )
    .await;
    let base = child.business_url();
    wait_until_up(&base).await;
    let admin = std::fs::read_to_string(data_dir.join("business-admin.token")).unwrap();
    let acme = Business::create(&base, admin.trim(), "Acme", &unique_phone()).await;
    let receiver = Receiver::start("t").await;
    assert_eq!(acme.subscribe(&receiver).await.0, 200);
    receiver.set_mode(Mode::Fail);

    let customer = child
        .register(&unique_phone(), courier_client::StateFile::memory())
        .await;
    let (chat, _events) = customer.connect().await.unwrap();
    let to: UserId = acme.user_id.parse().unwrap();
    for text in ["first", "second", "third"] {
        chat.send_text(to, text).await.unwrap();
    }
    // The first webhook was attempted (and refused): the service has taken them in.
    receiver.wait_for_hits(1).await;
    child.kill9();

    receiver.set_mode(Mode::Accept);
    child.restart().await;
    for text in ["first", "second", "third"] {
        receiver.message_with_text(text).await;
    }
    assert_eq!(
        receiver.delivered_texts(),
        ["first", "second", "third"],
        "in order, each once"
    );
    chat.close().await;
    child.terminate();
}

async fn wait_until_up(base: &str) {
    let started = std::time::Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            started.elapsed() < courier_tests::DEADLINE,
            "the business API at {base} is not up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether an answer says the router has nothing for the path or method.
fn unrouted(answer: &business_support::Answer) -> bool {
    let error = &answer.1["error"];
    let says = |text: &str| {
        [&error["message"], &error["error_data"]["details"]]
            .iter()
            .any(|v| v.as_str().is_some_and(|m| m.starts_with(text)))
    };
    answer.0 == 404
        || answer.0 == 405
        || says("Unsupported GET")
        || says("Unsupported POST")
        || says("Unsupported PUT")
        || says("Unsupported DELETE")
        || says("Unknown path components")
}

#[tokio::test]
async fn the_openapi_document_lists_only_what_the_service_serves() {
    let server = server_with(ManualClock::at_now(), |_| {}).await;
    let acme = business(&server, "Acme").await;
    acme.create_template("order_update").await;
    let (_, templates) = acme.get(&format!("{}/message_templates", acme.id)).await;
    let template_id = templates["data"][0]["id"]
        .as_str()
        .expect("a template id")
        .to_owned();
    let media_id = upload(&acme, b"\x89PNG\r\n\x1a\n not really an image", "image/png").await;
    let (status, document) = business_support::call(
        &acme.http,
        reqwest::Method::GET,
        &format!("{}/openapi.json", acme.base),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 10, "{document}");
    let mut checked = 0;
    for (path, operations) in paths {
        let concrete = path
            .replace("{Version}", business_support::V)
            .replace("{Phone-Number-ID}", &acme.number_id)
            .replace("{WABA-ID}", &acme.id)
            .replace("{Application-ID}", &acme.app_id)
            .replace("{TEMPLATE_ID}", &template_id)
            .replace("{Media-ID}", &media_id);
        assert!(
            !concrete.contains('{'),
            "a placeholder the test does not know: {path}"
        );
        // Deletes last: what they remove is what the others read.
        let mut methods: Vec<&String> =
            operations.as_object().expect("operations").keys().collect();
        methods.sort_by_key(|m| *m == "delete");
        for method in methods {
            let method: reqwest::Method = method.to_uppercase().parse().expect("a method");
            let url = format!("{}{concrete}", acme.base);
            let answer =
                business_support::call(&acme.http, method.clone(), &url, Some(&acme.token), None)
                    .await;
            assert!(
                !unrouted(&answer),
                "{method} {path} is documented but not served: {answer:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= paths.len());
    // The check tells the difference: what is not documented is not served.
    for (method, path) in [
        (reqwest::Method::PUT, format!("{}/messages", acme.number_id)),
        (reqwest::Method::GET, format!("{}/messages", acme.number_id)),
        (reqwest::Method::DELETE, acme.number_id.clone()),
    ] {
        let answer = business_support::call(
            &acme.http,
            method.clone(),
            &acme.graph(&path),
            Some(&acme.token),
            None,
        )
        .await;
        assert!(unrouted(&answer), "{method} {path}: {answer:?}");
    }
}

/// Uploads `bytes` as media of `mime` type (multipart, as Cloud API clients send it); its id.
async fn upload(acme: &Business, bytes: &[u8], mime: &str) -> String {
    let boundary = "courier-test-boundary";
    let mut body = Vec::new();
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime)] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\
             Content-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = acme
        .http
        .post(acme.graph(&format!("{}/media", acme.number_id)))
        .bearer_auth(&acme.token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().expect("a media id").to_owned()
}

#[tokio::test]
async fn media_goes_up_and_down_for_its_business_only_within_the_limit() {
    let clock = ManualClock::at_now();
    let server = server_with(clock.clone(), |config| {
        config.business.max_media_bytes = 64 * 1024;
        config.business.media_url_ttl_secs = 60;
    })
    .await;
    let acme = business(&server, "Acme").await;
    let other = business(&server, "Other").await;
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = upload(&acme, &bytes, "application/pdf").await;

    let (status, info) = acme.get(&id).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["file_size"], bytes.len());
    assert_eq!(info["mime_type"], "application/pdf");
    let url = info["url"].as_str().unwrap().to_owned();
    let download = |token: Option<String>, url: String| {
        let http = acme.http.clone();
        async move {
            let mut request = http.get(&url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.bytes().await.unwrap())
        }
    };
    let (status, got) = download(Some(acme.token.clone()), url.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(&got[..], &bytes[..], "the bytes come back whole");
    let (status, _) = download(None, url.clone()).await;
    assert_ne!(status, 200, "the download URL needs the token too");
    let (status, _) = download(Some(other.token.clone()), url.clone()).await;
    assert_ne!(status, 200, "another business's token does not fetch it");
    let foreign = other.get(&id).await;
    assert_eq!(
        code(&foreign),
        100,
        "another business does not see it: {foreign:?}"
    );
    let (status, _) = download(
        Some(acme.token.clone()),
        url.replace("signature=", "signature=x"),
    )
    .await;
    assert_ne!(status, 200, "a tampered URL is refused");
    clock.advance_ms(61_000);
    let (status, _) = download(Some(acme.token.clone()), url).await;
    assert_ne!(status, 200, "the URL expires");

    // Over the limit: refused, and nothing is kept.
    let big = vec![7u8; 65 * 1024];
    let response = acme
        .http
        .post(acme.graph(&format!("{}/media", acme.number_id)))
        .bearer_auth(&acme.token)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(
            [
                &b"--b\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: image/png\r\n\r\n"[..],
                &big,
                b"\r\n--b--\r\n",
            ]
            .concat(),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let refused: Value = response.json().await.unwrap();
    assert!(refused["error"]["code"].is_u64(), "{refused}");
    assert!(refused.to_string().contains("limit"), "{refused}");

    let (status, deleted) = business_support::call(
        &acme.http,
        reqwest::Method::DELETE,
        &acme.graph(&id),
        Some(&acme.token),
        None,
    )
    .await;
    assert_eq!((status, &deleted["success"]), (200, &json!(true)));
    assert_eq!(code(&acme.get(&id).await), 100, "deleted media is gone");
}
