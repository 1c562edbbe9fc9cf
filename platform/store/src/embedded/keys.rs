//! Public keys of devices: identity, signed prekey, one-time prekeys.

use courier_protocol::DeviceAddress;
use courier_protocol::http::{OneTimePreKey, SignedPreKey};

use super::codec::{from_json, prekey_id_of_key, prekey_key, to_json};
use super::engine::{Engine, lock};
use crate::error::{StoreError, StoreResult};
use crate::model::{DeviceKeys, KeyBundle};

impl Engine {
    fn require_device(&self, address: DeviceAddress) -> StoreResult<()> {
        if self.ks.devices.contains_key(address.to_key())? {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!("unknown device {address}")))
        }
    }

    pub fn device_keys(&self, address: DeviceAddress) -> StoreResult<Option<DeviceKeys>> {
        match self.ks.device_keys.get(address.to_key())? {
            Some(bytes) => Ok(Some(from_json("device_keys", &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn set_device_keys(&self, address: DeviceAddress, keys: DeviceKeys) -> StoreResult<()> {
        let _keys = lock(&self.locks.keys);
        self.require_device(address)?;
        let mut batch = self.batch();
        batch.insert(
            &self.ks.device_keys,
            address.to_key(),
            to_json("device_keys", &keys)?,
        );
        Ok(batch.commit()?)
    }

    pub fn set_signed_prekey(
        &self,
        address: DeviceAddress,
        signed_prekey: SignedPreKey,
    ) -> StoreResult<()> {
        let _keys = lock(&self.locks.keys);
        let mut keys = self.device_keys(address)?.ok_or_else(|| {
            StoreError::Invalid(format!("device {address} has not uploaded its keys"))
        })?;
        keys.signed_prekey = signed_prekey;
        let mut batch = self.batch();
        batch.insert(
            &self.ks.device_keys,
            address.to_key(),
            to_json("device_keys", &keys)?,
        );
        Ok(batch.commit()?)
    }

    pub fn add_one_time_prekeys(
        &self,
        address: DeviceAddress,
        keys: Vec<OneTimePreKey>,
    ) -> StoreResult<()> {
        let _keys = lock(&self.locks.keys);
        self.require_device(address)?;
        let device = address.to_key();
        let mut batch = self.batch();
        for key in keys {
            batch.insert(
                &self.ks.prekeys,
                prekey_key(&device, key.id),
                key.public_key,
            );
        }
        Ok(batch.commit()?)
    }

    pub fn count_one_time_prekeys(&self, address: DeviceAddress) -> StoreResult<u64> {
        Engine::count_prefix(&self.ks.prekeys, &address.to_key())
    }

    /// Under the keys lock, so concurrent takes never see the same prekey.
    pub fn take_key_bundle(&self, address: DeviceAddress) -> StoreResult<Option<KeyBundle>> {
        let _keys = lock(&self.locks.keys);
        let Some(keys) = self.device_keys(address)? else {
            return Ok(None);
        };
        let one_time_prekey = match self.ks.prekeys.prefix(address.to_key()).next() {
            Some(guard) => {
                let (key, public_key) = guard.into_inner()?;
                let id = prekey_id_of_key(&key)?;
                let mut batch = self.batch();
                // A strong tombstone: an id may be uploaded again after it was handed out.
                batch.remove(&self.ks.prekeys, key);
                batch.commit()?;
                Some(OneTimePreKey {
                    id,
                    public_key: public_key.to_vec(),
                })
            }
            None => None,
        };
        Ok(Some(KeyBundle {
            device: address.device,
            keys,
            one_time_prekey,
        }))
    }
}
