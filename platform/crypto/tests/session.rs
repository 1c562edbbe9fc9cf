//! Pairwise sessions end to end through the public API: conversations, the wire layout,
//! persistence and session restarts.

mod common;

use common::{Device, establish, receive, send};
use courier_crypto::{CryptoError, MemoryPreKeyStore, MessageKind, Session, prekey_message_sender};

#[test]
fn alternating_messages_round_trip_both_ways() {
    let (_, _, mut alice, mut bob) = establish(true);
    for i in 0..100 {
        let message = send(&mut alice, &format!("a{i}"));
        assert_eq!(message.0, MessageKind::Message);
        assert_eq!(receive(&mut bob, &message), format!("a{i}"));
        let message = send(&mut bob, &format!("b{i}"));
        assert_eq!(receive(&mut alice, &message), format!("b{i}"));
    }
}

#[test]
fn one_sided_bursts_round_trip() {
    let (_, _, mut alice, mut bob) = establish(true);
    for (round, burst) in [1usize, 25, 3, 60, 1, 40, 2].into_iter().enumerate() {
        let (from, to) = if round % 2 == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let messages: Vec<_> = (0..burst)
            .map(|i| send(from, &format!("{round}/{i}")))
            .collect();
        for (i, message) in messages.iter().enumerate() {
            assert_eq!(receive(to, message), format!("{round}/{i}"));
        }
    }
}

#[test]
fn every_message_uses_a_fresh_key() {
    let (_, _, mut alice, _) = establish(true);
    let first = alice.encrypt(b"same text").unwrap().1;
    let second = alice.encrypt(b"same text").unwrap().1;
    assert_ne!(first[41..], second[41..]);
}

#[test]
fn initiator_sends_prekey_messages_until_it_hears_back() {
    let alice = Device::new();
    let mut bob = Device::new();
    let mut alice_session = Session::initiate(&alice.identity, &bob.bundle(true)).unwrap();
    let messages: Vec<_> = (0..3)
        .map(|i| send(&mut alice_session, &format!("m{i}")))
        .collect();
    assert!(
        messages
            .iter()
            .all(|(kind, _)| *kind == MessageKind::PreKey)
    );
    assert!(alice_session.awaiting_reply());

    // The second arrives first and starts the session; the others still decrypt.
    let (mut bob_session, first) =
        Session::accept(&bob.identity, &mut bob.store, &messages[1].1).unwrap();
    assert_eq!(first, b"m1");
    assert_eq!(receive(&mut bob_session, &messages[0]), "m0");
    assert_eq!(receive(&mut bob_session, &messages[2]), "m2");

    let reply = send(&mut bob_session, "got them");
    assert_eq!(receive(&mut alice_session, &reply), "got them");
    assert!(!alice_session.awaiting_reply());
    let next = send(&mut alice_session, "now plain");
    assert_eq!(next.0, MessageKind::Message);
    assert_eq!(receive(&mut bob_session, &next), "now plain");
}

#[test]
fn sessions_without_one_time_prekey_work() {
    let (_, bob, mut alice, mut bob_session) = establish(false);
    assert_eq!(bob.store.one_time_prekey_count(), 10);
    for i in 0..10 {
        let message = send(&mut alice, &format!("{i}"));
        assert_eq!(receive(&mut bob_session, &message), format!("{i}"));
    }
}

#[test]
fn remote_identities_and_wire_types() {
    let (alice, bob, alice_session, bob_session) = establish(true);
    assert_eq!(*alice_session.remote_identity(), bob.identity.public());
    assert_eq!(*bob_session.remote_identity(), alice.identity.public());
    assert_eq!(*alice_session.local_identity(), alice.identity.public());
    assert_eq!(MessageKind::PreKey.wire_type(), 1);
    assert_eq!(MessageKind::Message.wire_type(), 2);
    assert_eq!(MessageKind::from_wire_type(1), Some(MessageKind::PreKey));
    assert_eq!(MessageKind::from_wire_type(2), Some(MessageKind::Message));
    assert_eq!(MessageKind::from_wire_type(0), None);
}

#[test]
fn prekey_message_layout_is_as_documented() {
    let alice = Device::new();
    let mut bob = Device::new();
    let bundle = bob.bundle(true);
    let mut session = Session::initiate(&alice.identity, &bundle).unwrap();
    let (_, body) = session.encrypt(b"abc").unwrap();
    assert_eq!(body[0], 1);
    assert_eq!(body[1..65], alice.identity.public().encode());
    assert_eq!(body[65..97], *session.base_key());
    assert_eq!(body[97..101], 1u32.to_be_bytes());
    assert_eq!(body[101], 1);
    assert_eq!(
        body[102..106],
        bundle.one_time_prekey.unwrap().0.to_be_bytes()
    );
    let inner = &body[106..];
    assert_eq!(inner[0], 1);
    assert_eq!(inner[33..37], 0u32.to_be_bytes()); // PN
    assert_eq!(inner[37..41], 0u32.to_be_bytes()); // N
    assert_eq!(inner.len(), 41 + 3 + 16);
    assert_eq!(
        prekey_message_sender(&body).unwrap(),
        alice.identity.public()
    );

    let mut no_one_time = Session::initiate(&alice.identity, &bob.bundle(false)).unwrap();
    let (_, body) = no_one_time.encrypt(b"abc").unwrap();
    assert_eq!(body[101], 0);
    assert_eq!(body.len(), 102 + 41 + 3 + 16);
}

#[test]
fn out_of_order_delivery_within_the_bound() {
    let (_, _, mut alice, mut bob) = establish(true);
    let first_chain: Vec<_> = (0..6)
        .map(|i| send(&mut alice, &format!("one {i}")))
        .collect();
    assert_eq!(receive(&mut bob, &first_chain[5]), "one 5");
    let reply = send(&mut bob, "reply");
    assert_eq!(receive(&mut alice, &reply), "reply");
    let second_chain: Vec<_> = (0..6)
        .map(|i| send(&mut alice, &format!("two {i}")))
        .collect();

    // New chain backwards, then the rest of the old chain in a scrambled order.
    for i in (0..6).rev() {
        assert_eq!(receive(&mut bob, &second_chain[i]), format!("two {i}"));
    }
    for i in [3, 0, 4, 2, 1] {
        assert_eq!(receive(&mut bob, &first_chain[i]), format!("one {i}"));
    }
    let back = send(&mut bob, "all read");
    assert_eq!(receive(&mut alice, &back), "all read");
}

#[test]
fn prekey_message_of_another_session_is_a_mismatch() {
    let (alice_device, mut bob_device, mut alice, mut bob) = establish(true);
    // Alice reinstalls and starts over; Bob still has the old session.
    let mut restarted =
        Session::initiate(&alice_device.identity, &bob_device.bundle(true)).unwrap();
    let message = send(&mut restarted, "new start");
    assert_eq!(
        bob.decrypt(message.0, &message.1),
        Err(CryptoError::SessionMismatch)
    );
    let (mut bob_new, plaintext) =
        Session::accept(&bob_device.identity, &mut bob_device.store, &message.1).unwrap();
    assert_eq!(plaintext, b"new start");
    let reply = send(&mut bob_new, "welcome back");
    assert_eq!(receive(&mut restarted, &reply), "welcome back");
    // The old session is untouched by the mismatch.
    let old = send(&mut alice, "old session");
    assert_eq!(receive(&mut bob, &old), "old session");
    // An initiator never takes PreKey messages into its session.
    assert_eq!(
        alice.decrypt(message.0, &message.1),
        Err(CryptoError::SessionMismatch)
    );
}

#[test]
fn sessions_survive_a_serde_round_trip_mid_conversation() {
    let alice_device = Device::new();
    let mut bob_device = Device::new();
    let mut alice = Session::initiate(&alice_device.identity, &bob_device.bundle(true)).unwrap();
    let pending: Vec<_> = (0..3).map(|i| send(&mut alice, &format!("p{i}"))).collect();
    let mut alice: Session = serde_json::from_str(&serde_json::to_string(&alice).unwrap()).unwrap();
    assert!(alice.awaiting_reply());

    let (bob, _) =
        Session::accept(&bob_device.identity, &mut bob_device.store, &pending[2].1).unwrap();
    let store_json = serde_json::to_string(&bob_device.store).unwrap();
    let restored_store: MemoryPreKeyStore = serde_json::from_str(&store_json).unwrap();
    assert_eq!(
        restored_store.one_time_prekey_count(),
        bob_device.store.one_time_prekey_count()
    );

    // Bob holds two skipped keys when he is saved.
    let mut bob: Session = serde_json::from_str(&serde_json::to_string(&bob).unwrap()).unwrap();
    assert_eq!(receive(&mut bob, &pending[0]), "p0");
    let reply = send(&mut bob, "r");
    let mut bob: Session = serde_json::from_str(&serde_json::to_string(&bob).unwrap()).unwrap();
    assert_eq!(receive(&mut alice, &reply), "r");
    for i in 0..20 {
        let message = send(&mut alice, &format!("x{i}"));
        let mut restored: Session =
            serde_json::from_str(&serde_json::to_string(&bob).unwrap()).unwrap();
        assert_eq!(receive(&mut restored, &message), format!("x{i}"));
        bob = restored;
    }
    assert_eq!(receive(&mut bob, &pending[1]), "p1");
    assert_eq!(
        bob.decrypt(pending[0].0, &pending[0].1),
        Err(CryptoError::DuplicateMessage)
    );
    assert_eq!(*bob.remote_identity(), alice_device.identity.public());
}
