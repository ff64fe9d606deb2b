//! Commands (`sync_once`) through the hub: delivered live, absent from
//! history and conversations, queued for every recipient until a master
//! device acknowledges them, and synced once by the offline; explicit
//! recipient lists for server commands.

#[path = "common/hub_world.rs"]
mod hub_world;

use hub_world::{no, person, uid, world, World};
use imcore::store::Page;
use imcore::{Error, Flags, MessageId, Persistence, SendRequest};

// ---- the scenario of the article the product comes from: an API-sent
// message that clients saw live but not in history ----

#[tokio::test]
async fn server_send_with_sync_once_is_a_command_delivered_once() {
    let mut w = world();
    let g = w.group("g", "system", &["alice", "bob"]);
    let (alice_conn_id, mut alice) = w.phone("alice");
    // bob is offline.
    let ack = w
        .hub
        .send(
            SendRequest::new(
                uid("system"),
                g.clone(),
                r#"{"type":1,"content":"invited"}"#,
            )
            .flags(Flags::command()),
        )
        .await
        .unwrap();
    assert_eq!(ack.persistence, Persistence::Command);
    assert_eq!(ack.message_seq, 0, "a command uses no channel seq");
    assert_ne!(ack.message_id, MessageId(0));

    // The online client got it.
    let got = alice.drain();
    assert_eq!(got.len(), 1);
    assert!(got[0].flags.sync_once);
    // Absent from history and from every conversation list.
    for reader in ["alice", "bob", "system"] {
        let history = w
            .hub
            .sync_channel(&uid(reader), &g, Page::forward(1, 100))
            .await
            .unwrap();
        assert!(history.is_empty(), "{reader} sees no history");
        assert!(w
            .hub
            .sync_conversations(&uid(reader), 0, 100)
            .await
            .unwrap()
            .is_empty());
    }
    assert_eq!(w.hub.store().last_seq(&g).await.unwrap(), 0);

    // The offline user gets it once, through command sync.
    let (bob_id, bob_msg) = w.pushes.recv().await.unwrap();
    assert_eq!(bob_msg, vec![uid("bob")], "only bob was offline");
    assert_eq!(bob_id.message_id, ack.message_id);
    let pending = w.hub.sync_commands(&uid("bob"), 0, 100).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message.message_id, ack.message_id);
    assert_eq!(
        w.hub
            .ack_commands(&uid("bob"), pending[0].cursor)
            .await
            .unwrap(),
        1
    );
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    // And never after: a new session delivers nothing old. A connect never
    // replays the queue, so an empty drain alone proves nothing: the queue
    // itself must be empty, as the store has it and as a new session's
    // command sync from the start sees it.
    assert!(w
        .hub
        .store()
        .pending_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    let (_, mut bob) = w.phone("bob");
    assert!(bob.drain().is_empty());
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 100)
        .await
        .unwrap()
        .is_empty());

    // Alice was online, and her command is queued all the same until her
    // master device acknowledges it.
    let queued = w.hub.sync_commands(&uid("alice"), 0, 100).await.unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|q| q.message.message_id)
            .collect::<Vec<_>>(),
        vec![ack.message_id]
    );
    // Her master device acknowledges live: consumed for her too.
    assert!(w
        .hub
        .ack(&uid("alice"), alice_conn_id, ack.message_id, 0)
        .await
        .unwrap());
    assert!(w
        .hub
        .store()
        .pending_commands(&uid("alice"), 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(w
        .hub
        .sync_commands(&uid("alice"), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

/// The ids of `who`'s pending commands, through the hub and straight from
/// the store, which must agree.
async fn queued_ids(w: &World, who: &str) -> Vec<MessageId> {
    let via_hub: Vec<_> = w
        .hub
        .sync_commands(&uid(who), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.message.message_id)
        .collect();
    let in_store: Vec<_> = w
        .hub
        .store()
        .pending_commands(&uid(who), 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.message.message_id)
        .collect();
    assert_eq!(via_hub, in_store);
    via_hub
}

#[tokio::test]
async fn a_live_ack_consumes_the_acknowledged_command_and_no_other() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (phone_id, mut phone) = w.phone("bob");
    let mut sent = Vec::new();
    for (i, name) in ["first", "second", "third"].into_iter().enumerate() {
        let ack = w
            .hub
            .send(
                SendRequest::new(uid("alice"), g.clone(), name)
                    .flags(Flags::command())
                    .client_msg_no(no(&format!("cmd-{i}"))),
            )
            .await
            .unwrap();
        sent.push(ack.message_id);
    }
    assert_eq!(
        phone
            .drain()
            .iter()
            .map(|m| m.message_id)
            .collect::<Vec<_>>(),
        sent
    );
    assert_eq!(queued_ids(&w, "bob").await, sent, "queued while online");

    // Acknowledging the middle one consumes it alone.
    assert!(w.hub.ack(&uid("bob"), phone_id, sent[1], 0).await.unwrap());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);
    // Again: nothing left to consume, nothing else consumed.
    assert!(!w.hub.ack(&uid("bob"), phone_id, sent[1], 0).await.unwrap());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);

    // Bob reconnects on a new session: nothing old arrives, and what he
    // did not acknowledge is still there for his command sync.
    assert!(w.hub.disconnect(&uid("bob"), phone_id));
    let (phone_id, mut phone) = w.phone("bob");
    assert!(phone.drain().is_empty());
    assert_eq!(queued_ids(&w, "bob").await, vec![sent[0], sent[2]]);
    for id in [sent[0], sent[2]] {
        assert!(w.hub.ack(&uid("bob"), phone_id, id, 0).await.unwrap());
    }
    assert!(queued_ids(&w, "bob").await.is_empty());
    // The sender had none queued at any point.
    assert!(queued_ids(&w, "alice").await.is_empty());
}

#[tokio::test]
async fn only_a_master_acknowledgement_consumes_a_command() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (phone_id, mut phone) = w.phone("bob");
    let (web_id, mut web) = w.web("bob");
    let ack = w
        .hub
        .send(SendRequest::new(uid("alice"), g.clone(), "cmd").flags(Flags::command()))
        .await
        .unwrap();
    assert_eq!(phone.drain().len(), 1);
    assert_eq!(web.drain().len(), 1);
    assert!(!w
        .hub
        .ack(&uid("bob"), web_id, ack.message_id, 0)
        .await
        .unwrap());
    assert_eq!(
        w.hub.sync_commands(&uid("bob"), 0, 10).await.unwrap().len(),
        1
    );
    // A history ack (seq != 0) consumes nothing either.
    assert!(!w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 5)
        .await
        .unwrap());
    assert!(w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 0)
        .await
        .unwrap());
    assert!(w
        .hub
        .sync_commands(&uid("bob"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(!w
        .hub
        .ack(&uid("bob"), phone_id, ack.message_id, 0)
        .await
        .unwrap());
}

#[tokio::test]
async fn explicit_subscriber_lists_are_for_server_commands_only() {
    let w = world();
    let (_, mut bob) = w.phone("bob");
    let (alice_id, _) = w.phone("alice");
    let ack = w
        .hub
        .send(SendRequest::command_to(
            uid("server"),
            vec![uid("bob"), uid("carol"), uid("bob")],
            r#"{"type":99,"cmd":"refresh","param":{}}"#,
        ))
        .await
        .unwrap();
    let got = bob.drain();
    assert_eq!(got.len(), 1, "named twice, delivered once");
    assert_eq!(got[0].channel.as_seen_by(&uid("bob")), person("server"));
    assert_eq!(
        w.hub.sync_commands(&uid("carol"), 0, 10).await.unwrap()[0]
            .message
            .message_id,
        ack.message_id
    );
    // Not for history, and not from a device.
    let history =
        SendRequest::command_to(uid("server"), vec![uid("bob")], "x").flags(Flags::normal());
    assert!(matches!(
        w.hub.send(history).await,
        Err(Error::Validation(_))
    ));
    let from_device =
        SendRequest::command_to(uid("alice"), vec![uid("bob")], "x").from_connection(alice_id);
    assert!(matches!(
        w.hub.send(from_device).await,
        Err(Error::Validation(_))
    ));
    assert!(bob.drain().is_empty());
}

#[tokio::test]
async fn a_server_side_sender_does_not_queue_its_own_commands() {
    let w = world();
    let g = w.group("g", "system", &["alice"]);
    for i in 0..3 {
        w.hub
            .send(
                SendRequest::new(uid("system"), g.clone(), format!("c{i}")).flags(Flags::command()),
            )
            .await
            .unwrap();
    }
    assert!(w
        .hub
        .sync_commands(&uid("system"), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        w.hub
            .sync_commands(&uid("alice"), 0, 10)
            .await
            .unwrap()
            .len(),
        3
    );
}
