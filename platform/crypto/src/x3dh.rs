//! X3DH key agreement (Signal's "Extended Triple Diffie-Hellman"), on X25519 with a separate
//! Ed25519 identity key for the signed-prekey signature.
//!
//! Alice (initiator) holds a bundle of Bob's keys: identity `IK_B`, signed prekey `SPK_B`
//! (with its Ed25519 signature) and maybe a one-time prekey `OPK_B`. She verifies the
//! signature (else [`CryptoError::BadSignature`]), generates an ephemeral key `EK_A`, and:
//!
//! ```text
//! DH1 = X25519(IK_A, SPK_B)   DH2 = X25519(EK_A, IK_B)
//! DH3 = X25519(EK_A, SPK_B)   DH4 = X25519(EK_A, OPK_B)      (only with a one-time prekey)
//! SK  = HKDF-SHA256(salt = 32 zero bytes,
//!                   IKM  = 32 bytes of 0xFF || DH1 || DH2 || DH3 [|| DH4],
//!                   info = "Courier X3DH v1", length 32)
//! AD  = encode(IK_A) || encode(IK_B)     (encode = Ed25519 key || X25519 key, 64 bytes each)
//! ```
//!
//! Bob recomputes the same with his private keys and Alice's public identity and base key
//! `EK_A`. A DH output of all zeros (low-order public key) is rejected as
//! [`CryptoError::InvalidKey`]. `SK` seeds the Double Ratchet; `AD` is authenticated with
//! every message of the session.

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::CryptoError;
use crate::keys::{
    IdentityKeyPair, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair,
};
use crate::primitives::{dh, hkdf_sha256, random_secret, x25519_public};

/// HKDF `info` of the X3DH key derivation.
pub const X3DH_INFO: &[u8] = b"Courier X3DH v1";

/// Length of the associated data: two encoded identities.
pub const ASSOCIATED_DATA_LEN: usize = 128;

/// The outcome of X3DH shared by both sides: the secret and the associated data.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct X3dhSecret {
    shared_secret: [u8; 32],
    associated_data: [u8; ASSOCIATED_DATA_LEN],
}

impl X3dhSecret {
    /// `SK`, the 32-byte shared secret.
    pub fn shared_secret(&self) -> &[u8; 32] {
        &self.shared_secret
    }

    /// `AD = encode(IK_A) || encode(IK_B)`.
    pub fn associated_data(&self) -> &[u8; ASSOCIATED_DATA_LEN] {
        &self.associated_data
    }
}

/// What the initiator learns and must tell the responder (in the PreKey message header).
pub struct Initiation {
    /// The shared secret and associated data.
    pub secret: X3dhSecret,
    /// `EK_A` public: the base key that identifies this session to the responder.
    pub base_key: [u8; 32],
    /// The signed prekey used.
    pub signed_prekey_id: u32,
    /// The one-time prekey used, if the bundle had one.
    pub one_time_prekey_id: Option<u32>,
}

/// Initiator side: verifies the bundle and computes `SK` and `AD`.
pub fn initiate(ours: &IdentityKeyPair, bundle: &PreKeyBundle) -> Result<Initiation, CryptoError> {
    bundle.verify()?;
    let ephemeral = random_secret()?;
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5));
    ikm.extend_from_slice(&[0xFF; 32]);
    ikm.extend_from_slice(dh(ours.x25519_secret(), &bundle.signed_prekey)?.as_slice());
    ikm.extend_from_slice(dh(&ephemeral, &bundle.identity.x25519)?.as_slice());
    ikm.extend_from_slice(dh(&ephemeral, &bundle.signed_prekey)?.as_slice());
    if let Some((_, one_time)) = &bundle.one_time_prekey {
        ikm.extend_from_slice(dh(&ephemeral, one_time)?.as_slice());
    }
    Ok(Initiation {
        secret: derive(&ikm, &ours.public(), &bundle.identity),
        base_key: x25519_public(&ephemeral),
        signed_prekey_id: bundle.signed_prekey_id,
        one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
    })
}

/// Responder side: recomputes `SK` and `AD` from the initiator's identity and base key.
pub fn respond(
    ours: &IdentityKeyPair,
    their_identity: &PublicIdentity,
    base_key: &[u8; 32],
    signed_prekey: &SignedPreKeyPair,
    one_time_prekey: Option<&OneTimePreKeyPair>,
) -> Result<X3dhSecret, CryptoError> {
    their_identity.validate()?;
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5));
    ikm.extend_from_slice(&[0xFF; 32]);
    ikm.extend_from_slice(dh(signed_prekey.secret(), &their_identity.x25519)?.as_slice());
    ikm.extend_from_slice(dh(ours.x25519_secret(), base_key)?.as_slice());
    ikm.extend_from_slice(dh(signed_prekey.secret(), base_key)?.as_slice());
    if let Some(one_time) = one_time_prekey {
        ikm.extend_from_slice(dh(one_time.secret(), base_key)?.as_slice());
    }
    Ok(derive(&ikm, their_identity, &ours.public()))
}

fn derive(ikm: &[u8], initiator: &PublicIdentity, responder: &PublicIdentity) -> X3dhSecret {
    let shared_secret = hkdf_sha256::<32>(&[0u8; 32], ikm, X3DH_INFO);
    let mut associated_data = [0u8; ASSOCIATED_DATA_LEN];
    associated_data[..64].copy_from_slice(&initiator.encode());
    associated_data[64..].copy_from_slice(&responder.encode());
    X3dhSecret {
        shared_secret: *shared_secret,
        associated_data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bob {
        identity: IdentityKeyPair,
        signed: SignedPreKeyPair,
        one_time: OneTimePreKeyPair,
    }

    fn bob() -> Bob {
        let identity = IdentityKeyPair::generate().unwrap();
        let signed = SignedPreKeyPair::generate(&identity, 1).unwrap();
        let one_time = OneTimePreKeyPair::generate(9).unwrap();
        Bob {
            identity,
            signed,
            one_time,
        }
    }

    #[test]
    fn both_sides_agree_with_one_time_prekey() {
        let alice = IdentityKeyPair::generate().unwrap();
        let bob = bob();
        let bundle = PreKeyBundle::new(bob.identity.public(), &bob.signed, Some(&bob.one_time));
        let init = initiate(&alice, &bundle).unwrap();
        assert_eq!(init.one_time_prekey_id, Some(9));
        let theirs = respond(
            &bob.identity,
            &alice.public(),
            &init.base_key,
            &bob.signed,
            Some(&bob.one_time),
        )
        .unwrap();
        assert_eq!(init.secret.shared_secret(), theirs.shared_secret());
        assert_eq!(init.secret.associated_data(), theirs.associated_data());
        assert_eq!(&theirs.associated_data()[..64], &alice.public().encode());
        // Leaving DH4 out on one side breaks agreement: the one-time key really is mixed in.
        let without = respond(
            &bob.identity,
            &alice.public(),
            &init.base_key,
            &bob.signed,
            None,
        )
        .unwrap();
        assert_ne!(init.secret.shared_secret(), without.shared_secret());
    }

    #[test]
    fn both_sides_agree_without_one_time_prekey() {
        let alice = IdentityKeyPair::generate().unwrap();
        let bob = bob();
        let bundle = PreKeyBundle::new(bob.identity.public(), &bob.signed, None);
        let init = initiate(&alice, &bundle).unwrap();
        assert_eq!(init.one_time_prekey_id, None);
        let theirs = respond(
            &bob.identity,
            &alice.public(),
            &init.base_key,
            &bob.signed,
            None,
        )
        .unwrap();
        assert_eq!(init.secret.shared_secret(), theirs.shared_secret());
        // A second run uses a fresh ephemeral key and so a fresh secret.
        let again = initiate(&alice, &bundle).unwrap();
        assert_ne!(again.secret.shared_secret(), init.secret.shared_secret());
    }

    #[test]
    fn bad_signed_prekey_signature_is_rejected() {
        let alice = IdentityKeyPair::generate().unwrap();
        let bob = bob();
        let mut bundle = PreKeyBundle::new(bob.identity.public(), &bob.signed, None);
        bundle.signed_prekey_signature[10] ^= 0x40;
        assert!(matches!(
            initiate(&alice, &bundle),
            Err(CryptoError::BadSignature)
        ));
        // A valid signature by somebody else does not do either.
        let mallory = IdentityKeyPair::generate().unwrap();
        let mut bundle = PreKeyBundle::new(bob.identity.public(), &bob.signed, None);
        bundle.signed_prekey_signature = mallory.sign(&bob.signed.public);
        assert!(matches!(
            initiate(&alice, &bundle),
            Err(CryptoError::BadSignature)
        ));
    }

    #[test]
    fn key_derivation_matches_independent_hkdf() {
        // Expected value computed independently with Python's hmac and hashlib modules.
        let mut ikm = vec![0xFF; 32];
        ikm.extend(0u8..96);
        let alice = IdentityKeyPair::generate().unwrap().public();
        let bob = IdentityKeyPair::generate().unwrap().public();
        let secret = derive(&ikm, &alice, &bob);
        assert_eq!(
            crate::primitives::tests::hex(
                "c4e44ac49995b2174c45673ec35b6ffcc919381272172595e7b00f5cbb400af6"
            ),
            secret.shared_secret().to_vec()
        );
        assert_eq!(secret.associated_data()[..64], alice.encode());
        assert_eq!(secret.associated_data()[64..], bob.encode());
    }

    #[test]
    fn low_order_base_key_is_rejected() {
        let alice = IdentityKeyPair::generate().unwrap();
        let bob = bob();
        let result = respond(
            &bob.identity,
            &alice.public(),
            &[0u8; 32],
            &bob.signed,
            None,
        );
        assert!(matches!(result, Err(CryptoError::InvalidKey)));
    }
}
