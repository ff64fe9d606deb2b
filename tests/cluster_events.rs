//! Message events across nodes joined by `NatsRouter` over a real
//! `nats-server` (started by the test): a reply streamed through both
//! nodes in turn reaches a device on one of them, every event once, in
//! `msg_event_seq` order: an event that overtakes an earlier one on its
//! way waits for it.
//!
//! Without the binaries the test says it is skipped and why; with
//! `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::sync::Arc;
use std::time::Duration;

use imcore::event::{NewEvent, STREAM_DELTA};
use imcore::{
    Channel, Device, DeviceFlag, DeviceId, EventId, Hub, HubConfig, MemoryDirectory, MemoryStore,
    NatsConfig, NatsRouter, SendRequest, Uid,
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
    // A long reorder wait: an event that overtakes another on its way
    // waits for it, however loaded the machine.
    let mut config = NatsConfig::new(nats.url(), id);
    config.reorder_wait = Duration::from_secs(5);
    let router = NatsRouter::connect(config).await.expect("join the cluster");
    let hub = Hub::builder()
        .store(store)
        .directory(dir)
        .router(Arc::new(router.clone()))
        .config(HubConfig::default().node_id(id))
        .build()
        .unwrap();
    (hub, router)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_through_both_nodes_reaches_a_device_in_order() {
    let Some(nats) = NatsServer::start("cluster_events") else {
        return;
    };
    let (store, dir) = (
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryDirectory::new()),
    );
    let (a, ra) = node(&nats, 1, store.clone(), dir.clone()).await;
    let (b, _rb) = node(&nats, 2, store, dir.clone()).await;
    let g = Channel::group("room").unwrap();
    dir.create_channel(&g, &uid("bot"), [uid("alice")]);
    let device = Device::master(uid("alice"), DeviceId::new("p").unwrap(), DeviceFlag::App);
    let (_, mut alice) = b.connect_in_process(device, 1024);
    // Node 1 sees alice (on node 2) online: waited for on its router's
    // change notices.
    let mut changes = ra.watch();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while !a.is_online(&uid("alice")) {
            changes.changed().await.expect("router alive");
        }
    });
    assert!(seen.await.is_ok(), "node 1 never saw alice online");

    let reply = imcore::ClientMsgNo::new("reply").unwrap();
    a.send(SendRequest::new(uid("bot"), g.clone(), r#"{"type":1}"#).client_msg_no(reply.clone()))
        .await
        .unwrap();
    let n = 40u64;
    for i in 0..n {
        let via = if i % 2 == 0 { &a } else { &b };
        let e = NewEvent::new(
            g.clone(),
            reply.clone(),
            EventId::new(format!("e{i}")).unwrap(),
            STREAM_DELTA,
            uid("bot"),
            r#"{"kind":"text","delta":"x"}"#,
        )
        .unwrap();
        via.append_event(e).await.unwrap();
    }
    let mut seqs = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while seqs.last() != Some(&n) {
            let e = alice.recv_event().await.expect("connection open");
            seqs.push(e.msg_event_seq);
        }
    });
    assert!(got.await.is_ok(), "events seen: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "every event, in order");
    assert_eq!(b.stats().late_deliveries, 0);
}
