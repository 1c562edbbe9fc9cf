//! Sender Keys for groups (after Signal's group messaging): each member encrypts a group
//! message once under its own symmetric chain and signs it; the other members hold the chain
//! key and the public signing key from a [`SenderKeyDistribution`] that reached them inside
//! pairwise sessions.
//!
//! ```text
//! message key, next chain key = HMAC-SHA256(ck, 0x01), HMAC-SHA256(ck, 0x02)
//! AES-256 key || nonce        = HKDF-SHA256(salt = 32 zero bytes, IKM = message key,
//!                                           info = "Courier SenderKey v1", 44)
//! ```
//!
//! # Wire layouts (version 1, integers big-endian)
//!
//! Sender key message, at least 89 bytes:
//!
//! ```text
//! offset  size  field
//!      0     1  version = 0x01
//!      1     4  chain id
//!      5     4  iteration (index of the message key in the chain)
//!      9  n+16  AES-256-GCM ciphertext and tag; associated data = bytes 0..9
//!  25+n     64  Ed25519 signature by the chain's signing key over bytes 0..25+n
//! ```
//!
//! Distribution message, exactly 73 bytes (send it only inside a pairwise session):
//!
//! ```text
//! offset  size  field
//!      0     1  version = 0x01
//!      1     4  chain id
//!      5     4  iteration the chain key belongs to
//!      9    32  chain key
//!     41    32  Ed25519 public signing key
//! ```
//!
//! A receiver verifies the signature before anything else, rejects unknown chain ids
//! ([`CryptoError::UnknownChain`]), keeps keys of skipped messages (at most
//! [`MAX_SENDER_SKIP`] per message and [`MAX_SENDER_SKIPPED_KEYS`] per chain) and uses every
//! key once. Rotating is creating a new [`GroupSender`] (a new random chain id) and
//! distributing it; a receiver keeps the last [`MAX_RECEIVER_CHAINS`] chains of a sender so that
//! late messages of the previous chain still decrypt.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::primitives::{
    aead_decrypt, aead_encrypt, chain_step, ed25519_key, ed25519_public, ed25519_sign,
    ed25519_verify, message_cipher, random_array,
};
use crate::wire::{Reader, WIRE_VERSION};

/// Most message keys one incoming message may make a receiver skip.
pub const MAX_SENDER_SKIP: u32 = 1000;
/// Most skipped message keys kept per chain; the oldest are dropped beyond it.
pub const MAX_SENDER_SKIPPED_KEYS: usize = 2000;
/// How many chains of one sender a receiver keeps.
pub const MAX_RECEIVER_CHAINS: usize = 5;

const SENDER_KEY_INFO: &[u8] = b"Courier SenderKey v1";
const HEADER_LEN: usize = 9;
const SIGNATURE_LEN: usize = 64;
const DISTRIBUTION_LEN: usize = 73;

/// One sender's chain in one group: chain id, chain key, iteration and signing key (private
/// for our own chain, public only for other members').
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SenderKeyState {
    chain_id: u32,
    chain_key: [u8; 32],
    iteration: u32,
    signing_public: [u8; 32],
    signing_seed: Option<[u8; 32]>,
}

impl SenderKeyState {
    /// The random id of this chain.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The index of the next message key.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The Ed25519 key that verifies this chain's messages.
    pub fn signing_public(&self) -> &[u8; 32] {
        &self.signing_public
    }

    /// Returns the current message key and ratchets the chain forward.
    fn next_message_key(&mut self) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let next_iteration = self
            .iteration
            .checked_add(1)
            .ok_or(CryptoError::CounterExhausted)?;
        let (message_key, next_chain) = chain_step(&self.chain_key);
        self.chain_key = *next_chain;
        self.iteration = next_iteration;
        Ok(message_key)
    }
}

/// The chain key and public signing key a sender hands to each group member.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SenderKeyDistribution {
    chain_id: u32,
    iteration: u32,
    chain_key: [u8; 32],
    signing_public: [u8; 32],
}

impl SenderKeyDistribution {
    /// The chain this distributes.
    pub fn chain_id(&self) -> u32 {
        self.chain_id
    }

    /// The 73-byte encoding (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DISTRIBUTION_LEN);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.iteration.to_be_bytes());
        out.extend_from_slice(&self.chain_key);
        out.extend_from_slice(&self.signing_public);
        out
    }

    /// Parses and validates (signing key must be a valid Ed25519 point) a distribution.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let distribution = Self {
            chain_id: reader.u32()?,
            iteration: reader.u32()?,
            chain_key: reader.array()?,
            signing_public: reader.array()?,
        };
        reader.finish()?;
        ed25519_key(&distribution.signing_public)?;
        Ok(distribution)
    }
}

impl std::fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("chain_id", &self.chain_id)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

/// Our own sending chain in one group. Its serialized form holds the private signing key.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupSender {
    state: SenderKeyState,
}

impl GroupSender {
    /// A fresh chain: random chain id, chain key and signing key. Also the way to rotate.
    pub fn new() -> Result<Self, CryptoError> {
        let signing_seed = random_array::<32>()?;
        Ok(Self {
            state: SenderKeyState {
                chain_id: u32::from_be_bytes(random_array()?),
                chain_key: random_array()?,
                iteration: 0,
                signing_public: ed25519_public(&signing_seed),
                signing_seed: Some(signing_seed),
            },
        })
    }

    /// The distribution message for the chain's current position (members who get it can
    /// read messages from now on, not earlier ones).
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            chain_id: self.state.chain_id,
            iteration: self.state.iteration,
            chain_key: self.state.chain_key,
            signing_public: self.state.signing_public,
        }
    }

    /// The chain's state.
    pub fn state(&self) -> &SenderKeyState {
        &self.state
    }

    /// Encrypts and signs one group message, then ratchets the chain forward.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let seed = self.state.signing_seed.ok_or(CryptoError::InvalidState(
            "sender state without signing key",
        ))?;
        let mut next = self.state.clone();
        let iteration = next.iteration;
        let message_key = next.next_message_key()?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16 + SIGNATURE_LEN);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&next.chain_id.to_be_bytes());
        out.extend_from_slice(&iteration.to_be_bytes());
        let (key, nonce) = message_cipher(&message_key, SENDER_KEY_INFO);
        let ciphertext = aead_encrypt(&key, &nonce, &out, plaintext)?;
        out.extend_from_slice(&ciphertext);
        let signature = ed25519_sign(&seed, &out);
        out.extend_from_slice(&signature);
        self.state = next;
        Ok(out)
    }
}

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SkippedSenderKey {
    iteration: u32,
    message_key: [u8; 32],
}

#[derive(Clone, Serialize, Deserialize)]
struct ReceiverChain {
    state: SenderKeyState,
    skipped: Vec<SkippedSenderKey>,
}

/// Another member's chains in one group, built from their distribution messages. Its
/// serialized form holds chain keys.
#[derive(Clone, Serialize, Deserialize)]
pub struct GroupReceiver {
    /// Newest first.
    chains: Vec<ReceiverChain>,
}

impl GroupReceiver {
    /// A receiver for the chain this distribution describes.
    pub fn new(distribution: &SenderKeyDistribution) -> Result<Self, CryptoError> {
        let mut receiver = Self { chains: Vec::new() };
        receiver.add_distribution(distribution)?;
        Ok(receiver)
    }

    /// Adds a (rotated) chain. A repeated distribution of a known chain changes nothing.
    pub fn add_distribution(
        &mut self,
        distribution: &SenderKeyDistribution,
    ) -> Result<(), CryptoError> {
        ed25519_key(&distribution.signing_public)?;
        if let Some(known) = self.chain(distribution.chain_id) {
            return if known.state.signing_public == distribution.signing_public {
                Ok(())
            } else {
                Err(CryptoError::Malformed(
                    "chain id reused with another signing key",
                ))
            };
        }
        self.chains.insert(
            0,
            ReceiverChain {
                state: SenderKeyState {
                    chain_id: distribution.chain_id,
                    chain_key: distribution.chain_key,
                    iteration: distribution.iteration,
                    signing_public: distribution.signing_public,
                    signing_seed: None,
                },
                skipped: Vec::new(),
            },
        );
        self.chains.truncate(MAX_RECEIVER_CHAINS);
        Ok(())
    }

    /// The chain ids this receiver can decrypt, newest first.
    pub fn chain_ids(&self) -> Vec<u32> {
        self.chains
            .iter()
            .map(|chain| chain.state.chain_id)
            .collect()
    }

    /// Verifies and decrypts one group message. On any error the receiver is unchanged.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut reader = Reader::new(message);
        reader.version()?;
        let chain_id = reader.u32()?;
        let iteration = reader.u32()?;
        let body = reader.rest();
        if body.len() < 16 + SIGNATURE_LEN {
            return Err(CryptoError::Malformed("truncated"));
        }
        let signed_len = message.len() - SIGNATURE_LEN;
        let (signed, signature) = message.split_at(signed_len);
        let signature: [u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| CryptoError::Malformed("truncated"))?;
        let index = self
            .chains
            .iter()
            .position(|chain| chain.state.chain_id == chain_id)
            .ok_or(CryptoError::UnknownChain(chain_id))?;
        ed25519_verify(&self.chains[index].state.signing_public, signed, &signature)?;

        let mut chain = self.chains[index].clone();
        let message_key = chain.message_key(iteration)?;
        let (key, nonce) = message_cipher(&message_key, SENDER_KEY_INFO);
        let plaintext = aead_decrypt(&key, &nonce, &signed[..HEADER_LEN], &signed[HEADER_LEN..])?;
        self.chains[index] = chain;
        Ok(plaintext)
    }

    fn chain(&self, chain_id: u32) -> Option<&ReceiverChain> {
        self.chains
            .iter()
            .find(|chain| chain.state.chain_id == chain_id)
    }
}

impl ReceiverChain {
    /// The message key for `iteration`, from the skipped keys or by ratcheting forward.
    fn message_key(&mut self, iteration: u32) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        if iteration < self.state.iteration {
            let index = self
                .skipped
                .iter()
                .position(|key| key.iteration == iteration)
                .ok_or(CryptoError::DuplicateMessage)?;
            return Ok(Zeroizing::new(self.skipped.remove(index).message_key));
        }
        if iteration - self.state.iteration > MAX_SENDER_SKIP {
            return Err(CryptoError::TooManySkipped);
        }
        while self.state.iteration < iteration {
            let skipped_iteration = self.state.iteration;
            let message_key = self.state.next_message_key()?;
            self.skipped.push(SkippedSenderKey {
                iteration: skipped_iteration,
                message_key: *message_key,
            });
        }
        if self.skipped.len() > MAX_SENDER_SKIPPED_KEYS {
            let excess = self.skipped.len() - MAX_SENDER_SKIPPED_KEYS;
            self.skipped.drain(..excess);
        }
        self.state.next_message_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::tests::hex;

    #[test]
    fn message_keys_follow_the_documented_derivation() {
        // Expected values computed independently with Python's hmac and hashlib modules.
        let mut state = SenderKeyState {
            chain_id: 1,
            chain_key: core::array::from_fn(|i| i as u8),
            iteration: 0,
            signing_public: [0; 32],
            signing_seed: None,
        };
        let message_key = state.next_message_key().unwrap();
        assert_eq!(state.iteration, 1);
        assert_eq!(
            state.chain_key.to_vec(),
            hex("4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d")
        );
        let (key, nonce) = message_cipher(&message_key, SENDER_KEY_INFO);
        let expected = hex(
            "0a7c3434f1b01458ee7e6fa79766edf3ccdfef7d82465cb683936930a3822d4d\
             1b2c448dde17e64f772c566d",
        );
        assert_eq!(key.to_vec(), expected[..32]);
        assert_eq!(nonce.to_vec(), expected[32..]);
    }
}
