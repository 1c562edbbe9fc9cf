//! Long-term identity keys and the prekeys a device publishes for X3DH.
//!
//! An identity is two independent key pairs: an Ed25519 key that signs (the signed prekey,
//! nothing else in the pairwise protocol) and an X25519 key used in X3DH. Secrets are kept as
//! raw 32-byte strings (an Ed25519 seed, an X25519 scalar clamped on use), serialize with serde
//! for the client's key file, and are zeroized when dropped. All randomness comes from the
//! operating system (`getrandom`).

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CryptoError;
use crate::primitives::{
    ed25519_key, ed25519_public, ed25519_sign, ed25519_verify, random_array, x25519_public,
};

/// A device's long-term identity key pairs (private). Serializable for the device's disk only.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct IdentityKeyPair {
    ed25519_seed: [u8; 32],
    x25519_secret: [u8; 32],
}

impl IdentityKeyPair {
    /// Generates a fresh identity from the operating system's RNG.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self {
            ed25519_seed: random_array()?,
            x25519_secret: random_array()?,
        })
    }

    /// Rebuilds an identity from its secret bytes (an Ed25519 seed and an X25519 scalar).
    pub fn from_secret_bytes(ed25519_seed: [u8; 32], x25519_secret: [u8; 32]) -> Self {
        Self {
            ed25519_seed,
            x25519_secret,
        }
    }

    /// The public halves, as published to the directory.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            ed25519: ed25519_public(&self.ed25519_seed),
            x25519: x25519_public(&self.x25519_secret),
        }
    }

    /// An Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        ed25519_sign(&self.ed25519_seed, message)
    }

    pub(crate) fn x25519_secret(&self) -> &[u8; 32] {
        &self.x25519_secret
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A device's public identity: the Ed25519 verification key and the X25519 key for X3DH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicIdentity {
    /// Ed25519 public key (verifies signed prekeys).
    pub ed25519: [u8; 32],
    /// X25519 public key (the identity key in X3DH).
    pub x25519: [u8; 32],
}

impl PublicIdentity {
    /// The 64-byte encoding used on the wire and in associated data: `ed25519 || x25519`.
    pub fn encode(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.ed25519);
        out[32..].copy_from_slice(&self.x25519);
        out
    }

    /// The inverse of [`PublicIdentity::encode`]. Keys are validated when used.
    pub fn decode(bytes: &[u8; 64]) -> Self {
        let mut ed25519 = [0u8; 32];
        let mut x25519 = [0u8; 32];
        ed25519.copy_from_slice(&bytes[..32]);
        x25519.copy_from_slice(&bytes[32..]);
        Self { ed25519, x25519 }
    }

    /// Strictly verifies an Ed25519 signature made by this identity.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), CryptoError> {
        ed25519_verify(&self.ed25519, message, signature)
    }

    /// Checks that the Ed25519 key is a valid, non-weak point.
    pub fn validate(&self) -> Result<(), CryptoError> {
        ed25519_key(&self.ed25519).map(|_| ())
    }
}

/// A medium-term X25519 prekey whose public key is signed by the identity's Ed25519 key.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SignedPreKeyPair {
    /// Identifier the device chose; PreKey messages name it.
    pub id: u32,
    secret: [u8; 32],
    /// X25519 public key.
    pub public: [u8; 32],
    /// Ed25519 signature by the identity over the 32 bytes of `public`.
    #[serde(with = "crate::serde_array")]
    pub signature: [u8; 64],
}

impl SignedPreKeyPair {
    /// Generates a signed prekey and signs its public key with `identity`.
    pub fn generate(identity: &IdentityKeyPair, id: u32) -> Result<Self, CryptoError> {
        let secret = random_array()?;
        let public = x25519_public(&secret);
        Ok(Self {
            id,
            secret,
            public,
            signature: identity.sign(&public),
        })
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for SignedPreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKeyPair")
            .field("id", &self.id)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A single-use X25519 prekey.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct OneTimePreKeyPair {
    /// Identifier the device chose; PreKey messages name it.
    pub id: u32,
    secret: [u8; 32],
    /// X25519 public key.
    pub public: [u8; 32],
}

impl OneTimePreKeyPair {
    /// Generates one one-time prekey.
    pub fn generate(id: u32) -> Result<Self, CryptoError> {
        let secret = random_array()?;
        Ok(Self {
            id,
            public: x25519_public(&secret),
            secret,
        })
    }

    /// Generates `count` prekeys with ids `first_id, first_id + 1, ...` (wrapping at `u32::MAX`).
    pub fn generate_batch(first_id: u32, count: u32) -> Result<Vec<Self>, CryptoError> {
        (0..count)
            .map(|offset| Self::generate(first_id.wrapping_add(offset)))
            .collect()
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl fmt::Debug for OneTimePreKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKeyPair")
            .field("id", &self.id)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// What an initiator fetches to start a session with one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreKeyBundle {
    /// The device's public identity.
    pub identity: PublicIdentity,
    /// Id of the signed prekey.
    pub signed_prekey_id: u32,
    /// X25519 public signed prekey.
    pub signed_prekey: [u8; 32],
    /// Ed25519 signature by `identity.ed25519` over `signed_prekey`.
    #[serde(with = "crate::serde_array")]
    pub signed_prekey_signature: [u8; 64],
    /// A one-time prekey `(id, public key)`, absent when the device has run out.
    pub one_time_prekey: Option<(u32, [u8; 32])>,
}

impl PreKeyBundle {
    /// Builds the bundle a device publishes from its own keys.
    pub fn new(
        identity: PublicIdentity,
        signed_prekey: &SignedPreKeyPair,
        one_time_prekey: Option<&OneTimePreKeyPair>,
    ) -> Self {
        Self {
            identity,
            signed_prekey_id: signed_prekey.id,
            signed_prekey: signed_prekey.public,
            signed_prekey_signature: signed_prekey.signature,
            one_time_prekey: one_time_prekey.map(|key| (key.id, key.public)),
        }
    }

    /// Verifies the signed prekey's signature against the bundle's identity.
    pub fn verify(&self) -> Result<(), CryptoError> {
        self.identity
            .verify(&self.signed_prekey, &self.signed_prekey_signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_signs_and_round_trips_through_serde() {
        let identity = IdentityKeyPair::generate().unwrap();
        let json = serde_json::to_string(&identity).unwrap();
        let back: IdentityKeyPair = serde_json::from_str(&json).unwrap();
        assert_eq!(back.public(), identity.public());
        let signature = back.sign(b"hello");
        identity.public().verify(b"hello", &signature).unwrap();
        assert_eq!(
            identity.public().verify(b"hellO", &signature),
            Err(CryptoError::BadSignature)
        );
        assert!(!format!("{identity:?}").contains(&format!("{:?}", identity.x25519_secret)));
    }

    #[test]
    fn signed_prekey_signature_covers_public_key() {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 7).unwrap();
        assert_eq!(x25519_public(signed.secret()), signed.public);
        identity
            .public()
            .verify(&signed.public, &signed.signature)
            .unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedPreKeyPair = serde_json::from_str(&json).unwrap();
        assert_eq!(back.signature, signed.signature);
        assert_eq!(back.secret(), signed.secret());
    }

    #[test]
    fn one_time_batch_has_consecutive_ids_and_distinct_keys() {
        let batch = OneTimePreKeyPair::generate_batch(u32::MAX - 1, 4).unwrap();
        let ids: Vec<u32> = batch.iter().map(|key| key.id).collect();
        assert_eq!(ids, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        let mut publics: Vec<[u8; 32]> = batch.iter().map(|key| key.public).collect();
        publics.dedup();
        assert_eq!(publics.len(), 4);
    }

    #[test]
    fn bundle_round_trips_and_verifies() {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 1).unwrap();
        let one_time = OneTimePreKeyPair::generate(5).unwrap();
        let bundle = PreKeyBundle::new(identity.public(), &signed, Some(&one_time));
        bundle.verify().unwrap();
        let json = serde_json::to_string(&bundle).unwrap();
        assert_eq!(serde_json::from_str::<PreKeyBundle>(&json).unwrap(), bundle);
        let mut forged = bundle.clone();
        forged.signed_prekey[0] ^= 1;
        assert_eq!(forged.verify(), Err(CryptoError::BadSignature));
    }
}
