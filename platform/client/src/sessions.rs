//! The sessions with one remote device: the current one and a few previous ones.
//!
//! Two devices that start sessions with each other at the same moment each accept the other's
//! PreKey message, so for a while each side encrypts with a different session. Keeping previous
//! sessions and promoting whichever one decrypts an incoming message makes both sides converge
//! on one session without losing a message (Signal keeps "previous session states" for the same
//! reason).

use courier_crypto::{CryptoError, MessageKind, Session};
use serde::{Deserialize, Serialize};

/// How many previous sessions are kept per remote device.
pub const MAX_PREVIOUS: usize = 5;

#[derive(Clone, Serialize, Deserialize)]
pub struct SessionSet {
    current: Session,
    previous: Vec<Session>,
}

impl SessionSet {
    pub fn new(session: Session) -> Self {
        SessionSet {
            current: session,
            previous: Vec::new(),
        }
    }

    /// The session new messages are encrypted with.
    pub fn current(&mut self) -> &mut Session {
        &mut self.current
    }

    /// Makes `session` current, keeping the old current one as a previous session.
    pub fn install(&mut self, session: Session) {
        let old = std::mem::replace(&mut self.current, session);
        self.previous.insert(0, old);
        self.previous.truncate(MAX_PREVIOUS);
    }

    /// Decrypts with the current session, else with a previous one, which then becomes current.
    /// For a PreKey message that belongs to none of them, `SessionMismatch`: the caller accepts
    /// it as a new session.
    pub fn decrypt(&mut self, kind: MessageKind, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let first_error = match self.current.decrypt(kind, body) {
            Ok(plaintext) => return Ok(plaintext),
            Err(error) => error,
        };
        let mut all_mismatched = matches!(first_error, CryptoError::SessionMismatch);
        for index in 0..self.previous.len() {
            match self.previous[index].decrypt(kind, body) {
                Ok(plaintext) => {
                    let session = self.previous.remove(index);
                    self.install(session);
                    return Ok(plaintext);
                }
                Err(CryptoError::SessionMismatch) => {}
                Err(_) => all_mismatched = false,
            }
        }
        if all_mismatched {
            Err(CryptoError::SessionMismatch)
        } else {
            Err(first_error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_crypto::{
        IdentityKeyPair, MemoryPreKeyStore, OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair,
    };

    struct Device {
        identity: IdentityKeyPair,
        prekeys: MemoryPreKeyStore,
        bundle: PreKeyBundle,
        sessions: Option<SessionSet>,
    }

    fn device() -> Device {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 1).unwrap();
        let one_time = OneTimePreKeyPair::generate(1).unwrap();
        let bundle = PreKeyBundle::new(identity.public(), &signed, Some(&one_time));
        let mut prekeys = MemoryPreKeyStore::new();
        prekeys.add_signed_prekey(signed);
        prekeys.add_one_time_prekeys([one_time]);
        Device {
            identity,
            prekeys,
            bundle,
            sessions: None,
        }
    }

    fn receive(device: &mut Device, kind: MessageKind, body: &[u8]) -> Vec<u8> {
        if let Some(set) = device.sessions.as_mut() {
            match set.decrypt(kind, body) {
                Ok(plaintext) => return plaintext,
                Err(CryptoError::SessionMismatch) => {}
                Err(error) => panic!("decrypt failed: {error}"),
            }
        }
        let (session, plaintext) =
            Session::accept(&device.identity, &mut device.prekeys, body).unwrap();
        match device.sessions.as_mut() {
            Some(set) => set.install(session),
            None => device.sessions = Some(SessionSet::new(session)),
        }
        plaintext
    }

    #[test]
    fn simultaneous_initiation_converges_without_losing_messages() {
        let mut alice = device();
        let mut bob = device();
        // Both start a session with the other before hearing anything.
        alice.sessions = Some(SessionSet::new(
            Session::initiate(&alice.identity, &bob.bundle).unwrap(),
        ));
        bob.sessions = Some(SessionSet::new(
            Session::initiate(&bob.identity, &alice.bundle).unwrap(),
        ));
        let (a_kind, a_body) = alice
            .sessions
            .as_mut()
            .unwrap()
            .current()
            .encrypt(b"a1")
            .unwrap();
        let (b_kind, b_body) = bob
            .sessions
            .as_mut()
            .unwrap()
            .current()
            .encrypt(b"b1")
            .unwrap();
        assert_eq!(receive(&mut bob, a_kind, &a_body), b"a1");
        assert_eq!(receive(&mut alice, b_kind, &b_body), b"b1");
        // Now each encrypts with the session the other started; both still decrypt, and after
        // one round trip they use the same session.
        for round in 0..3 {
            let text = format!("a{round}");
            let (kind, body) = alice
                .sessions
                .as_mut()
                .unwrap()
                .current()
                .encrypt(text.as_bytes())
                .unwrap();
            assert_eq!(receive(&mut bob, kind, &body), text.as_bytes());
            let text = format!("b{round}");
            let (kind, body) = bob
                .sessions
                .as_mut()
                .unwrap()
                .current()
                .encrypt(text.as_bytes())
                .unwrap();
            assert_eq!(receive(&mut alice, kind, &body), text.as_bytes());
        }
        let alice_base = *alice.sessions.as_mut().unwrap().current().base_key();
        let bob_base = *bob.sessions.as_mut().unwrap().current().base_key();
        assert_eq!(alice_base, bob_base, "both sides converged on one session");
    }
}
