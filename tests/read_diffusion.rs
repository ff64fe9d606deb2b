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
            flush_every: std::time::Duration::from_millis(1000),
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
    // The record, its id index, its resend index, the channel under its
    // head's version (which replaces the entry under the previous head's),
    // and on a fresh store the version reservation. (The sender's read
    // position is the record's until someone else sends.)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_own_messages_stay_read_across_turns_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (uid("alice"), uid("bob"));
    let to_bob = Channel::new(bob.clone().into(), imcore::ChannelType::PERSON);
    let to_alice = Channel::new(alice.clone().into(), imcore::ChannelType::PERSON);
    let unread = |hub: Hub, who: Uid| async move {
        let list = hub.sync_conversations(&who, 0, 10).await.unwrap();
        list[0].conversation.unread
    };
    {
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let hub = Hub::builder().store(store).build().unwrap();
        for text in ["1", "2"] {
            hub.send(SendRequest::new(alice.clone(), to_bob.clone(), text))
                .await
                .unwrap();
        }
        assert_eq!(unread(hub.clone(), alice.clone()).await, 0);
        assert_eq!(unread(hub.clone(), bob.clone()).await, 2);
        // Bob answers: he has read up to his answer, and alice's position
        // stays at her last message.
        hub.send(SendRequest::new(bob.clone(), to_alice.clone(), "3"))
            .await
            .unwrap();
        assert_eq!(unread(hub.clone(), bob.clone()).await, 0);
        assert_eq!(unread(hub.clone(), alice.clone()).await, 1);
        hub.send(SendRequest::new(bob.clone(), to_alice.clone(), "4"))
            .await
            .unwrap();
    }
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let hub = Hub::builder().store(store).build().unwrap();
    assert_eq!(unread(hub.clone(), alice.clone()).await, 2);
    assert_eq!(unread(hub.clone(), bob.clone()).await, 0);
    // A stale clear by the head's sender changes nothing.
    assert!(hub.clear_unread(&bob, &to_alice, 1).await.unwrap());
    assert_eq!(unread(hub.clone(), bob.clone()).await, 0);
}

/// A deleted conversation leaves the user's list with nothing unread, and
/// comes back with the next message; the other party's list and the
/// history are untouched.
#[tokio::test]
async fn a_deleted_conversation_returns_with_the_next_message() {
    let hub = Hub::builder().build().unwrap();
    let to_bob = Channel::new(uid("bob").into(), imcore::ChannelType::PERSON);
    let to_alice = Channel::new(uid("alice").into(), imcore::ChannelType::PERSON);
    for text in ["one", "two"] {
        hub.send(SendRequest::new(uid("alice"), to_bob.clone(), text))
            .await
            .unwrap();
    }
    let listed = |views: &[imcore::ConversationView]| {
        views
            .iter()
            .map(|v| (v.conversation.last_seq, v.conversation.unread))
            .collect::<Vec<_>>()
    };
    let bob = hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(listed(&bob), [(2, 2)]);

    assert!(hub
        .delete_conversation(&uid("bob"), &to_alice)
        .await
        .unwrap());
    assert!(hub
        .sync_conversations(&uid("bob"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    let alice = hub.sync_conversations(&uid("alice"), 0, 10).await.unwrap();
    assert_eq!(listed(&alice), [(2, 0)], "the other party keeps it");
    let never = Channel::new(uid("carol").into(), imcore::ChannelType::PERSON);
    assert!(!hub.delete_conversation(&uid("bob"), &never).await.unwrap());

    hub.send(SendRequest::new(uid("alice"), to_bob.clone(), "three"))
        .await
        .unwrap();
    let bob = hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(
        listed(&bob),
        [(3, 1)],
        "back, with only the new message unread"
    );
    let history = hub
        .sync_channel(&uid("bob"), &to_alice, imcore::store::Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(history.len(), 3, "the history stays");
}
