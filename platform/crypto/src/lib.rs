//! End-to-end encryption for Courier clients: X3DH to start pairwise sessions, the Double
//! Ratchet for their messages, Sender Keys for groups and per-blob keys for media, following
//! the public Signal specifications on X25519, Ed25519, HKDF/HMAC-SHA256 and AES-256-GCM.
//!
//! # Layout
//!
//! - [`error`]: [`CryptoError`], the one error type; every failure is typed.
//! - [`keys`]: identity key pairs (Ed25519 + X25519), signed and one-time prekeys, the
//!   [`PreKeyBundle`] a server hands out.
//! - [`fingerprint`]: 60-digit safety numbers for comparing identities out of band.
//! - [`x3dh`]: the X3DH key agreement that turns a bundle into a shared secret and associated
//!   data.
//! - [`ratchet`]: the Double Ratchet state machine with skipped-key bounds (internal state;
//!   the module documents the key derivations and exports the bounds).
//! - [`session`]: [`Session`], the API the client uses (initiate, accept, encrypt, decrypt),
//!   and the documented, versioned wire layout of PreKey and normal messages.
//! - [`store`]: the [`PreKeyStore`] trait `accept` reads private prekeys through, and an
//!   in-memory implementation.
//! - [`sender_keys`]: group messaging with per-sender signed symmetric chains.
//! - [`media`]: attachment encryption with a fresh key, nonce and ciphertext digest.
//! - `primitives`, `wire`, `serde_array` (private): the primitive wrappers (pinned to RFC
//!   test vectors), the bounds-checked byte reader and message encodings, serde for long arrays.
//!
//! # Guarantees
//!
//! - Confidentiality and integrity of every message under AES-256-GCM with keys that are each
//!   derived, used once and dropped; headers and both identities are authenticated with it.
//! - Forward secrecy and post-compromise recovery as the Double Ratchet provides them;
//!   signed prekeys are verified before use; low-order X25519 keys are rejected.
//! - Replays, tampering, truncation, unknown versions and messages beyond the skip bounds are
//!   rejected with typed errors, and a rejected message never changes a session's or sender
//!   key's state.
//! - No `unsafe`, no panics on untrusted input, secrets zeroized on drop where the types allow,
//!   randomness only from the operating system.
//!
//! What it does not decide: whether a remote identity is the right one. The caller checks
//! [`Session::remote_identity`] against the directory and lets users compare safety numbers.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod fingerprint;
pub mod keys;
pub mod media;
mod primitives;
pub mod ratchet;
pub mod sender_keys;
mod serde_array;
pub mod session;
pub mod store;
mod wire;
pub mod x3dh;

pub use error::CryptoError;
pub use fingerprint::safety_number;
pub use keys::{
    IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair,
};
pub use media::{MediaKey, decrypt_media, encrypt_media};
pub use sender_keys::{GroupReceiver, GroupSender, SenderKeyDistribution, SenderKeyState};
pub use session::{MessageKind, Role, Session, prekey_message_sender};
pub use store::{MemoryPreKeyStore, PreKeyStore};
pub use wire::WIRE_VERSION;
