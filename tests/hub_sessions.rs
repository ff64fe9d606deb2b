//! Device sessions: a device replacing itself, master logins kicking
//! devices of their kind, kicks by the host, and slow consumers
//! disconnected (then catching up by sync, or pushed what they missed).

#[path = "common/hub_world.rs"]
mod hub_world;

use hub_world::{dev, uid, world};
use imcore::store::Page;
use imcore::{Device, DeviceFlag, DisconnectReason, ReasonCode, SendRequest};

#[tokio::test]
async fn same_device_replaces_and_master_login_kicks_same_flag() {
    let w = world();
    let (first_id, mut first) = w.phone("alice");
    let (second_id, _second) = w.phone("alice");
    assert_eq!(first.closed().await, DisconnectReason::Replaced);
    // A late disconnect of the replaced connection leaves the new one.
    assert!(!w.hub.disconnect(&uid("alice"), first_id));
    assert_eq!(w.hub.online_devices(&uid("alice")).len(), 1);

    // A slave of another flag does not kick; a slave of the same flag neither.
    let (_, web) = w.web("alice");
    let (_, pad) = w.hub.connect_in_process(
        Device::slave(uid("alice"), dev("alice-pad"), DeviceFlag::App),
        8,
    );
    assert_eq!(w.hub.online_devices(&uid("alice")).len(), 3);
    // A master login of flag App kicks every other App device.
    let (_, _tablet) = w.hub.connect_in_process(
        Device::master(uid("alice"), dev("alice-tablet"), DeviceFlag::App),
        8,
    );
    assert_eq!(pad.closed_reason(), Some(DisconnectReason::Kicked));
    assert_eq!(
        DisconnectReason::Kicked.reason_code(),
        ReasonCode::CONNECT_KICK
    );
    assert!(
        !w.hub.disconnect(&uid("alice"), second_id),
        "kicked already"
    );
    assert_eq!(web.closed_reason(), None);
    let devices: Vec<String> = w
        .hub
        .online_devices(&uid("alice"))
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    assert_eq!(devices.len(), 2);
    assert!(devices.contains(&"alice-web".to_string()));
    assert!(devices.contains(&"alice-tablet".to_string()));
}

#[tokio::test]
async fn a_slow_device_is_disconnected_and_catches_up_by_sync() {
    let w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut slow) = w.hub.connect_in_process(
        Device::master(uid("bob"), dev("bob-slow"), DeviceFlag::App),
        2,
    );
    let (_, mut fast) = w.web("bob");
    for i in 0..5 {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), format!("m{i}")))
            .await
            .unwrap();
    }
    assert_eq!(slow.closed().await, DisconnectReason::SlowConsumer);
    assert_eq!(
        DisconnectReason::SlowConsumer.reason_code(),
        ReasonCode::RATE_LIMIT
    );
    // What was queued stays readable; the rest is lost to the connection only.
    let queued = slow.drain();
    assert_eq!(queued.len(), 2);
    assert_eq!(fast.drain().len(), 5, "the other device is not affected");
    assert_eq!(w.hub.online_devices(&uid("bob")).len(), 1);
    // Catching up by sync from the last seq it saw.
    let last_seen = queued.last().unwrap().message_seq;
    let missed = w
        .hub
        .sync_channel(&uid("bob"), &g, Page::forward(last_seen + 1, 100))
        .await
        .unwrap();
    assert_eq!(
        missed.iter().map(|m| m.message_seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
}

#[tokio::test]
async fn a_master_dropped_for_not_taking_a_message_is_pushed_that_message() {
    let mut w = world();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.hub.connect_in_process(
        Device::master(uid("bob"), dev("bob-phone"), DeviceFlag::App),
        1,
    );
    w.hub
        .send(SendRequest::new(uid("alice"), g.clone(), "fits"))
        .await
        .unwrap();
    let overflow = w
        .hub
        .send(SendRequest::new(uid("alice"), g, "overflows"))
        .await
        .unwrap();
    assert_eq!(bob.closed().await, DisconnectReason::SlowConsumer);
    let (pushed, offline) =
        tokio::time::timeout(std::time::Duration::from_secs(10), w.pushes.recv())
            .await
            .expect("the overflowing message is pushed")
            .expect("a push");
    assert_eq!(pushed.message_id, overflow.message_id);
    assert_eq!(offline, vec![uid("bob")]);
}

#[tokio::test]
async fn kick_closes_a_users_devices_of_one_kind_or_all() {
    let w = world();
    let (_, mut phone) = w.phone("bob");
    let (_, mut web) = w.web("bob");
    let (_, alice) = w.phone("alice");
    assert_eq!(w.hub.kick(&uid("bob"), Some(DeviceFlag::Web)), 1);
    assert_eq!(web.closed().await, DisconnectReason::Kicked);
    assert_eq!(w.hub.online_devices(&uid("bob")).len(), 1);
    assert_eq!(w.hub.kick(&uid("bob"), None), 1);
    assert_eq!(phone.closed().await, DisconnectReason::Kicked);
    assert_eq!(w.hub.kick(&uid("bob"), None), 0);
    assert!(w.hub.online_devices(&uid("bob")).is_empty());
    assert!(alice.closed_reason().is_none(), "others are untouched");
}
