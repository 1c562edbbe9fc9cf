//! The Double Ratchet (Signal specification, revision 1) with header authentication by AEAD.
//!
//! ```text
//! KDF_RK(rk, dh_out) = HKDF-SHA256(salt = rk, IKM = dh_out, info = "Courier Ratchet v1", 64)
//!                      -> new root key (first 32 bytes), new chain key (last 32 bytes)
//! KDF_CK(ck)         = message key HMAC-SHA256(ck, 0x01), next chain key HMAC-SHA256(ck, 0x02)
//! message cipher     = HKDF-SHA256(salt = 32 zero bytes, IKM = message key,
//!                      info = "Courier MessageKeys v1", 44) -> AES-256 key (32) || nonce (12)
//! ENCRYPT            = AES-256-GCM(key, nonce, plaintext,
//!                      associated data = X3DH AD (128 bytes) || version byte || header)
//! header             = ratchet public key (32) || PN (u32 BE) || N (u32 BE)
//! ```
//!
//! The initiator starts with the responder's signed prekey as the remote ratchet key and a
//! sending chain; the responder starts with its signed prekey pair as its own ratchet key and
//! no chains (RatchetInitAlice / RatchetInitBob of the specification).
//!
//! Every message key is derived, used once and dropped. Keys of messages that have not arrived
//! yet are kept, at most [`MAX_SKIP`] per step and [`MAX_SKIPPED_KEYS`] in all (oldest dropped
//! first); a message further ahead is [`CryptoError::TooManySkipped`]. A message whose key was
//! already used is [`CryptoError::DuplicateMessage`]. Decryption works on a copy of the state
//! and commits only after the AEAD tag verified, so no bad message changes the session.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::keys::SignedPreKeyPair;
use crate::primitives::{
    aead_decrypt, aead_encrypt, chain_step, dh, hkdf_sha256, message_cipher, random_secret,
    x25519_public,
};
use crate::wire::{RatchetHeader, RatchetMessage};
use crate::x3dh::{ASSOCIATED_DATA_LEN, X3dhSecret};

/// Most message keys skipped in one chain by one incoming message.
pub const MAX_SKIP: u32 = 1000;
/// Most skipped message keys kept by a session; the oldest are dropped beyond it.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// How many of the peer's earlier ratchet keys are remembered to recognise replays.
pub const MAX_RETIRED_RATCHET_KEYS: usize = 64;

/// HKDF `info` of KDF_RK.
const ROOT_INFO: &[u8] = b"Courier Ratchet v1";
/// HKDF `info` of the message-key expansion.
const MESSAGE_INFO: &[u8] = b"Courier MessageKeys v1";

#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct SkippedKey {
    ratchet_key: [u8; 32],
    number: u32,
    message_key: [u8; 32],
}

/// The state of one side of a Double Ratchet session.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RatchetState {
    #[serde(with = "crate::serde_array")]
    associated_data: [u8; ASSOCIATED_DATA_LEN],
    root_key: [u8; 32],
    own_secret: [u8; 32],
    own_public: [u8; 32],
    remote_key: Option<[u8; 32]>,
    sending_chain: Option<[u8; 32]>,
    receiving_chain: Option<[u8; 32]>,
    sent: u32,
    received: u32,
    previous_sent: u32,
    skipped: Vec<SkippedKey>,
    retired_remote_keys: Vec<[u8; 32]>,
}

impl RatchetState {
    /// RatchetInitAlice: the initiator knows the responder's signed prekey.
    pub(crate) fn initiator(
        secret: &X3dhSecret,
        their_signed_prekey: &[u8; 32],
    ) -> Result<Self, CryptoError> {
        let own_secret = random_secret()?;
        let (root_key, sending_chain) = kdf_rk(
            secret.shared_secret(),
            &*dh(&own_secret, their_signed_prekey)?,
        );
        Ok(Self {
            associated_data: *secret.associated_data(),
            root_key: *root_key,
            own_public: x25519_public(&own_secret),
            own_secret: *own_secret,
            remote_key: Some(*their_signed_prekey),
            sending_chain: Some(*sending_chain),
            receiving_chain: None,
            sent: 0,
            received: 0,
            previous_sent: 0,
            skipped: Vec::new(),
            retired_remote_keys: Vec::new(),
        })
    }

    /// RatchetInitBob: the responder's first ratchet key is its signed prekey.
    pub(crate) fn responder(secret: &X3dhSecret, signed_prekey: &SignedPreKeyPair) -> Self {
        Self {
            associated_data: *secret.associated_data(),
            root_key: *secret.shared_secret(),
            own_secret: *signed_prekey.secret(),
            own_public: signed_prekey.public,
            remote_key: None,
            sending_chain: None,
            receiving_chain: None,
            sent: 0,
            received: 0,
            previous_sent: 0,
            skipped: Vec::new(),
            retired_remote_keys: Vec::new(),
        }
    }

    /// Encrypts one message; returns the encoded ratchet message (see `session` docs).
    pub(crate) fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let chain = self
            .sending_chain
            .ok_or(CryptoError::InvalidState("no sending chain yet"))?;
        let next_count = self
            .sent
            .checked_add(1)
            .ok_or(CryptoError::CounterExhausted)?;
        let (message_key, next_chain) = chain_step(&chain);
        let header = RatchetHeader {
            ratchet_key: self.own_public,
            previous_chain_length: self.previous_sent,
            message_number: self.sent,
        }
        .encode();
        let (key, nonce) = message_cipher(&message_key, MESSAGE_INFO);
        let ciphertext = aead_encrypt(&key, &nonce, &self.aad(&header), plaintext)?;
        self.sending_chain = Some(*next_chain);
        self.sent = next_count;
        let mut out = Vec::with_capacity(header.len() + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts one ratchet message. The state changes only if the message authenticates.
    pub(crate) fn decrypt(&mut self, bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let message = RatchetMessage::parse(bytes)?;
        let mut next = self.clone();
        let plaintext = next.decrypt_uncommitted(&message)?;
        *self = next;
        Ok(plaintext)
    }

    fn decrypt_uncommitted(&mut self, message: &RatchetMessage) -> Result<Vec<u8>, CryptoError> {
        let header = &message.header;
        if let Some(message_key) = self.take_skipped(&header.ratchet_key, header.message_number) {
            return self.open(&message_key, header, message.ciphertext);
        }
        if self.remote_key != Some(header.ratchet_key) {
            if self.retired_remote_keys.contains(&header.ratchet_key) {
                return Err(CryptoError::DuplicateMessage);
            }
            if header.message_number > MAX_SKIP {
                return Err(CryptoError::TooManySkipped);
            }
            self.skip_message_keys(header.previous_chain_length)?;
            self.dh_ratchet(&header.ratchet_key)?;
        }
        if header.message_number < self.received {
            return Err(CryptoError::DuplicateMessage);
        }
        self.skip_message_keys(header.message_number)?;
        let chain = self
            .receiving_chain
            .ok_or(CryptoError::InvalidState("no receiving chain"))?;
        let (message_key, next_chain) = chain_step(&chain);
        self.receiving_chain = Some(*next_chain);
        self.received = self
            .received
            .checked_add(1)
            .ok_or(CryptoError::CounterExhausted)?;
        self.open(&message_key, header, message.ciphertext)
    }

    fn open(
        &self,
        message_key: &[u8; 32],
        header: &RatchetHeader,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let (key, nonce) = message_cipher(message_key, MESSAGE_INFO);
        aead_decrypt(&key, &nonce, &self.aad(&header.encode()), ciphertext)
    }

    fn aad(&self, encoded_header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(ASSOCIATED_DATA_LEN + encoded_header.len());
        aad.extend_from_slice(&self.associated_data);
        aad.extend_from_slice(encoded_header);
        aad
    }

    fn take_skipped(&mut self, ratchet_key: &[u8; 32], number: u32) -> Option<Zeroizing<[u8; 32]>> {
        let index = self
            .skipped
            .iter()
            .position(|key| key.ratchet_key == *ratchet_key && key.number == number)?;
        let entry = self.skipped.remove(index);
        Some(Zeroizing::new(entry.message_key))
    }

    /// Stores the keys of the current receiving chain's messages up to (excluding) `until`.
    fn skip_message_keys(&mut self, until: u32) -> Result<(), CryptoError> {
        let (Some(mut chain), Some(remote)) = (self.receiving_chain, self.remote_key) else {
            return Ok(());
        };
        if until <= self.received {
            return Ok(());
        }
        if until - self.received > MAX_SKIP {
            return Err(CryptoError::TooManySkipped);
        }
        while self.received < until {
            let (message_key, next_chain) = chain_step(&chain);
            self.skipped.push(SkippedKey {
                ratchet_key: remote,
                number: self.received,
                message_key: *message_key,
            });
            chain = *next_chain;
            self.received += 1;
        }
        self.receiving_chain = Some(chain);
        chain.zeroize();
        if self.skipped.len() > MAX_SKIPPED_KEYS {
            let excess = self.skipped.len() - MAX_SKIPPED_KEYS;
            self.skipped.drain(..excess);
        }
        Ok(())
    }

    /// DHRatchet: a new remote ratchet key starts a receiving and a sending chain.
    fn dh_ratchet(&mut self, remote: &[u8; 32]) -> Result<(), CryptoError> {
        let receive_input = dh(&self.own_secret, remote)?;
        let own_secret = random_secret()?;
        let send_input = dh(&own_secret, remote)?;
        let (root_key, receiving_chain) = kdf_rk(&self.root_key, &receive_input);
        let (root_key, sending_chain) = kdf_rk(&root_key, &send_input);

        if let Some(old) = self.remote_key.replace(*remote) {
            self.retired_remote_keys.push(old);
            if self.retired_remote_keys.len() > MAX_RETIRED_RATCHET_KEYS {
                self.retired_remote_keys.remove(0);
            }
        }
        self.previous_sent = self.sent;
        self.sent = 0;
        self.received = 0;
        self.receiving_chain = Some(*receiving_chain);
        self.sending_chain = Some(*sending_chain);
        self.root_key = *root_key;
        self.own_public = x25519_public(&own_secret);
        self.own_secret = *own_secret;
        Ok(())
    }
}

/// KDF_RK: returns (new root key, new chain key).
fn kdf_rk(root_key: &[u8; 32], dh_output: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let okm = hkdf_sha256::<64>(root_key, dh_output, ROOT_INFO);
    let mut root = Zeroizing::new([0u8; 32]);
    let mut chain = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    (root, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::tests::hex;

    // Expected values computed independently with Python's hmac and hashlib modules.

    #[test]
    fn kdf_rk_is_hkdf_with_the_root_key_as_salt() {
        let root: [u8; 32] = core::array::from_fn(|i| i as u8);
        let dh_output: [u8; 32] = core::array::from_fn(|i| 32 + i as u8);
        let (new_root, chain) = kdf_rk(&root, &dh_output);
        let expected = hex(
            "d9788e998100708340931edadc255350b606e0351d1562473fc6e12b54e2f4d6\
             f52b9e3c88c8ec9fc36a47a0ecceb31dd4593899d5f3137851a79dc6a0bad31e",
        );
        assert_eq!(new_root.to_vec(), expected[..32]);
        assert_eq!(chain.to_vec(), expected[32..]);
    }

    #[test]
    fn message_keys_expand_to_key_and_nonce() {
        let message_key = hex("9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7");
        let (key, nonce) = message_cipher(&message_key.try_into().unwrap(), MESSAGE_INFO);
        let expected = hex(
            "be3364e1438a3ed4959ba7b23f3ffe4d9182e3bc0870d3b3e5ee35a8ffee731e\
             e643af06e32e2646cbf58d03",
        );
        assert_eq!(key.to_vec(), expected[..32]);
        assert_eq!(nonce.to_vec(), expected[32..]);
    }
}
