//! Unique keys: duplicates in later calls and within one call, racing appends of one key,
//! expiry by `unique_until` and the sweep that forgets expired keys.

use std::sync::Arc;

use super::*;

pub async fn unique_keys_keep_later_duplicates_out(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let until = T0 + HOUR;
    let first = store
        .append(
            "webhooks/app",
            vec![unique_item("m1", "wamid.1", until)],
            T0,
        )
        .await
        .unwrap();
    let [Appended::New(seq1)] = first[..] else {
        panic!("a new key is appended: {first:?}");
    };
    let later = store
        .append(
            "webhooks/app",
            vec![
                unique_item("m1 again", "wamid.1", until),
                unique_item("m2", "wamid.2", until),
                item("plain"),
                item("plain"),
            ],
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(later[0], Appended::Duplicate, "{later:?}");
    assert_eq!(
        new_seqs(&later[1..]).len(),
        3,
        "other keys and items without one: {later:?}"
    );
    let read = read_all(store, "webhooks/app").await;
    assert_eq!(
        values(&read),
        vec!["m1", "m2", "plain", "plain"],
        "a duplicate is not appended"
    );
    store.remove("webhooks/app", &[seq1]).await.unwrap();
    let after_removal = store
        .append(
            "webhooks/app",
            vec![unique_item("m1 late", "wamid.1", until)],
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        after_removal,
        vec![Appended::Duplicate],
        "a key stays recorded after its item is removed"
    );
}

pub async fn repeats_within_one_call_are_duplicates_of_the_first(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let until = T0 + HOUR;
    let outcomes = store
        .append(
            "q",
            vec![
                unique_item("a", "k", until),
                unique_item("b", "k", until),
                item("plain"),
                unique_item("c", "k", until),
                unique_item("d", "other", until),
            ],
            T0,
        )
        .await
        .unwrap();
    assert!(
        matches!(
            outcomes[..],
            [
                Appended::New(_),
                Appended::Duplicate,
                Appended::New(_),
                Appended::Duplicate,
                Appended::New(_)
            ]
        ),
        "{outcomes:?}"
    );
    assert_eq!(values(&read_all(store, "q").await), vec!["a", "plain", "d"]);
    // The first of a call is itself a duplicate: so are its repeats.
    let again = store
        .append(
            "q",
            vec![unique_item("e", "k", until), unique_item("f", "k", until)],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Appended::Duplicate, Appended::Duplicate]);
}

pub async fn concurrent_appends_of_one_key_append_it_once(store: Arc<dyn BusinessStore>) {
    const TASKS: usize = 16;
    const KEYS: usize = 4;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut new = Vec::new();
                for key in 0..KEYS {
                    let items = vec![
                        unique_item(
                            &format!("{key} from {task}"),
                            &format!("key{key}"),
                            T0 + HOUR,
                        ),
                        item(&format!("plain {task}:{key}")),
                    ];
                    let outcomes = store.append("webhooks/race", items, T0).await.unwrap();
                    assert!(matches!(outcomes[1], Appended::New(_)), "{outcomes:?}");
                    if matches!(outcomes[0], Appended::New(_)) {
                        new.push(key);
                    }
                }
                new
            })
        })
        .collect();
    let mut wins = vec![0; KEYS];
    for task in tasks {
        for key in task.await.expect("task") {
            wins[key] += 1;
        }
    }
    assert_eq!(wins, vec![1; KEYS], "exactly one New per key");
    let read = values(&read_all(&*store, "webhooks/race").await);
    for key in 0..KEYS {
        let items = read
            .iter()
            .filter(|v| v.starts_with(&format!("{key} from")))
            .count();
        assert_eq!(items, 1, "key{key} appended once: {read:?}");
    }
    assert_eq!(read.len(), KEYS + TASKS * KEYS);
}

pub async fn expired_unique_keys_admit_the_item_again(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let append_at = |value: &'static str, until: Millis, now: Millis| async move {
        let outcomes = store
            .append("q", vec![unique_item(value, "k", until)], now)
            .await
            .unwrap();
        outcomes[0]
    };
    assert!(matches!(
        append_at("1", T0 + 100, T0).await,
        Appended::New(_)
    ));
    assert_eq!(append_at("2", T0 + 500, T0 + 99).await, Appended::Duplicate);
    assert!(
        matches!(append_at("3", T0 + 200, T0 + 100).await, Appended::New(_)),
        "a key keeps items out until `unique_until`, exclusive"
    );
    assert_eq!(
        append_at("4", T0 + 300, T0 + 150).await,
        Appended::Duplicate,
        "the new item's `unique_until` counts now"
    );
    assert!(matches!(
        append_at("5", T0 + 300, T0 + 200).await,
        Appended::New(_)
    ));
    assert_eq!(values(&read_all(store, "q").await), vec!["1", "3", "5"]);
}

pub async fn sweep_unique_forgets_expired_keys_and_counts_them(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    assert_eq!(store.sweep_unique(T0).await.unwrap(), 0, "an empty store");
    let q1 = vec![
        unique_item("k1", "k1", T0 + 10),
        unique_item("k2", "k2", T0 + 20),
        unique_item("k3", "k3", T0 + 1000),
    ];
    new_seqs(&store.append("q1", q1, T0).await.unwrap());
    new_seqs(
        &store
            .append("q2", vec![unique_item("k1", "k1", T0 + 20)], T0)
            .await
            .unwrap(),
    );
    assert_eq!(
        store.sweep_unique(T0 + 5).await.unwrap(),
        0,
        "nothing expired yet"
    );
    assert_eq!(
        store.sweep_unique(T0 + 20).await.unwrap(),
        3,
        "keys with `unique_until` at or before now"
    );
    assert_eq!(store.sweep_unique(T0 + 20).await.unwrap(), 0, "swept once");
    assert_eq!(read_all(store, "q1").await.len(), 3, "items stay");
    assert_eq!(read_all(store, "q2").await.len(), 1);
    let outcomes = store
        .append(
            "q1",
            vec![
                unique_item("k1'", "k1", T0 + 500),
                unique_item("k3'", "k3", T0 + 2000),
            ],
            T0 + 20,
        )
        .await
        .unwrap();
    assert!(
        matches!(outcomes[..], [Appended::New(_), Appended::Duplicate]),
        "a swept key is new, an unexpired one still a duplicate: {outcomes:?}"
    );
    assert_eq!(store.sweep_unique(T0 + 999).await.unwrap(), 1, "k1 again");
    assert_eq!(store.sweep_unique(T0 + 1000).await.unwrap(), 1, "k3");
    assert_eq!(store.sweep_unique(u64::MAX).await.unwrap(), 0);
}
