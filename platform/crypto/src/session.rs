//! Pairwise sessions: X3DH to start, the Double Ratchet for every message. This is the surface
//! the client SDK uses.
//!
//! # Flow
//!
//! The initiator calls [`Session::initiate`] with the recipient device's [`PreKeyBundle`] and
//! may [`Session::encrypt`] at once. Until it has decrypted a first message from the
//! responder, every message it sends is a [`MessageKind::PreKey`] message that repeats the X3DH
//! header, so whichever arrives first can start the session. The responder calls
//! [`Session::accept`] on the first PreKey message it gets and [`Session::decrypt`] on all
//! later ones, PreKey or not. A PreKey message with another base key than the session's
//! fails with [`CryptoError::SessionMismatch`]: the peer started over (new install, lost
//! state, or both sides initiated at once), and the caller should `accept` it as a new session.
//!
//! The remote identity arrives in the PreKey message; the caller must check it against the
//! directory (and the user against the safety number) before trusting the session.
//! Without a one-time prekey, X3DH cannot stop a replay of a first PreKey message to a device
//! that no longer has the session (as in Signal); one-time prekeys rule that out.
//!
//! # Wire layout (version 1)
//!
//! All integers are unsigned big-endian. A message whose first byte is not `0x01` is rejected
//! with [`CryptoError::UnsupportedVersion`]; any other layout violation with
//! [`CryptoError::Malformed`].
//!
//! `CIPHERTEXT_TYPE_MESSAGE` (2), a Double Ratchet message, at least 57 bytes:
//!
//! ```text
//! offset  size  field
//!      0     1  version = 0x01
//!      1    32  sender's current ratchet public key (X25519)
//!     33     4  PN: number of messages in the sender's previous sending chain
//!     37     4  N: number of this message in the current sending chain
//!     41   n+16 AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag
//! ```
//!
//! The AEAD associated data is the session's 128-byte X3DH AD
//! (`initiator Ed25519 || initiator X25519 || responder Ed25519 || responder X25519`)
//! followed by bytes 0..41 of the message, so the version and the header are authenticated.
//! Key and nonce come from the message key (see [`crate::ratchet`]).
//!
//! `CIPHERTEXT_TYPE_PREKEY` (1), the X3DH header followed by a whole ratchet message:
//!
//! ```text
//! offset  size  field
//!      0     1  version = 0x01
//!      1    32  initiator identity, Ed25519 public key
//!     33    32  initiator identity, X25519 public key
//!     65    32  base key: the initiator's ephemeral X25519 public key EK_A
//!     97     4  signed prekey id
//!    101     1  one-time prekey flag: 0x00 = none, 0x01 = present (other values malformed)
//!    102     4  one-time prekey id (only when the flag is 0x01)
//! 102 or 106 …  a complete MESSAGE as above (with its own version byte)
//! ```
//!
//! The X3DH header is authenticated implicitly: changing the identity alters the AD and DH1,
//! changing the base key or a prekey id alters the derived secret, so the embedded message's
//! tag fails. For an established session the header must equal the one that started it.

use serde::{Deserialize, Serialize};

use crate::error::CryptoError;
use crate::keys::{IdentityKeyPair, PreKeyBundle, PublicIdentity};
use crate::ratchet::RatchetState;
use crate::store::PreKeyStore;
use crate::wire::PreKeyHeader;
use crate::x3dh;

/// The two kinds of pairwise ciphertext; the gateway protocol's `CiphertextType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageKind {
    /// Starts a session: X3DH header plus a ratchet message (`CIPHERTEXT_TYPE_PREKEY = 1`).
    PreKey,
    /// A ratchet message in an established session (`CIPHERTEXT_TYPE_MESSAGE = 2`).
    Message,
}

impl MessageKind {
    /// The gateway protocol's `CiphertextType` value.
    pub fn wire_type(self) -> i32 {
        match self {
            MessageKind::PreKey => 1,
            MessageKind::Message => 2,
        }
    }

    /// From the gateway protocol's `CiphertextType` value; `None` for unknown values.
    pub fn from_wire_type(value: i32) -> Option<Self> {
        match value {
            1 => Some(MessageKind::PreKey),
            2 => Some(MessageKind::Message),
            _ => None,
        }
    }
}

/// Which side started the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Ran X3DH from a bundle.
    Initiator,
    /// Accepted a PreKey message.
    Responder,
}

/// An end-to-end encrypted session with one remote device. Serialize it to persist it; the
/// serialized form holds secret keys and belongs on the device only.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    local_identity: PublicIdentity,
    remote_identity: PublicIdentity,
    role: Role,
    prekey_header: PreKeyHeader,
    awaiting_reply: bool,
    ratchet: RatchetState,
}

impl Session {
    /// Starts a session from the remote device's bundle (verifying its signed prekey).
    pub fn initiate(ours: &IdentityKeyPair, bundle: &PreKeyBundle) -> Result<Session, CryptoError> {
        let initiation = x3dh::initiate(ours, bundle)?;
        let ratchet = RatchetState::initiator(&initiation.secret, &bundle.signed_prekey)?;
        let local_identity = ours.public();
        Ok(Session {
            local_identity,
            remote_identity: bundle.identity,
            role: Role::Initiator,
            prekey_header: PreKeyHeader {
                identity: local_identity,
                base_key: initiation.base_key,
                signed_prekey_id: initiation.signed_prekey_id,
                one_time_prekey_id: initiation.one_time_prekey_id,
            },
            awaiting_reply: true,
            ratchet,
        })
    }

    /// Creates the session a PreKey message starts and decrypts that message. The one-time
    /// prekey it names is removed from `prekeys`, but only after the message decrypted.
    pub fn accept(
        ours: &IdentityKeyPair,
        prekeys: &mut impl PreKeyStore,
        body: &[u8],
    ) -> Result<(Session, Vec<u8>), CryptoError> {
        let (header, ratchet_message) = PreKeyHeader::parse(body)?;
        let signed_prekey = prekeys
            .signed_prekey(header.signed_prekey_id)
            .ok_or(CryptoError::UnknownSignedPreKey(header.signed_prekey_id))?;
        let one_time_prekey = match header.one_time_prekey_id {
            Some(id) => Some(
                prekeys
                    .one_time_prekey(id)
                    .ok_or(CryptoError::UnknownOneTimePreKey(id))?,
            ),
            None => None,
        };
        let secret = x3dh::respond(
            ours,
            &header.identity,
            &header.base_key,
            &signed_prekey,
            one_time_prekey.as_ref(),
        )?;
        let mut ratchet = RatchetState::responder(&secret, &signed_prekey);
        let plaintext = ratchet.decrypt(ratchet_message)?;
        if let Some(id) = header.one_time_prekey_id {
            prekeys.take_one_time_prekey(id);
        }
        let session = Session {
            local_identity: ours.public(),
            remote_identity: header.identity,
            role: Role::Responder,
            prekey_header: header,
            awaiting_reply: false,
            ratchet,
        };
        Ok((session, plaintext))
    }

    /// Encrypts a message: a PreKey message until the initiator has heard back, else a Message.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<(MessageKind, Vec<u8>), CryptoError> {
        let ratchet_message = self.ratchet.encrypt(plaintext)?;
        if self.awaiting_reply {
            let body = self.prekey_header.encode_with(&ratchet_message);
            Ok((MessageKind::PreKey, body))
        } else {
            Ok((MessageKind::Message, ratchet_message))
        }
    }

    /// Decrypts a message of this session. On any error the session is unchanged.
    pub fn decrypt(&mut self, kind: MessageKind, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let plaintext = match kind {
            MessageKind::Message => self.ratchet.decrypt(body)?,
            MessageKind::PreKey => {
                let (header, ratchet_message) = PreKeyHeader::parse(body)?;
                if self.role != Role::Responder || header.base_key != self.prekey_header.base_key {
                    return Err(CryptoError::SessionMismatch);
                }
                if header != self.prekey_header {
                    return Err(CryptoError::DecryptFailed);
                }
                self.ratchet.decrypt(ratchet_message)?
            }
        };
        self.awaiting_reply = false;
        Ok(plaintext)
    }

    /// The remote device's identity (from the bundle, or from the PreKey message).
    pub fn remote_identity(&self) -> &PublicIdentity {
        &self.remote_identity
    }

    /// This device's identity.
    pub fn local_identity(&self) -> &PublicIdentity {
        &self.local_identity
    }

    /// Which side started the session.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True while the initiator has not yet decrypted a message from the responder (and so
    /// still sends PreKey messages).
    pub fn awaiting_reply(&self) -> bool {
        self.awaiting_reply
    }

    /// The X3DH base key that identifies this session in PreKey messages.
    pub fn base_key(&self) -> &[u8; 32] {
        &self.prekey_header.base_key
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote_identity", &self.remote_identity)
            .field("role", &self.role)
            .field("awaiting_reply", &self.awaiting_reply)
            .finish_non_exhaustive()
    }
}

/// The sender identity named by a PreKey message, read without decrypting anything (e.g. to
/// look the sender up before `accept`). Not authenticated until `accept` succeeds.
pub fn prekey_message_sender(body: &[u8]) -> Result<PublicIdentity, CryptoError> {
    PreKeyHeader::parse(body).map(|(header, _)| header.identity)
}
