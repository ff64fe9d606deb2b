//! Edits and reads across nodes joined by `NatsRouter` over a real
//! `nats-server` (started by the test), sharing one store: an edit made
//! through one node tells a member's device on the other, and a read
//! counted through one node tells the sender's device on the other.
//!
//! Without the binaries the test says it is skipped and why; with
//! `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::Duration;

use imcore::extra::{EditOutcome, EditRequest, SYNC_MESSAGE_EXTRA_CMD};
use imcore::session::InProcessConnection;
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, Hub, HubConfig, MemoryDirectory, MemoryStore,
    NatsConfig, NatsRouter, RevokeTarget, SendRequest, Setting, Uid,
};
use servers::NatsServer;

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

async fn node(
    nats: &NatsServer,
    id: u16,
    store: Arc<MemoryStore>,
    dir: Arc<MemoryDirectory>,
) -> (Hub, NatsRouter) {
    let router = NatsRouter::connect(NatsConfig::new(nats.url(), id))
        .await
        .expect("join the cluster");
    let hub = Hub::builder()
        .store(store)
        .directory(dir)
        .router(Arc::new(router.clone()))
        .config(HubConfig::default().node_id(id))
        .build()
        .unwrap();
    (hub, router)
}

/// Waits until `hub` (through its router's notices) sees `who` online.
async fn sees_online(hub: &Hub, router: &NatsRouter, who: &str) {
    let mut changes = router.watch();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while !hub.is_online(&uid(who)) {
            changes.changed().await.expect("router alive");
        }
    });
    assert!(seen.await.is_ok(), "never saw {who} online");
}

/// The next `syncMessageExtra` command `conn` gets (other messages are
/// passed over), within 10 s.
async fn next_sync_command(conn: &mut InProcessConnection) -> serde_json::Value {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let m = conn.recv().await.expect("connection open");
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            if v["cmd"] == SYNC_MESSAGE_EXTRA_CMD {
                return v;
            }
        }
    });
    found.await.expect("a syncMessageExtra command")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_reads_tell_devices_on_the_other_node() {
    let Some(nats) = NatsServer::start("cluster_extras") else {
        return;
    };
    let (store, dir) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryDirectory::new()),
    );
    let (a, ra) = node(&nats, 1, store.clone(), dir.clone()).await;
    let (b, rb) = node(&nats, 2, store, dir.clone()).await;
    let g = Channel::group("room").unwrap();
    dir.create_channel(&g, &uid("alice"), [uid("bob"), uid("carol")]);
    let alice_dev = Device::master(uid("alice"), DeviceId::new("a").unwrap(), DeviceFlag::App);
    let (_, mut alice) = a.connect_in_process(alice_dev, 1024);
    let bob_dev = Device::master(uid("bob"), DeviceId::new("b").unwrap(), DeviceFlag::App);
    let (_, mut bob) = b.connect_in_process(bob_dev, 1024);
    sees_online(&a, &ra, "bob").await;
    sees_online(&b, &rb, "alice").await;

    let sent = a
        .send(
            SendRequest::new(uid("alice"), g.clone(), r#"{"type":1,"content":"helo"}"#)
                .setting(Setting(Setting::RECEIPT)),
        )
        .await
        .unwrap();
    // Edited through node 1: bob, on node 2, is told.
    let edit = EditRequest::new(
        uid("alice"),
        RevokeTarget::MessageId(sent.message_id),
        r#"{"type":1,"content":"hello"}"#,
    );
    let EditOutcome::Edited(extra) = a.edit(edit).await.unwrap() else {
        panic!("edited")
    };
    let told = next_sync_command(&mut bob).await;
    assert_eq!(told["param"]["message_id"], sent.message_id.to_string());
    assert_eq!(told["param"]["extra_version"], extra.extra_version);
    let told = next_sync_command(&mut alice).await;
    assert_eq!(told["param"]["extra_version"], extra.extra_version);

    // Read through node 2: alice, the sender, on node 1, is told.
    let read = b
        .mark_read(&uid("bob"), &g, &[sent.message_id])
        .await
        .unwrap();
    assert_eq!(read.counted.len(), 1);
    let version = read.counted[0].extra_version;
    assert!(version > extra.extra_version, "versions increase");
    let told = next_sync_command(&mut alice).await;
    assert_eq!(told["param"]["extra_version"], version);
    let seen = a.sync_extras(&uid("alice"), &g, 0, 10).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].receipt.map(|r| (r.readers, r.unread())),
        Some((1, 1))
    );
    // The reader's own devices are told too (here across no node).
    let told = next_sync_command(&mut bob).await;
    assert_eq!(told["param"]["extra_version"], version);
}
