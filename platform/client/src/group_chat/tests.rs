//! The receiving side end to end without a server: two or three devices with real
//! pairwise sessions, fed the deliveries a server would push.

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, OneTimePreKeyPair, PreKeyBundle, Session, SignedPreKeyPair,
};
use courier_protocol::v1::{Envelope, Receipt, delivery};
use tempfile::TempDir;

use super::*;
use crate::api::{Api, Credentials};
use crate::client::ReceiptKind;
use crate::groups::GroupMember;
use crate::state::StateFile;
use std::sync::Arc;

struct Device {
    client: Client,
    bundle: PreKeyBundle,
    _dir: TempDir,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 1).unwrap();
        let one_time = OneTimePreKeyPair::generate_batch(1, 5).unwrap();
        let bundle = PreKeyBundle::new(identity.public(), &signed, Some(&one_time[0]));
        let mut prekeys = MemoryPreKeyStore::new();
        prekeys.add_signed_prekey(signed);
        prekeys.add_one_time_prekeys(one_time);
        let server = "http://127.0.0.1:9";
        let state = DeviceState::new(
            server.into(),
            "+15550100001".into(),
            Credentials {
                address: DeviceAddress::new(UserId::random(), 1),
                password: "pw".into(),
            },
            identity,
            prekeys,
            1,
            6,
        );
        let file = StateFile::at(dir.path());
        file.write(&state).unwrap();
        let history = crate::history::History::at(dir.path());
        Device {
            client: Client::from_state(Api::new(server).unwrap(), Arc::new(file), history, state),
            bundle,
            _dir: dir,
        }
    }

    fn address(&self) -> DeviceAddress {
        self.client.address()
    }

    fn user(&self) -> UserId {
        self.client.user_id()
    }

    /// As the connection task does: received, saved, handed over.
    async fn receive(&self, content: delivery::Content) -> Option<Event> {
        let event = self.client.receive_unsaved(content).unwrap();
        self.client.persist().await.unwrap();
        if let Some(event) = &event {
            self.client.handed_over(event);
        }
        event
    }

    /// `content` over the pairwise session with `to`, as the server delivers it.
    async fn pairwise(&self, to: &Device, content: &Content) -> delivery::Content {
        if !self.client.has_session_with(to.user()) {
            let mut state = self.client.state();
            let session = Session::initiate(state.identity(), &to.bundle).unwrap();
            state.install_session(to.address(), session);
        }
        let mut ciphertexts = self
            .client
            .encrypt_for(to.user(), &content.encode_to_vec())
            .await
            .unwrap();
        let ciphertext = ciphertexts.remove(0);
        delivery::Content::Envelope(Envelope {
            sender_user: self.user().to_string(),
            sender_device: self.address().device,
            client_message_id: uuid::Uuid::new_v4().to_string(),
            timestamp_ms: 1,
            server_timestamp_ms: 2,
            r#type: ciphertext.r#type,
            ciphertext: ciphertext.body,
        })
    }

    /// This device's Sender Key for `group` as the pairwise content carrying it.
    fn sender_key(&self, group: GroupId) -> Content {
        let mut state = self.client.state();
        state.groups_mut(group).prepare_sender(group).unwrap();
        let (_, distribution) = state.groups().distribution(group).unwrap();
        Content {
            body: Some(content::Body::SenderKey(v1::SenderKeyDistribution {
                group_id: group.to_string(),
                distribution,
            })),
            ..Default::default()
        }
    }

    /// A group message from this device, as the server delivers it.
    fn group_message(&self, group: GroupId, id: &str, text: &str) -> delivery::Content {
        let plaintext = Content {
            body: Some(content::Body::Text(Text { body: text.into() })),
            ..Default::default()
        }
        .encode_to_vec();
        let ciphertext = {
            let mut state = self.client.state();
            state.groups_mut(group).prepare_sender(group).unwrap();
            state.groups_mut(group).encrypt(group, &plaintext).unwrap()
        };
        delivery::Content::GroupEnvelope(v1::GroupEnvelope {
            group_id: group.to_string(),
            sender_user: self.user().to_string(),
            sender_device: self.address().device,
            client_message_id: id.into(),
            timestamp_ms: 7,
            server_timestamp_ms: 8,
            ciphertext,
        })
    }
}

fn wire_info(group: GroupId, revision: u64, members: &[UserId]) -> v1::GroupInfo {
    v1::GroupInfo {
        group_id: group.to_string(),
        subject: "friends".into(),
        members: members
            .iter()
            .enumerate()
            .map(|(i, user)| v1::GroupMember {
                user: user.to_string(),
                admin: i == 0,
                joined_at_ms: 1,
            })
            .collect(),
        settings: None,
        invite_code: String::new(),
        revision,
        size_limit: 256,
        created_by: members[0].to_string(),
        created_at_ms: 1,
    }
}

fn event(
    group: GroupId,
    revision: u64,
    kind: GroupEventKind,
    actor: UserId,
    users: &[UserId],
    after: &[UserId],
) -> delivery::Content {
    delivery::Content::GroupEvent(v1::GroupEvent {
        group_id: group.to_string(),
        revision,
        actor: actor.to_string(),
        kind: kind as i32,
        users: users.iter().map(|u| u.to_string()).collect(),
        timestamp_ms: 1,
        group: Some(wire_info(group, revision, after)),
    })
}

/// Alice created a group with Bob and Carol; every device has seen the event.
async fn group_of_three() -> (GroupId, Device, Device, Device) {
    let (alice, bob, carol) = (Device::new(), Device::new(), Device::new());
    let group = GroupId::random();
    let members = [alice.user(), bob.user(), carol.user()];
    let created = event(
        group,
        1,
        GroupEventKind::Created,
        alice.user(),
        &members[1..],
        &members,
    );
    for device in [&alice, &bob, &carol] {
        assert!(matches!(
            device.receive(created.clone()).await,
            Some(Event::GroupEvent { revision: 1, .. })
        ));
    }
    (group, alice, bob, carol)
}

#[tokio::test]
async fn a_sender_key_then_a_group_message_is_read_once_and_kept_in_history() {
    let (group, alice, bob, carol) = group_of_three().await;
    let key = alice.pairwise(&bob, &alice.sender_key(group)).await;
    assert_eq!(
        bob.receive(key).await,
        Some(Event::GroupKeyReceived {
            group,
            from: alice.address()
        })
    );
    let message = alice.group_message(group, "m1", "hello group");
    assert_eq!(
        bob.receive(message.clone()).await,
        Some(Event::GroupMessage {
            group,
            from: alice.user(),
            device: alice.address().device,
            id: "m1".into(),
            sent_at_ms: 7,
            text: "hello group".into(),
        })
    );
    assert_eq!(
        bob.receive(message.clone()).await,
        None,
        "a redelivery is dropped"
    );
    // Carol never got Alice's key: reported, not shown.
    match carol.receive(message).await {
        Some(Event::DecryptionFailed { from, id, error }) => {
            assert_eq!(from, alice.address());
            assert_eq!(id, "m1");
            assert!(error.contains("no sender key"), "{error}");
        }
        other => panic!("expected a decryption failure, got {other:?}"),
    }
    // Bob's history has the group message with its sender, and nothing for the key.
    let entries = bob.client.history().entries(None).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].peer, group.to_string());
    assert!(entries[0].group && !entries[0].outgoing);
    assert_eq!(entries[0].sender, Some(alice.user().to_string()));
    assert_eq!(entries[0].text, "hello group");
    // The key survives a restart of Bob's device.
    let reopened = Client::open_with_store(Arc::clone(&bob.client.inner.store))
        .await
        .unwrap();
    assert!(
        reopened
            .state()
            .groups()
            .has_receiver(group, alice.address())
    );
    assert!(
        reopened
            .state()
            .has_seen_group(group, alice.address(), "m1")
    );
}

#[tokio::test]
async fn a_removal_rotates_the_senders_key_and_its_old_chain_still_decrypts() {
    let (group, alice, bob, carol) = group_of_three().await;
    let chain = |device: &Device| {
        device
            .client
            .state()
            .groups()
            .distribution(group)
            .unwrap()
            .0
    };
    bob.receive(alice.pairwise(&bob, &alice.sender_key(group)).await)
        .await;
    let first_chain = chain(&alice);
    let in_flight = alice.group_message(group, "m1", "before");
    let (a, b, c) = (alice.user(), bob.user(), carol.user());
    let removed = event(group, 2, GroupEventKind::MembersRemoved, a, &[c], &[a, b]);
    alice.receive(removed.clone()).await;
    bob.receive(removed).await;
    // Alice's next message goes out under a fresh chain, distributed first.
    let rotated = alice.sender_key(group);
    assert_ne!(chain(&alice), first_chain);
    assert!(matches!(
        bob.receive(alice.pairwise(&bob, &rotated).await).await,
        Some(Event::GroupKeyReceived { .. })
    ));
    let after = alice.group_message(group, "m2", "after");
    assert!(
        matches!(bob.receive(after).await, Some(Event::GroupMessage { text, .. }) if text == "after")
    );
    // A message of the old chain delivered late still decrypts.
    assert!(
        matches!(bob.receive(in_flight).await, Some(Event::GroupMessage { text, .. }) if text == "before")
    );
}

#[tokio::test]
async fn group_events_update_the_group_once_and_a_removal_drops_its_keys() {
    let (group, alice, bob, carol) = group_of_three().await;
    let (a, b, c) = (alice.user(), bob.user(), carol.user());
    bob.receive(alice.pairwise(&bob, &alice.sender_key(group)).await)
        .await;
    let renamed = event(group, 2, GroupEventKind::SubjectChanged, c, &[], &[a, b, c]);
    assert_eq!(
        bob.receive(renamed.clone()).await,
        Some(Event::GroupEvent {
            group,
            revision: 2,
            kind: GroupEventKind::SubjectChanged,
            actor: Some(c),
            users: vec![],
        })
    );
    assert_eq!(
        bob.receive(renamed).await,
        None,
        "a redelivered event is not reported"
    );
    assert_eq!(bob.client.group(group).unwrap().revision, 2);
    assert_eq!(bob.client.groups().len(), 1);

    let removed = event(group, 3, GroupEventKind::MembersRemoved, a, &[b], &[a, c]);
    assert!(matches!(
        bob.receive(removed).await,
        Some(Event::GroupEvent {
            kind: GroupEventKind::MembersRemoved,
            ..
        })
    ));
    {
        let state = bob.client.state();
        assert!(!state.groups().has_receiver(group, alice.address()));
        assert!(!state.groups().info(group).unwrap().is_member(b));
    }
    // A key sent before the removal but delivered after it is ignored.
    let late_key = alice.sender_key(group);
    assert_eq!(
        bob.receive(alice.pairwise(&bob, &late_key).await).await,
        None
    );
}

#[tokio::test]
async fn bad_group_input_is_dropped_not_fatal() {
    let (group, alice, bob, _carol) = group_of_three().await;
    // Our own message echoed back is not shown again.
    assert_eq!(
        bob.receive(bob.group_message(group, "x", "mine")).await,
        None
    );
    // A bad group id in an envelope or an event: acknowledged and dropped.
    let mut envelope = alice.group_message(group, "m1", "hi");
    if let delivery::Content::GroupEnvelope(e) = &mut envelope {
        e.group_id = "nope".into();
    }
    assert_eq!(bob.receive(envelope).await, None);
    let bad_event = delivery::Content::GroupEvent(v1::GroupEvent {
        group_id: "nope".into(),
        ..Default::default()
    });
    assert_eq!(bob.receive(bad_event).await, None);
    // A Sender Key that is not one is a failure report, like an undecryptable message.
    let garbage = Content {
        body: Some(content::Body::SenderKey(v1::SenderKeyDistribution {
            group_id: group.to_string(),
            distribution: vec![1, 2, 3],
        })),
        ..Default::default()
    };
    assert!(matches!(
        bob.receive(alice.pairwise(&bob, &garbage).await).await,
        Some(Event::DecryptionFailed { .. })
    ));
}

#[tokio::test]
async fn delivered_receipts_for_sender_key_messages_are_not_reported() {
    let (_group, alice, bob, _carol) = group_of_three().await;
    let receipt = |ids: &[&str]| {
        delivery::Content::Receipt(Receipt {
            r#type: ReceiptType::Delivered as i32,
            from_user: bob.user().to_string(),
            from_device: 1,
            client_message_ids: ids.iter().map(|id| id.to_string()).collect(),
            timestamp_ms: 3,
            group_id: String::new(),
        })
    };
    let key_id = format!("{KEY_MESSAGE_PREFIX}1");
    assert_eq!(alice.receive(receipt(&[&key_id])).await, None);
    assert_eq!(
        alice.receive(receipt(&[&key_id, "m1"])).await,
        Some(Event::Receipt {
            kind: ReceiptKind::Delivered,
            by: bob.user(),
            ids: vec!["m1".into()],
            group: None,
        })
    );
}

#[tokio::test]
async fn receipts_for_group_messages_name_the_group_and_count_per_member() {
    let (group, alice, bob, carol) = group_of_three().await;
    let history = alice.client.history();
    let recipients = vec![bob.user().to_string(), carol.user().to_string()];
    history
        .append(&HistoryRecord::group_outgoing(
            "m1",
            1,
            group.to_string(),
            recipients,
            "hi",
        ))
        .unwrap();
    history
        .append(&HistoryRecord::status("m1", 2, "sent", None))
        .unwrap();
    let receipt = |by: &Device, kind: ReceiptType| {
        delivery::Content::Receipt(Receipt {
            r#type: kind as i32,
            from_user: by.user().to_string(),
            from_device: 1,
            client_message_ids: vec!["m1".into()],
            timestamp_ms: 3,
            group_id: group.to_string(),
        })
    };
    assert_eq!(
        alice.receive(receipt(&bob, ReceiptType::Delivered)).await,
        Some(Event::Receipt {
            kind: ReceiptKind::Delivered,
            by: bob.user(),
            ids: vec!["m1".into()],
            group: Some(group),
        })
    );
    let status = || history.entries(None).unwrap()[0].status.clone();
    assert_eq!(status().as_deref(), Some("sent"));
    alice.receive(receipt(&carol, ReceiptType::Delivered)).await;
    assert_eq!(status().as_deref(), Some("delivered"));
    alice.receive(receipt(&carol, ReceiptType::Read)).await;
    alice.receive(receipt(&bob, ReceiptType::Read)).await;
    assert_eq!(status().as_deref(), Some("read"));
}

/// Compile-time check: the group futures can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn group_futures_are_send(messenger: &Messenger) {
    fn send<T: Send>(_: T) {}
    let group = GroupId::random();
    send(messenger.send_group_text(group, "x"));
    send(messenger.create_group("s", &[]));
    send(messenger.leave_group(group));
    send(messenger.message_info(group, "m"));
    send(messenger.mark_group_read(group, UserId::random(), Vec::new()));
}

#[tokio::test]
async fn a_wire_member_list_maps_to_group_members() {
    let user = UserId::random();
    let info = GroupInfo::from_wire(wire_info(GroupId::random(), 1, &[user])).unwrap();
    assert_eq!(
        info.members,
        vec![GroupMember {
            user,
            admin: true,
            joined_at_ms: 1
        }]
    );
}
