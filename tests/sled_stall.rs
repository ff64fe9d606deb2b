//! A sled stall takes no runtime worker and holds no send for ever.
//!
//! The stall is sled's own: a transaction on another database of this
//! process holds sled's process-wide concurrency lock (every sled call
//! waits for it once any transaction has run), as the wedge reported in
//! sled's log reservation held a tokio worker. Meanwhile the server's
//! runtime (two workers, like the example server's on this machine) must
//! answer a PING, fail the stalled sends with reason 15 once the store
//! deadline passes, and once sled goes on, store every send exactly once.
//!
//! The client side runs on the test's own runtime, so that its timeouts
//! fire whatever the server's workers are doing.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use imcore::store::{Durability, Page};
use imcore::wire::{Packet, WireConfig};
use imcore::{Channel, HubConfig, ManualClock, ReasonCode, SledStore};
use tokio::time::timeout;

mod common;

use common::*;

/// Holds every sled call of the process until dropped.
struct Stall {
    release: Option<std_mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Dropped last: dropping a database flushes it, which waits for the
    /// lock its own transaction holds.
    _db: sled::Db,
}

impl Stall {
    fn begin() -> Stall {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("stall").unwrap();
        let (entered, inside) = std_mpsc::channel::<()>();
        let (release, released) = std_mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tree.transaction(|t| {
                t.insert("k", "v")?;
                let _ = entered.send(());
                let _ = released.recv();
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        });
        inside.recv().expect("the stalling transaction began");
        Stall {
            release: Some(release),
            thread: Some(thread),
            _db: db,
        }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const DEADLINE: Duration = Duration::from_millis(500);

/// The server's runtime, shut down without waiting when the test ends
/// (or fails: a runtime may not be dropped in an async context).
struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test]
async fn a_sled_stall_takes_no_worker_fails_sends_retryable_and_recovers() {
    let server_runtime = ServerRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let store = SledStore::temporary_with(Durability::Flush).unwrap();
    let w = world_on_store(
        WireConfig::default(),
        HubConfig::default().store_deadline(Some(DEADLINE)),
        Arc::new(store),
        Arc::new(ManualClock::new(NOW_MS)),
    );
    // Sessions are served on the server's runtime.
    let open = |w: &World| {
        let _on = server_runtime.0.as_ref().unwrap().enter();
        Client::open(&w.server, 64)
    };
    let (mut alice, mut bob, mut alice_pc) = (open(&w), open(&w), open(&w));
    alice.login("alice", WEB).await;
    bob.login("bob", WEB).await;
    alice_pc.login("alice", PC).await;

    let stall = Stall::begin();
    // Two sends into two channels: more than the server's two workers
    // would survive if each took one.
    alice.packet(&Packet::Send(alice.sealed_send(1, "carol", 1, "m1")));
    bob.packet(&Packet::Send(bob.sealed_send(1, "dave", 1, "m1")));
    // The server is still there…
    alice_pc.packet(&Packet::Ping);
    let pong = timeout(Duration::from_secs(2), alice_pc.next()).await;
    assert_eq!(
        pong.expect("no PONG while sled stalls: the runtime is wedged"),
        Some(Packet::Pong)
    );
    // …and the stalled sends fail once the deadline passes, retryable.
    for client in [&mut alice, &mut bob] {
        let ack = timeout(DEADLINE * 6, client.sendack())
            .await
            .expect("a stalled send answered within the deadline");
        assert_eq!(ack.reason, ReasonCode::SYSTEM_ERROR);
    }
    assert_eq!(w.hub.stats().store_timeouts, 2);

    // sled goes on: the resends and a new send are stored, each once.
    drop(stall);
    alice.packet(&Packet::Send(alice.sealed_send(1, "carol", 1, "m1")));
    bob.packet(&Packet::Send(bob.sealed_send(1, "dave", 1, "m1")));
    alice.packet(&Packet::Send(alice.sealed_send(2, "carol", 1, "m2")));
    for (client, seqs) in [(&mut alice, &[1, 2][..]), (&mut bob, &[1][..])] {
        for &seq in seqs {
            let ack = timeout(Duration::from_secs(10), client.sendack())
                .await
                .expect("answered once sled goes on");
            assert_eq!((ack.client_seq, ack.reason), (seq, ReasonCode::SUCCESS));
            assert_eq!(ack.message_seq, u64::from(seq) as u32);
        }
    }
    for (from, to, n) in [("alice", "carol", 2), ("bob", "dave", 1)] {
        let channel = Channel::person(&uid_of(from), &uid_of(to));
        let history = w
            .hub
            .store()
            .read(&channel, Page::forward(1, 10))
            .await
            .unwrap();
        let nos: Vec<&str> = history.iter().map(|m| m.client_msg_no.as_str()).collect();
        let expected: Vec<String> = (1..=n).map(|s| format!("cmn-{s}")).collect();
        assert_eq!(nos, expected, "{from}'s history: each send once");
    }
    drop((alice, bob, alice_pc, server_runtime));
}
