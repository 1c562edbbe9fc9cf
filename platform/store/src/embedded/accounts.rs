//! Verification codes, accounts and devices.

use courier_protocol::{DeviceAddress, DeviceId, PhoneNumber, UserId};
use fjall::OwnedWriteBatch;

use super::codec::{
    AccountRecord, CodeRecord, device_id_of_key, from_json, prekey_key, queue_key, to_json,
    user_from_bytes,
};
use super::engine::{Engine, lock};
use crate::error::{StoreError, StoreResult};
use crate::model::{
    Account, CodeCheck, Device, IssueOutcome, IssuePolicy, Millis, Registration, VerificationCode,
};

impl Engine {
    fn code_record(&self, phone: &PhoneNumber) -> StoreResult<CodeRecord> {
        match self.ks.codes.get(phone.as_str())? {
            Some(bytes) => from_json("codes", &bytes),
            None => Ok(CodeRecord::default()),
        }
    }

    pub fn issue_code(
        &self,
        phone: &PhoneNumber,
        code: &str,
        now: Millis,
        policy: IssuePolicy,
    ) -> StoreResult<IssueOutcome> {
        let _codes = lock(&self.locks.codes);
        let mut record = self.code_record(phone)?;
        if let Some(limited) = crate::rules::admit_code(&mut record.issued_at, now, policy) {
            return Ok(limited);
        }
        let expires_at = now.saturating_add(policy.ttl_ms);
        record.pending = Some(VerificationCode {
            code: code.to_owned(),
            expires_at,
            attempts: 0,
        });
        let mut batch = self.batch();
        batch.insert(&self.ks.codes, phone.as_str(), to_json("codes", &record)?);
        batch.commit()?;
        Ok(IssueOutcome::Issued { expires_at })
    }

    pub fn check_code(
        &self,
        phone: &PhoneNumber,
        guess: &str,
        now: Millis,
        max_attempts: u32,
    ) -> StoreResult<CodeCheck> {
        let _codes = lock(&self.locks.codes);
        let mut record = self.code_record(phone)?;
        let outcome = crate::rules::check_guess(&mut record.pending, guess, now, max_attempts);
        if matches!(outcome, CodeCheck::Missing | CodeCheck::Expired) {
            return Ok(outcome);
        }
        let mut batch = self.batch();
        batch.insert(&self.ks.codes, phone.as_str(), to_json("codes", &record)?);
        batch.commit()?;
        Ok(outcome)
    }

    pub fn pending_code(
        &self,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<Option<VerificationCode>> {
        let record = self.code_record(phone)?;
        Ok(record.pending.filter(|code| code.expires_at > now))
    }

    fn account_record(&self, user: UserId) -> StoreResult<Option<AccountRecord>> {
        match self.ks.accounts.get(user.as_bytes())? {
            Some(bytes) => Ok(Some(from_json("accounts", &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn register(
        &self,
        phone: &PhoneNumber,
        device_name: &str,
        credential_hash: [u8; 32],
        now: Millis,
    ) -> StoreResult<Registration> {
        let _accounts = lock(&self.locks.accounts);
        let _keys = lock(&self.locks.keys);
        let _queues = lock(&self.locks.queues);
        let mut batch = self.batch();
        let (mut record, removed_devices) = match self.ks.phones.get(phone.as_str())? {
            Some(user) => {
                let user = user_from_bytes("phones", &user)?;
                let record = self
                    .account_record(user)?
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "phones",
                        detail: format!("{phone} points to missing account {user}"),
                    })?;
                let removed = self.remove_devices(&mut batch, user)?;
                (record, removed)
            }
            None => {
                let user = UserId::random();
                batch.insert(&self.ks.phones, phone.as_str(), user.as_bytes().to_vec());
                let account = Account {
                    user_id: user,
                    phone: phone.clone(),
                    created_at: now,
                    last_seen_visible: true,
                    last_seen: 0,
                };
                let record = AccountRecord {
                    account,
                    next_device_id: 1,
                };
                (record, Vec::new())
            }
        };
        let device_id = record.next_device_id;
        record.next_device_id = device_id
            .checked_add(1)
            .ok_or_else(|| StoreError::Invalid(format!("{phone} has used every device id")))?;
        let device = Device {
            address: DeviceAddress::new(record.account.user_id, device_id),
            name: device_name.to_owned(),
            credential_hash,
            created_at: now,
        };
        let user = record.account.user_id;
        batch.insert(
            &self.ks.accounts,
            user.as_bytes().to_vec(),
            to_json("accounts", &record)?,
        );
        batch.insert(
            &self.ks.devices,
            device.address.to_key(),
            to_json("devices", &device)?,
        );
        batch.commit()?;
        self.device_cache.invalidate(user);
        Ok(Registration {
            account: record.account,
            device,
            removed_devices,
        })
    }

    /// Adds to `batch` the removal of every device of `user` with its keys, one-time prekeys,
    /// queue and the de-duplication records of entries queued for it. The queue's next seq
    /// stays (8 bytes), so even an entry sent to the removed device later gets a fresh seq.
    fn remove_devices(
        &self,
        batch: &mut OwnedWriteBatch,
        user: UserId,
    ) -> StoreResult<Vec<DeviceId>> {
        let mut removed = Vec::new();
        for guard in self.ks.devices.prefix(user.as_bytes()) {
            let key = guard.key()?;
            let device_id = device_id_of_key(&key)?;
            let device = DeviceAddress::new(user, device_id).to_key();
            batch.remove(&self.ks.devices, device);
            batch.remove(&self.ks.device_keys, device);
            for prekey in self
                .ks
                .prekeys
                .range(prekey_key(&device, 0)..=prekey_key(&device, u32::MAX))
            {
                batch.remove(&self.ks.prekeys, prekey.key()?);
            }
            // Queue keys are written once (sequence numbers are never reused): weak tombstones.
            for entry in self
                .ks
                .queue
                .range(queue_key(&device, 0)..=queue_key(&device, u64::MAX))
            {
                batch.remove_weak(&self.ks.queue, entry.key()?);
            }
            for record in self.ks.dedupe.prefix(device) {
                batch.remove(&self.ks.dedupe, record.key()?);
            }
            removed.push(device_id);
        }
        Ok(removed)
    }

    pub fn account(&self, user: UserId) -> StoreResult<Option<Account>> {
        Ok(self.account_record(user)?.map(|record| record.account))
    }

    pub fn account_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Account>> {
        match self.ks.phones.get(phone.as_str())? {
            Some(user) => self.account(user_from_bytes("phones", &user)?),
            None => Ok(None),
        }
    }

    /// The devices of `user`, from the cache when it has them (see `device_cache`).
    pub fn devices(&self, user: UserId) -> StoreResult<Vec<Device>> {
        let miss = match self.device_cache.get(user) {
            Ok(devices) => return Ok(devices),
            Err(miss) => miss,
        };
        let devices: Vec<Device> = self
            .ks
            .devices
            .prefix(user.as_bytes())
            .map(|guard| from_json("devices", &guard.value()?))
            .collect::<StoreResult<_>>()?;
        self.device_cache.fill(user, &devices, miss);
        Ok(devices)
    }

    pub fn device(&self, address: DeviceAddress) -> StoreResult<Option<Device>> {
        match self.ks.devices.get(address.to_key())? {
            Some(bytes) => Ok(Some(from_json("devices", &bytes)?)),
            None => Ok(None),
        }
    }

    /// Applies `change` to the account of `user`; `Invalid` if there is none.
    pub fn update_account(
        &self,
        user: UserId,
        change: impl FnOnce(&mut Account),
    ) -> StoreResult<()> {
        let _accounts = lock(&self.locks.accounts);
        let mut record = self
            .account_record(user)?
            .ok_or_else(|| StoreError::Invalid(format!("unknown user {user}")))?;
        change(&mut record.account);
        let mut batch = self.batch();
        batch.insert(
            &self.ks.accounts,
            user.as_bytes().to_vec(),
            to_json("accounts", &record)?,
        );
        batch.commit()?;
        Ok(())
    }
}
