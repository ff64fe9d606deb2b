//! The per-sender send rate (`HubConfig::send_rate`): a token bucket per
//! uid, on the hub's clock (a manual one here: no test sleeps).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use imcore::{
    Channel, Error, Hub, HubConfig, ManualClock, ReasonCode, SendAck, SendRate, SendRequest, Uid,
};

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

fn rate(per_second: u32, burst: u32) -> SendRate {
    SendRate::new(
        NonZeroU32::new(per_second).unwrap(),
        NonZeroU32::new(burst).unwrap(),
    )
}

/// A hub allowing each sender `per_second` sends a second, in bursts of
/// `burst`, on a manual clock.
fn hub(per_second: u32, burst: u32) -> (Hub, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let hub = Hub::builder()
        .clock(clock.clone())
        .config(HubConfig::default().send_rate(Some(rate(per_second, burst))))
        .build()
        .unwrap();
    (hub, clock)
}

/// A person message from `from` to `to`.
fn message(from: &str, to: &str) -> SendRequest {
    SendRequest::new(uid(from), Channel::person(&uid(from), &uid(to)), "x")
}

/// `n` sends from `from`, one call each: how many were accepted, and
/// every refusal must be the rate limit's.
async fn accepted(hub: &Hub, from: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        match hub.send(message(from, "bob")).await {
            Ok(_) => ok += 1,
            Err(e) => assert_rate_limited(&e, from),
        }
    }
    ok
}

fn assert_rate_limited(e: &Error, who: &str) {
    assert!(
        matches!(e, Error::RateLimited { uid } if uid == who),
        "expected RateLimited for {who}, got {e:?}"
    );
    assert_eq!(e.reason_code(), Some(ReasonCode::RATE_LIMIT));
    assert_eq!(e.reason_code().unwrap().as_u8(), 22);
    assert!(e.is_retryable(), "a later send may pass");
}

#[tokio::test]
async fn a_burst_is_allowed_the_next_send_refused_with_22_and_time_refills_it() {
    let (hub, clock) = hub(10, 5);
    assert_eq!(accepted(&hub, "alice", 5).await, 5, "the burst");
    let over = hub.send(message("alice", "bob")).await.unwrap_err();
    assert_rate_limited(&over, "alice");

    // Another sender has an allowance of its own.
    assert_eq!(accepted(&hub, "carol", 5).await, 5);

    // 10 a second: one more every 100 ms.
    clock.advance(Duration::from_millis(99));
    assert_eq!(accepted(&hub, "alice", 1).await, 0, "not yet");
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        accepted(&hub, "alice", 3).await,
        1,
        "one token after 100 ms"
    );

    // A long pause refills the bucket up to the burst, no further.
    clock.advance(Duration::from_secs(60));
    assert_eq!(accepted(&hub, "alice", 20).await, 5);

    let stats = hub.stats();
    // 1 + 1 + 2 + 15 refused, all before they had a class.
    assert_eq!(stats.rate_limited, 19, "{stats:?}");
    assert_eq!(stats.refused_unclassified, 19, "{stats:?}");
    assert_eq!(stats.history.accepted, 5 + 5 + 1 + 5, "{stats:?}");
}

#[tokio::test]
async fn a_batch_takes_one_token_per_send_and_refuses_only_those_over() {
    let (hub, _clock) = hub(10, 3);
    // Alice's five sends with two of bob's among them.
    let batch = vec![
        message("alice", "bob"),
        message("alice", "bob"),
        message("bob", "alice"),
        message("alice", "bob"),
        message("alice", "bob"),
        message("bob", "alice"),
        message("alice", "bob"),
    ];
    let acks = hub.send_all(batch).await;
    let seqs: Vec<Option<u64>> = acks
        .iter()
        .map(|a| a.as_ref().ok().map(|a: &SendAck| a.message_seq))
        .collect();
    // The person channel alice@bob takes seqs in order; her 4th and 5th
    // are over her burst of 3.
    assert_eq!(
        seqs,
        [Some(1), Some(2), Some(3), Some(4), None, Some(5), None]
    );
    for i in [4, 6] {
        assert_rate_limited(acks[i].as_ref().unwrap_err(), "alice");
    }
}

#[tokio::test]
async fn a_wall_clock_stepping_back_does_not_lock_senders_out() {
    let (hub, clock) = hub(10, 2);
    assert_eq!(accepted(&hub, "alice", 3).await, 2);
    // An hour back: no time has passed, as the limiter counts it (no
    // extra sends)...
    clock.rewind(Duration::from_secs(3600));
    assert_eq!(accepted(&hub, "alice", 1).await, 0);
    // ...and what passes after the step counts as it comes (not an hour
    // later).
    clock.advance(Duration::from_millis(100));
    assert_eq!(accepted(&hub, "alice", 2).await, 1);
}

#[tokio::test]
async fn idle_senders_are_forgotten() {
    let (hub, clock) = hub(10, 5);
    for who in ["a1", "a2", "a3"] {
        accepted(&hub, who, 1).await;
    }
    assert_eq!(hub.stats().rate_tracked_senders, 3);
    // A minute on, the next send sweeps out the senders whose allowance
    // is full again: only its own is remembered.
    clock.advance(Duration::from_secs(61));
    accepted(&hub, "a4", 1).await;
    assert_eq!(hub.stats().rate_tracked_senders, 1);
    // A forgotten sender starts again with a full burst.
    assert_eq!(accepted(&hub, "a1", 6).await, 5);
}

#[tokio::test]
async fn the_default_is_200_a_second_in_bursts_of_400_and_none_turns_it_off() {
    let config = HubConfig::default();
    assert_eq!(config.send_rate, Some(rate(200, 400)));
    let clock = Arc::new(ManualClock::new(0));
    let limited = Hub::builder().clock(clock.clone()).build().unwrap();
    assert_eq!(accepted(&limited, "alice", 401).await, 400);
    clock.advance(Duration::from_millis(5));
    assert_eq!(accepted(&limited, "alice", 2).await, 1, "200 a second");

    let unlimited = Hub::builder()
        .clock(Arc::new(ManualClock::new(0)))
        .config(HubConfig::default().send_rate(None))
        .build()
        .unwrap();
    assert_eq!(accepted(&unlimited, "alice", 1000).await, 1000);
    let stats = unlimited.stats();
    assert_eq!((stats.rate_limited, stats.rate_tracked_senders), (0, 0));
}

mod common;

/// Over the wire: the 401st SEND in a burst (the default allowance, on
/// the world's manual clock) is answered with a SENDACK carrying reason
/// 22, and is not stored; the client may go on sending later.
#[tokio::test]
async fn a_send_over_the_default_rate_gets_a_sendack_with_reason_22() {
    use common::{uid_of, world, Client, WEB};
    use imcore::store::Page;
    use imcore::wire::Packet;

    let w = world();
    let mut alice = Client::open(&w.server, 16);
    alice.login("alice", WEB).await;
    let mut reasons = Vec::new();
    for seq in 1..=401 {
        alice.packet(&Packet::Send(alice.sealed_send(seq, "bob", 1, "{}")));
        let ack = alice.sendack().await;
        assert_eq!(ack.client_seq, seq);
        reasons.push(ack.reason);
    }
    assert!(reasons[..400].iter().all(|r| *r == ReasonCode::SUCCESS));
    assert_eq!(reasons[400], ReasonCode::RATE_LIMIT);
    assert_eq!(reasons[400].as_u8(), 22);
    let chat = Channel::person(&uid_of("alice"), &uid_of("bob"));
    let stored = w
        .hub
        .sync_channel(&uid_of("bob"), &chat, Page::forward(1, 1000))
        .await
        .unwrap();
    assert_eq!(stored.len(), 400, "the refused one was not stored");
    // The session goes on: a ping is answered.
    alice.packet(&Packet::Ping);
    assert_eq!(alice.next().await, Some(Packet::Pong));
    assert_eq!(w.hub.stats().rate_limited, 1);
}
