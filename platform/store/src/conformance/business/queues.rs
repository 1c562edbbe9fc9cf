//! Queues: seqs, all-or-nothing appends, reads after a seq, removals, isolation, name limits,
//! long queues and concurrent appends.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::business::MAX_QUEUE_NAME_BYTES;

pub async fn append_assigns_strictly_increasing_seqs(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let first = append_values(store, "outbox/1", &["a", "b", "c"]).await;
    assert!(
        first[0] >= 1,
        "seqs start above 0 (reads take `seq > after`)"
    );
    assert!(
        strictly_increasing(&first),
        "in the order of items: {first:?}"
    );
    let second = append_values(store, "outbox/1", &["d", "e"]).await;
    assert!(
        strictly_increasing(&[&first[..], &second[..]].concat()),
        "across calls"
    );
    let read = read_all(store, "outbox/1").await;
    assert_eq!(seqs(&read), [&first[..], &second[..]].concat());
    assert_eq!(values(&read), vec!["a", "b", "c", "d", "e"], "oldest first");
    assert!(
        store
            .append("outbox/1", Vec::new(), T0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(read_all(store, "outbox/1").await.len(), 5);

    // Values come back byte for byte.
    let binary = Bytes::from((0..=255u8).collect::<Vec<u8>>());
    let large = Bytes::from(vec![0x5a; 64 * 1024]);
    let items = [Bytes::new(), binary, large]
        .into_iter()
        .map(|value| QueueItem {
            value,
            unique: None,
        })
        .collect::<Vec<_>>();
    let outcomes = store.append("bytes", items.clone(), T0).await.unwrap();
    let read = read_all(store, "bytes").await;
    assert_eq!(seqs(&read), new_seqs(&outcomes));
    for (got, sent) in read.iter().zip(&items) {
        assert_eq!(got.value, sent.value);
    }
}

pub async fn append_is_all_or_nothing(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let too_long = "k".repeat(MAX_QUEUE_NAME_BYTES + 1);
    let refused = store
        .append(
            "q",
            vec![
                unique_item("fine", "ok", T0 + HOUR),
                item("plain"),
                unique_item("refused", &too_long, T0 + HOUR),
            ],
            T0,
        )
        .await;
    assert!(is_invalid(&refused), "an over-long unique key: {refused:?}");
    assert!(
        read_all(store, "q").await.is_empty(),
        "nothing of a refused call is appended"
    );
    let outcomes = store
        .append("q", vec![unique_item("fine", "ok", T0 + HOUR)], T0)
        .await
        .unwrap();
    assert!(
        matches!(outcomes[..], [Appended::New(_)]),
        "the refused call recorded no unique key: {outcomes:?}"
    );
    assert_eq!(values(&read_all(store, "q").await), vec!["fine"]);
}

pub async fn seqs_are_not_reused_after_the_queue_empties(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let mut last = 0;
    for round in 0..3 {
        let seqs = append_values(store, "webhooks/app", &["a", "b", "c"]).await;
        assert!(seqs[0] > last, "round {round}: {seqs:?} after {last}");
        last = *seqs.last().expect("three seqs");
        store.remove("webhooks/app", &seqs).await.unwrap();
        assert!(read_all(store, "webhooks/app").await.is_empty(), "emptied");
    }
}

pub async fn read_queue_pages_after_and_limit(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let values: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let all = append_values(store, "q", &refs).await;
    let page = store.read_queue("q", 0, 3).await.unwrap();
    assert_eq!(seqs(&page), all[..3]);
    let page = store.read_queue("q", all[2], 3).await.unwrap();
    assert_eq!(seqs(&page), all[3..6], "after the last seq read");
    assert_eq!(super::values(&page), vec!["m3", "m4", "m5"]);
    let page = store.read_queue("q", all[8], 5).await.unwrap();
    assert_eq!(seqs(&page), all[9..], "fewer than the limit at the end");
    assert!(store.read_queue("q", all[9], 5).await.unwrap().is_empty());
    assert!(store.read_queue("q", 0, 0).await.unwrap().is_empty());
    assert!(store.read_queue("q", u64::MAX, 5).await.unwrap().is_empty());
    store.remove("q", &all[3..5]).await.unwrap();
    let page = store.read_queue("q", all[2], 2).await.unwrap();
    assert_eq!(seqs(&page), all[5..7], "after a removed range");
    assert!(store.read_queue("empty", 0, 10).await.unwrap().is_empty());
}

pub async fn removed_items_are_gone_and_the_rest_stays(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let s = append_values(store, "q", &["1", "2", "3", "4", "5", "6"]).await;
    let unknown = s[5] + 1_000_000;
    store
        .remove("q", &[s[3], s[1], s[3], unknown, 0])
        .await
        .unwrap();
    let read = read_all(store, "q").await;
    assert_eq!(
        seqs(&read),
        vec![s[0], s[2], s[4], s[5]],
        "out of order, repeats, unknown seqs"
    );
    assert_eq!(values(&read), vec!["1", "3", "5", "6"]);
    store
        .remove("q", &[s[1]])
        .await
        .expect("removing again is Ok");
    store.remove("q", &[]).await.unwrap();
    store
        .remove("nobody", &[1, 2])
        .await
        .expect("an unknown queue is Ok");
    let later = append_values(store, "q", &["7"]).await;
    assert!(later[0] > s[5] && later[0] != unknown);
    assert_eq!(
        values(&read_all(store, "q").await),
        vec!["1", "3", "5", "6", "7"]
    );
    store
        .remove("q", &[s[0], s[2], s[4], s[5], later[0]])
        .await
        .unwrap();
    assert!(read_all(store, "q").await.is_empty());
}

pub async fn queues_are_isolated(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let queues = ["a", "ab", "a/b", "a\0b", "", "webhooks/a"];
    for queue in queues {
        let outcomes = store
            .append(
                queue,
                vec![unique_item(queue, "k", T0 + HOUR), item("plain")],
                T0,
            )
            .await
            .unwrap();
        assert_eq!(
            new_seqs(&outcomes).len(),
            2,
            "{queue:?}: a unique key per queue"
        );
    }
    for queue in queues {
        assert_eq!(
            values(&read_all(store, queue).await),
            vec![queue, "plain"],
            "{queue:?}"
        );
    }
    let a = seqs(&read_all(store, "a").await);
    store.remove("a", &a).await.unwrap();
    assert!(read_all(store, "a").await.is_empty());
    for queue in &queues[1..] {
        assert_eq!(
            read_all(store, queue).await.len(),
            2,
            "{queue:?} keeps its items"
        );
    }
}

pub async fn queue_names_over_the_limit_are_invalid(store: Arc<dyn BusinessStore>) {
    let store = &*store;
    let longest = "\u{e9}".repeat(MAX_QUEUE_NAME_BYTES / 2);
    let long = format!("{longest}x");
    let seqs = new_seqs(
        &store
            .append(&longest, vec![unique_item("v", &longest, T0 + HOUR)], T0)
            .await
            .unwrap(),
    );
    assert_eq!(
        super::seqs(&read_all(store, &longest).await),
        seqs,
        "512 bytes are fine"
    );
    store.remove(&longest, &seqs).await.unwrap();
    assert!(is_invalid(&store.append(&long, vec![item("v")], T0).await));
    assert!(is_invalid(&store.append(&long, Vec::new(), T0).await));
    assert!(is_invalid(&store.read_queue(&long, 0, 10).await));
    assert!(is_invalid(&store.remove(&long, &[1]).await));
    let unique = store
        .append("q", vec![unique_item("v", &long, T0 + HOUR)], T0)
        .await;
    assert!(is_invalid(&unique), "an over-long unique key");
    assert!(read_all(store, "q").await.is_empty());
}

/// Thousands of items, most removed: what stays is read whole, in order, from any seq.
pub async fn long_queues_are_read_whole(store: Arc<dyn BusinessStore>) {
    const CALLS: usize = 10;
    const EACH: usize = 250;
    let store = &*store;
    let mut all = Vec::new();
    for call in 0..CALLS {
        let values: Vec<String> = (0..EACH).map(|i| format!("{call}:{i}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        all.extend(append_values(store, "dead/app", &refs).await);
    }
    assert!(strictly_increasing(&all));
    let (removed, kept) = all.split_at(2000);
    store.remove("dead/app", removed).await.unwrap();
    let read = read_all(store, "dead/app").await;
    assert_eq!(seqs(&read), kept);
    assert_eq!(
        read[0].value,
        bytes(&format!("{}:{}", 2000 / EACH, 2000 % EACH))
    );
    let page = store.read_queue("dead/app", kept[199], 100).await.unwrap();
    assert_eq!(seqs(&page), kept[200..300]);
    let next = append_values(store, "dead/app", &["after"]).await;
    assert!(next[0] > all[all.len() - 1]);
}

pub async fn concurrent_appends_get_distinct_increasing_seqs(store: Arc<dyn BusinessStore>) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 10;
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..PER_TASK {
                    let values = [format!("{task}:{i}:a"), format!("{task}:{i}:b")];
                    let refs = [values[0].as_str(), values[1].as_str()];
                    seqs.extend(append_values(&*store, "outbox/busy", &refs).await);
                }
                seqs
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        let seqs = task.await.expect("task");
        assert!(
            strictly_increasing(&seqs),
            "one task's seqs increase: {seqs:?}"
        );
        all.extend(seqs);
    }
    assert_eq!(all.len(), TASKS * PER_TASK * 2, "distinct seqs");
    let read = read_all(&*store, "outbox/busy").await;
    assert_eq!(seqs(&read), all.into_iter().collect::<Vec<_>>());
    for task in 0..TASKS {
        let mine: Vec<String> = values(&read)
            .into_iter()
            .filter(|v| v.starts_with(&format!("{task}:")))
            .collect();
        let sent: Vec<String> = (0..PER_TASK)
            .flat_map(|i| [format!("{task}:{i}:a"), format!("{task}:{i}:b")])
            .collect();
        assert_eq!(mine, sent, "each task's items stay in order");
    }
}
