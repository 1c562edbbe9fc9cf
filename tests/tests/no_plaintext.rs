//! The server never sees plaintext: after a conversation, no message text appears anywhere in
//! the server's data directory, while the message ids that travel next to each ciphertext do
//! (proving the scan reads the records that hold the ciphertexts).

use std::path::Path;

use courier_tests::{TestServer, messages, unique_phone};

/// The files under `dir`; a directory that vanishes while it is listed (the storage engine's
/// background work) is skipped, and [`read_all`] scans again.
fn files_under(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[tokio::test]
async fn no_plaintext_reaches_the_servers_storage() {
    let mut server = TestServer::start().await;
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, mut alice_events) = alice.connect().await.unwrap();
    let (bob_chat, mut bob_events) = bob.connect().await.unwrap();

    let mut texts = Vec::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        let to_bob = format!("secret-for-bob-{i}-{}", uuid::Uuid::new_v4());
        let to_alice = format!("secret-for-alice-{i}-{}", uuid::Uuid::new_v4());
        ids.push(
            alice_chat
                .send_text(bob.user_id(), &to_bob)
                .await
                .unwrap()
                .id,
        );
        ids.push(
            bob_chat
                .send_text(alice.user_id(), &to_alice)
                .await
                .unwrap()
                .id,
        );
        texts.push(to_bob);
        texts.push(to_alice);
    }
    messages(&mut bob_events, 10).await;
    messages(&mut alice_events, 10).await;

    // A few more stay queued (Bob offline), so ciphertext is at rest, not only in flight.
    bob_chat.close().await;
    for i in 0..5 {
        let text = format!("queued-secret-{i}-{}", uuid::Uuid::new_v4());
        ids.push(alice_chat.send_text(bob.user_id(), &text).await.unwrap().id);
        texts.push(text);
    }
    alice_chat.close().await;
    server.stop().await;

    let bytes = read_all(server.dir.path());
    assert!(!bytes.is_empty(), "the data directory holds the store");
    // The markers and ids are ASCII, so a lossy UTF-8 view keeps every occurrence intact.
    let all = String::from_utf8_lossy(&bytes);
    for id in &ids {
        assert!(
            all.contains(id.as_str()),
            "control: message id {id} is stored in the clear next to its ciphertext, so the \
             scan must find it"
        );
    }
    for text in &texts {
        assert!(
            !all.contains(text.as_str()),
            "plaintext {text:?} found in the server's data directory"
        );
    }
}

/// Every byte of every file under `dir`. The storage engine's background work may still replace
/// a file (compaction) right after the stop; a scan that meets a vanished file starts again.
fn read_all(dir: &std::path::Path) -> Vec<u8> {
    'scan: for _ in 0..20 {
        let mut files = Vec::new();
        files_under(dir, &mut files);
        let mut bytes = Vec::new();
        for file in &files {
            match std::fs::read(file) {
                Ok(content) => bytes.extend(content),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue 'scan;
                }
                Err(error) => panic!("cannot read {}: {error}", file.display()),
            }
        }
        return bytes;
    }
    panic!("the data directory kept changing");
}
