//! What every [`StateStore`] must do, as one check a store's tests call: [`check_store`].
//!
//! It saves a new device's first change, reopens the store and compares, then saves an
//! incremental change (a contact added, a session dropped, a prekey consumed and new ones
//! added, a message handed over, a push name set) and checks that exactly those keys moved and
//! everything else stayed, across another reopen.

use std::sync::Arc;

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, OneTimePreKeyPair, PreKeyBundle, Session, SignedPreKeyPair,
};
use courier_protocol::{DeviceAddress, UserId};

use courier_crypto::PreKeyStore as _;

use super::{DeviceState, PendingDelivery, StateKey, StateStore};
use crate::api::Credentials;

/// A registered device's state with a session with another device, a contact, three received
/// messages (one not yet handed to the application) and five one-time prekeys.
pub fn sample_state() -> (DeviceState, DeviceAddress) {
    let identity = IdentityKeyPair::generate().expect("identity");
    let signed = SignedPreKeyPair::generate(&identity, 1).expect("signed prekey");
    let mut prekeys = MemoryPreKeyStore::new();
    prekeys.add_signed_prekey(signed);
    prekeys.add_one_time_prekeys(OneTimePreKeyPair::generate_batch(1, 5).expect("prekeys"));
    let mut state = DeviceState::new(
        "http://127.0.0.1:8080".into(),
        "+15550100001".into(),
        Credentials {
            address: DeviceAddress::new(UserId::random(), 1),
            password: "secret".into(),
        },
        identity.clone(),
        prekeys,
        1,
        6,
    );
    let peer_identity = IdentityKeyPair::generate().expect("peer identity");
    let peer_signed = SignedPreKeyPair::generate(&peer_identity, 7).expect("peer prekey");
    let bundle = PreKeyBundle {
        identity: peer_identity.public(),
        signed_prekey_id: peer_signed.id,
        signed_prekey: peer_signed.public,
        signed_prekey_signature: peer_signed.signature,
        one_time_prekey: None,
    };
    let peer = DeviceAddress::new(UserId::random(), 3);
    let session = Session::initiate(&identity, &bundle).expect("session");
    state.install_session(peer, session);
    state.add_contact("+15550100002".into(), peer.user);
    state.remember(peer, "m1");
    state.remember(peer, "m2");
    state.remember_pending(PendingDelivery {
        from: peer,
        group: None,
        id: "m3".into(),
        sent_at_ms: 1_000,
        content: crate::rich::text("not yet handed over").encode(),
    });
    (state, peer)
}

trait Encode {
    fn encode(&self) -> Vec<u8>;
}

impl Encode for courier_protocol::v1::Content {
    fn encode(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(self)
    }
}

/// Runs the check; `open` gives a new handle on the same (initially empty) storage each time,
/// as a process restart would.
pub async fn check_store(open: impl Fn() -> Arc<dyn StateStore>) {
    let store = open();
    assert!(
        store.load().await.expect("load").is_none(),
        "an empty store has no state"
    );
    let (mut state, peer) = sample_state();
    let (first, _) = state.take_change();
    assert!(first.items.contains_key(&StateKey::Core));
    store.save(&first).await.expect("first save");
    drop(store);

    let mut loaded = open().load().await.expect("load").expect("a saved state");
    assert_eq!(loaded.address(), state.address());
    assert_eq!(loaded.phone(), "+15550100001");
    assert_eq!(loaded.server(), "http://127.0.0.1:8080");
    assert_eq!(loaded.credentials().password, "secret");
    assert_eq!(loaded.identity().public(), state.identity().public());
    assert_eq!(loaded.prekeys().one_time_prekey_count(), 5);
    assert!(
        loaded.prekeys().signed_prekey(1).is_some(),
        "signed prekey kept"
    );
    assert_eq!(loaded.next_one_time_id(), 6);
    assert_eq!(loaded.session_devices(peer.user), vec![peer.device]);
    assert_eq!(loaded.contacts().get("+15550100002"), Some(&peer.user));
    assert!(loaded.has_seen(peer, "m1") && loaded.has_seen(peer, "m2"));
    assert!(loaded.has_seen(peer, "m3"));
    assert!(loaded.pending(None, peer, "m1").is_none());
    let pending = loaded.pending(None, peer, "m3").expect("m3 still pending");
    assert_eq!(pending.sent_at_ms, 1_000);
    assert_eq!(
        loaded.seen_marks().collect::<Vec<_>>(),
        state.seen_marks().collect::<Vec<_>>(),
        "seen marks keep their order"
    );
    assert!(loaded.take_change().0.is_empty(), "a loaded state is clean");

    // An incremental change: only the keys touched are written.
    let other = UserId::random();
    loaded.add_contact("+15550100003".into(), other);
    loaded.remove_session(peer);
    loaded.handed_over(None, peer, "m3");
    loaded.prekeys.take_one_time_prekey(2);
    loaded.touch(StateKey::OneTimePreKey(2));
    loaded.add_one_time_prekeys(OneTimePreKeyPair::generate_batch(6, 2).expect("keys"), 8);
    loaded.set_sender_name(Some("Alice".into()));
    assert!(loaded.remember(peer, "m4"));
    let (change, _) = loaded.take_change();
    let keys: Vec<String> = change.items.keys().map(|key| key.to_string()).collect();
    let mut expected = vec![
        "core".to_owned(),
        "prekey/2".into(),
        "prekey/6".into(),
        "prekey/7".into(),
        format!("session/{peer}"),
        "contact/+15550100003".into(),
        format!("seen/{peer}/m3"),
        format!("seen/{peer}/m4"),
    ];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected, "exactly the changed keys");
    assert_eq!(
        change.deletes().count(),
        2,
        "a consumed prekey and a dropped session"
    );
    open().save(&change).await.expect("incremental save");

    let mut again = open().load().await.expect("load").expect("state");
    assert_eq!(again.sender_name(), Some("Alice"));
    assert_eq!(again.next_one_time_id(), 8);
    assert_eq!(again.prekeys().one_time_prekey_count(), 6);
    assert!(again.prekeys().one_time_prekey(2).is_none());
    assert!(again.prekeys().one_time_prekey(7).is_some());
    assert!(again.session_devices(peer.user).is_empty());
    assert_eq!(again.contacts().len(), 2);
    assert!(again.pending(None, peer, "m3").is_none(), "handed over");
    assert!(again.has_seen(peer, "m3") && again.has_seen(peer, "m4"));
    let order: Vec<&str> = again.seen_marks().collect();
    assert_eq!(order.last().copied(), Some(format!("{peer}/m4").as_str()));
    // A mark made after the reload sorts after every loaded one.
    assert!(again.remember(peer, "m5"));
    let seq =
        |state: &DeviceState, id: &str| match state.item(&StateKey::Seen(format!("{peer}/{id}"))) {
            Some(super::StateItem::Seen(mark)) => mark.seq,
            _ => panic!("no seen mark {id}"),
        };
    assert!(seq(&again, "m5") > seq(&again, "m4"));
}
