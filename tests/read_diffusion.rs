//! Read diffusion: a history send writes the same number of keys whatever
//! the size of its channel, and members' views are derived at sync.

use std::sync::Arc;

use imcore::store::{Durability, SledStore};
use imcore::{Channel, Hub, MemoryDirectory, SendRequest, Uid};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// New keys written by one send from `alice` into a fresh group of
/// `members`, and by a second send.
async fn keys_per_send(members: usize) -> (u64, u64) {
    let store = Arc::new(
        SledStore::temporary_with(Durability::Background {
            flush_every_ms: 1000,
        })
        .unwrap(),
    );
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder()
        .store(store.clone())
        .directory(directory.clone())
        .build()
        .unwrap();
    let group = Channel::group(format!("g{members}")).unwrap();
    let others = (1..members).map(|i| uid(&format!("m{i}")));
    directory.create_channel(&group, &uid("alice"), others);
    let before = store.key_count().unwrap();
    hub.send(SendRequest::new(uid("alice"), group.clone(), "first"))
        .await
        .unwrap();
    let after_first = store.key_count().unwrap();
    hub.send(SendRequest::new(uid("alice"), group.clone(), "second"))
        .await
        .unwrap();
    let after_second = store.key_count().unwrap();
    // Every member still sees both messages, derived from the head.
    let view = hub.sync_conversations(&uid("m1"), 0, 10).await.unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(
        (view[0].conversation.last_seq, view[0].conversation.unread),
        (2, 2)
    );
    (after_first - before, after_second - after_first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_writes_the_same_keys_into_2_members_and_into_2000() {
    let small = keys_per_send(2).await;
    let large = keys_per_send(2_000).await;
    assert_eq!(
        small, large,
        "keys written by a send: 2 members {small:?}, 2,000 {large:?}"
    );
    // The record, its id index, its resend index, and the first time the
    // sender's read position and (a fresh store) the version reservation.
    assert_eq!(small, (5, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_see_the_group_from_the_next_message() {
    let directory = Arc::new(MemoryDirectory::new());
    let hub = Hub::builder().directory(directory.clone()).build().unwrap();
    let group = Channel::group("club").unwrap();
    directory.create_channel(&group, &uid("alice"), [uid("bob")]);
    hub.send(SendRequest::new(uid("alice"), group.clone(), "1"))
        .await
        .unwrap();
    let carol_seen = hub.sync_conversations(&uid("carol"), 0, 10).await.unwrap();
    assert!(carol_seen.is_empty(), "not a member yet");
    let bob_seen = hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    let bob_version = bob_seen[0].conversation.version;
    directory.add_members(&group, [uid("carol")]);
    directory.remove_members(&group, [uid("bob")]);
    hub.send(SendRequest::new(uid("alice"), group.clone(), "2"))
        .await
        .unwrap();
    let carol_seen = hub.sync_conversations(&uid("carol"), 0, 10).await.unwrap();
    assert_eq!(carol_seen.len(), 1);
    assert_eq!(carol_seen[0].conversation.last_seq, 2);
    let bob_after = hub
        .sync_conversations(&uid("bob"), bob_version, 10)
        .await
        .unwrap();
    assert!(
        bob_after.is_empty(),
        "a removed member stops seeing new messages"
    );
}
