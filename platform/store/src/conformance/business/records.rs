//! Records: writes, inserts (also racing), listing and paging, isolation, name limits.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::business::{MAX_RECORD_NAME_BYTES, RecordKey};

fn key(table: &str, partition: &str, key: &str) -> RecordKey {
    RecordKey::new(table, partition, key)
}

async fn get(store: &dyn BusinessStore, k: &RecordKey) -> Option<Bytes> {
    store.get_record(k).await.expect("get_record")
}

async fn list_all(store: &dyn BusinessStore, table: &str, partition: &str) -> Vec<(String, Bytes)> {
    store
        .list_records(table, partition, None, usize::MAX)
        .await
        .expect("list_records")
}

fn names(records: &[(String, Bytes)]) -> Vec<&str> {
    records.iter().map(|(k, _)| k.as_str()).collect()
}

pub async fn records_are_put_read_replaced_and_deleted(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let (a, b) = (key("tokens", "biz1", "a"), key("tokens", "biz1", "b"));
    assert_eq!(get(store, &a).await, None, "an empty store");
    store.put_record(&a, bytes("v1")).await.unwrap();
    store.put_record(&b, bytes("other")).await.unwrap();
    assert_eq!(get(store, &a).await, Some(bytes("v1")));
    store.put_record(&a, bytes("v2")).await.unwrap();
    assert_eq!(get(store, &a).await, Some(bytes("v2")), "a put replaces");
    store.delete_record(&a).await.unwrap();
    assert_eq!(get(store, &a).await, None, "deleted");
    assert_eq!(
        get(store, &b).await,
        Some(bytes("other")),
        "only that record"
    );
    store.delete_record(&a).await.unwrap();
    store
        .delete_record(&key("tokens", "nobody", "x"))
        .await
        .expect("deleting what does not exist is Ok");

    // Values come back byte for byte: empty, binary, large.
    let binary = Bytes::from((0..=255u8).collect::<Vec<u8>>());
    let large = Bytes::from(vec![0xa5; 64 * 1024]);
    for value in [Bytes::new(), binary, large] {
        store.put_record(&a, value.clone()).await.unwrap();
        assert_eq!(get(store, &a).await, Some(value));
    }
}

pub async fn insert_record_creates_a_record_once(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let k = key("businesses", "", "biz1");
    assert!(store.insert_record(&k, bytes("first")).await.unwrap());
    assert!(!store.insert_record(&k, bytes("second")).await.unwrap());
    assert_eq!(
        get(store, &k).await,
        Some(bytes("first")),
        "a refused insert writes nothing"
    );
    store.put_record(&k, bytes("put")).await.unwrap();
    assert!(!store.insert_record(&k, bytes("third")).await.unwrap());
    assert_eq!(get(store, &k).await, Some(bytes("put")));
    store.delete_record(&k).await.unwrap();
    assert!(
        store.insert_record(&k, bytes("again")).await.unwrap(),
        "a deleted record can be inserted again"
    );
    assert_eq!(get(store, &k).await, Some(bytes("again")));
    let put_first = key("businesses", "", "biz2");
    store.put_record(&put_first, bytes("put")).await.unwrap();
    assert!(!store.insert_record(&put_first, bytes("x")).await.unwrap());
}

pub async fn concurrent_inserts_create_a_record_once(store: Arc<dyn BusinessStore>) {
    const TASKS: usize = 16;
    for round in 0..3 {
        let k = key("numbers", "", &format!("+1555000000{round}"));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, k) = (store.clone(), k.clone());
                tokio::spawn(async move {
                    let value = bytes(&format!("task {task}"));
                    let inserted = store.insert_record(&k, value.clone()).await.unwrap();
                    inserted.then_some(value)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.expect("task"));
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one insert wins: {winners:?}"
        );
        assert_eq!(
            get(&*store, &k).await,
            winners.pop(),
            "the winner's value stays"
        );
    }
}

pub async fn records_are_listed_in_key_order(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let mut keys = vec![
        "b", "a", "ab", "B", "a\u{e9}", "aa", "10", "9", "a\0", "~", "\u{e9}",
    ];
    for k in &keys {
        store
            .put_record(&key("templates", "biz1", k), bytes(k))
            .await
            .unwrap();
    }
    store
        .put_record(&key("templates", "biz2", "0"), bytes("x"))
        .await
        .unwrap();
    keys.sort_unstable(); // `str` orders bytewise
    let listed = list_all(store, "templates", "biz1").await;
    assert_eq!(
        names(&listed),
        keys,
        "bytewise key order, this partition only"
    );
    for (k, value) in &listed {
        assert_eq!(value, &bytes(k), "each key with its value");
    }
    assert!(list_all(store, "templates", "nobody").await.is_empty());
    assert!(list_all(store, "other", "biz1").await.is_empty());
}

pub async fn listing_pages_with_after(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let all: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    for k in all.iter().rev() {
        store.put_record(&key("t", "p", k), bytes(k)).await.unwrap();
    }
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_records("t", "p", after.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        paged.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(paged, all, "pages of 3 cover the partition once, in order");
    let from = store.list_records("t", "p", Some("k035"), 2).await.unwrap();
    assert_eq!(
        names(&from),
        vec!["k04", "k05"],
        "after a key that is not stored"
    );
    assert!(
        store
            .list_records("t", "p", Some("k09"), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_records("t", "p", None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .put_record(&key("t", "p", ""), bytes("empty"))
        .await
        .unwrap();
    assert_eq!(
        list_all(store, "t", "p").await[0],
        (String::new(), bytes("empty"))
    );
    let after_empty = store
        .list_records("t", "p", Some(""), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        names(&after_empty).len(),
        10,
        "after \"\": every key but \"\""
    );
}

pub async fn partitions_and_tables_are_isolated(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    // (table, partition, key): names that are prefixes of one another or hold separators.
    let records = [
        ("t", "a", "b\0c"),
        ("t", "a\0b", "c"),
        ("t", "a", "b/c"),
        ("t", "a/b", "c"),
        ("t", "ab", "c"),
        ("t", "", "ac"),
        ("t\0a", "b", "c"),
        ("t", "a\0b\0c", ""),
        ("t2", "a", "b\0c"),
    ];
    for (t, p, k) in records {
        store
            .put_record(&key(t, p, k), bytes(&format!("{t}|{p}|{k}")))
            .await
            .unwrap();
    }
    for (t, p, k) in records {
        assert_eq!(
            get(store, &key(t, p, k)).await,
            Some(bytes(&format!("{t}|{p}|{k}"))),
            "{t:?} {p:?} {k:?} keeps its own value"
        );
    }
    assert_eq!(
        names(&list_all(store, "t", "a").await),
        vec!["b\0c", "b/c"],
        "NUL sorts before '/'"
    );
    assert_eq!(names(&list_all(store, "t", "a\0b").await), vec!["c"]);
    assert_eq!(names(&list_all(store, "t", "a/b").await), vec!["c"]);
    assert_eq!(names(&list_all(store, "t", "ab").await), vec!["c"]);
    assert_eq!(names(&list_all(store, "t", "").await), vec!["ac"]);
    assert_eq!(names(&list_all(store, "t", "a\0b\0c").await), vec![""]);
    assert_eq!(names(&list_all(store, "t\0a", "b").await), vec!["c"]);
    assert!(list_all(store, "t", "b").await.is_empty());
    assert!(list_all(store, "t\0a", "").await.is_empty());
    assert!(get(store, &key("t", "a", "b")).await.is_none());
    store.delete_record(&key("t", "a", "b\0c")).await.unwrap();
    assert_eq!(names(&list_all(store, "t", "a").await), vec!["b/c"]);
    assert!(
        get(store, &key("t2", "a", "b\0c")).await.is_some(),
        "other tables keep theirs"
    );
    assert!(get(store, &key("t", "a\0b", "c")).await.is_some());
}

pub async fn record_names_over_the_limit_are_invalid(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    // Bytes, not characters: 'é' is two.
    let longest = "\u{e9}".repeat(MAX_RECORD_NAME_BYTES / 2);
    let long = format!("{longest}x");
    for k in [key(&longest, &longest, &longest), key("t", "p", &longest)] {
        store.put_record(&k, bytes("v")).await.unwrap();
        assert_eq!(
            get(store, &k).await,
            Some(bytes("v")),
            "{} bytes are fine",
            longest.len()
        );
    }
    assert_eq!(list_all(store, &longest, &longest).await.len(), 1);
    for k in [
        key(&long, "p", "k"),
        key("t", &long, "k"),
        key("t", "p", &long),
    ] {
        assert!(is_invalid(&store.put_record(&k, bytes("v")).await));
        assert!(is_invalid(&store.insert_record(&k, bytes("v")).await));
        assert!(is_invalid(&store.get_record(&k).await));
        assert!(is_invalid(&store.delete_record(&k).await));
    }
    assert!(is_invalid(&store.list_records(&long, "p", None, 10).await));
    assert!(is_invalid(&store.list_records("t", &long, None, 10).await));
    assert_eq!(
        names(&list_all(store, "t", "p").await),
        vec![longest.as_str()],
        "nothing else written"
    );
}
