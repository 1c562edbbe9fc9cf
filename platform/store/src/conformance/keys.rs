//! Public keys: device keys, signed prekey rotation, one-time prekeys.

use std::collections::BTreeSet;
use std::sync::Arc;

use courier_protocol::http::OneTimePreKey;
use courier_protocol::{DeviceAddress, UserId};

use super::*;
use crate::Store;

pub async fn device_keys_are_set_replaced_and_rotated(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    assert!(
        store
            .set_signed_prekey(device, signed_prekey(9))
            .await
            .is_err(),
        "no signed prekey rotation before keys are uploaded"
    );
    assert_eq!(store.device_keys(device).await.unwrap(), None);
    store.set_device_keys(device, device_keys(1)).await.unwrap();
    assert_eq!(
        store.device_keys(device).await.unwrap(),
        Some(device_keys(1))
    );
    assert_eq!(
        store.take_key_bundle(device).await.unwrap(),
        Some(KeyBundle {
            device: device.device,
            keys: device_keys(1),
            one_time_prekey: None
        })
    );
    store.set_device_keys(device, device_keys(2)).await.unwrap();
    let bundle = store.take_key_bundle(device).await.unwrap().unwrap();
    assert_eq!(bundle.keys, device_keys(2), "keys are replaced");
    store
        .set_signed_prekey(device, signed_prekey(9))
        .await
        .unwrap();
    let bundle = store.take_key_bundle(device).await.unwrap().unwrap();
    assert_eq!(
        bundle.keys.identity,
        device_keys(2).identity,
        "rotation keeps the identity"
    );
    assert_eq!(bundle.keys.signed_prekey, signed_prekey(9));
    let unknown = DeviceAddress::new(UserId::random(), 1);
    assert!(
        store
            .set_device_keys(unknown, device_keys(3))
            .await
            .is_err(),
        "unknown device"
    );
    assert_eq!(store.take_key_bundle(unknown).await.unwrap(), None);
}

pub async fn no_bundle_for_a_device_without_keys(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    assert_eq!(store.take_key_bundle(device).await.unwrap(), None);
    store
        .add_one_time_prekeys(device, vec![one_time_prekey(1)])
        .await
        .unwrap();
    assert_eq!(
        store.take_key_bundle(device).await.unwrap(),
        None,
        "one-time prekeys alone make no bundle"
    );
    assert_eq!(
        store.count_one_time_prekeys(device).await.unwrap(),
        1,
        "and a refused take consumes nothing"
    );
    assert_eq!(
        store
            .take_key_bundle(DeviceAddress::new(UserId::random(), 1))
            .await
            .unwrap(),
        None
    );
}

pub async fn one_time_prekeys_are_counted_and_taken_once(store: Arc<dyn Store>) {
    let store = &*store;
    let device = register(store, 1).await.device.address;
    let other = register(store, 2).await.device.address;
    store.set_device_keys(device, device_keys(1)).await.unwrap();
    assert_eq!(store.count_one_time_prekeys(device).await.unwrap(), 0);
    store
        .add_one_time_prekeys(device, (1..=3).map(one_time_prekey).collect())
        .await
        .unwrap();
    store
        .add_one_time_prekeys(other, vec![one_time_prekey(1)])
        .await
        .unwrap();
    assert_eq!(store.count_one_time_prekeys(device).await.unwrap(), 3);

    let mut taken = BTreeSet::new();
    for left in [2, 1, 0] {
        let bundle = store
            .take_key_bundle(device)
            .await
            .unwrap()
            .expect("a bundle");
        assert_eq!(bundle.keys, device_keys(1));
        let key = bundle
            .one_time_prekey
            .expect("a one-time prekey while some remain");
        assert_eq!(key, one_time_prekey(key.id), "the key as uploaded");
        assert!(taken.insert(key.id), "prekey {} handed out twice", key.id);
        assert_eq!(store.count_one_time_prekeys(device).await.unwrap(), left);
    }
    assert_eq!(taken, BTreeSet::from([1, 2, 3]));
    let bundle = store
        .take_key_bundle(device)
        .await
        .unwrap()
        .expect("a bundle without prekey");
    assert_eq!(bundle.one_time_prekey, None);
    assert_eq!(
        bundle.keys,
        device_keys(1),
        "the signed prekey alone still makes a bundle"
    );
    assert_eq!(
        store.count_one_time_prekeys(other).await.unwrap(),
        1,
        "per device"
    );

    let replaced = OneTimePreKey {
        id: 5,
        public_key: vec![0xbb; 32],
    };
    store
        .add_one_time_prekeys(device, vec![one_time_prekey(5)])
        .await
        .unwrap();
    store
        .add_one_time_prekeys(device, vec![replaced.clone(), one_time_prekey(6)])
        .await
        .unwrap();
    assert_eq!(
        store.count_one_time_prekeys(device).await.unwrap(),
        2,
        "same id replaces"
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            store
                .take_key_bundle(device)
                .await
                .unwrap()
                .unwrap()
                .one_time_prekey
                .unwrap(),
        );
    }
    got.sort_by_key(|k| k.id);
    assert_eq!(got, vec![replaced, one_time_prekey(6)]);
}

pub async fn concurrent_takes_hand_out_each_prekey_once(store: Arc<dyn Store>) {
    const KEYS: u32 = 96;
    const TAKERS: usize = 16;
    const TAKES_EACH: usize = 8;
    const ROUNDS: u32 = 4;
    let device = register(&*store, 1).await.device.address;
    store.set_device_keys(device, device_keys(1)).await.unwrap();
    for round in 0..ROUNDS {
        let uploaded: BTreeSet<u32> = (round * KEYS + 1..=(round + 1) * KEYS).collect();
        store
            .add_one_time_prekeys(
                device,
                uploaded.iter().map(|&id| one_time_prekey(id)).collect(),
            )
            .await
            .unwrap();
        let tasks: Vec<_> = (0..TAKERS)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut bundles = Vec::new();
                    for _ in 0..TAKES_EACH {
                        bundles.push(store.take_key_bundle(device).await.unwrap());
                        tokio::task::yield_now().await;
                    }
                    bundles
                })
            })
            .collect();
        let mut ids = Vec::new();
        let mut without = 0;
        for task in tasks {
            for bundle in task.await.expect("task") {
                let bundle = bundle.expect("every take gets a bundle");
                assert_eq!(bundle.keys, device_keys(1));
                match bundle.one_time_prekey {
                    Some(key) => ids.push(key.id),
                    None => without += 1,
                }
            }
        }
        let distinct: BTreeSet<_> = ids.iter().copied().collect();
        assert_eq!(
            ids.len(),
            distinct.len(),
            "round {round}: a prekey was handed out twice: {ids:?}"
        );
        assert_eq!(distinct, uploaded, "round {round}: every prekey handed out");
        assert_eq!(without, TAKERS * TAKES_EACH - KEYS as usize);
        assert_eq!(store.count_one_time_prekeys(device).await.unwrap(), 0);
    }
}
