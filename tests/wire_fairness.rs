//! Other users are not starved by bursts: while four users each push one
//! 4 MiB WebSocket message of small SENDs (about 51,000 each) into a sled
//! store that flushes before it acknowledges, under the default send
//! rate, a fifth user's PING is answered within 100 ms and its SEND
//! acknowledged within 250 ms, both at the 99th percentile, on a runtime
//! of two workers like the example server's on this machine. Every SEND
//! of the bursts is answered once, stored or refused for the rate, and
//! every one stored is in history exactly once.

use std::sync::Arc;
use std::time::Duration;

use imcore::store::{Durability, Page};
use imcore::wire::{Packet, WireConfig};
use imcore::{Channel, HubConfig, ReasonCode, SledStore, SystemClock};
use tokio::time::{timeout, Instant};

mod common;

use common::*;

const BURST: usize = 4 * 1024 * 1024;
const PUSHERS: usize = 4;
const PING_P99: Duration = Duration::from_millis(100);
const SEND_P99: Duration = Duration::from_millis(250);
/// The fifth user's pace: a PING and a SEND this often, within the
/// default send rate (200 a second).
const PACE: Duration = Duration::from_millis(20);
/// Long enough that only a stuck server reaches it.
const DEADLINE: Duration = Duration::from_secs(300);

/// The 99th percentile of `samples` (nearest rank).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1);
    samples[rank - 1]
}

/// Reads the answers to SENDs 1..=n, in order: each stored (its seq the
/// next of the channel) or refused for the rate. Returns the client seqs
/// stored.
async fn answers(client: &mut Client, n: u32) -> Vec<u32> {
    let mut stored = Vec::new();
    for seq in 1..=n {
        let ack = client.sendack().await;
        assert_eq!(ack.client_seq, seq, "SENDACK {seq} of {n}");
        match ack.reason {
            ReasonCode::SUCCESS => {
                stored.push(seq);
                assert_eq!(ack.message_seq, stored.len() as u32);
            }
            ReasonCode::RATE_LIMIT => {}
            other => panic!("SEND {seq} answered {other:?}"),
        }
    }
    stored
}

/// Checks that the channel from `from` to `to` holds exactly the SENDs
/// `stored`, in order, once each.
async fn expect_history(w: &World, from: &str, to: &str, stored: &[u32]) {
    let channel = Channel::person(&uid_of(from), &uid_of(to));
    let mut got = Vec::new();
    loop {
        let from_seq = got.len() as u64 + 1;
        let page = w
            .hub
            .store()
            .read(&channel, Page::forward(from_seq, 1000))
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        got.extend(page);
    }
    assert_eq!(got.len(), stored.len(), "{from}'s history");
    for (i, (message, seq)) in got.iter().zip(stored).enumerate() {
        assert_eq!(message.message_seq, i as u64 + 1);
        assert_eq!(message.client_msg_no.as_str(), format!("cmn-{seq}"));
        assert_eq!(message.payload.as_ref(), format!("m{seq}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_user_is_served_promptly_while_four_push_4_mib_bursts() {
    timeout(DEADLINE, async {
        let store = SledStore::temporary_with(Durability::Flush).unwrap();
        // The send rate refills as time passes: the system clock.
        let w = world_on_store(
            WireConfig::default(),
            HubConfig::default(),
            Arc::new(store),
            Arc::new(SystemClock),
        );
        let mut bob = Client::open(&w.server, 16);
        bob.login("bob", WEB).await;
        let pushers = w.pushers(PUSHERS, "carol", BURST).await;

        let mut answered = Vec::new();
        for (uid, client, bytes, n) in pushers {
            client.chunk(bytes);
            answered.push(tokio::spawn(async move {
                let mut client = client;
                let stored = answers(&mut client, n).await;
                (uid, n, stored)
            }));
        }
        // Bob pings and sends at his pace until every burst is answered,
        // timing each answer.
        let (mut pings, mut sends) = (Vec::new(), Vec::new());
        let mut pace = tokio::time::interval(PACE);
        let mut seq = 0;
        while answered.iter().any(|task| !task.is_finished()) {
            pace.tick().await;
            let sent = Instant::now();
            bob.packet(&Packet::Ping);
            assert_eq!(bob.next().await, Some(Packet::Pong));
            pings.push(sent.elapsed());
            seq += 1;
            let sent = Instant::now();
            bob.packet(&Packet::Send(bob.sealed_send(
                seq,
                "dave",
                1,
                &format!("m{seq}"),
            )));
            let ack = bob.sendack().await;
            sends.push(sent.elapsed());
            assert_eq!((ack.client_seq, ack.reason), (seq, ReasonCode::SUCCESS));
        }
        let mut refused = 0;
        for task in answered {
            let (uid, n, stored) = task.await.unwrap();
            refused += n as usize - stored.len();
            assert!(!stored.is_empty(), "{uid} stored nothing");
            expect_history(&w, &uid, "carol", &stored).await;
        }
        expect_history(&w, "bob", "dave", &(1..=seq).collect::<Vec<_>>()).await;
        let (ping, send) = (p99(&mut pings), p99(&mut sends));
        eprintln!(
            "{} PINGs and SENDs during the bursts ({refused} burst SENDs refused for the rate): \
             PING p99 {ping:?} (slowest {:?}), SEND p99 {send:?} (slowest {:?})",
            pings.len(),
            pings.last().unwrap(),
            sends.last().unwrap(),
        );
        assert!(pings.len() >= 10, "the bursts ended too soon to measure");
        assert!(ping <= PING_P99, "PING p99 {ping:?}");
        assert!(send <= SEND_P99, "SEND p99 {send:?}");
    })
    .await
    .expect("the bursts were answered in time");
}
