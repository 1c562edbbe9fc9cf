//! The one error type of the crate.
//!
//! Every failure is typed so that a caller can react to it: a [`CryptoError::SessionMismatch`]
//! means "accept this as a new session", a [`CryptoError::DuplicateMessage`] can be dropped
//! silently, everything else means the message is unusable. No error ever leaves a session,
//! sender key or store in a changed state.

use thiserror::Error;

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// An Ed25519 signature did not verify (signed prekey, sender key message).
    #[error("signature verification failed")]
    BadSignature,
    /// AES-256-GCM authentication failed: the message was tampered with, truncated inside its
    /// ciphertext, or encrypted under another key.
    #[error("decryption failed: message tampered with or not for this session")]
    DecryptFailed,
    /// The message key for this message was already used (a replay), or was discarded because
    /// too many keys were held back.
    #[error("duplicate message: its key was already used or discarded")]
    DuplicateMessage,
    /// Accepting this message would mean skipping more message keys than the bound allows.
    #[error("message too far ahead: more than the allowed number of skipped messages")]
    TooManySkipped,
    /// A PreKey message names a signed prekey this device does not have.
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(u32),
    /// A PreKey message names a one-time prekey this device does not have (never had, or
    /// already used).
    #[error("unknown or already used one-time prekey {0}")]
    UnknownOneTimePreKey(u32),
    /// A PreKey message started a different session (another base key) than this one; the
    /// caller should `Session::accept` it as a new session.
    #[error("PreKey message belongs to another session")]
    SessionMismatch,
    /// A group message names a sender key chain this receiver has no distribution for.
    #[error("unknown sender key chain {0}")]
    UnknownChain(u32),
    /// A media blob does not match its SHA-256 digest.
    #[error("media digest mismatch")]
    DigestMismatch,
    /// The bytes do not follow the wire layout.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The first byte names a wire version this implementation does not speak.
    #[error("unsupported wire version {0}")]
    UnsupportedVersion(u8),
    /// A public key is unusable: an X25519 key that yields an all-zero (non-contributory) shared
    /// secret, or bytes that are not a valid Ed25519 point.
    #[error("invalid public key")]
    InvalidKey,
    /// A message counter would overflow; the chain must be replaced (new session or sender key).
    #[error("message counter exhausted")]
    CounterExhausted,
    /// The operation is not possible in the current state (e.g. sending before a chain exists).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed")]
    Rng,
}
