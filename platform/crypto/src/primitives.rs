//! Thin wrappers over the primitives, so that every module derives keys the same way.
//!
//! X25519 (RFC 7748), Ed25519 (RFC 8032, strict verification), HKDF-SHA256 (RFC 5869),
//! HMAC-SHA256 (RFC 2104/4231), SHA-256 and AES-256-GCM. The known-answer tests at the bottom
//! pin each wrapper to a published vector.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Length of an AES-256-GCM authentication tag.
pub(crate) const TAG_LEN: usize = 16;

/// Fresh bytes from the operating system's random number generator.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

/// A fresh X25519 secret scalar (clamped when used).
pub(crate) fn random_secret() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    Ok(Zeroizing::new(random_array::<32>()?))
}

/// The X25519 public key of `secret`.
pub(crate) fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

/// X25519 Diffie-Hellman. Rejects low-order public keys (all-zero shared secret).
pub(crate) fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(CryptoError::InvalidKey);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// The Ed25519 public key of a 32-byte secret seed.
pub(crate) fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// An Ed25519 signature by the key with this secret seed.
pub(crate) fn ed25519_sign(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(message).to_bytes()
}

/// Parses an Ed25519 public key, rejecting invalid encodings and small-order (weak) keys.
pub(crate) fn ed25519_key(public: &[u8; 32]) -> Result<VerifyingKey, CryptoError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| CryptoError::InvalidKey)?;
    if key.is_weak() {
        return Err(CryptoError::InvalidKey);
    }
    Ok(key)
}

/// Strict Ed25519 verification (no malleable signatures, no weak keys).
pub(crate) fn ed25519_verify(
    public: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), CryptoError> {
    let key = ed25519_key(public).map_err(|_| CryptoError::BadSignature)?;
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| CryptoError::BadSignature)
}

/// HKDF-SHA256 extract-and-expand into `N` bytes. `N` must be at most 255 * 32.
pub(crate) fn hkdf_sha256<const N: usize>(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 output is limited to 8160 bytes") };
    let mut okm = Zeroizing::new([0u8; N]);
    let expanded = Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, okm.as_mut_slice());
    // Only fails for lengths above 255 * 32, which the const assertion rules out.
    debug_assert!(expanded.is_ok());
    okm
}

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as hkdf::hmac::KeyInit>::new_from_slice(key)
        // HMAC hashes or pads keys of any length; new_from_slice never fails for it.
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// AES-256-GCM encryption; returns ciphertext followed by the 16-byte tag.
pub(crate) fn aead_encrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new(&(*key).into());
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    cipher
        .encrypt(&Nonce::from(*nonce), payload)
        .map_err(|_| CryptoError::Malformed("plaintext too long for AES-256-GCM"))
}

/// AES-256-GCM decryption of ciphertext-with-tag; any authentication failure is
/// [`CryptoError::DecryptFailed`].
pub(crate) fn aead_decrypt(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if ciphertext.len() < TAG_LEN {
        return Err(CryptoError::DecryptFailed);
    }
    let cipher = Aes256Gcm::new(&(*key).into());
    let payload = Payload {
        msg: ciphertext,
        aad,
    };
    cipher
        .decrypt(&Nonce::from(*nonce), payload)
        .map_err(|_| CryptoError::DecryptFailed)
}

/// One step of a symmetric-key ratchet (Signal's KDF_CK): the message key is
/// `HMAC-SHA256(chain_key, 0x01)`, the next chain key `HMAC-SHA256(chain_key, 0x02)`.
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    (
        hmac_sha256(chain_key, &[0x01]),
        hmac_sha256(chain_key, &[0x02]),
    )
}

/// Expands a message key into an AES-256 key and a 96-bit nonce:
/// `HKDF-SHA256(salt = 32 zero bytes, IKM = message_key, info, length 44)`, key first.
pub(crate) fn message_cipher(
    message_key: &[u8; 32],
    info: &[u8],
) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let okm = hkdf_sha256::<44>(&[0u8; 32], message_key, info);
    split_key_nonce(&okm)
}

/// Splits a 44-byte HKDF output into an AES-256 key and a 96-bit nonce.
pub(crate) fn split_key_nonce(okm: &[u8; 44]) -> (Zeroizing<[u8; 32]>, [u8; 12]) {
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex(s).try_into().unwrap()
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let okm = hkdf_sha256::<42>(&salt, &ikm, &info);
        assert_eq!(
            okm.to_vec(),
            hex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            )
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac.to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn x25519_matches_rfc7748() {
        let scalar = arr("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = arr("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let out = dh(&scalar, &u).unwrap();
        assert_eq!(
            out.to_vec(),
            hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
        );
    }

    #[test]
    fn x25519_rejects_low_order_point() {
        let secret = random_array::<32>().unwrap();
        assert_eq!(
            dh(&secret, &[0u8; 32]).unwrap_err(),
            CryptoError::InvalidKey
        );
    }

    #[test]
    fn ed25519_matches_rfc8032_test_1() {
        let seed = arr("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let public = ed25519_public(&seed);
        assert_eq!(
            public.to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let signature = ed25519_sign(&seed, b"");
        assert_eq!(
            signature.to_vec(),
            hex(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert!(ed25519_verify(&public, b"", &signature).is_ok());
        assert_eq!(
            ed25519_verify(&public, b"x", &signature),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn aes256gcm_matches_gcm_spec_case_14() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14.
        let out = aead_encrypt(&[0u8; 32], &[0u8; 12], b"", &[0u8; 16]).unwrap();
        assert_eq!(
            out,
            hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
        );
        assert_eq!(
            aead_decrypt(&[0u8; 32], &[0u8; 12], b"", &out).unwrap(),
            vec![0u8; 16]
        );
        assert_eq!(
            aead_decrypt(&[0u8; 32], &[0u8; 12], b"ad", &out),
            Err(CryptoError::DecryptFailed)
        );
    }

    #[test]
    fn chain_step_uses_the_signal_constants() {
        // Expected values computed independently with Python's hmac module.
        let chain_key: [u8; 32] = core::array::from_fn(|i| i as u8);
        let (message_key, next) = chain_step(&chain_key);
        assert_eq!(
            message_key.to_vec(),
            hex("9b4c8120a4823a95f47cde17a244f4507244ee6e3957d1fab9fa29b44d3829b7")
        );
        assert_eq!(
            next.to_vec(),
            hex("4304c22c84a53755ab08ead8d97a8d429be5efa480682d7ad1da27f73e1fbe1d")
        );
    }

    #[test]
    fn sha256_matches_fips180_abc() {
        assert_eq!(
            sha256(b"abc").to_vec(),
            hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }
}
