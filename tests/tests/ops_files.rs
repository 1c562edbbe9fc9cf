//! The operator files in `ops/` (Prometheus rules, Grafana dashboard) name only metrics the
//! server really exports, so that they do not silently drift from the code.

use std::collections::BTreeSet;

use courier_tests::{TestServer, messages, unique_phone};

/// Every `courier_…` metric name mentioned in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("courier_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn rules_and_dashboard_name_only_exported_metrics() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let rules =
        std::fs::read_to_string(format!("{root}/ops/prometheus/courier-rules.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(format!("{root}/ops/grafana/courier-dashboard.json")).unwrap();
    let referenced: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(metric_names(&dashboard))
        .collect();
    assert!(referenced.len() >= 10, "{referenced:?}");

    // Some traffic, so that labelled metrics have series.
    let server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, _alice_events) = alice.connect().await.unwrap();
    let (_bob_chat, mut bob_events) = bob.connect().await.unwrap();
    alice_chat.send_text(bob.user_id(), "hi").await.unwrap();
    messages(&mut bob_events, 1).await;
    // A malformed frame, for an error series.
    let carol = server.register(&unique_phone()).await;
    let (mut raw, _) = courier_client::GatewayConnection::connect(
        &server.gateway_url(),
        &carol.credentials(),
        &Default::default(),
    )
    .await
    .unwrap();
    raw.send_raw(vec![0xff; 8]).await.unwrap();
    loop {
        match raw.recv().await.unwrap() {
            courier_client::Incoming::Frame(frame)
                if matches!(
                    frame.body,
                    Some(courier_protocol::v1::server_frame::Body::Error(_))
                ) =>
            {
                break;
            }
            courier_client::Incoming::Closed { code, .. } => panic!("closed {code}"),
            _ => {}
        }
    }
    let exported = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = metric_names(&exported);
    let missing: Vec<&String> = referenced.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "ops files name metrics the server does not export: {missing:?}"
    );
}
