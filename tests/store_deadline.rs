//! The store deadline: a send whose store call stalls fails in bounded
//! time with a retryable error (reason 15), is counted, holds its channel
//! no longer than the deadline, and sends go on once the store answers.

#[path = "common/gated_store.rs"]
mod gated_store;
#[path = "common/hub_world.rs"]
mod hub_world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gated_store::GatedStore;
use hub_world::{no, uid, world_configured, World};
use imcore::store::{MessageLog, Page};
use imcore::{Error, HubConfig, ReasonCode, SendRequest};

const DEADLINE: Duration = Duration::from_millis(150);

fn stalled() -> (Arc<GatedStore>, World) {
    let store = Arc::new(GatedStore::closed());
    let config = HubConfig::default().store_deadline(Some(DEADLINE));
    (store.clone(), world_configured(store, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_the_send_retryable_and_sends_go_on_once_it_answers() {
    let (store, w) = stalled();
    let g = w.group("g", "alice", &["bob"]);
    let (_, mut bob) = w.phone("bob");
    let send = |no_: &str, text: &str| {
        w.hub
            .send(SendRequest::new(uid("alice"), g.clone(), text.to_owned()).client_msg_no(no(no_)))
    };

    let began = Instant::now();
    let err = send("c1", "first")
        .await
        .expect_err("the store never answers");
    let took = began.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.reason_code(), Some(ReasonCode::SYSTEM_ERROR));
    assert!(err.to_string().contains("store deadline"), "{err}");
    assert!(
        took >= DEADLINE && took < DEADLINE * 10,
        "failed after {took:?}"
    );
    assert_eq!(w.hub.stats().store_timeouts, 1);

    // The store answers again: the next send and the retry both go
    // through, each stored once, delivered in seq order.
    store.gate.add_permits(1_000);
    let second = send("c2", "second").await.unwrap();
    let retry = send("c1", "first").await.unwrap();
    assert!(!retry.duplicate, "the timed-out write never began");
    assert_eq!((second.message_seq, retry.message_seq), (1, 2));
    let got: Vec<u64> = [bob.recv().await.unwrap(), bob.recv().await.unwrap()]
        .iter()
        .map(|m| m.message_seq)
        .collect();
    assert_eq!(got, [1, 2]);
    let history = store.inner.read(&g, Page::forward(1, 10)).await.unwrap();
    let texts: Vec<&[u8]> = history.iter().map(|m| m.payload.as_ref()).collect();
    assert_eq!(texts, [&b"second"[..], b"first"]);
    assert_eq!(w.hub.stats().store_timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_queued_behind_a_stalled_write_in_one_channel_each_fail_within_the_deadline() {
    let (_store, w) = stalled();
    let g = w.group("g", "alice", &["bob"]);
    let began = Instant::now();
    let sends = (0..3).map(|i| {
        w.hub.send(
            SendRequest::new(uid("alice"), g.clone(), format!("m{i}"))
                .client_msg_no(no(&format!("q{i}"))),
        )
    });
    let results = futures_util::future::join_all(sends).await;
    let took = began.elapsed();
    for r in &results {
        assert!(matches!(r, Err(Error::Unavailable { .. })), "{r:?}");
    }
    // One after another in the channel's turn: each waits its own
    // deadline at most, never for ever.
    assert!(took < DEADLINE * 3 + Duration::from_secs(2), "{took:?}");
    assert_eq!(w.hub.stats().store_timeouts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deadline_a_send_waits_for_the_store() {
    let store = Arc::new(GatedStore::closed());
    let config = HubConfig::default().store_deadline(None);
    let w = world_configured(store.clone(), config);
    let g = w.group("g", "alice", &["bob"]);
    let send = w
        .hub
        .send(SendRequest::new(uid("alice"), g, "late").client_msg_no(no("c1")));
    tokio::pin!(send);
    tokio::select! {
        r = &mut send => panic!("answered while the store is stalled: {r:?}"),
        () = store.entered.notified() => {}
    }
    // Still waiting at twice the deadline the other tests use…
    tokio::time::timeout(DEADLINE * 2, &mut send)
        .await
        .expect_err("answered while the store is stalled");
    // …and answered once the store is.
    store.gate.add_permits(1);
    let ack = send.await.unwrap();
    assert_eq!(ack.message_seq, 1);
    assert_eq!(w.hub.stats().store_timeouts, 0);
}
