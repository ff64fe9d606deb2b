//! The hub's counters (`Hub::stats`) follow what it did.

use std::sync::Arc;

use imcore::session::in_process;
use imcore::{
    Channel, ClientMsgNo, Device, DeviceFlag, DeviceId, Flags, Hub, MemoryDirectory, SendRequest,
    Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

#[tokio::test]
async fn stats_count_sends_by_class_and_outcome_deliveries_and_slow_consumers() {
    let directory = Arc::new(MemoryDirectory::new());
    let group = Channel::group("g").unwrap();
    directory.create_channel(&group, &uid("alice"), [uid("bob")]);
    let hub = Hub::builder().directory(directory).build().unwrap();
    // Bob's queue takes one message, and nobody reads it.
    let (sink, _bob) = in_process(1);
    let device = Device::master(uid("bob"), DeviceId::new("b1").unwrap(), DeviceFlag::Web);
    hub.connect(device, sink);
    assert_eq!(hub.stats().online_devices, 1);

    let message = |flags: Flags, no: &str| {
        SendRequest::new(uid("alice"), group.clone(), "x")
            .flags(flags)
            .client_msg_no(ClientMsgNo::new(no).unwrap())
    };
    hub.send(message(Flags::normal(), "h1")).await.unwrap();
    let queued = hub.stats();
    assert_eq!(
        (queued.queued_deliveries, queued.deepest_queue),
        (1, 1),
        "{queued:?}"
    );
    let resend = hub.send(message(Flags::normal(), "h1")).await.unwrap();
    assert!(resend.duplicate);
    // The second delivery finds bob's queue full: he is dropped.
    hub.send(message(Flags::command(), "c1")).await.unwrap();
    hub.send(message(Flags::transient(), "t1")).await.unwrap();
    let stranger = SendRequest::new(uid("mallory"), group.clone(), "x");
    assert!(hub.send(stranger).await.is_err());

    let stats = hub.stats();
    assert_eq!(
        (stats.history.accepted, stats.history.duplicates),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.commands.accepted, 1, "{stats:?}");
    assert_eq!(stats.transient.accepted, 1, "{stats:?}");
    assert_eq!(stats.refused_unclassified, 1, "{stats:?}");
    assert_eq!(stats.deliveries, 1, "only the first reached bob: {stats:?}");
    assert_eq!(stats.slow_consumers, 1, "{stats:?}");
    assert_eq!(stats.online_devices, 0, "{stats:?}");
    // The history send, its resend and the command went to the store.
    assert_eq!(stats.store_writes, 3, "{stats:?}");
    assert!(!stats.store_write_time.is_zero());
}
