//! Identifiers in the Cloud API's shapes: numeric object ids (businesses, numbers, apps,
//! templates, media), `wamid.` message ids, business-scoped user ids, and access tokens.

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

/// The prefix of the business-scoped user ids this deployment hands out: the Cloud API's
/// `<country>.<digits>` shape with `ZZ`, a code ISO 3166 leaves unassigned and CLDR uses for an
/// unknown region (the platform does not tie accounts to countries).
const BSUID_REGION: &str = "ZZ";

/// A platform user id (a UUID) as webhooks name the user: a business-scoped user id in the
/// Cloud API's shape, `ZZ.<the UUID as a decimal number>` (clients tell recipients apart by
/// that shape: a UUID would pass for a group id). Anything that is not a UUID (an unknown
/// recipient's empty id) is returned as it is.
pub fn bsuid(user_id: &str) -> String {
    match uuid::Uuid::parse_str(user_id) {
        Ok(uuid) => format!("{BSUID_REGION}.{}", uuid.as_u128()),
        Err(_) => user_id.to_owned(),
    }
}

/// The platform user id (a UUID) a business-scoped user id from [`bsuid`] names.
pub fn user_of_bsuid(bsuid: &str) -> Option<String> {
    let (region, number) = bsuid.split_once('.')?;
    if region.len() != 2
        || !region.bytes().all(|b| b.is_ascii_uppercase())
        || number.is_empty()
        || !number.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let value: u128 = number.parse().ok()?;
    Some(uuid::Uuid::from_u128(value).to_string())
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
        let user = "0e5b3c8e-8d7a-4f0e-9b1a-2c3d4e5f6a7b";
        let scoped = bsuid(user);
        assert!(scoped.starts_with("ZZ."), "{scoped}");
        assert!(scoped[3..].bytes().all(|b| b.is_ascii_digit()), "{scoped}");
        assert_eq!(user_of_bsuid(&scoped).as_deref(), Some(user));
        assert_eq!(bsuid(""), "");
        assert_eq!(user_of_bsuid(user), None);
        assert_eq!(user_of_bsuid("US.ENT.1"), None);
        assert_eq!(
            user_of_bsuid("ZZ.99999999999999999999999999999999999999999"),
            None
        );
        let (token, hash) = access_token().unwrap();
        assert_eq!(token_hash(&token), hash);
        assert!(!hash.contains(&token));
    }
}
