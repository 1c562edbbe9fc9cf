//! Accounts and devices: registration (phone claim and device ids by lightweight transaction),
//! lookups, last seen.
//!
//! Concurrent registrations of one phone, even in different processes, end with one account
//! and only the device with the highest id: each registration inserts its device, then deletes
//! every device below its id (a range tombstone), then deletes its own device if a higher one
//! exists. Whatever the interleaving, the highest device is never deleted and every lower one
//! is deleted by itself or by the highest.

use courier_protocol::{DeviceAddress, DeviceId, PhoneNumber, UserId};
use courier_store::{Account, Device, Millis, Registration, StoreError, StoreResult};

use crate::CqlStore;
use crate::error::corrupt;
use crate::layout::{u64_from_cql, u64_to_cql};

/// How often a registration retries its device id allocation against concurrent ones.
const MAX_ALLOCATION_ATTEMPTS: usize = 64;

type AccountRow = (
    Option<String>,
    Option<i64>,
    Option<bool>,
    Option<i64>,
    Option<i32>,
);
type DeviceRow = (i32, String, Vec<u8>, i64);

fn account_from_row(user: UserId, row: &AccountRow) -> StoreResult<Account> {
    let (phone, created_at, visible, last_seen, _) = row;
    let phone = phone
        .as_deref()
        .ok_or_else(|| corrupt("accounts", format!("account {user} has no phone")))?;
    let phone = PhoneNumber::parse(phone).map_err(|e| corrupt("accounts", e))?;
    Ok(Account {
        user_id: user,
        phone,
        created_at: u64_from_cql(created_at.unwrap_or(0)),
        last_seen_visible: visible.unwrap_or(true),
        last_seen: u64_from_cql(last_seen.unwrap_or(0)),
    })
}

fn device_from_row(
    user: UserId,
    (device_id, name, hash, created_at): DeviceRow,
) -> StoreResult<Device> {
    let credential_hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| corrupt("devices", format!("credential hash of {user}.{device_id}")))?;
    Ok(Device {
        address: DeviceAddress::new(user, device_id as DeviceId),
        name,
        credential_hash,
        created_at: u64_from_cql(created_at),
    })
}

impl CqlStore {
    pub(crate) async fn phone_owner(&self, phone: &PhoneNumber) -> StoreResult<Option<UserId>> {
        let row: Option<(uuid::Uuid,)> = self
            .db
            .maybe_row(&self.st.phone_get, (phone.as_str(),), "phones")
            .await?;
        Ok(row.map(|(id,)| UserId(id)))
    }

    pub(crate) async fn account_impl(&self, user: UserId) -> StoreResult<Option<Account>> {
        let row: Option<AccountRow> = self
            .db
            .maybe_row(&self.st.account_get, (user.0,), "accounts")
            .await?;
        row.map(|row| account_from_row(user, &row)).transpose()
    }

    pub(crate) async fn require_account(&self, user: UserId) -> StoreResult<()> {
        match self.account_impl(user).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Invalid(format!("unknown user {user}"))),
        }
    }

    pub(crate) async fn devices_impl(&self, user: UserId) -> StoreResult<Vec<Device>> {
        let rows: Vec<DeviceRow> = self
            .db
            .rows(&self.st.devices_of_user, (user.0,), "devices")
            .await?;
        rows.into_iter()
            .map(|row| device_from_row(user, row))
            .collect()
    }

    pub(crate) async fn device_impl(&self, address: DeviceAddress) -> StoreResult<Option<Device>> {
        let row: Option<DeviceRow> = self
            .db
            .maybe_row(
                &self.st.device_get,
                (address.user.0, address.device as i32),
                "devices",
            )
            .await?;
        row.map(|row| device_from_row(address.user, row))
            .transpose()
    }

    /// The user id of `phone`, claiming the phone for a new user if nobody has.
    async fn claim_phone(&self, phone: &PhoneNumber) -> StoreResult<UserId> {
        if let Some(user) = self.phone_owner(phone).await? {
            return Ok(user);
        }
        let candidate = UserId::random();
        let claim = self
            .db
            .lwt(
                &self.st.phone_claim,
                (phone.as_str(), candidate.0),
                "phones",
            )
            .await?;
        if claim.applied {
            return Ok(candidate);
        }
        claim
            .uuid("user_id")
            .map(UserId)
            .ok_or_else(|| corrupt("phones", format!("{phone} is claimed by nobody")))
    }

    /// The account of `user` (created if the phone claim's account is missing) and a device id
    /// never handed out before in it.
    async fn allocate_device(
        &self,
        user: UserId,
        phone: &PhoneNumber,
        now: Millis,
    ) -> StoreResult<(Account, DeviceId)> {
        for _ in 0..MAX_ALLOCATION_ATTEMPTS {
            let row: Option<AccountRow> = self
                .db
                .maybe_row(&self.st.account_get_serial, (user.0,), "accounts")
                .await?;
            match row {
                None => {
                    let created = self
                        .db
                        .lwt(
                            &self.st.account_create,
                            (user.0, phone.as_str(), u64_to_cql(now)),
                            "accounts",
                        )
                        .await?;
                    if created.applied {
                        let account = Account {
                            user_id: user,
                            phone: phone.clone(),
                            created_at: now,
                            last_seen_visible: true,
                            last_seen: 0,
                        };
                        return Ok((account, 1));
                    }
                }
                Some(row) => {
                    let next = row.4.ok_or_else(|| {
                        corrupt("accounts", format!("account {user} has no next device id"))
                    })?;
                    let after = next.checked_add(1).ok_or_else(|| {
                        StoreError::Invalid(format!("{phone} has used every device id"))
                    })?;
                    let taken = self
                        .db
                        .lwt(
                            &self.st.account_next_device,
                            (after, user.0, next),
                            "accounts",
                        )
                        .await?;
                    if taken.applied {
                        return Ok((account_from_row(user, &row)?, next as DeviceId));
                    }
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "too many concurrent registrations of {phone}"
        )))
    }

    pub(crate) async fn register_impl(
        &self,
        phone: &PhoneNumber,
        device_name: &str,
        credential_hash: [u8; 32],
        now: Millis,
    ) -> StoreResult<Registration> {
        let _phone = self.locks.phones.lock(&phone.as_str()).await;
        let user = self.claim_phone(phone).await?;
        let (account, device_id) = self.allocate_device(user, phone, now).await?;
        let device = Device {
            address: DeviceAddress::new(user, device_id),
            name: device_name.to_owned(),
            credential_hash,
            created_at: now,
        };
        let id = device_id as i32;
        self.db
            .execute(
                &self.st.device_insert,
                (
                    user.0,
                    id,
                    device_name,
                    credential_hash.to_vec(),
                    u64_to_cql(now),
                ),
            )
            .await?;
        if device_id == 1 {
            return Ok(Registration {
                account,
                device,
                removed_devices: Vec::new(),
            });
        }

        let removed: Vec<DeviceId> = self
            .devices_impl(user)
            .await?
            .into_iter()
            .map(|d| d.address.device)
            .filter(|&d| d < device_id)
            .collect();
        self.db
            .execute(&self.st.devices_delete_below, (user.0, id))
            .await?;
        self.db
            .execute(&self.st.device_keys_delete_below, (user.0, id))
            .await?;
        self.db
            .execute_all(
                &self.st.prekeys_delete_device,
                removed.iter().map(|&d| (user.0, d as i32)),
            )
            .await?;
        let addresses: Vec<DeviceAddress> = removed
            .iter()
            .map(|&d| DeviceAddress::new(user, d))
            .collect();
        self.clear_queues(&addresses).await?;

        // A concurrent registration got a higher id: it wins, and this device goes.
        let beaten = self
            .devices_impl(user)
            .await?
            .iter()
            .any(|d| d.address.device > device_id);
        if beaten {
            self.db
                .execute(&self.st.device_delete, (user.0, id))
                .await?;
        }
        Ok(Registration {
            account,
            device,
            removed_devices: removed,
        })
    }
}
