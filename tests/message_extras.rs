//! Edits and read receipts through the hub: who may edit what and until
//! when, every member's devices told once, history and extra sync showing
//! the change, each reader counted once, on memory and sled.

#[path = "common/revoke_world.rs"]
mod revoke_world;

use std::sync::Arc;
use std::time::Duration;

use imcore::extra::{EditOutcome, EditRefusal, EditRequest, SYNC_MESSAGE_EXTRA_CMD};
use imcore::store::{Page, Store};
use imcore::{
    Channel, DeviceFlag, Error, HubConfig, Limits, MemoryStore, MessageId, RevokeTarget,
    SendRequest, Setting, SledStore,
};
use revoke_world::{uid, world_with, World, T0};

fn stores() -> Vec<(&'static str, Arc<dyn Store>)> {
    vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("sled", Arc::new(SledStore::temporary().expect("sled"))),
    ]
}

fn edit(who: &str, id: MessageId, content: &str) -> EditRequest {
    EditRequest::new(uid(who), RevokeTarget::MessageId(id), content.to_string())
}

fn refusal(r: imcore::Result<EditOutcome>) -> EditRefusal {
    match r {
        Err(Error::EditRefused(why)) => why,
        other => panic!("expected an edit refusal, got {other:?}"),
    }
}

/// The `cmd` of each command payload delivered.
fn commands(conn: &mut imcore::session::InProcessConnection) -> Vec<serde_json::Value> {
    conn.drain()
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .filter(|v| v["cmd"].is_string())
        .collect()
}

async fn receipt_send(w: &World, from: &str, text: &str) -> MessageId {
    w.hub
        .send(
            SendRequest::new(uid(from), w.group.clone(), text.to_string())
                .setting(Setting(Setting::RECEIPT)),
        )
        .await
        .expect("send")
        .message_id
}

#[tokio::test]
async fn an_edit_is_recorded_then_told_to_every_device_once() {
    for (name, store) in stores() {
        let w = world_with(store, HubConfig::default(), None);
        let mut alice_web = w.connect("alice", "alice-web", DeviceFlag::Web);
        let mut bob_phone = w.connect("bob", "bob-phone", DeviceFlag::App);
        let id = w.say("alice", "helo").await;
        alice_web.drain();
        bob_phone.drain();
        w.clock.advance(Duration::from_secs(60));
        let outcome = w.hub.edit(edit("alice", id, "hello")).await.expect(name);
        let EditOutcome::Edited(extra) = &outcome else {
            panic!("{name}: edited now, got {outcome:?}")
        };
        assert_eq!(extra.extra_version, 1, "{name}");
        for conn in [&mut alice_web, &mut bob_phone] {
            let got = commands(conn);
            assert_eq!(got.len(), 1, "{name}: one command each: {got:?}");
            assert_eq!(got[0]["cmd"], SYNC_MESSAGE_EXTRA_CMD);
            assert_eq!(got[0]["param"]["message_id"], id.to_string());
            assert_eq!(got[0]["param"]["extra_version"], 1);
        }
        let again = w.hub.edit(edit("alice", id, "hello")).await.expect(name);
        assert!(matches!(again, EditOutcome::Unchanged(_)), "{name}");
        assert!(commands(&mut bob_phone).is_empty(), "{name}: told once");

        let page = w
            .hub
            .sync_channel(&uid("bob"), &w.group, Page::latest(10))
            .await
            .expect("sync");
        let h = page
            .iter()
            .find(|h| h.message_id == id)
            .expect("in history");
        assert_eq!(&h.payload[..], b"helo", "{name}: the original is kept");
        let e = h
            .extra
            .as_ref()
            .and_then(|x| x.edit.as_ref())
            .expect("edit");
        assert_eq!(&e.content[..], b"hello", "{name}");
        assert_eq!(e.edited_at_ms, T0 + 60_000, "{name}: the hub's clock");
        let views = w
            .hub
            .sync_extras(&uid("bob"), &w.group, 0, 100)
            .await
            .expect("extras");
        assert_eq!(views.len(), 1, "{name}");
        assert_eq!(views[0].message_id, id);
        assert_eq!(views[0].extra_version, 1);
        assert_eq!(
            views[0].edit.as_ref().map(|e| &e.content[..]),
            Some(&b"hello"[..])
        );
        assert!(w
            .hub
            .sync_extras(&uid("bob"), &w.group, 1, 100)
            .await
            .expect("extras")
            .is_empty());
    }
}

#[tokio::test]
async fn edits_are_refused_with_a_reason_and_change_nothing() {
    let config = HubConfig::default()
        .edit_window(Some(Duration::from_secs(600)))
        .limits(Limits::default().max_payload(64));
    for (name, store) in stores() {
        let w = world_with(store, config.clone(), None);
        let id = w.say("alice", "mine").await;
        assert_eq!(
            refusal(w.hub.edit(edit("bob", id, "hers")).await),
            EditRefusal::NotPermitted,
            "{name}: only the sender"
        );
        assert_eq!(
            refusal(w.hub.edit(edit("owner", id, "x")).await),
            EditRefusal::NotPermitted,
            "{name}: by default not even the owner"
        );
        let empty = w.hub.edit(edit("alice", id, "")).await;
        assert!(
            matches!(empty, Err(Error::Validation(_))),
            "{name}: {empty:?}"
        );
        let big = w.hub.edit(edit("alice", id, &"x".repeat(65))).await;
        assert!(matches!(big, Err(Error::Validation(_))), "{name}: {big:?}");
        let unknown = w.hub.edit(edit("alice", MessageId(42), "x")).await;
        assert!(matches!(unknown, Err(Error::NotFound { .. })), "{name}");
        assert_eq!(
            refusal(w.hub.edit(edit("alice", MessageId(0), "x")).await),
            EditRefusal::NotEditable
        );

        let late = w.say("alice", "late").await;
        w.clock.advance(Duration::from_secs(601));
        let why = refusal(w.hub.edit(edit("alice", late, "too late")).await);
        assert!(
            matches!(
                why,
                EditRefusal::WindowExpired {
                    window_ms: 600_000,
                    ..
                }
            ),
            "{name}: {why:?}"
        );
        assert_eq!(why.code(), "window_expired");

        let revoked = w.say("alice", "gone").await;
        w.revoke("alice", revoked).await.expect("revoke");
        assert_eq!(
            refusal(w.hub.edit(edit("alice", revoked, "back")).await),
            EditRefusal::Revoked,
            "{name}"
        );
        let views = w
            .hub
            .sync_extras(&uid("alice"), &w.group, 0, 100)
            .await
            .expect("extras");
        assert!(
            views.iter().all(|v| v.edit.is_none()),
            "{name}: nothing was edited: {views:?}"
        );
    }
}

#[tokio::test]
async fn a_read_counts_each_reader_once_and_tells_the_sender() {
    for (name, store) in stores() {
        let w = world_with(store, HubConfig::default(), None);
        let mut alice_phone = w.connect("alice", "alice-phone", DeviceFlag::App);
        let mut bob_web = w.connect("bob", "bob-web", DeviceFlag::Web);
        let id = receipt_send(&w, "alice", "did you read this?").await;
        let plain = w.say("alice", "no receipt").await;
        alice_phone.drain();
        bob_web.drain();
        // The group: owner, manager, manager2, alice, bob; alice is not
        // her own audience.
        let out = w
            .hub
            .mark_read(&uid("bob"), &w.group, &[id, plain])
            .await
            .expect(name);
        assert_eq!(out.counted.len(), 1, "{name}: only the receipt message");
        let receipt = out.counted[0].receipt.expect("receipt");
        assert_eq!(
            (receipt.audience, receipt.readers, receipt.unread()),
            (4, 1, 3)
        );
        let told = commands(&mut alice_phone);
        assert_eq!(told.len(), 1, "{name}: the sender is told: {told:?}");
        assert_eq!(told[0]["cmd"], SYNC_MESSAGE_EXTRA_CMD);
        assert_eq!(
            commands(&mut bob_web).len(),
            1,
            "{name}: and the reader's devices"
        );

        let twice = w
            .hub
            .mark_read(&uid("bob"), &w.group, &[id])
            .await
            .expect(name);
        assert!(
            twice.counted.is_empty(),
            "{name}: reading twice counts once"
        );
        assert!(commands(&mut alice_phone).is_empty());
        let own = w
            .hub
            .mark_read(&uid("alice"), &w.group, &[id])
            .await
            .expect(name);
        assert!(own.counted.is_empty(), "{name}: the sender is not a reader");
        w.hub
            .mark_read(&uid("manager"), &w.group, &[id])
            .await
            .expect(name);

        let for_bob = w
            .hub
            .sync_extras(&uid("bob"), &w.group, 0, 100)
            .await
            .expect("extras");
        assert_eq!(for_bob.len(), 1, "{name}");
        assert_eq!(for_bob[0].receipt.map(|r| r.readers), Some(2));
        assert_eq!(for_bob[0].read_at_ms, Some(T0), "{name}: bob read it");
        let for_owner = w
            .hub
            .sync_extras(&uid("owner"), &w.group, 0, 100)
            .await
            .expect("extras");
        assert_eq!(for_owner[0].read_at_ms, None, "{name}: the owner did not");
        let page = w
            .hub
            .sync_channel(&uid("alice"), &w.group, Page::latest(10))
            .await
            .expect("sync");
        let h = page
            .iter()
            .find(|h| h.message_id == id)
            .expect("in history");
        let r = h.extra.as_ref().and_then(|x| x.receipt).expect("receipt");
        assert_eq!((r.readers, r.unread()), (2, 2), "{name}");

        let outsider = w.hub.mark_read(&uid("mallory"), &w.group, &[id]).await;
        assert!(
            matches!(outsider, Err(Error::Rejected { .. })),
            "{name}: not a member: {outsider:?}"
        );
        let elsewhere = Channel::group("elsewhere").unwrap();
        w.directory
            .create_channel(&elsewhere, &uid("carol"), [uid("bob")]);
        let wrong = w
            .hub
            .mark_read(&uid("bob"), &elsewhere, &[id])
            .await
            .expect(name);
        assert!(
            wrong.counted.is_empty(),
            "{name}: a message of another channel"
        );
    }
}
