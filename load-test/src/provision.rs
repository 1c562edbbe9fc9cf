//! Load users: registered through the real HTTP API, with real keys (so that bundles verify),
//! verification codes read through the admin API.
//!
//! Load users get few one-time prekeys: the harness measures the server's message path, and
//! pre-encrypted payloads need no sessions. Their credentials are cached in a file, so a second
//! run against the same server skips registration.

use std::path::Path;

use courier_client::{Api, Credentials};
use courier_crypto::{IdentityKeyPair, OneTimePreKeyPair, SignedPreKeyPair};
use courier_protocol::DeviceAddress;
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey, UploadKeys, VerifyCode};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// A registered load user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadUser {
    pub phone: String,
    pub credentials: Credentials,
}

impl LoadUser {
    pub fn address(&self) -> DeviceAddress {
        self.credentials.address
    }
}

/// The phone number of load user `index` (a reserved-looking range, one per index).
pub fn phone_of(index: u64) -> String {
    format!("+1999{index:08}")
}

/// Registers users `first..first + count` (or loads them from `cache`), `concurrency` at a time.
pub async fn provision(
    api: &Api,
    admin_token: &str,
    first: u64,
    count: u64,
    concurrency: usize,
    cache: Option<&Path>,
) -> anyhow::Result<Vec<LoadUser>> {
    if let Some(path) = cache
        && let Ok(bytes) = std::fs::read(path)
    {
        let users: Vec<LoadUser> = serde_json::from_slice(&bytes)?;
        if users.len() as u64 == count
            && users.first().map(|u| u.phone.clone()) == Some(phone_of(first))
        {
            return Ok(users);
        }
    }
    let users: Vec<anyhow::Result<LoadUser>> = futures_util::stream::iter(first..first + count)
        .map(|index| register(api, admin_token, index))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let users = users.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = cache {
        std::fs::write(path, serde_json::to_vec(&users)?)?;
    }
    Ok(users)
}

async fn register(api: &Api, admin_token: &str, index: u64) -> anyhow::Result<LoadUser> {
    let phone = phone_of(index);
    api.request_code(&phone).await?;
    let code = api.pending_code(admin_token, &phone).await?.code;
    let identity = IdentityKeyPair::generate()?;
    let signed = SignedPreKeyPair::generate(&identity, 1)?;
    let one_time = OneTimePreKeyPair::generate_batch(1, 2)?;
    let public = identity.public();
    let keys = UploadKeys {
        identity: IdentityKeys {
            ed25519: public.ed25519.to_vec(),
            x25519: public.x25519.to_vec(),
        },
        signed_prekey: SignedPreKey {
            id: signed.id,
            public_key: signed.public.to_vec(),
            signature: signed.signature.to_vec(),
        },
        one_time_prekeys: one_time
            .iter()
            .map(|k| OneTimePreKey {
                id: k.id,
                public_key: k.public.to_vec(),
            })
            .collect(),
    };
    let answer = api
        .verify(&VerifyCode {
            phone: phone.clone(),
            code,
            device_name: Some("load".into()),
            keys,
        })
        .await?;
    Ok(LoadUser {
        phone,
        credentials: Credentials {
            address: DeviceAddress::new(answer.user_id, answer.device_id),
            password: answer.password,
        },
    })
}
