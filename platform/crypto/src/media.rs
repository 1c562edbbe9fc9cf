//! Attachments: each blob is encrypted under its own random key, uploaded as ciphertext, and
//! the [`MediaKey`] travels inside an end-to-end encrypted message.
//!
//! `ciphertext = AES-256-GCM(key, nonce, blob, associated data = "Courier media v1")` with a
//! fresh random 32-byte key and 12-byte nonce; `sha256` is the SHA-256 of the ciphertext, so a
//! downloader can reject a corrupted or substituted blob ([`CryptoError::DigestMismatch`])
//! before decrypting. [`MediaKey::to_bytes`] gives a fixed 77-byte encoding:
//! `version 0x01 || key (32) || nonce (12) || sha256 (32)`.

use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CryptoError;
use crate::primitives::{aead_decrypt, aead_encrypt, random_array, sha256};
use crate::wire::Reader;

/// Associated data of media encryption.
const MEDIA_AD: &[u8] = b"Courier media v1";

/// Everything needed to check and decrypt one encrypted blob.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct MediaKey {
    /// AES-256-GCM key, used for this blob only.
    pub key: [u8; 32],
    /// AES-256-GCM nonce.
    pub nonce: [u8; 12],
    /// SHA-256 of the ciphertext.
    pub sha256: [u8; 32],
}

impl MediaKey {
    /// Length of [`MediaKey::to_bytes`].
    pub const ENCODED_LEN: usize = 1 + 32 + 12 + 32;

    /// The versioned 77-byte encoding.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = crate::wire::WIRE_VERSION;
        out[1..33].copy_from_slice(&self.key);
        out[33..45].copy_from_slice(&self.nonce);
        out[45..].copy_from_slice(&self.sha256);
        out
    }

    /// Parses [`MediaKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader::new(bytes);
        reader.version()?;
        let key = Self {
            key: reader.array()?,
            nonce: reader.array()?,
            sha256: reader.array()?,
        };
        reader.finish()?;
        Ok(key)
    }
}

impl fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaKey")
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Encrypts a blob under a fresh key; returns the ciphertext to upload and its key.
pub fn encrypt_media(plaintext: &[u8]) -> Result<(Vec<u8>, MediaKey), CryptoError> {
    let key = random_array::<32>()?;
    let nonce = random_array::<12>()?;
    let ciphertext = aead_encrypt(&key, &nonce, MEDIA_AD, plaintext)?;
    let sha256 = sha256(&ciphertext);
    Ok((ciphertext, MediaKey { key, nonce, sha256 }))
}

/// Checks the ciphertext's digest, then decrypts it.
pub fn decrypt_media(ciphertext: &[u8], key: &MediaKey) -> Result<Vec<u8>, CryptoError> {
    if sha256(ciphertext) != key.sha256 {
        return Err(CryptoError::DigestMismatch);
    }
    aead_decrypt(&key.key, &key.nonce, MEDIA_AD, ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_keys() {
        let blob = vec![7u8; 100_000];
        let (ciphertext, key) = encrypt_media(&blob).unwrap();
        assert_eq!(ciphertext.len(), blob.len() + 16);
        assert_eq!(decrypt_media(&ciphertext, &key).unwrap(), blob);
        let (other, other_key) = encrypt_media(&blob).unwrap();
        assert_ne!(other, ciphertext);
        assert_ne!(other_key.key, key.key);
        let parsed = MediaKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(decrypt_media(&ciphertext, &parsed).unwrap(), blob);
    }

    #[test]
    fn tampered_blob_or_wrong_key_is_rejected() {
        let (mut ciphertext, key) = encrypt_media(b"a picture").unwrap();
        let mut wrong = key.clone();
        wrong.key[0] ^= 1;
        assert_eq!(
            decrypt_media(&ciphertext, &wrong),
            Err(CryptoError::DecryptFailed)
        );
        ciphertext[3] ^= 1;
        assert_eq!(
            decrypt_media(&ciphertext, &key),
            Err(CryptoError::DigestMismatch)
        );
        // Even with a digest that matches the tampered blob, GCM refuses it.
        let mut rehashed = key.clone();
        rehashed.sha256 = sha256(&ciphertext);
        assert_eq!(
            decrypt_media(&ciphertext, &rehashed),
            Err(CryptoError::DecryptFailed)
        );
    }

    #[test]
    fn key_encoding_is_checked() {
        let (_, key) = encrypt_media(b"x").unwrap();
        let mut bytes = key.to_bytes();
        assert!(matches!(
            MediaKey::from_bytes(&bytes[..76]),
            Err(CryptoError::Malformed(_))
        ));
        bytes[0] = 2;
        assert_eq!(
            MediaKey::from_bytes(&bytes),
            Err(CryptoError::UnsupportedVersion(2))
        );
    }
}
