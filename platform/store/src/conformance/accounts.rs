//! Accounts and devices: registration, re-registration, last seen.

use std::collections::BTreeSet;
use std::sync::Arc;

use courier_protocol::{DeviceAddress, UserId};

use super::*;
use crate::Store;

pub async fn register_creates_an_account_with_device_one(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    assert_eq!(store.account_by_phone(&p).await.unwrap(), None);
    let reg = store.register(&p, "pixel", [7; 32], T0).await.unwrap();
    let user = reg.account.user_id;
    assert_eq!(reg.account.phone, p);
    assert_eq!(reg.account.created_at, T0);
    assert!(reg.removed_devices.is_empty());
    assert_eq!(
        reg.device.address,
        DeviceAddress::new(user, 1),
        "device ids start at 1"
    );
    assert_eq!(reg.device.name, "pixel");
    assert_eq!(reg.device.credential_hash, [7; 32]);
    assert_eq!(reg.device.created_at, T0);

    assert_eq!(
        store.account(user).await.unwrap(),
        Some(reg.account.clone())
    );
    assert_eq!(
        store.account_by_phone(&p).await.unwrap(),
        Some(reg.account.clone())
    );
    assert_eq!(store.devices(user).await.unwrap(), vec![reg.device.clone()]);
    assert_eq!(
        store.device(reg.device.address).await.unwrap(),
        Some(reg.device.clone())
    );

    let other = register(store, 2).await;
    assert_ne!(
        other.account.user_id, user,
        "each phone number has its own account"
    );
    assert_eq!(store.devices(user).await.unwrap().len(), 1);
    let stranger = UserId::random();
    assert_eq!(store.account(stranger).await.unwrap(), None);
    assert!(store.devices(stranger).await.unwrap().is_empty());
    assert_eq!(
        store.device(DeviceAddress::new(user, 2)).await.unwrap(),
        None
    );
}

pub async fn reregister_keeps_the_user_and_replaces_the_devices(store: Arc<dyn Store>) {
    let store = &*store;
    let p = phone(1);
    let first = store.register(&p, "old phone", [1; 32], T0).await.unwrap();
    let user = first.account.user_id;
    let old = first.device.address;
    store.set_device_keys(old, device_keys(1)).await.unwrap();
    store
        .add_one_time_prekeys(old, (1..=3).map(one_time_prekey).collect())
        .await
        .unwrap();
    let sender = register(store, 2).await.device.address;
    store
        .enqueue(vec![
            (old, entry("m1", Some((sender, "c1")))),
            (old, entry("m2", None)),
            (sender, entry("to the other account", None)),
        ])
        .await
        .unwrap();
    store.set_last_seen_visible(user, false).await.unwrap();
    store.set_last_seen(user, T0 + 5).await.unwrap();

    let second = store
        .register(&p, "new phone", [2; 32], T0 + 10)
        .await
        .unwrap();
    assert_eq!(
        second.account.user_id, user,
        "the user id survives re-registration"
    );
    assert_eq!(second.account.created_at, T0);
    assert!(
        !second.account.last_seen_visible,
        "settings survive re-registration"
    );
    assert_eq!(second.account.last_seen, T0 + 5);
    assert_eq!(second.removed_devices, vec![1]);
    let new = second.device.address;
    assert_eq!(new.user, user);
    assert!(
        new.device > old.device,
        "a new device id, never used before"
    );
    assert_eq!(second.device.name, "new phone");
    assert_eq!(second.device.credential_hash, [2; 32]);

    assert_eq!(
        store.device(old).await.unwrap(),
        None,
        "the old device is gone"
    );
    assert_eq!(
        store.devices(user).await.unwrap(),
        vec![second.device.clone()]
    );
    assert_eq!(
        store.take_key_bundle(old).await.unwrap(),
        None,
        "old keys are gone"
    );
    assert_eq!(
        store.count_one_time_prekeys(old).await.unwrap(),
        0,
        "old prekeys are gone"
    );
    assert_eq!(
        store.queue_len(old).await.unwrap(),
        0,
        "the old queue is gone"
    );
    assert!(read_all(store, old, T0).await.is_empty());
    assert_eq!(
        store.take_key_bundle(new).await.unwrap(),
        None,
        "the new device has no keys"
    );
    assert_eq!(store.queue_len(new).await.unwrap(), 0);
    assert_eq!(
        store.account_by_phone(&p).await.unwrap(),
        Some(second.account.clone())
    );

    assert_eq!(
        store.queue_len(sender).await.unwrap(),
        1,
        "other accounts are untouched"
    );
    assert!(store.device(sender).await.unwrap().is_some());

    let third = store.register(&p, "third", [3; 32], T0 + 20).await.unwrap();
    assert_eq!(third.account.user_id, user);
    assert_eq!(third.removed_devices, vec![new.device]);
    assert!(third.device.address.device > new.device);
}

pub async fn concurrent_registrations_of_one_phone_share_one_account(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .register(&phone(1), "racer", [i; 32], T0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut registrations = Vec::new();
    for task in tasks {
        registrations.push(task.await.expect("task"));
    }
    let user = registrations[0].account.user_id;
    assert!(
        registrations.iter().all(|r| r.account.user_id == user),
        "one phone number, one account"
    );
    let ids: BTreeSet<_> = registrations
        .iter()
        .map(|r| r.device.address.device)
        .collect();
    assert_eq!(
        ids.len(),
        registrations.len(),
        "every registration got its own device id"
    );
    let last = registrations
        .iter()
        .max_by_key(|r| r.device.address.device)
        .expect("registrations");
    assert_eq!(
        store.devices(user).await.unwrap(),
        vec![last.device.clone()],
        "only the latest registration's device remains"
    );
}

pub async fn last_seen_and_its_visibility(store: Arc<dyn Store>) {
    let store = &*store;
    let reg = register(store, 1).await;
    let user = reg.account.user_id;
    assert_eq!(reg.account.last_seen, 0, "never seen");
    assert!(reg.account.last_seen_visible, "visible by default");
    store.set_last_seen(user, T0 + 100).await.unwrap();
    let account = store.account(user).await.unwrap().unwrap();
    assert_eq!(account.last_seen, T0 + 100);
    assert!(account.last_seen_visible);
    store.set_last_seen_visible(user, false).await.unwrap();
    let account = store.account_by_phone(&phone(1)).await.unwrap().unwrap();
    assert!(!account.last_seen_visible);
    assert_eq!(
        account.last_seen,
        T0 + 100,
        "visibility leaves the time alone"
    );
    store.set_last_seen(user, T0 + 200).await.unwrap();
    let account = store.account(user).await.unwrap().unwrap();
    assert_eq!(
        (account.last_seen, account.last_seen_visible),
        (T0 + 200, false)
    );
    assert!(
        store.set_last_seen(UserId::random(), T0).await.is_err(),
        "unknown user"
    );
    assert!(
        store
            .set_last_seen_visible(UserId::random(), true)
            .await
            .is_err()
    );
}
