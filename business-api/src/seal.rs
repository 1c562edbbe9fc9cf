//! Encryption at rest: every value the business API stores (device keys and sessions, message
//! bodies in the outbox and webhook queues, app secrets) is sealed with AES-256-GCM under the
//! data key from configuration before it reaches the store.
//!
//! Layout of a sealed value: `0x01` (version), 12-byte random nonce, ciphertext with its tag.
//! The associated data is the value's address (table, partition and key, or queue name), so a
//! value copied to another address does not open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;

use crate::error::BusinessError;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The data key, and sealing and opening with it.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Sealer {
            cipher: Aes256Gcm::new(&(*key).into()),
        }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<Self, BusinessError> {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| BusinessError::Config("the data key must be 64 hex digits".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| BusinessError::Config("the data key must be 64 hex digits".into()))?;
        Ok(Self::new(&key))
    }

    /// Reads the key file, creating it with a fresh key (mode 0600) if it does not exist.
    pub fn from_file(path: &Path) -> Result<Self, BusinessError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = crate::ids::random_bytes()?;
                write_private(path, &hex::encode(key))?;
                tracing::info!(path = %path.display(), "created a new business data key");
                Ok(Self::new(&key))
            }
            Err(error) => Err(BusinessError::Config(format!(
                "cannot read the data key {}: {error}",
                path.display()
            ))),
        }
    }

    pub fn seal(&self, address: &str, plaintext: &[u8]) -> Result<Bytes, BusinessError> {
        let nonce: [u8; NONCE_LEN] = crate::ids::random_bytes()?;
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: address.as_bytes(),
                },
            )
            .map_err(|_| BusinessError::Internal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(Bytes::from(out))
    }

    pub fn open(&self, address: &str, sealed: &[u8]) -> Result<Vec<u8>, BusinessError> {
        let corrupt = || BusinessError::Corrupt(format!("sealed value at {address} does not open"));
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(corrupt());
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().map_err(|_| corrupt())?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: address.as_bytes(),
                },
            )
            .map_err(|_| corrupt())
    }
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), BusinessError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            BusinessError::Config(format!("cannot create {}: {e}", parent.display()))
        })?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BusinessError::Config(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| BusinessError::Config(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_it_sealed_only_at_the_same_address() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal("outbox/1", b"hello").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(sealer.open("outbox/1", &sealed).unwrap(), b"hello");
        assert!(sealer.open("outbox/2", &sealed).is_err());
        let other = Sealer::new(&[8; 32]);
        assert!(other.open("outbox/1", &sealed).is_err());
        let mut tampered = sealed.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sealer.open("outbox/1", &tampered).is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/business.key");
        let first = Sealer::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = first.seal("a", b"x").unwrap();
        let second = Sealer::from_file(&path).unwrap();
        assert_eq!(second.open("a", &sealed).unwrap(), b"x");
        assert!(Sealer::from_hex("abcd").is_err());
    }
}
