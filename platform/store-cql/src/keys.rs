//! Public keys of devices. A one-time prekey is taken with `DELETE ... IF public_key = ?`, a
//! lightweight transaction: of concurrent takers in any processes, one gets each key. Keys go
//! lowest id first. Takers in one process queue on the device's lock first, so they do not
//! contend in Paxos; a taker that lost a key to another process retries among the first few.

use courier_protocol::DeviceAddress;
use courier_protocol::http::{IdentityKeys, OneTimePreKey, SignedPreKey};
use courier_store::{DeviceKeys, KeyBundle, StoreError, StoreResult};

use crate::CqlStore;

/// How often a take retries after other takers got the keys it tried.
const MAX_TAKE_ATTEMPTS: usize = 64;

type KeysRow = (Vec<u8>, Vec<u8>, i32, Vec<u8>, Vec<u8>);

impl CqlStore {
    async fn require_device(&self, address: DeviceAddress) -> StoreResult<()> {
        match self.device_impl(address).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Invalid(format!("unknown device {address}"))),
        }
    }

    pub(crate) async fn device_keys_impl(
        &self,
        address: DeviceAddress,
    ) -> StoreResult<Option<DeviceKeys>> {
        let row: Option<KeysRow> = self
            .db
            .maybe_row(
                &self.st.device_keys_get,
                (address.user.0, address.device as i32),
                "device_keys",
            )
            .await?;
        Ok(row.map(
            |(ed25519, x25519, spk_id, public_key, signature)| DeviceKeys {
                identity: IdentityKeys { ed25519, x25519 },
                signed_prekey: SignedPreKey {
                    id: spk_id as u32,
                    public_key,
                    signature,
                },
            },
        ))
    }

    pub(crate) async fn set_device_keys_impl(
        &self,
        address: DeviceAddress,
        keys: DeviceKeys,
    ) -> StoreResult<()> {
        self.require_device(address).await?;
        let DeviceKeys {
            identity,
            signed_prekey,
        } = keys;
        self.db
            .execute(
                &self.st.device_keys_put,
                (
                    address.user.0,
                    address.device as i32,
                    identity.ed25519,
                    identity.x25519,
                    signed_prekey.id as i32,
                    signed_prekey.public_key,
                    signed_prekey.signature,
                ),
            )
            .await
            .map(drop)
    }

    pub(crate) async fn set_signed_prekey_impl(
        &self,
        address: DeviceAddress,
        signed_prekey: SignedPreKey,
    ) -> StoreResult<()> {
        if self.device_keys_impl(address).await?.is_none() {
            return Err(StoreError::Invalid(format!(
                "device {address} has not uploaded its keys"
            )));
        }
        self.db
            .execute(
                &self.st.signed_prekey_put,
                (
                    signed_prekey.id as i32,
                    signed_prekey.public_key,
                    signed_prekey.signature,
                    address.user.0,
                    address.device as i32,
                ),
            )
            .await
            .map(drop)
    }

    pub(crate) async fn add_one_time_prekeys_impl(
        &self,
        address: DeviceAddress,
        keys: Vec<OneTimePreKey>,
    ) -> StoreResult<()> {
        self.require_device(address).await?;
        let (user, device) = (address.user.0, address.device as i32);
        self.db
            .execute_all(
                &self.st.prekey_put,
                keys.into_iter()
                    .map(|key| (user, device, key.id as i32, key.public_key)),
            )
            .await
    }

    pub(crate) async fn count_one_time_prekeys_impl(
        &self,
        address: DeviceAddress,
    ) -> StoreResult<u64> {
        let row: Option<(i64,)> = self
            .db
            .maybe_row(
                &self.st.prekey_count,
                (address.user.0, address.device as i32),
                "one_time_prekeys",
            )
            .await?;
        Ok(row.map_or(0, |(n,)| n.max(0) as u64))
    }

    pub(crate) async fn take_key_bundle_impl(
        &self,
        address: DeviceAddress,
    ) -> StoreResult<Option<KeyBundle>> {
        let Some(keys) = self.device_keys_impl(address).await? else {
            return Ok(None);
        };
        let _device = self.locks.keys.lock(&address).await;
        let (user, device) = (address.user.0, address.device as i32);
        for attempt in 0..MAX_TAKE_ATTEMPTS {
            let candidates: Vec<(i32, Vec<u8>)> = self
                .db
                .rows(
                    &self.st.prekey_candidates,
                    (user, device),
                    "one_time_prekeys",
                )
                .await?;
            if candidates.is_empty() {
                return Ok(Some(KeyBundle {
                    device: address.device,
                    keys,
                    one_time_prekey: None,
                }));
            }
            // The lowest id first (the lock orders this process's takers); after losing a race
            // to another process, a pick spread over the first few keys.
            let pick = match attempt {
                0 => 0,
                _ => (spread_seed() + attempt) % candidates.len(),
            };
            let (id, public_key) = &candidates[pick];
            let taken = self
                .db
                .lwt(
                    &self.st.prekey_take,
                    (user, device, *id, public_key.clone()),
                    "one_time_prekeys",
                )
                .await?;
            if taken.applied {
                return Ok(Some(KeyBundle {
                    device: address.device,
                    keys,
                    one_time_prekey: Some(OneTimePreKey {
                        id: *id as u32,
                        public_key: public_key.clone(),
                    }),
                }));
            }
        }
        Err(StoreError::Unavailable(format!(
            "too many concurrent one-time prekey takes for {address}"
        )))
    }
}

/// A small per-process number that spreads the first pick of different processes.
fn spread_seed() -> usize {
    static SEED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| uuid::Uuid::new_v4().as_bytes()[0] as usize)
}
