//! JSON bodies of the HTTP API: registration, prekeys and the directory.
//!
//! Binary values (public keys, signatures) travel as standard base64 with padding.
//! Every error answer has the body [`ErrorBody`] and a status given in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, UserId};

/// `POST /v1/registration/code`: send a verification code to a phone number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestCode {
    pub phone: String,
}

/// Answer to [`RequestCode`] (202 Accepted).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestCodeResponse {
    /// Seconds until the code expires.
    pub expires_in_secs: u64,
}

/// `POST /v1/registration/verify`: prove the phone number and create a device credential.
///
/// The device's public keys come with it, so that a device exists only with keys that others
/// can start sessions with. Registering a number again replaces every device of the account:
/// the old devices lose their credentials and their queues, as when a number moves to a new
/// phone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyCode {
    pub phone: String,
    pub code: String,
    #[serde(default)]
    pub device_name: Option<String>,
    pub keys: UploadKeys,
}

/// Answer to [`VerifyCode`] (200): the credential for every later call.
///
/// HTTP calls send it as `Authorization: Basic base64("<user_id>.<device_id>:<password>")`, the
/// gateway upgrade request the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyCodeResponse {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub password: String,
}

/// A device's long-term public identity: an Ed25519 key that signs, an X25519 key for X3DH.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityKeys {
    #[serde(with = "b64")]
    pub ed25519: Vec<u8>,
    #[serde(with = "b64")]
    pub x25519: Vec<u8>,
}

/// A medium-term X25519 prekey signed with the identity's Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPreKey {
    pub id: u32,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// A single-use X25519 prekey.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OneTimePreKey {
    pub id: u32,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
}

/// `PUT /v1/keys`: set this device's identity and signed prekey, and add one-time prekeys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadKeys {
    pub identity: IdentityKeys,
    pub signed_prekey: SignedPreKey,
    #[serde(default)]
    pub one_time_prekeys: Vec<OneTimePreKey>,
}

/// `POST /v1/keys/one-time`: replenish one-time prekeys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddOneTimePreKeys {
    pub one_time_prekeys: Vec<OneTimePreKey>,
}

/// `GET /v1/keys/count`: how many one-time prekeys this device still has on the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreKeyCount {
    pub one_time_prekeys: u64,
}

/// What a sender needs to start a session with one device. `one_time_prekey` is `None` when the
/// device has run out; X3DH then uses the signed prekey alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreKeyBundle {
    pub device_id: DeviceId,
    pub identity: IdentityKeys,
    pub signed_prekey: SignedPreKey,
    pub one_time_prekey: Option<OneTimePreKey>,
}

/// `GET /v1/keys/{user_id}`: a bundle for each device of the user (each fetch consumes at most
/// one one-time prekey per device).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreKeyBundles {
    pub user_id: UserId,
    pub devices: Vec<PreKeyBundle>,
}

/// `GET /v1/directory/{phone}`: the account registered with a phone number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub user_id: UserId,
    pub phone: String,
    pub devices: Vec<DeviceId>,
}

/// `GET /admin/v1/verification-codes/{phone}`: the pending code of a number, for operators of a
/// deployment without an SMS provider. Requires the admin token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingCode {
    pub phone: String,
    pub code: String,
    pub expires_in_secs: u64,
}

/// The body of every HTTP error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable `code` (listed in `docs/protocol.md`) and a human-readable message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    /// Seconds to wait before retrying, on `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Serde helpers: bytes as standard base64.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_as_base64() {
        let key = OneTimePreKey {
            id: 7,
            public_key: vec![0xff; 32],
        };
        let json = serde_json::to_string(&key).unwrap();
        assert!(json.contains("\"public_key\":\"//////"), "{json}");
        let back: OneTimePreKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key);
        assert!(serde_json::from_str::<OneTimePreKey>(r#"{"id":1,"public_key":"***"}"#).is_err());
    }
}
