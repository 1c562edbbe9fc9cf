//! Helpers shared by the session test binaries: devices with prekeys and an established pair.

use courier_crypto::{
    IdentityKeyPair, MemoryPreKeyStore, MessageKind, OneTimePreKeyPair, PreKeyBundle, Session,
    SignedPreKeyPair,
};

/// A device with its keys, and the one-time prekeys "the server" still has to hand out.
pub struct Device {
    pub identity: IdentityKeyPair,
    pub signed: SignedPreKeyPair,
    pub unpublished: Vec<OneTimePreKeyPair>,
    pub store: MemoryPreKeyStore,
}

impl Device {
    pub fn new() -> Self {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 1).unwrap();
        let one_time = OneTimePreKeyPair::generate_batch(100, 10).unwrap();
        let mut store = MemoryPreKeyStore::new();
        store.add_signed_prekey(signed.clone());
        store.add_one_time_prekeys(one_time.clone());
        Self {
            identity,
            signed,
            unpublished: one_time,
            store,
        }
    }

    pub fn bundle(&mut self, with_one_time: bool) -> PreKeyBundle {
        let one_time = if with_one_time {
            self.unpublished.pop()
        } else {
            None
        };
        PreKeyBundle::new(self.identity.public(), &self.signed, one_time.as_ref())
    }
}

/// Alice initiates, Bob accepts her first message and replies, Alice reads the reply.
pub fn establish(with_one_time: bool) -> (Device, Device, Session, Session) {
    let alice = Device::new();
    let mut bob = Device::new();
    let mut alice_session = Session::initiate(&alice.identity, &bob.bundle(with_one_time)).unwrap();
    let (kind, body) = alice_session.encrypt(b"hello bob").unwrap();
    assert_eq!(kind, MessageKind::PreKey);
    let (mut bob_session, plaintext) =
        Session::accept(&bob.identity, &mut bob.store, &body).unwrap();
    assert_eq!(plaintext, b"hello bob");
    let (kind, reply) = bob_session.encrypt(b"hello alice").unwrap();
    assert_eq!(kind, MessageKind::Message);
    assert_eq!(alice_session.decrypt(kind, &reply).unwrap(), b"hello alice");
    (alice, bob, alice_session, bob_session)
}

pub fn send(from: &mut Session, text: &str) -> (MessageKind, Vec<u8>) {
    from.encrypt(text.as_bytes()).unwrap()
}

pub fn receive(to: &mut Session, (kind, body): &(MessageKind, Vec<u8>)) -> String {
    String::from_utf8(to.decrypt(*kind, body).unwrap()).unwrap()
}
