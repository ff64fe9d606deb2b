//! Unread counts in conversations: cleared per conversation, a message
//! arriving after what was read, and stale clears that never bring unread
//! back (on memory and on sled).

#[path = "common/hub_world.rs"]
mod hub_world;

use std::sync::Arc;

use hub_world::{person, uid, world, world_on, World};
use imcore::{Channel, Flags, SendRequest, SledStore};

#[tokio::test]
async fn unread_is_cleared_per_conversation() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    for i in 0..3 {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    w.hub
        .send(
            SendRequest::new(uid("alice"), g.clone(), "quiet").flags(Flags {
                red_dot: false,
                ..Flags::default()
            }),
        )
        .await
        .unwrap();
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].conversation.unread, 3, "no red dot, no unread");
    assert_eq!(convs[0].conversation.last_seq, 4);
    let version = convs[0].conversation.version;
    assert!(w.hub.clear_unread(&uid("bob"), &g, u64::MAX).await.unwrap());
    let changed = w
        .hub
        .sync_conversations(&uid("bob"), version, 10)
        .await
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].conversation.unread, 0);
}

#[tokio::test]
async fn a_message_arriving_after_what_was_read_stays_unread() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    for text in ["one", "two"] {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), text))
            .await
            .unwrap();
    }
    // Bob's client shows seq 2 and says so; seq 3 lands in between.
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), "three"))
        .await
        .unwrap();
    assert!(w.hub.clear_unread(&uid("bob"), &g, 2).await.unwrap());
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(convs[0].conversation.unread, 1);
}

/// Bob's unread count in `channel`.
async fn unread(w: &World, channel: &Channel) -> u64 {
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    let view = convs
        .iter()
        .find(|c| &c.channel == channel)
        .expect("bob has the conversation");
    view.conversation.unread
}

async fn a_stale_clear_never_raises_unread_again_on(w: World) {
    let g = w.group("g", "alice", &["bob"]);
    let to_bob = person("bob");
    let as_bob_sees_it = person("alice");
    for (channel, seen) in [(&g, &g), (&to_bob, &as_bob_sees_it)] {
        for i in 0..4 {
            w.hub
                .send(SendRequest::new(
                    uid("alice"),
                    channel.clone(),
                    format!("m{i}"),
                ))
                .await
                .unwrap();
        }
        assert_eq!(unread(&w, seen).await, 4);
        // Bob reads everything (up to seq 4, or "all")...
        for read_up_to in [4, u64::MAX] {
            assert!(w
                .hub
                .clear_unread(&uid("bob"), seen, read_up_to)
                .await
                .unwrap());
            assert_eq!(unread(&w, seen).await, 0);
            // ...then an older clear arrives late (another device, a retry):
            // it must not bring back what was read.
            assert!(w.hub.clear_unread(&uid("bob"), seen, 2).await.unwrap());
            assert_eq!(unread(&w, seen).await, 0, "stale clear after {read_up_to}");
            assert!(w.hub.clear_unread(&uid("bob"), seen, 0).await.unwrap());
            assert_eq!(unread(&w, seen).await, 0, "clear to 0 after {read_up_to}");
        }
        // A new message counts from there: one unread, not the old ones.
        w.hub
            .send(SendRequest::new(uid("alice"), channel.clone(), "m4"))
            .await
            .unwrap();
        assert_eq!(unread(&w, seen).await, 1);
        assert!(w.hub.clear_unread(&uid("bob"), seen, 3).await.unwrap());
        assert_eq!(
            unread(&w, seen).await,
            1,
            "a stale clear leaves the new one"
        );
    }
}

#[tokio::test]
async fn a_stale_clear_never_raises_unread_again() {
    a_stale_clear_never_raises_unread_again_on(world()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_clear_never_raises_unread_again_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    a_stale_clear_never_raises_unread_again_on(world_on(Arc::new(
        SledStore::open(dir.path()).unwrap(),
    )))
    .await;
}
