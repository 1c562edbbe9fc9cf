//! Group messaging with Sender Keys through the public API.

use courier_crypto::sender_keys::{MAX_RECEIVER_CHAINS, MAX_SENDER_SKIP};
use courier_crypto::{CryptoError, GroupReceiver, GroupSender, SenderKeyDistribution};

/// A sender and a receiver built from the distribution's bytes, as they travel.
fn pair() -> (GroupSender, GroupReceiver) {
    let sender = GroupSender::new().unwrap();
    let bytes = sender.distribution().to_bytes();
    assert_eq!(bytes.len(), 73);
    let receiver = GroupReceiver::new(&SenderKeyDistribution::from_bytes(&bytes).unwrap()).unwrap();
    (sender, receiver)
}

#[test]
fn many_messages_round_trip_to_several_receivers() {
    let mut sender = GroupSender::new().unwrap();
    let distribution = sender.distribution();
    let mut receivers: Vec<_> = (0..3)
        .map(|_| GroupReceiver::new(&distribution).unwrap())
        .collect();
    for i in 0..200 {
        let message = sender.encrypt(format!("group {i}").as_bytes()).unwrap();
        for receiver in &mut receivers {
            assert_eq!(
                receiver.decrypt(&message).unwrap(),
                format!("group {i}").as_bytes()
            );
        }
    }
    assert_eq!(sender.state().iteration(), 200);
}

#[test]
fn message_layout_is_as_documented() {
    let (mut sender, _) = pair();
    let message = sender.encrypt(b"hello").unwrap();
    assert_eq!(message[0], 1);
    assert_eq!(message[1..5], sender.state().chain_id().to_be_bytes());
    assert_eq!(message[5..9], 0u32.to_be_bytes());
    assert_eq!(message.len(), 9 + 5 + 16 + 64);
    let second = sender.encrypt(b"hello").unwrap();
    assert_eq!(second[5..9], 1u32.to_be_bytes());
    assert_ne!(second[9..30], message[9..30]);
}

#[test]
fn out_of_order_within_the_bound() {
    let (mut sender, mut receiver) = pair();
    let messages: Vec<_> = (0..10)
        .map(|i| sender.encrypt(&[i as u8]).unwrap())
        .collect();
    for i in [9, 3, 0, 8, 1, 2, 7, 4, 6, 5] {
        assert_eq!(receiver.decrypt(&messages[i]).unwrap(), vec![i as u8]);
    }
}

#[test]
fn skipping_beyond_the_bound_is_rejected() {
    let (mut sender, mut receiver) = pair();
    let messages: Vec<_> = (0..=MAX_SENDER_SKIP + 1)
        .map(|i| sender.encrypt(&i.to_be_bytes()).unwrap())
        .collect();
    let too_far = &messages[(MAX_SENDER_SKIP + 1) as usize];
    assert_eq!(receiver.decrypt(too_far), Err(CryptoError::TooManySkipped));
    let at_bound = &messages[MAX_SENDER_SKIP as usize];
    assert_eq!(
        receiver.decrypt(at_bound).unwrap(),
        MAX_SENDER_SKIP.to_be_bytes()
    );
    assert_eq!(receiver.decrypt(&messages[0]).unwrap(), 0u32.to_be_bytes());
    assert_eq!(
        receiver.decrypt(too_far).unwrap(),
        (MAX_SENDER_SKIP + 1).to_be_bytes()
    );
}

#[test]
fn replays_are_rejected() {
    let (mut sender, mut receiver) = pair();
    let first = sender.encrypt(b"one").unwrap();
    let second = sender.encrypt(b"two").unwrap();
    receiver.decrypt(&second).unwrap();
    assert_eq!(
        receiver.decrypt(&second),
        Err(CryptoError::DuplicateMessage)
    );
    receiver.decrypt(&first).unwrap();
    assert_eq!(receiver.decrypt(&first), Err(CryptoError::DuplicateMessage));
}

#[test]
fn tampered_or_truncated_messages_are_rejected_and_the_receiver_survives() {
    let (mut sender, mut receiver) = pair();
    let message = sender.encrypt(b"untouched").unwrap();
    for position in [
        0,
        1,
        4,
        5,
        8,
        9,
        15,
        message.len() - 65,
        message.len() - 64,
        message.len() - 1,
    ] {
        let mut tampered = message.clone();
        tampered[position] ^= 0x01;
        let result = receiver.decrypt(&tampered);
        match position {
            0 => assert_eq!(result, Err(CryptoError::UnsupportedVersion(0))),
            1..=4 => assert!(matches!(result, Err(CryptoError::UnknownChain(_)))),
            _ => assert_eq!(result, Err(CryptoError::BadSignature), "byte {position}"),
        }
    }
    for length in [0, 1, 9, 88, message.len() - 1] {
        assert!(
            receiver.decrypt(&message[..length]).is_err(),
            "length {length}"
        );
    }
    let mut extended = message.clone();
    extended.push(0);
    assert_eq!(receiver.decrypt(&extended), Err(CryptoError::BadSignature));
    assert_eq!(receiver.decrypt(&message).unwrap(), b"untouched");
}

#[test]
fn a_signature_by_another_key_is_rejected() {
    let (mut sender, _) = pair();
    let impostor = GroupSender::new().unwrap();
    // A distribution with the right chain but the impostor's signing key.
    let mut bytes = sender.distribution().to_bytes();
    bytes[41..73].copy_from_slice(&impostor.distribution().to_bytes()[41..73]);
    let mut fooled =
        GroupReceiver::new(&SenderKeyDistribution::from_bytes(&bytes).unwrap()).unwrap();
    let message = sender.encrypt(b"real").unwrap();
    assert_eq!(fooled.decrypt(&message), Err(CryptoError::BadSignature));
}

#[test]
fn messages_of_an_unknown_chain_are_rejected() {
    let (_, mut receiver) = pair();
    let mut stranger = GroupSender::new().unwrap();
    let message = stranger.encrypt(b"who?").unwrap();
    assert_eq!(
        receiver.decrypt(&message),
        Err(CryptoError::UnknownChain(stranger.state().chain_id()))
    );
}

#[test]
fn rotation_needs_the_new_distribution_and_old_chains_linger() {
    let (mut old_sender, mut receiver) = pair();
    let late = old_sender.encrypt(b"late").unwrap();
    let mut new_sender = GroupSender::new().unwrap();
    assert_ne!(new_sender.state().chain_id(), old_sender.state().chain_id());
    let new_distribution = new_sender.distribution();
    let fresh = new_sender.encrypt(b"after rotation").unwrap();
    assert!(matches!(
        receiver.decrypt(&fresh),
        Err(CryptoError::UnknownChain(_))
    ));

    receiver.add_distribution(&new_distribution).unwrap();
    assert_eq!(receiver.decrypt(&fresh).unwrap(), b"after rotation");
    assert_eq!(receiver.decrypt(&late).unwrap(), b"late");

    // Only the newest few chains are kept.
    for _ in 0..MAX_RECEIVER_CHAINS {
        receiver
            .add_distribution(&GroupSender::new().unwrap().distribution())
            .unwrap();
    }
    assert_eq!(receiver.chain_ids().len(), MAX_RECEIVER_CHAINS);
    let dropped = new_sender.encrypt(b"too old").unwrap();
    assert!(matches!(
        receiver.decrypt(&dropped),
        Err(CryptoError::UnknownChain(_))
    ));
}

#[test]
fn a_late_joiner_reads_from_the_distribution_on() {
    let mut sender = GroupSender::new().unwrap();
    let before: Vec<_> = (0..5).map(|_| sender.encrypt(b"before").unwrap()).collect();
    let mut joiner = GroupReceiver::new(&sender.distribution()).unwrap();
    let after = sender.encrypt(b"after").unwrap();
    assert_eq!(joiner.decrypt(&after).unwrap(), b"after");
    assert_eq!(
        joiner.decrypt(&before[4]),
        Err(CryptoError::DuplicateMessage)
    );
    // Redistributing the chain later changes nothing for a known chain.
    joiner.add_distribution(&sender.distribution()).unwrap();
    assert_eq!(joiner.decrypt(&after), Err(CryptoError::DuplicateMessage));
}

#[test]
fn distribution_parsing_is_strict() {
    let sender = GroupSender::new().unwrap();
    let bytes = sender.distribution().to_bytes();
    assert_eq!(
        SenderKeyDistribution::from_bytes(&bytes).unwrap(),
        sender.distribution()
    );
    let mut wrong_version = bytes.clone();
    wrong_version[0] = 2;
    assert_eq!(
        SenderKeyDistribution::from_bytes(&wrong_version),
        Err(CryptoError::UnsupportedVersion(2))
    );
    assert!(matches!(
        SenderKeyDistribution::from_bytes(&bytes[..72]),
        Err(CryptoError::Malformed(_))
    ));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        SenderKeyDistribution::from_bytes(&longer),
        Err(CryptoError::Malformed(_))
    ));
    let mut weak_key = bytes.clone();
    weak_key[41..73].copy_from_slice(&[0u8; 32]); // not a usable Ed25519 key
    weak_key[41] = 1; // the identity point: small order
    assert_eq!(
        SenderKeyDistribution::from_bytes(&weak_key),
        Err(CryptoError::InvalidKey)
    );
    // A known chain id with another signing key is refused.
    let mut receiver = GroupReceiver::new(&sender.distribution()).unwrap();
    let mut other_key = bytes.clone();
    other_key[41..73]
        .copy_from_slice(&GroupSender::new().unwrap().distribution().to_bytes()[41..73]);
    let other = SenderKeyDistribution::from_bytes(&other_key).unwrap();
    assert!(matches!(
        receiver.add_distribution(&other),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn sender_and_receiver_survive_a_serde_round_trip() {
    let (sender, receiver) = pair();
    let mut sender: GroupSender =
        serde_json::from_str(&serde_json::to_string(&sender).unwrap()).unwrap();
    let messages: Vec<_> = (0..4).map(|i| sender.encrypt(&[i]).unwrap()).collect();
    let mut receiver = receiver;
    assert_eq!(receiver.decrypt(&messages[3]).unwrap(), vec![3]);
    let mut receiver: GroupReceiver =
        serde_json::from_str(&serde_json::to_string(&receiver).unwrap()).unwrap();
    assert_eq!(receiver.decrypt(&messages[1]).unwrap(), vec![1]);
    assert_eq!(
        receiver.decrypt(&messages[3]),
        Err(CryptoError::DuplicateMessage)
    );
    let mut sender: GroupSender =
        serde_json::from_str(&serde_json::to_string(&sender).unwrap()).unwrap();
    let next = sender.encrypt(b"next").unwrap();
    assert_eq!(receiver.decrypt(&next).unwrap(), b"next");
}
