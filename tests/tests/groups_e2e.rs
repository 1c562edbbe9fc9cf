//! Group chat end to end with the SDK: Sender Keys distributed over pairwise sessions, one
//! encryption per message, every member decrypting; after a removal the remaining members
//! rotate, so the removed member can neither receive (server) nor decrypt (crypto) what follows.

use courier_client::{Client, Event, Messenger};
use courier_protocol::v1::{Delivery, delivery};
use courier_protocol::{GroupId, UserId};
use courier_tests::{TestServer, unique_phone, wait_for};
use prost::Message as _;
use tokio::sync::mpsc;

async fn member(server: &TestServer) -> (Client, Messenger, mpsc::Receiver<Event>) {
    let client = server.register(&unique_phone()).await;
    let (messenger, events) = client.connect().await.unwrap();
    (client, messenger, events)
}

async fn group_text(events: &mut mpsc::Receiver<Event>) -> (GroupId, UserId, String) {
    match wait_for(events, |e| {
        matches!(
            e,
            Event::GroupMessage { .. } | Event::DecryptionFailed { .. }
        )
    })
    .await
    {
        Event::GroupMessage {
            group, from, text, ..
        } => (group, from, text),
        other => panic!("could not read a group message: {other:?}"),
    }
}

#[tokio::test]
async fn members_read_each_others_group_messages_and_a_removed_member_cannot() {
    let server = TestServer::start().await;
    let (alice, alice_chat, mut alice_events) = member(&server).await;
    let (bob, bob_chat, mut bob_events) = member(&server).await;
    let (carol, _carol_chat, mut carol_events) = member(&server).await;

    let info = alice_chat
        .create_group("hikers", &[bob.user_id(), carol.user_id()])
        .await
        .unwrap();
    let group = info.id;
    assert_eq!(info.members.len(), 3);

    alice_chat
        .send_group_text(group, "hello all")
        .await
        .unwrap();
    assert_eq!(
        group_text(&mut bob_events).await,
        (group, alice.user_id(), "hello all".into())
    );
    assert_eq!(
        group_text(&mut carol_events).await,
        (group, alice.user_id(), "hello all".into())
    );

    bob_chat
        .send_group_text(group, "hi from bob")
        .await
        .unwrap();
    assert_eq!(
        group_text(&mut alice_events).await,
        (group, bob.user_id(), "hi from bob".into())
    );
    assert_eq!(
        group_text(&mut carol_events).await,
        (group, bob.user_id(), "hi from bob".into())
    );

    // Carol is removed; Alice's next message uses a fresh Sender Key that Carol never gets.
    alice_chat
        .remove_members(group, &[carol.user_id()])
        .await
        .unwrap();
    wait_for(&mut carol_events, |e| matches!(e, Event::GroupEvent { .. })).await;
    alice_chat
        .send_group_text(group, "after carol left")
        .await
        .unwrap();
    assert_eq!(
        group_text(&mut bob_events).await,
        (group, alice.user_id(), "after carol left".into())
    );

    // Holding the stored ciphertext itself (the server never sends it to her: see
    // groups_server.rs), Carol's client cannot decrypt it: her key is for the old chain.
    let store = &server.running().state().store;
    let last = store.last_group_message_seq(group).await.unwrap();
    let body = store
        .group_message(group, last, courier_server::clock::now_ms())
        .await
        .unwrap()
        .expect("the message is stored");
    let Some(delivery::Content::GroupEnvelope(envelope)) = Delivery::decode(body).unwrap().content
    else {
        panic!("a stored group message is a group envelope");
    };
    assert_eq!(envelope.sender_user, alice.user_id().to_string());
    match carol
        .receive_group_envelope(envelope.clone())
        .await
        .unwrap()
    {
        Some(Event::DecryptionFailed { .. }) => {}
        other => panic!("a removed member decrypted a later message: {other:?}"),
    }
    // The failure is the key, not de-duplication: Carol never recorded that message.
    assert!(
        carol
            .history()
            .entries(None)
            .unwrap()
            .iter()
            .all(|e| e.text != "after carol left")
    );
}

#[tokio::test]
async fn a_member_who_joins_later_reads_what_follows() {
    let server = TestServer::start().await;
    let (_alice, alice_chat, _alice_events) = member(&server).await;
    let (bob, _bob_chat, mut bob_events) = member(&server).await;
    let (dave, dave_chat, mut dave_events) = member(&server).await;
    let info = alice_chat
        .create_group("club", &[bob.user_id()])
        .await
        .unwrap();
    alice_chat.send_group_text(info.id, "first").await.unwrap();
    assert_eq!(group_text(&mut bob_events).await.2, "first");

    let code = alice_chat.create_invite(info.id).await.unwrap();
    let joined = dave_chat.join_group(&code).await.unwrap();
    assert!(joined.members.iter().any(|m| m.user == dave.user_id()));
    alice_chat
        .send_group_text(info.id, "welcome dave")
        .await
        .unwrap();
    assert_eq!(group_text(&mut dave_events).await.2, "welcome dave");
    assert_eq!(group_text(&mut bob_events).await.2, "welcome dave");
}
