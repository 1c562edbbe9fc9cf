//! Identifiers in the Cloud API's shapes: numeric object ids (businesses, numbers, apps,
//! templates, media), `wamid.` message ids, and access tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::BusinessError;

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], BusinessError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|_| BusinessError::Internal("the system random source failed".into()))?;
    Ok(out)
}

/// A Graph object id: 15 decimal digits, not starting with 0.
pub fn object_id() -> Result<String, BusinessError> {
    let bytes: [u8; 8] = random_bytes()?;
    let n = u64::from_be_bytes(bytes) % 900_000_000_000_000 + 100_000_000_000_000;
    Ok(n.to_string())
}

/// A new outbound message id. It doubles as the platform's client message id, so a resend
/// after a crash is de-duplicated by the platform.
pub fn wamid() -> Result<String, BusinessError> {
    let bytes: [u8; 18] = random_bytes()?;
    Ok(format!("wamid.{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The id of an inbound message: derived from the sender device and its client message id,
/// so a redelivery gets the same id (and makes no second webhook).
pub fn inbound_wamid(sender_device: &str, client_message_id: &str) -> String {
    // Length-prefixed, so that no two (device, id) pairs hash the same input.
    let digest = Sha256::new()
        .chain_update(b"courier inbound\0")
        .chain_update((sender_device.len() as u64).to_be_bytes())
        .chain_update(sender_device.as_bytes())
        .chain_update(client_message_id.as_bytes())
        .finalize();
    format!("wamid.{}", URL_SAFE_NO_PAD.encode(&digest[..18]))
}

/// A new access token (shown once) and the hash it is stored under.
pub fn access_token() -> Result<(String, String), BusinessError> {
    let bytes: [u8; 32] = random_bytes()?;
    let token = format!("CBA{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// What a token is stored under: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A random secret (app secrets, admin tokens): 32 bytes as 64 hex digits.
pub fn secret() -> Result<String, BusinessError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = object_id().unwrap();
        assert_eq!(id.len(), 15);
        assert!(id.bytes().all(|b| b.is_ascii_digit()));
        assert!(wamid().unwrap().starts_with("wamid."));
        assert_ne!(wamid().unwrap(), wamid().unwrap());
        assert_eq!(inbound_wamid("u.1", "m"), inbound_wamid("u.1", "m"));
        assert_ne!(inbound_wamid("u.1", "m"), inbound_wamid("u.2", "m"));
        assert_ne!(inbound_wamid("u.1\0", "m"), inbound_wamid("u.1", "\0m"));
        let (token, hash) = access_token().unwrap();
        assert_eq!(token_hash(&token), hash);
        assert!(!hash.contains(&token));
    }
}
