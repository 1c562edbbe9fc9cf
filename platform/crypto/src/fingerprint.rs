//! Safety numbers: a human-comparable fingerprint of two identities, after Signal's
//! numeric fingerprint.
//!
//! Each identity yields 30 digits: `h = SHA-256(0x00 0x00 || "Courier fingerprint" ||
//! encode(identity))`, then 5200 times `h = SHA-256(h || encode(identity))`; the first 30 bytes
//! of `h`, taken as six 5-byte big-endian integers, each reduced mod 100000 and written as five
//! zero-padded digits. The safety number of two identities is their two 30-digit strings,
//! smaller first, so both parties see the same 60 digits. `encode` is `ed25519 || x25519`, so
//! the number changes when either key changes.

use crate::keys::PublicIdentity;
use sha2::{Digest, Sha256};

/// Version of the fingerprint derivation, hashed in first.
const FINGERPRINT_VERSION: [u8; 2] = [0, 0];
/// Iterations of the hash, as Signal.
const ITERATIONS: usize = 5200;

impl PublicIdentity {
    /// This identity's 30-digit half of a safety number.
    pub fn fingerprint(&self) -> String {
        let encoded = self.encode();
        let mut hash: [u8; 32] = Sha256::new()
            .chain_update(FINGERPRINT_VERSION)
            .chain_update(b"Courier fingerprint")
            .chain_update(encoded)
            .finalize()
            .into();
        for _ in 0..ITERATIONS {
            hash = Sha256::new()
                .chain_update(hash)
                .chain_update(encoded)
                .finalize()
                .into();
        }
        hash[..30]
            .chunks_exact(5)
            .map(|chunk| {
                let value = chunk
                    .iter()
                    .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
                format!("{:05}", value % 100_000)
            })
            .collect()
    }
}

/// The 60-digit safety number of two identities; the same whichever is passed first.
pub fn safety_number(a: &PublicIdentity, b: &PublicIdentity) -> String {
    let (first, second) = (a.fingerprint(), b.fingerprint());
    if first <= second {
        first + &second
    } else {
        second + &first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKeyPair;

    #[test]
    fn safety_number_is_symmetric_sixty_digits_and_key_sensitive() {
        let alice = IdentityKeyPair::generate().unwrap().public();
        let bob = IdentityKeyPair::generate().unwrap().public();
        let number = safety_number(&alice, &bob);
        assert_eq!(number.len(), 60);
        assert!(number.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(number, safety_number(&bob, &alice));
        assert_eq!(alice.fingerprint(), alice.fingerprint());

        let mut changed = bob;
        changed.x25519 = IdentityKeyPair::generate().unwrap().public().x25519;
        assert_ne!(safety_number(&alice, &changed), number);
    }
}
