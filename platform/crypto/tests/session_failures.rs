//! Pairwise sessions under attack or loss: skip bounds, replays, tampering, truncation, bad
//! signatures and spent prekeys. Every rejected message must leave the session working.

mod common;

use common::{Device, establish, receive, send};
use courier_crypto::ratchet::{MAX_SKIP, MAX_SKIPPED_KEYS};
use courier_crypto::{CryptoError, MessageKind, Session};

#[test]
fn skipping_more_than_the_bound_is_rejected() {
    let (_, _, mut alice, mut bob) = establish(true);
    let messages: Vec<_> = (0..=MAX_SKIP + 1)
        .map(|i| send(&mut alice, &i.to_string()))
        .collect();
    // Message MAX_SKIP + 1 would skip MAX_SKIP + 1 keys.
    let too_far = &messages[(MAX_SKIP + 1) as usize];
    assert_eq!(
        bob.decrypt(too_far.0, &too_far.1),
        Err(CryptoError::TooManySkipped)
    );
    // Exactly MAX_SKIP skipped is allowed, and the skipped ones still decrypt.
    assert_eq!(
        receive(&mut bob, &messages[MAX_SKIP as usize]),
        MAX_SKIP.to_string()
    );
    assert_eq!(receive(&mut bob, &messages[0]), "0");
    assert_eq!(receive(&mut bob, &messages[999]), "999");
    assert_eq!(receive(&mut bob, too_far), (MAX_SKIP + 1).to_string());
}

#[test]
fn skipping_more_than_the_bound_in_the_previous_chain_is_rejected() {
    let (_, _, mut alice, mut bob) = establish(true);
    let first = send(&mut alice, "first");
    for _ in 0..=MAX_SKIP + 1 {
        send(&mut alice, "lost");
    }
    assert_eq!(receive(&mut bob, &first), "first");
    let reply = send(&mut bob, "reply");
    assert_eq!(receive(&mut alice, &reply), "reply");
    // PN now says MAX_SKIP + 2 messages, of which Bob has seen one.
    let next = send(&mut alice, "next");
    assert_eq!(
        bob.decrypt(next.0, &next.1),
        Err(CryptoError::TooManySkipped)
    );
    let still = send(&mut bob, "still here");
    assert_eq!(receive(&mut alice, &still), "still here");
}

#[test]
fn skipped_keys_beyond_the_total_cap_are_dropped_oldest_first() {
    let (_, _, mut alice, mut bob) = establish(true);
    let rounds = MAX_SKIPPED_KEYS / MAX_SKIP as usize + 1;
    let mut chains = Vec::new();
    for _ in 0..rounds {
        let chain: Vec<_> = (0..=MAX_SKIP)
            .map(|i| send(&mut alice, &i.to_string()))
            .collect();
        assert_eq!(
            receive(&mut bob, &chain[MAX_SKIP as usize]),
            MAX_SKIP.to_string()
        );
        let reply = send(&mut bob, "ack");
        assert_eq!(receive(&mut alice, &reply), "ack");
        chains.push(chain);
    }
    assert_eq!(
        bob.decrypt(chains[0][5].0, &chains[0][5].1),
        Err(CryptoError::DuplicateMessage)
    );
    for chain in &chains[1..] {
        assert_eq!(receive(&mut bob, &chain[5]), "5");
    }
}

#[test]
fn replays_are_rejected_because_each_key_is_used_once() {
    let (alice_device, mut bob_device, mut alice, mut bob) = establish(true);
    let a = send(&mut alice, "a");
    let b = send(&mut alice, "b");
    assert_eq!(receive(&mut bob, &b), "b");
    assert_eq!(bob.decrypt(b.0, &b.1), Err(CryptoError::DuplicateMessage));
    assert_eq!(receive(&mut bob, &a), "a"); // from the skipped keys
    assert_eq!(bob.decrypt(a.0, &a.1), Err(CryptoError::DuplicateMessage));

    // After a ratchet step, a message of the old chain is still a replay.
    let reply = send(&mut bob, "r");
    assert_eq!(receive(&mut alice, &reply), "r");
    let c = send(&mut alice, "c");
    assert_eq!(receive(&mut bob, &c), "c");
    assert_eq!(bob.decrypt(b.0, &b.1), Err(CryptoError::DuplicateMessage));
    assert_eq!(
        alice.decrypt(reply.0, &reply.1),
        Err(CryptoError::DuplicateMessage)
    );

    // A replayed PreKey message: the session recognises it, the one-time prekey is gone.
    let mut fresh = Session::initiate(&alice_device.identity, &bob_device.bundle(true)).unwrap();
    let first = send(&mut fresh, "first");
    let (mut bob_fresh, _) =
        Session::accept(&bob_device.identity, &mut bob_device.store, &first.1).unwrap();
    assert_eq!(
        bob_fresh.decrypt(first.0, &first.1),
        Err(CryptoError::DuplicateMessage)
    );
    assert!(matches!(
        Session::accept(&bob_device.identity, &mut bob_device.store, &first.1),
        Err(CryptoError::UnknownOneTimePreKey(_))
    ));
}

#[test]
fn tampered_or_truncated_messages_are_rejected_and_the_session_survives() {
    let (_, _, mut alice, mut bob) = establish(true);
    // The first message of a new chain (it triggers a DH ratchet step) and a later one.
    let ratchet_step = send(&mut alice, "ratchet step");
    let later = send(&mut alice, "later");
    for (message, text) in [(&ratchet_step, "ratchet step"), (&later, "later")] {
        let body = &message.1;
        // Version, ratchet key, PN, N, ciphertext, tag.
        for position in [0, 1, 20, 33, 36, 37, 40, 41, body.len() - 1] {
            for flip in [0x01u8, 0x80] {
                let mut tampered = body.clone();
                tampered[position] ^= flip;
                let result = bob.decrypt(message.0, &tampered);
                assert!(result.is_err(), "byte {position} flip {flip:#x} accepted");
                if position == 0 {
                    assert!(matches!(result, Err(CryptoError::UnsupportedVersion(_))));
                }
            }
        }
        for length in [0, 1, 40, 41, 56, body.len() - 1] {
            assert!(
                bob.decrypt(message.0, &body[..length]).is_err(),
                "length {length}"
            );
        }
        let mut extended = body.clone();
        extended.push(0);
        assert_eq!(
            bob.decrypt(message.0, &extended),
            Err(CryptoError::DecryptFailed)
        );
        // As a PreKey message it is not even the right layout.
        assert!(bob.decrypt(MessageKind::PreKey, body).is_err());
        assert_eq!(receive(&mut bob, message), text);
    }
    let reply = send(&mut bob, "fine");
    assert_eq!(receive(&mut alice, &reply), "fine");
}

#[test]
fn tampered_prekey_message_is_rejected_without_burning_the_one_time_prekey() {
    let alice = Device::new();
    let mut bob = Device::new();
    let mut session = Session::initiate(&alice.identity, &bob.bundle(true)).unwrap();
    let (_, body) = session.encrypt(b"first").unwrap();
    let count = bob.store.one_time_prekey_count();
    // Identity, base key, signed prekey id, flag, one-time id, inner header, ciphertext.
    for position in [1, 40, 70, 100, 101, 105, 110, 150, body.len() - 1] {
        let mut tampered = body.clone();
        tampered[position] ^= 0x01;
        let result = Session::accept(&bob.identity, &mut bob.store, &tampered);
        assert!(result.is_err(), "byte {position} accepted");
        assert_eq!(bob.store.one_time_prekey_count(), count);
    }
    let mut wrong_version = body.clone();
    wrong_version[0] = 9;
    assert!(matches!(
        Session::accept(&bob.identity, &mut bob.store, &wrong_version),
        Err(CryptoError::UnsupportedVersion(9))
    ));
    for length in [0, 50, 101, 106, 150] {
        assert!(Session::accept(&bob.identity, &mut bob.store, &body[..length]).is_err());
    }
    let (mut bob_session, plaintext) =
        Session::accept(&bob.identity, &mut bob.store, &body).unwrap();
    assert_eq!(plaintext, b"first");
    assert_eq!(bob.store.one_time_prekey_count(), count - 1);

    // Within the session, a header that differs but keeps the base key is refused too.
    let (kind, second) = session.encrypt(b"second").unwrap();
    let mut tampered = second.clone();
    tampered[100] ^= 0x01; // signed prekey id
    assert_eq!(
        bob_session.decrypt(kind, &tampered),
        Err(CryptoError::DecryptFailed)
    );
    assert_eq!(bob_session.decrypt(kind, &second).unwrap(), b"second");
}

#[test]
fn bad_signed_prekey_signature_is_rejected() {
    let alice = Device::new();
    let mut bob = Device::new();
    let mut bundle = bob.bundle(true);
    bundle.signed_prekey_signature[0] ^= 1;
    assert!(matches!(
        Session::initiate(&alice.identity, &bundle),
        Err(CryptoError::BadSignature)
    ));
    let mut bundle = bob.bundle(true);
    bundle.signed_prekey[31] ^= 1;
    assert!(matches!(
        Session::initiate(&alice.identity, &bundle),
        Err(CryptoError::BadSignature)
    ));
}

#[test]
fn a_used_one_time_prekey_cannot_be_used_again() {
    let alice = Device::new();
    let carol = Device::new();
    let mut bob = Device::new();
    // A misbehaving server hands the same one-time prekey to two initiators.
    let bundle = bob.bundle(true);
    let mut from_alice = Session::initiate(&alice.identity, &bundle).unwrap();
    let mut from_carol = Session::initiate(&carol.identity, &bundle).unwrap();
    let alice_first = send(&mut from_alice, "alice");
    let carol_first = send(&mut from_carol, "carol");
    Session::accept(&bob.identity, &mut bob.store, &alice_first.1).unwrap();
    let id = bundle.one_time_prekey.unwrap().0;
    assert!(matches!(
        Session::accept(&bob.identity, &mut bob.store, &carol_first.1),
        Err(CryptoError::UnknownOneTimePreKey(got)) if got == id
    ));

    let mut stale = bob.bundle(false);
    stale.signed_prekey_id = 77;
    let mut signed_77 = Session::initiate(&alice.identity, &stale).unwrap();
    let message = send(&mut signed_77, "x");
    assert!(matches!(
        Session::accept(&bob.identity, &mut bob.store, &message.1),
        Err(CryptoError::UnknownSignedPreKey(77))
    ));
}

#[test]
fn unknown_versions_and_garbage_are_rejected() {
    let (_, _, mut alice, mut bob) = establish(true);
    let (kind, mut body) = send(&mut alice, "v");
    body[0] = 2;
    assert_eq!(
        bob.decrypt(kind, &body),
        Err(CryptoError::UnsupportedVersion(2))
    );
    assert!(matches!(
        bob.decrypt(kind, &[]),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        bob.decrypt(MessageKind::PreKey, &[1, 2, 3]),
        Err(CryptoError::Malformed(_))
    ));
    body[0] = 1;
    assert_eq!(receive(&mut bob, &(kind, body)), "v");
}
