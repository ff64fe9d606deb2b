//! Message events through the hub: a streamed reply reaches online devices
//! event by event, in order, and an offline device reads one complete
//! message from history; replays, unknown messages, strangers, oversized
//! events and ended streams are refused or answered as WuKongIM does; a
//! stream left open is ended by the server; a late event from another
//! node is not delivered after a later one.

#[path = "common/hub_world.rs"]
mod hub_world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hub_world::{no, uid, world_configured, world_on};
use imcore::event::{
    text_of, EventOutcome, NewEvent, StoredEvent, StreamStatus, Visibility, STREAM_CLOSE,
    STREAM_DELTA, STREAM_OPEN,
};
use imcore::route::{LocalDevices, Router};
use imcore::store::Page;
use imcore::{
    Channel, Device, DeviceFlag, Error, EventId, HubConfig, Limits, ManualClock, MemoryStore,
    Message, SendRequest, SledStore, Uid,
};

fn event(channel: &Channel, msg: &str, id: &str, kind: &str, payload: &str) -> NewEvent {
    NewEvent::new(
        channel.clone(),
        no(msg),
        EventId::new(id).unwrap(),
        kind,
        uid("bot"),
        payload.to_owned(),
    )
    .unwrap()
}

fn delta(channel: &Channel, msg: &str, id: &str, text: &str) -> NewEvent {
    let payload = serde_json::json!({ "kind": "text", "delta": text }).to_string();
    event(channel, msg, id, STREAM_DELTA, &payload)
}

/// The anchor message the bot streams into.
async fn anchor(hub: &imcore::Hub, channel: &Channel, msg: &str) {
    hub.send(
        SendRequest::new(uid("bot"), channel.clone(), r#"{"type":1,"content":""}"#)
            .client_msg_no(no(msg)),
    )
    .await
    .unwrap();
}

async fn a_streamed_reply(store: Arc<dyn imcore::store::Store>) {
    let w = world_on(store.clone());
    let hub = &w.hub;
    let g = w.group("room", "bot", &["alice", "bob"]);
    let (_, mut alice) = w.phone("alice");
    anchor(hub, &g, "reply").await;
    alice.drain();

    let mut sent = vec![event(&g, "reply", "o", STREAM_OPEN, r#"{"kind":"text"}"#)];
    for (i, piece) in ["Hel", "lo", ", world"].iter().enumerate() {
        sent.push(delta(&g, "reply", &format!("d{i}"), piece));
    }
    sent.push(event(&g, "reply", "c", STREAM_CLOSE, r#"{"end_reason":1}"#));
    for (i, e) in sent.into_iter().enumerate() {
        let a = hub.append_event(e).await.unwrap();
        assert_eq!(a.outcome, EventOutcome::Appended);
        assert_eq!(a.event.msg_event_seq, i as u64 + 1);
    }
    // Live, in order.
    let got: Vec<u64> = alice
        .drain_events()
        .iter()
        .map(|e| e.msg_event_seq)
        .collect();
    assert_eq!(got, [1, 2, 3, 4, 5]);

    // A replay is answered as the first and delivered to no one.
    let again = hub
        .append_event(delta(&g, "reply", "d1", "other"))
        .await
        .unwrap();
    assert_eq!(
        (again.outcome, again.event.msg_event_seq),
        (EventOutcome::Duplicate, 3)
    );
    // After the end, nothing is taken.
    let late = hub
        .append_event(delta(&g, "reply", "late", "!"))
        .await
        .unwrap();
    assert_eq!(late.outcome, EventOutcome::Ended);
    assert!(alice.drain_events().is_empty());

    // Bob was offline: history shows one complete message.
    let history = hub
        .sync_channel(&uid("bob"), &g, Page::forward(1, 10))
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let main = &history[0].events[0];
    assert_eq!(main.status, StreamStatus::Closed);
    assert_eq!(main.end_reason, 1);
    let text = text_of(main.snapshot.as_ref().unwrap());
    assert_eq!(text.as_deref(), Some("Hello, world"));
    // The end stored the folded text: no fold needed any more.
    let stored = store.event_states(&g, &[no("reply")]).await.unwrap();
    assert_eq!(stored[0][0].snapshot_seq, 5);

    // The events themselves, for a client that replays them.
    let all = hub
        .sync_events(&uid("bob"), &g, &no("reply"), 0, 100, false)
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let page = hub
        .sync_events(&uid("bob"), &g, &no("reply"), 3, 100, false)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.msg_event_seq).collect::<Vec<_>>(),
        [4, 5]
    );
}

#[tokio::test]
async fn a_streamed_reply_on_memory() {
    a_streamed_reply(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_reply_on_sled() {
    a_streamed_reply(Arc::new(SledStore::temporary().unwrap())).await;
}

#[tokio::test]
async fn bad_events_are_refused_with_typed_errors() {
    let config = HubConfig::default().limits(Limits::default().max_payload(64));
    let w = world_configured(Arc::new(MemoryStore::new()), config);
    let hub = &w.hub;
    let g = w.group("room", "bot", &["alice"]);
    anchor(hub, &g, "reply").await;

    let unknown = hub.append_event(delta(&g, "nope", "e", "x")).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );

    let mut stranger = delta(&g, "reply", "e", "x");
    stranger.from_uid = uid("carol");
    let refused = hub.append_event(stranger).await;
    assert!(
        matches!(refused, Err(Error::Rejected { .. })),
        "a non-member: {refused:?}"
    );

    let big = delta(&g, "reply", "e", &"x".repeat(100));
    let too_big = hub.append_event(big).await;
    assert!(
        matches!(
            too_big,
            Err(Error::Validation(
                imcore::ValidationError::PayloadTooLarge { .. }
            ))
        ),
        "{too_big:?}"
    );
    assert!(NewEvent::new(
        g.clone(),
        no("reply"),
        EventId::new("e").unwrap(),
        " ",
        uid("bot"),
        "{}"
    )
    .is_err());
    // Nothing of it was stored.
    let stored = hub
        .sync_events(&uid("alice"), &g, &no("reply"), 0, 10, true)
        .await
        .unwrap();
    assert!(stored.is_empty());

    // Private events are left out of a sync unless asked for.
    let private = delta(&g, "reply", "p", "secret").visibility(Visibility::Private);
    hub.append_event(private).await.unwrap();
    let (alice, reply) = (uid("alice"), no("reply"));
    let public = hub.sync_events(&alice, &g, &reply, 0, 10, false).await;
    assert!(public.unwrap().is_empty());
    let all = hub.sync_events(&alice, &g, &reply, 0, 10, true).await;
    assert_eq!(all.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stream_left_open_is_ended_by_the_server() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let config = HubConfig::default().stream_idle_timeout(Some(Duration::from_secs(60)));
    let directory = Arc::new(imcore::MemoryDirectory::new());
    let hub = imcore::Hub::builder()
        .config(config)
        .clock(clock.clone())
        .directory(directory.clone())
        .build()
        .unwrap();
    let g = Channel::group("room").unwrap();
    directory.create_channel(&g, &uid("bot"), [uid("alice")]);
    anchor(&hub, &g, "reply").await;
    let (_, mut alice) = hub.connect_in_process(
        Device::master(
            uid("alice"),
            imcore::DeviceId::new("p").unwrap(),
            DeviceFlag::App,
        ),
        64,
    );
    hub.append_event(delta(&g, "reply", "d", "Hi"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(
        hub.close_stale_streams().await.unwrap(),
        0,
        "not idle long enough"
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(hub.close_stale_streams().await.unwrap(), 1);
    assert_eq!(hub.close_stale_streams().await.unwrap(), 0, "ended once");

    let told: Vec<Arc<StoredEvent>> = alice.drain_events();
    assert_eq!(told.len(), 2);
    assert_eq!(told[1].event.event_type, "stream.error");
    let history = hub
        .sync_channel(&uid("alice"), &g, Page::forward(1, 1))
        .await
        .unwrap();
    let main = &history[0].events[0];
    assert_eq!(main.status, StreamStatus::Error);
    assert_eq!(main.error, "stream timed out");
    assert_eq!(
        text_of(main.snapshot.as_ref().unwrap()).as_deref(),
        Some("Hi")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_reach_a_device_in_seq_order() {
    let w = world_on(Arc::new(SledStore::temporary().unwrap()));
    let g = w.group("room", "bot", &["alice"]);
    anchor(&w.hub, &g, "reply").await;
    let (_, mut alice) = w.phone("alice");
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (hub, g) = (w.hub.clone(), g.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let e = delta(&g, "reply", &format!("{t}-{i}"), "x");
                    hub.append_event(e).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let seqs: Vec<u64> = alice
        .drain_events()
        .iter()
        .map(|e| e.msg_event_seq)
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "every event, in order");
}

/// A router that keeps the hub's side, so that the test can hand it
/// events as another node would.
#[derive(Debug, Default)]
struct Captured(Mutex<Option<Arc<dyn LocalDevices>>>, Option<Duration>);

impl Router for Captured {
    fn attach(&self, local: Arc<dyn LocalDevices>) {
        *self.0.lock().unwrap() = Some(local);
    }
    fn deliver(&self, _: &Arc<Message>, _: &[Uid]) {}
    fn presence_changed(&self, _: &Uid, _: Option<&Device>) {}
    fn kick(&self, _: &Uid, _: Option<DeviceFlag>) {}
    fn online_elsewhere(&self, _: &Uid) -> bool {
        false
    }
    fn reorder_wait(&self) -> Option<Duration> {
        self.1
    }
}

/// Hands `seqs` of one message's events to the hub as another node would,
/// through a router with `wait`; what alice's device got, and the hub.
async fn from_another_node(seqs: &[u64], wait: Option<Duration>) -> (Vec<u64>, imcore::Hub) {
    let router = Arc::new(Captured(Mutex::default(), wait));
    let hub = imcore::Hub::builder()
        .router(router.clone())
        .build()
        .unwrap();
    let (_, mut alice) = hub.connect_in_process(
        Device::master(
            uid("alice"),
            imcore::DeviceId::new("p").unwrap(),
            DeviceFlag::App,
        ),
        64,
    );
    let local = router.0.lock().unwrap().clone().unwrap();
    let g = Channel::group("room").unwrap();
    let stored = |seq: u64| {
        let e = delta(&g, "reply", &format!("e{seq}"), "x");
        let json = serde_json::json!({ "msg_event_seq": seq, "event": e });
        Arc::new(serde_json::from_value::<StoredEvent>(json).unwrap())
    };
    let to: Arc<[Uid]> = Arc::from([uid("alice")]);
    for seq in seqs {
        local.deliver_event(stored(*seq), to.clone());
    }
    let mut got: Vec<u64> = alice
        .drain_events()
        .iter()
        .map(|e| e.msg_event_seq)
        .collect();
    if let Some(wait) = wait {
        // Past the wait, what is held goes.
        tokio::time::sleep(wait * 2).await;
        got.extend(alice.drain_events().iter().map(|e| e.msg_event_seq));
    }
    (got, hub)
}

#[tokio::test]
async fn a_late_event_from_another_node_is_not_delivered() {
    let (got, hub) = from_another_node(&[1, 3, 2, 4], None).await;
    assert_eq!(got, [1, 3, 4], "2 came after 3: left to sync");
    assert_eq!(hub.stats().late_deliveries, 1);
}

#[tokio::test(start_paused = true)]
async fn in_a_cluster_an_early_event_waits_for_the_one_before_it() {
    let wait = Some(Duration::from_millis(250));
    let (got, hub) = from_another_node(&[1, 3, 2, 4], wait).await;
    assert_eq!(got, [1, 2, 3, 4], "3 waited for 2");
    assert_eq!(hub.stats().late_deliveries, 0);
    // 6 never gets its 5: it goes once the wait runs out, and 5 is late.
    let (got, hub) = from_another_node(&[1, 2, 3, 4, 6], wait).await;
    assert_eq!(got, [1, 2, 3, 4, 6]);
    assert_eq!(hub.stats().skipped_seqs, 1);
}

/// A sled store reopened on its directory still folds each message's
/// events into history (it learns again which channels have any).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_reopening_a_sled_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || Arc::new(SledStore::open(dir.path()).unwrap());
    let g = {
        let w = world_on(open());
        let g = w.group("room", "bot", &["alice"]);
        anchor(&w.hub, &g, "reply").await;
        w.hub
            .append_event(delta(&g, "reply", "d", "kept"))
            .await
            .unwrap();
        w.hub.shutdown().await.unwrap();
        g
    };
    let w = world_on(open());
    w.directory.create_channel(&g, &uid("bot"), [uid("alice")]);
    let history = w
        .hub
        .sync_channel(&uid("alice"), &g, Page::forward(1, 10))
        .await
        .unwrap();
    let main = &history[0].events[0];
    assert_eq!(
        text_of(main.snapshot.as_ref().unwrap()).as_deref(),
        Some("kept")
    );
}
