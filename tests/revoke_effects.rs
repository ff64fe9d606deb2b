//! What a revocation does: a durable record first, then one command to every
//! device (one record and one command under concurrent revokes); history and
//! the conversation's last message marked and stripped; the tip message; and
//! incremental revocation sync across a reopened sled store.

#[path = "common/revoke_world.rs"]
mod revoke_world;

use std::sync::Arc;

use imcore::store::Page;
use imcore::{
    ClientMsgNo, DeviceFlag, Error, HubConfig, MemoryStore, RevokeOutcome, RevokeRequest,
    SendRequest, SledStore,
};
use revoke_world::{uid, world, world_with, T0};

#[tokio::test]
async fn record_then_tell_every_device_once() {
    let w = world();
    let mut alice_phone = w.connect("alice", "alice-phone", DeviceFlag::App);
    let mut alice_web = w.connect("alice", "alice-web", DeviceFlag::Web);
    let mut bob_phone = w.connect("bob", "bob-phone", DeviceFlag::App);
    let sent = w
        .hub
        .send(
            SendRequest::new(uid("alice"), w.group.clone(), "oops")
                .client_msg_no(ClientMsgNo::new("c-oops").unwrap()),
        )
        .await
        .unwrap();
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        conn.drain();
    }
    let outcome = w.revoke("alice", sent.message_id).await.unwrap();
    let RevokeOutcome::Revoked(record) = &outcome else {
        panic!("revoked now")
    };
    assert_eq!(record.extra_version, 1);
    assert_eq!(record.message_seq, sent.message_seq);
    assert_eq!(record.revoked_at_ms, T0);
    // The record was durable before anyone was told: it is there now.
    assert_eq!(
        w.hub
            .store()
            .lookup_revocations(&[sent.message_id])
            .await
            .unwrap()[0]
            .as_ref(),
        Some(record)
    );
    // Every device of every member gets the command, the revoker's too.
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        let got = conn.drain();
        assert_eq!(got.len(), 1);
        let cmd = &got[0];
        assert!(cmd.flags.sync_once);
        assert_eq!(cmd.message_seq, 0);
        let v: serde_json::Value = serde_json::from_slice(&cmd.payload).unwrap();
        assert_eq!(v["type"], 99);
        assert_eq!(v["cmd"], "messageRevoke");
        assert_eq!(v["param"]["message_id"], sent.message_id.to_string());
        assert_eq!(v["param"]["client_msg_no"], "c-oops");
        assert_eq!(v["param"]["channel_id"], "g");
        assert_eq!(v["param"]["channel_type"], 2);
        assert_eq!(v["param"]["message_seq"], sent.message_seq);
        assert_eq!(v["param"]["revoker"], "alice");
        assert_eq!(v["param"]["extra_version"], 1);
    }
    // Offline members get it once, by command sync.
    let pending = w.hub.sync_commands(&uid("owner"), 0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    w.hub
        .ack_commands(&uid("owner"), pending[0].cursor)
        .await
        .unwrap();
    // A second revocation changes nothing and sends nothing.
    let again = w.revoke("owner", sent.message_id).await.unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyRevoked(record.clone()));
    for conn in [&mut alice_phone, &mut alice_web, &mut bob_phone] {
        assert!(conn.drain().is_empty());
    }
    assert!(w
        .hub
        .sync_commands(&uid("owner"), 0, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revocations_make_one_record_and_one_command() {
    let w = world();
    let mut bob = w.connect("bob", "bob-phone", DeviceFlag::App);
    let id = w.say("alice", "contested").await;
    bob.drain();
    let mut tasks = Vec::new();
    for who in [
        "alice", "owner", "manager", "alice", "owner", "manager", "alice", "owner",
    ] {
        let hub = w.hub.clone();
        tasks.push(tokio::spawn(async move {
            hub.revoke(RevokeRequest::by_id(uid(who), id))
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    let mut records = Vec::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        if matches!(outcome, RevokeOutcome::Revoked(_)) {
            fresh += 1;
        }
        records.push(outcome.revocation().clone());
    }
    assert_eq!(fresh, 1);
    assert!(
        records.windows(2).all(|p| p[0] == p[1]),
        "everyone sees the first record"
    );
    assert_eq!(bob.drain().len(), 1, "one command");
    assert_eq!(
        w.hub
            .sync_commands(&uid("owner"), 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn history_reads_mark_revoked_messages_and_strip_their_content() {
    let w = world();
    let ids = [
        w.say("alice", "keep").await,
        w.say("alice", "secret").await,
        w.say("bob", "also keep").await,
    ];
    w.revoke("alice", ids[1]).await.unwrap();
    let page = w
        .hub
        .sync_channel(&uid("bob"), &w.group, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    assert!(page[0].revoked.is_none());
    assert_eq!(page[0].payload.as_ref(), b"keep");
    let revoked = page[1].revoked.as_ref().expect("marked");
    assert_eq!(
        (revoked.revoker.as_str(), revoked.revoked_at_ms),
        ("alice", T0)
    );
    assert!(
        page[1].payload.is_empty(),
        "revoked content never leaves the crate"
    );
    assert_eq!(page[2].payload.as_ref(), b"also keep");

    // The host may keep payloads.
    let keep = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().strip_revoked_payload(false),
        None,
    );
    let id = keep.say("alice", "kept").await;
    keep.revoke("alice", id).await.unwrap();
    let page = keep
        .hub
        .sync_channel(&uid("bob"), &keep.group, Page::latest(1))
        .await
        .unwrap();
    assert!(page[0].revoked.is_some());
    assert_eq!(page[0].payload.as_ref(), b"kept");
}

#[tokio::test]
async fn revoking_the_last_message_shows_in_the_conversation() {
    let w = world();
    w.say("alice", "first").await;
    let last = w.say("alice", "last").await;
    w.revoke("alice", last).await.unwrap();
    let convs = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    let last_message = convs[0].last_message.as_ref().unwrap();
    assert_eq!(last_message.message_id, last);
    assert!(last_message.revoked.is_some());
    assert!(last_message.payload.is_empty());
}

#[tokio::test]
async fn the_tip_message_is_appended_when_configured() {
    let w = world_with(
        Arc::new(MemoryStore::new()),
        HubConfig::default().revoke_tip(true),
        None,
    );
    w.directory.set_display_name(&uid("alice"), "Alice");
    let id = w.say("alice", "oops").await;
    w.revoke("alice", id).await.unwrap();
    w.revoke("alice", id).await.unwrap();
    let page = w
        .hub
        .sync_channel(&uid("bob"), &w.group, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(page.len(), 2, "one tip, however often revoked");
    let tip: serde_json::Value = serde_json::from_slice(&page[1].payload).unwrap();
    assert_eq!(tip["type"], 1006);
    assert_eq!(tip["message_id"], id.to_string());
    assert_eq!(tip["content"], "{0}撤回了一条消息");
    assert_eq!(tip["extra"][0]["uid"], "alice");
    assert_eq!(tip["extra"][0]["name"], "Alice");
    let bob = w.hub.sync_conversations(&uid("bob"), 0, 10).await.unwrap();
    assert_eq!(bob[0].conversation.unread, 1, "the tip raises no unread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_revocation_sync_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let w = world_with(
            Arc::new(SledStore::open(dir.path()).unwrap()),
            HubConfig::default(),
            None,
        );
        for i in 0..5 {
            ids.push(w.say("alice", &format!("m{i}")).await);
        }
        for id in &ids[..3] {
            w.revoke("alice", *id).await.unwrap();
        }
    }
    let w = world_with(
        Arc::new(SledStore::open(dir.path()).unwrap()),
        HubConfig::default(),
        None,
    );
    let all = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.extra_version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let page = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 1, 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].message_id, ids[1]);
    w.revoke("alice", ids[4]).await.unwrap();
    let after = w
        .hub
        .sync_revocations(&uid("bob"), &w.group, 3, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!((after[0].extra_version, after[0].message_id), (4, ids[4]));
    // Only readers of the channel may sync it.
    assert!(matches!(
        w.hub
            .sync_revocations(&uid("stranger"), &w.group, 0, 10)
            .await,
        Err(Error::Rejected { .. })
    ));
}
