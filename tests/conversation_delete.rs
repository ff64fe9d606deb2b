//! Deleting a conversation reaches the user's other devices: online ones
//! get a `conversationDeleted` command at once, and any device catches up
//! by an incremental conversation sync, which lists the delete — also when
//! the conversation had nothing unread. On memory, sled and PostgreSQL.

#[path = "common/hub_world.rs"]
mod hub_world;
#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;

use hub_world::{payloads, person, uid, world_on};
use imcore::store::{PgConfig, PgStore, Store};
use imcore::{ConversationView, MemoryStore, SendRequest, SledStore};
use serde_json::Value;

/// The highest version in `views` (or `since` when there are none).
fn newest(views: &[ConversationView], since: u64) -> u64 {
    views
        .iter()
        .map(|v| v.conversation.version)
        .max()
        .unwrap_or(since)
}

async fn a_delete_reaches_the_other_devices(store: Arc<dyn Store>) {
    let w = world_on(store);
    let hub = &w.hub;
    let (_, mut phone) = w.phone("bob");
    let (_, mut web) = w.web("bob");
    let (_, mut alice) = w.phone("alice");
    for text in ["one", "two"] {
        hub.send(SendRequest::new(uid("alice"), person("bob"), text))
            .await
            .unwrap();
    }
    // The web device lists the conversation, then bob reads it on his
    // phone, and the web device syncs that too: nothing is unread.
    let listed = hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let seen = newest(&listed, 0);
    assert!(hub
        .clear_unread(&uid("bob"), &person("alice"), u64::MAX)
        .await
        .unwrap());
    let read = hub.sync_conversations(&uid("bob"), seen, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].conversation.unread, 0);
    assert!(!read[0].deleted);
    let seen = newest(&read, seen);
    let _ = (phone.drain(), web.drain(), alice.drain());

    assert!(hub
        .delete_conversation(&uid("bob"), &person("alice"))
        .await
        .unwrap());

    // Live: each of bob's devices gets one command; alice gets nothing.
    for device in [&mut phone, &mut web] {
        let told = payloads(device);
        assert_eq!(told.len(), 1, "{told:?}");
        let command: Value = serde_json::from_str(&told[0]).unwrap();
        assert_eq!(command["type"], 99);
        assert_eq!(command["cmd"], "conversationDeleted");
        assert_eq!(command["param"]["channel_id"], "alice", "as bob calls it");
        assert_eq!(command["param"]["channel_type"], 1);
        assert_eq!(command["param"]["message_seq"], 2);
    }
    assert!(alice.drain().is_empty(), "the other party is not told");

    // Catching up: an incremental sync lists the delete, a full one leaves
    // the conversation out.
    let after = hub.sync_conversations(&uid("bob"), seen, 10).await.unwrap();
    assert_eq!(after.len(), 1, "the delete is a change: {after:?}");
    let gone = &after[0];
    assert!(gone.deleted);
    assert_eq!(gone.channel, person("alice"));
    assert_eq!(gone.conversation.last_seq, 2);
    assert!(gone.last_message.is_none());
    assert!(hub
        .sync_conversations(&uid("bob"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    let seen = newest(&after, seen);

    // A second delete of the same conversation tells nobody again.
    assert!(hub
        .delete_conversation(&uid("bob"), &person("alice"))
        .await
        .unwrap());
    assert!(phone.drain().is_empty() && web.drain().is_empty());

    // The next message brings it back, everywhere.
    hub.send(SendRequest::new(uid("alice"), person("bob"), "three"))
        .await
        .unwrap();
    let back = hub.sync_conversations(&uid("bob"), seen, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert!(!back[0].deleted);
    assert_eq!(back[0].conversation.unread, 1);
    assert_eq!(back[0].conversation.last_seq, 3);
}

#[tokio::test]
async fn on_memory() {
    a_delete_reaches_the_other_devices(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled() {
    a_delete_reaches_the_other_devices(Arc::new(SledStore::temporary().unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    let Some(server) = servers::PgServer::start("conversation_delete::on_postgres") else {
        return;
    };
    let url = server.create_database("deletes").await;
    let store = PgStore::open(PgConfig::new(url)).await.expect("open");
    a_delete_reaches_the_other_devices(Arc::new(store)).await;
}
