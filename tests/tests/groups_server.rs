//! Groups on the server, driven with raw frames: membership rules and errors, one order of
//! events for everyone, fan-out exactly once to online and offline members, nothing for
//! non-members or removed members, one stored copy of each message, receipts and message info.
//! (End-to-end encryption of group messages is tested with the SDK in `groups_e2e.rs`.)

use std::collections::HashMap;

use courier_client::{Client, ConnectOptions, GatewayConnection, Incoming};
use courier_protocol::UserId;
use courier_protocol::v1::{
    Ack, ClientFrame, ErrorCode, GroupCreate, GroupEnvelope, GroupEvent, GroupEventKind, GroupInfo,
    GroupInfoRequest, GroupResult, GroupSend, GroupUpdate, JoinGroup, Leave, MemberList,
    MessageInfo, MessageInfoRequest, Receipt, ReceiptType, SendReceipt, SendResult, client_frame,
    delivery, group_update, server_frame,
};
use courier_tests::{DEADLINE, TestServer, unique_phone};

/// A device speaking raw frames, collecting what is pushed to it and acknowledging it.
struct Device {
    client: Client,
    connection: GatewayConnection,
    next_request: u64,
    envelopes: Vec<GroupEnvelope>,
    events: Vec<GroupEvent>,
    receipts: Vec<Receipt>,
}

enum Answer {
    Group(GroupResult),
    Sent(SendResult),
    Info(MessageInfo),
}

impl Device {
    async fn connect(server: &TestServer) -> Device {
        let client = server.register(&unique_phone()).await;
        Device::attach(server, client).await
    }

    async fn attach(server: &TestServer, client: Client) -> Device {
        let (connection, _) = GatewayConnection::connect(
            &server.gateway_url(),
            &client.credentials(),
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
        Device {
            client,
            connection,
            next_request: 1,
            envelopes: Vec::new(),
            events: Vec::new(),
            receipts: Vec::new(),
        }
    }

    fn user(&self) -> UserId {
        self.client.user_id()
    }

    /// Handles one incoming frame; returns an answer if it was one.
    async fn step(&mut self) -> Option<Answer> {
        let incoming = tokio::time::timeout(DEADLINE, self.connection.recv())
            .await
            .expect("a frame within the deadline")
            .unwrap();
        let frame = match incoming {
            Incoming::Frame(frame) => frame,
            Incoming::Closed { code, reason } => panic!("closed: {code} {reason}"),
        };
        match frame.body? {
            server_frame::Body::GroupResult(result) => Some(Answer::Group(result)),
            server_frame::Body::SendResult(result) => Some(Answer::Sent(result)),
            server_frame::Body::MessageInfo(info) => Some(Answer::Info(info)),
            server_frame::Body::Delivery(delivery) => {
                match delivery.content {
                    Some(delivery::Content::GroupEnvelope(envelope)) => {
                        self.envelopes.push(envelope)
                    }
                    Some(delivery::Content::GroupEvent(event)) => self.events.push(event),
                    Some(delivery::Content::Receipt(receipt)) => self.receipts.push(receipt),
                    _ => {}
                }
                let ack = ClientFrame {
                    request_id: 0,
                    body: Some(client_frame::Body::Ack(Ack {
                        up_to_seq: delivery.seq,
                    })),
                };
                self.connection.send(&ack).await.unwrap();
                None
            }
            _ => None,
        }
    }

    async fn request(&mut self, body: client_frame::Body) -> Answer {
        let request_id = self.next_request;
        self.next_request += 1;
        let frame = ClientFrame {
            request_id,
            body: Some(body),
        };
        self.connection.send(&frame).await.unwrap();
        loop {
            if let Some(answer) = self.step().await {
                let id = match &answer {
                    Answer::Group(r) => r.request_id,
                    Answer::Sent(r) => r.request_id,
                    Answer::Info(r) => r.request_id,
                };
                if id == request_id {
                    return answer;
                }
            }
        }
    }

    async fn group(&mut self, body: client_frame::Body) -> GroupResult {
        match self.request(body).await {
            Answer::Group(result) => result,
            _ => panic!("expected a GroupResult"),
        }
    }

    async fn create(&mut self, subject: &str, members: &[UserId]) -> GroupInfo {
        let result = self
            .group(client_frame::Body::CreateGroup(GroupCreate {
                subject: subject.into(),
                members: members.iter().map(|u| u.to_string()).collect(),
                settings: None,
            }))
            .await;
        assert_eq!(result.status, ErrorCode::Ok as i32, "{}", result.message);
        result.group.unwrap()
    }

    async fn update(&mut self, group: &str, change: group_update::Change) -> GroupResult {
        self.group(client_frame::Body::UpdateGroup(GroupUpdate {
            group_id: group.into(),
            change: Some(change),
        }))
        .await
    }

    async fn send(&mut self, group: &str, id: &str, ciphertext: &[u8]) -> SendResult {
        let body = client_frame::Body::GroupSend(GroupSend {
            group_id: group.into(),
            client_message_id: id.into(),
            timestamp_ms: 1,
            ciphertext: ciphertext.to_vec(),
        });
        match self.request(body).await {
            Answer::Sent(result) => result,
            _ => panic!("expected a SendResult"),
        }
    }

    /// Reads until `done` holds for this device's collections.
    async fn until(&mut self, mut done: impl FnMut(&Device) -> bool) {
        while !done(self) {
            self.step().await;
        }
    }
}

fn users(list: &[UserId]) -> MemberList {
    MemberList {
        users: list.iter().map(|u| u.to_string()).collect(),
    }
}

#[tokio::test]
async fn group_messages_reach_every_member_once_online_or_offline() {
    let server = TestServer::start().await;
    let mut alice = Device::connect(&server).await;
    let mut online = Vec::new();
    for _ in 0..12 {
        online.push(Device::connect(&server).await);
    }
    let offline: Vec<Client> = {
        let mut list = Vec::new();
        for _ in 0..12 {
            list.push(server.register(&unique_phone()).await);
        }
        list
    };
    let mut members: Vec<UserId> = online.iter().map(|d| d.user()).collect();
    members.extend(offline.iter().map(|c| c.user_id()));
    let group = alice.create("friends", &members).await;
    assert_eq!(group.members.len(), 25);
    assert!(
        group
            .members
            .iter()
            .any(|m| m.admin && m.user == alice.user().to_string())
    );

    for i in 0..20 {
        let sent = alice
            .send(
                &group.group_id,
                &format!("m{i}"),
                format!("cipher-{i}").as_bytes(),
            )
            .await;
        assert_eq!(sent.status, ErrorCode::Ok as i32, "{}", sent.message);
    }
    let again = alice.send(&group.group_id, "m0", b"cipher-0").await;
    assert!(again.duplicate, "a retried message is not fanned out twice");

    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for device in online.iter_mut() {
        device.until(|d| d.envelopes.len() >= 20).await;
        let ids: Vec<String> = device
            .envelopes
            .iter()
            .map(|e| e.client_message_id.clone())
            .collect();
        assert_eq!(ids, expected, "every message once, in order");
        assert_eq!(device.envelopes[3].ciphertext, b"cipher-3");
        assert_eq!(device.envelopes[3].sender_user, alice.user().to_string());
    }
    for client in offline {
        let mut device = Device::attach(&server, client).await;
        device.until(|d| d.envelopes.len() >= 20).await;
        let ids: Vec<String> = device
            .envelopes
            .iter()
            .map(|e| e.client_message_id.clone())
            .collect();
        assert_eq!(ids, expected);
        assert_eq!(device.events.len(), 1, "the creation event came first");
        assert_eq!(device.events[0].kind, GroupEventKind::Created as i32);
    }
    // Alice's own device does not get her messages back, but gets delivered receipts.
    alice.until(|d| d.receipts.len() >= 24 * 20).await;
    assert!(alice.envelopes.is_empty());
    assert!(alice.receipts.iter().all(|r| r.group_id == group.group_id));
}

#[tokio::test]
async fn membership_rules_are_enforced_with_clear_codes() {
    let server = TestServer::start_with(|c| c.groups.size_limit = 4).await;
    let mut admin = Device::connect(&server).await;
    let mut member = Device::connect(&server).await;
    let mut outsider = Device::connect(&server).await;
    let extra: Vec<UserId> = {
        let mut list = Vec::new();
        for _ in 0..3 {
            list.push(server.register(&unique_phone()).await.user_id());
        }
        list
    };
    let group = admin.create("club", &[member.user()]).await;
    let id = group.group_id.clone();

    // A non-member can do nothing.
    let sent = outsider.send(&id, "x", b"x").await;
    assert_eq!(sent.status, ErrorCode::NotAMember as i32);
    let info = outsider
        .group(client_frame::Body::GetGroup(GroupInfoRequest {
            group_id: id.clone(),
        }))
        .await;
    assert_eq!(info.status, ErrorCode::NotAMember as i32);
    // A non-admin cannot remove, promote or change settings.
    let remove = member
        .update(
            &id,
            group_update::Change::RemoveMembers(users(&[admin.user()])),
        )
        .await;
    assert_eq!(remove.status, ErrorCode::NotAnAdmin as i32);
    let invite = member
        .update(&id, group_update::Change::CreateInvite(true))
        .await;
    assert_eq!(invite.status, ErrorCode::NotAnAdmin as i32);
    // The size limit holds.
    let full = admin
        .update(&id, group_update::Change::AddMembers(users(&extra)))
        .await;
    assert_eq!(full.status, ErrorCode::GroupFull as i32);
    // Unknown groups and unknown users.
    let unknown = admin
        .update(
            &courier_protocol::GroupId::random().to_string(),
            group_update::Change::SetSubject("x".into()),
        )
        .await;
    assert_eq!(unknown.status, ErrorCode::UnknownGroup as i32);
    let nobody = admin
        .update(
            &id,
            group_update::Change::AddMembers(users(&[UserId::random()])),
        )
        .await;
    assert_eq!(nobody.status, ErrorCode::InvalidArgument as i32);
    let bad_join = outsider
        .group(client_frame::Body::JoinGroup(JoinGroup {
            invite_code: "no-such-code".into(),
        }))
        .await;
    assert_eq!(bad_join.status, ErrorCode::UnknownGroup as i32);

    // An invite lets the outsider in; a revoked one no longer does.
    let invite = admin
        .update(&id, group_update::Change::CreateInvite(true))
        .await;
    let code = invite.group.unwrap().invite_code;
    assert!(!code.is_empty());
    let joined = outsider
        .group(client_frame::Body::JoinGroup(JoinGroup {
            invite_code: code.clone(),
        }))
        .await;
    assert_eq!(joined.status, ErrorCode::Ok as i32, "{}", joined.message);
    assert_eq!(
        joined.group.unwrap().invite_code,
        "",
        "the code is for admins only"
    );
    admin
        .update(&id, group_update::Change::RevokeInvite(true))
        .await;
    let late = Device::connect(&server).await;
    let mut late = late;
    let refused = late
        .group(client_frame::Body::JoinGroup(JoinGroup {
            invite_code: code,
        }))
        .await;
    assert_eq!(refused.status, ErrorCode::UnknownGroup as i32);
}

#[tokio::test]
async fn a_removed_member_is_sent_nothing_after_removal_and_everyone_sees_one_order() {
    let server = TestServer::start().await;
    let mut admin = Device::connect(&server).await;
    let mut stays = Device::connect(&server).await;
    let mut removed = Device::connect(&server).await;
    let group = admin.create("team", &[stays.user(), removed.user()]).await;
    let id = group.group_id.clone();
    admin.send(&id, "before", b"before").await;
    let result = admin
        .update(
            &id,
            group_update::Change::RemoveMembers(users(&[removed.user()])),
        )
        .await;
    assert_eq!(result.status, ErrorCode::Ok as i32);
    admin.send(&id, "after", b"after").await;
    // The removed member's device is still connected: it hears of its removal, and gets the
    // message from before, but never the one after.
    removed
        .until(|d| {
            d.events
                .iter()
                .any(|e| e.kind == GroupEventKind::MembersRemoved as i32)
        })
        .await;
    stays.until(|d| d.envelopes.len() >= 2).await;
    // Give the server every chance to misroute: a message from the one who stays, then read.
    stays.send(&id, "later", b"later").await;
    admin.until(|d| !d.envelopes.is_empty()).await;
    let removed_ids: Vec<String> = removed
        .envelopes
        .iter()
        .map(|e| e.client_message_id.clone())
        .collect();
    assert_eq!(removed_ids, vec!["before".to_string()]);
    let sent = removed.send(&id, "sneaky", b"x").await;
    assert_eq!(sent.status, ErrorCode::NotAMember as i32);

    // Concurrent changes by two admins converge: every member sees the same revisions.
    admin
        .update(&id, group_update::Change::Promote(users(&[stays.user()])))
        .await;
    let a = admin.update(&id, group_update::Change::SetSubject("one".into()));
    let subject_two = stays.update(&id, group_update::Change::SetSubject("two".into()));
    let (first, second) = tokio::join!(a, subject_two);
    assert_eq!(first.status, ErrorCode::Ok as i32);
    assert_eq!(second.status, ErrorCode::Ok as i32);
    let last_revision = first
        .group
        .unwrap()
        .revision
        .max(second.group.unwrap().revision);
    admin
        .until(|d| d.events.iter().any(|e| e.revision == last_revision))
        .await;
    stays
        .until(|d| d.events.iter().any(|e| e.revision == last_revision))
        .await;
    let order = |d: &Device| -> Vec<(u64, String)> {
        d.events
            .iter()
            .map(|e| (e.revision, e.group.as_ref().unwrap().subject.clone()))
            .collect()
    };
    let admin_view = order(&admin);
    assert_eq!(
        admin_view,
        order(&stays)[order(&stays).len() - admin_view.len()..]
    );
    let revisions: Vec<u64> = admin_view.iter().map(|(r, _)| *r).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
}

#[tokio::test]
async fn storage_holds_one_copy_of_a_group_message() {
    let mut server = TestServer::start().await;
    let mut alice = Device::connect(&server).await;
    let mut members = Vec::new();
    for _ in 0..40 {
        members.push(server.register(&unique_phone()).await.user_id());
    }
    let group = alice.create("big", &members).await;
    let marker = format!("one-copy-marker-{}", uuid::Uuid::new_v4());
    let sent = alice.send(&group.group_id, "m1", marker.as_bytes()).await;
    assert_eq!(sent.status, ErrorCode::Ok as i32);
    drop(alice);
    server.stop().await;
    let mut bytes = Vec::new();
    let mut stack = vec![server.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                bytes.extend(std::fs::read(path).unwrap());
            }
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(
        text.matches(&marker).count(),
        1,
        "the ciphertext is stored once for 40 recipients"
    );
}

#[tokio::test]
async fn senders_learn_who_received_and_read_a_group_message() {
    let server = TestServer::start().await;
    let mut alice = Device::connect(&server).await;
    let mut bob = Device::connect(&server).await;
    let carol = server.register(&unique_phone()).await;
    let group = alice.create("info", &[bob.user(), carol.user_id()]).await;
    let id = group.group_id.clone();
    alice.send(&id, "hello", b"hello").await;
    bob.until(|d| !d.envelopes.is_empty()).await;
    let read = client_frame::Body::Receipt(SendReceipt {
        recipient: alice.user().to_string(),
        r#type: ReceiptType::Read as i32,
        client_message_ids: vec!["hello".into()],
        group_id: id.clone(),
    });
    match bob.request(read).await {
        Answer::Sent(result) => {
            assert_eq!(result.status, ErrorCode::Ok as i32, "{}", result.message)
        }
        _ => panic!("expected a SendResult"),
    }
    alice
        .until(|d| {
            d.receipts
                .iter()
                .any(|r| r.r#type == ReceiptType::Read as i32)
        })
        .await;
    let info = match alice
        .request(client_frame::Body::MessageInfo(MessageInfoRequest {
            group_id: id.clone(),
            client_message_id: "hello".into(),
        }))
        .await
    {
        Answer::Info(info) => info,
        _ => panic!("expected MessageInfo"),
    };
    assert_eq!(info.status, ErrorCode::Ok as i32, "{}", info.message);
    let by_user: HashMap<String, (u64, u64)> = info
        .members
        .iter()
        .map(|m| (m.user.clone(), (m.delivered_at_ms, m.read_at_ms)))
        .collect();
    assert_eq!(by_user.len(), 2, "everyone but the sender");
    let (bob_delivered, bob_read) = by_user[&bob.user().to_string()];
    assert!(bob_delivered > 0 && bob_read > 0);
    assert_eq!(
        by_user[&carol.user_id().to_string()],
        (0, 0),
        "carol is offline"
    );
    let leave = bob.update(&id, group_update::Change::Leave(Leave {})).await;
    assert_eq!(leave.status, ErrorCode::Ok as i32);
}

#[tokio::test]
async fn concurrent_adds_and_removes_converge_to_one_state_seen_the_same_way() {
    let server = TestServer::start().await;
    let mut admin = Device::connect(&server).await;
    let mut second = Device::connect(&server).await;
    let mut watcher = Device::connect(&server).await;
    let mut joiners = Vec::new();
    for _ in 0..6 {
        joiners.push(server.register(&unique_phone()).await.user_id());
    }
    let group = admin
        .create(
            "busy",
            &[second.user(), watcher.user(), joiners[0], joiners[1]],
        )
        .await;
    let id = group.group_id.clone();
    admin
        .update(&id, group_update::Change::Promote(users(&[second.user()])))
        .await;
    // Two admins change the membership at the same time.
    let (a, b) = tokio::join!(
        admin.update(&id, group_update::Change::AddMembers(users(&joiners[2..4]))),
        second.update(
            &id,
            group_update::Change::RemoveMembers(users(&joiners[0..2]))
        ),
    );
    assert_eq!(a.status, ErrorCode::Ok as i32, "{}", a.message);
    assert_eq!(b.status, ErrorCode::Ok as i32, "{}", b.message);
    let (c, d) = tokio::join!(
        admin.update(&id, group_update::Change::AddMembers(users(&joiners[4..6]))),
        second.update(
            &id,
            group_update::Change::RemoveMembers(users(&joiners[2..3]))
        ),
    );
    assert_eq!(c.status, ErrorCode::Ok as i32, "{}", c.message);
    assert_eq!(d.status, ErrorCode::Ok as i32, "{}", d.message);

    // One final state, whatever the interleaving.
    let info = admin
        .group(client_frame::Body::GetGroup(GroupInfoRequest {
            group_id: id.clone(),
        }))
        .await
        .group
        .unwrap();
    let mut members: Vec<String> = info.members.iter().map(|m| m.user.clone()).collect();
    members.sort();
    let mut expected: Vec<String> = [admin.user(), second.user(), watcher.user()]
        .iter()
        .chain(&joiners[3..6])
        .map(|u| u.to_string())
        .collect();
    expected.sort();
    assert_eq!(members, expected);

    // Every member saw the same changes in the same order, ending in that state.
    let final_revision = info.revision;
    for device in [&mut admin, &mut second, &mut watcher] {
        device
            .until(|d| d.events.iter().any(|e| e.revision == final_revision))
            .await;
    }
    let history = |d: &Device| -> Vec<(u64, i32, Vec<String>)> {
        d.events
            .iter()
            .map(|e| (e.revision, e.kind, e.users.clone()))
            .collect()
    };
    assert_eq!(history(&admin), history(&watcher));
    assert_eq!(history(&second), history(&watcher));
    let revisions: Vec<u64> = watcher.events.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        (1..=final_revision).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
}
