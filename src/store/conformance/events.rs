//! Conformance of message events: seqs per message, idempotence by event
//! id, ended streams, snapshots, stale streams, and concurrent appends.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::{group, uid};
use crate::event::{
    fold, text_of, EventOutcome, NewEvent, StreamStatus, STREAM_CLOSE, STREAM_DELTA, STREAM_OPEN,
};
use crate::model::{Channel, ClientMsgNo, EventId, EventKey};
use crate::store::Store;

fn no(s: &str) -> ClientMsgNo {
    ClientMsgNo::new(s).expect("client_msg_no")
}

fn event(channel: &Channel, msg: &str, id: &str, kind: &str, payload: &str) -> NewEvent {
    NewEvent::new(
        channel.clone(),
        no(msg),
        EventId::new(id).expect("event id"),
        kind,
        uid("x-bot"),
        payload.to_owned(),
    )
    .expect("event")
}

fn delta(channel: &Channel, msg: &str, id: &str, text: &str) -> NewEvent {
    let payload = serde_json::json!({ "kind": "text", "delta": text }).to_string();
    event(channel, msg, id, STREAM_DELTA, &payload)
}

/// Events of a message get seqs 1, 2, … across its streams; a replayed
/// event id stores nothing and answers the first; `events_after` pages
/// ascending; states fold to the text so far; another message, or the
/// same `client_msg_no` in another channel, counts from 1.
pub async fn events_append_in_order_and_once_by_id(store: Arc<dyn Store>) {
    let (g, other) = (group("c-ev-a"), group("c-ev-b"));
    let open = event(&g, "m1", "e1", STREAM_OPEN, r#"{"kind":"text"}"#);
    let first = store.append_event(open, 10).await.expect("append");
    assert_eq!(first.outcome, EventOutcome::Appended);
    assert_eq!(first.event.msg_event_seq, 1);
    assert_eq!(first.state.status, StreamStatus::Open);
    for (i, text) in ["Hel", "lo", ", world"].iter().enumerate() {
        let id = format!("d{i}");
        let a = store
            .append_event(delta(&g, "m1", &id, text), 11)
            .await
            .expect("delta");
        assert_eq!(a.event.msg_event_seq, i as u64 + 2);
    }
    let tool =
        event(&g, "m1", "t1", STREAM_OPEN, "{}").event_key(EventKey::new("tool").expect("key"));
    assert_eq!(
        store
            .append_event(tool, 12)
            .await
            .expect("tool")
            .event
            .msg_event_seq,
        5
    );

    let again = store
        .append_event(delta(&g, "m1", "d1", "DIFFERENT"), 13)
        .await
        .expect("replay");
    assert_eq!(again.outcome, EventOutcome::Duplicate);
    assert_eq!(again.event.msg_event_seq, 3, "answered as the first");
    let payload = String::from_utf8_lossy(&again.event.event.payload).into_owned();
    assert!(payload.contains(r#""delta":"lo""#), "{payload}");

    let all = store
        .events_after(&g, &no("m1"), 0, 100)
        .await
        .expect("after");
    let seqs: Vec<u64> = all.iter().map(|e| e.msg_event_seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5], "nothing stored twice");
    let page = store.events_after(&g, &no("m1"), 2, 2).await.expect("page");
    assert_eq!(
        page.iter().map(|e| e.msg_event_seq).collect::<Vec<_>>(),
        [3, 4]
    );

    let states = store
        .event_states(&g, &[no("m1"), no("none")])
        .await
        .expect("states");
    assert_eq!(states.len(), 2);
    assert!(states[1].is_empty());
    let keys: Vec<&str> = states[0].iter().map(|s| s.event_key.as_str()).collect();
    assert_eq!(keys, ["main", "tool"], "sorted by key");
    let main = &states[0][0];
    assert_eq!(main.last_msg_event_seq, 4);
    let after: Vec<_> = all
        .iter()
        .filter(|e| e.event.event_key == main.event_key && e.msg_event_seq > main.snapshot_seq)
        .cloned()
        .collect();
    let folded = fold(main.snapshot.clone(), &after).expect("a snapshot");
    assert_eq!(text_of(&folded).as_deref(), Some("Hello, world"));

    let elsewhere = store
        .append_event(delta(&other, "m1", "d0", "x"), 14)
        .await
        .expect("other channel");
    assert_eq!(elsewhere.event.msg_event_seq, 1);
}

/// An ended stream takes no more events (answered with its state, nothing
/// stored) while another stream of the message goes on; a stored snapshot
/// only moves forward; `stale_streams` lists the open streams last moved
/// before the time given, and no ended one.
pub async fn an_ended_stream_takes_no_more_events(store: Arc<dyn Store>) {
    let g = group("c-ev-end");
    let tool_key = EventKey::new("tool").expect("key");
    store
        .append_event(event(&g, "m", "o", STREAM_OPEN, "{}"), 100)
        .await
        .expect("open");
    store
        .append_event(
            event(&g, "m", "t", STREAM_OPEN, "{}").event_key(tool_key.clone()),
            100,
        )
        .await
        .expect("open tool");
    store
        .append_event(delta(&g, "m", "d", "Hi"), 150)
        .await
        .expect("delta");
    let close = event(&g, "m", "c", STREAM_CLOSE, r#"{"end_reason":1}"#);
    let closed = store.append_event(close, 200).await.expect("close");
    assert_eq!(closed.outcome, EventOutcome::Appended);
    assert_eq!(closed.state.status, StreamStatus::Closed);
    assert_eq!(closed.state.end_reason, 1);

    let late = store
        .append_event(delta(&g, "m", "late", "!"), 300)
        .await
        .expect("late");
    assert_eq!(late.outcome, EventOutcome::Ended);
    assert_eq!(late.state.status, StreamStatus::Closed);
    assert_eq!(late.event.msg_event_seq, 4, "the stream's last seq");
    let events = store
        .events_after(&g, &no("m"), 0, 10)
        .await
        .expect("after");
    assert_eq!(events.len(), 4, "the late delta was not stored");

    let text = Bytes::from_static(br#"{"kind":"text","text":"Hi"}"#);
    let key = EventKey::new("main").expect("key");
    store
        .set_event_snapshot(&g, &no("m"), &key, text.clone(), 4)
        .await
        .expect("snapshot");
    store
        .set_event_snapshot(&g, &no("m"), &key, Bytes::from_static(b"{}"), 2)
        .await
        .expect("older snapshot");
    let states = store.event_states(&g, &[no("m")]).await.expect("states");
    let main = states[0].iter().find(|s| s.event_key == key).expect("main");
    assert_eq!((main.snapshot.clone(), main.snapshot_seq), (Some(text), 4));

    let stale = store.stale_streams(150, 10).await.expect("stale");
    let ours: Vec<_> = stale.iter().filter(|s| s.channel == g).collect();
    assert_eq!(ours.len(), 1, "only the tool stream is open: {stale:?}");
    assert_eq!(ours[0].event_key, tool_key);
    assert_eq!(ours[0].from_uid, uid("x-bot"));
    let fresh = store.stale_streams(100, 10).await.expect("stale");
    assert!(
        fresh.iter().all(|s| s.channel != g),
        "moved at 100, not before"
    );
}

/// Eight tasks appending to one message concurrently get each seq once,
/// with no gap.
pub async fn concurrent_event_appends_get_each_seq_once(store: Arc<dyn Store>) {
    let g = group("c-ev-race");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let g = g.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20 {
                    let e = delta(&g, "m", &format!("{t}-{i}"), "x");
                    seqs.push(
                        store
                            .append_event(e, 1)
                            .await
                            .expect("append")
                            .event
                            .msg_event_seq,
                    );
                }
                seqs
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        for seq in task.await.expect("task") {
            assert!(seen.insert(seq), "seq {seq} given twice");
        }
    }
    assert_eq!(seen, (1..=160).collect::<HashSet<u64>>());
}
