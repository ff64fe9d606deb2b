//! Presence between `NatsRouter`s over a real `nats-server` that the test
//! starts itself: a presence change dropped because the publishing queue
//! was full is counted, and the other node heals it (it sees a gap in the
//! node's numbering and asks for a snapshot) instead of keeping a stale
//! state until the user's next change.
//!
//! Without the binary the test says it is skipped and why; with
//! `IMCORE_REQUIRE_SERVERS=1` (CI) a skip is a failure.

#[path = "common/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use imcore::route::{LocalDevices, UserPresence};
use imcore::{Device, DeviceFlag, Message, NatsConfig, NatsRouter, Router, Uid};
use servers::NatsServer;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// A node's devices, set by the test; `presence_of` can be made to stop
/// (and so stop the router's publishing task) until the test lets it go.
#[derive(Debug, Default)]
struct Devices {
    users: Mutex<HashMap<Uid, UserPresence>>,
    /// Said when the next `presence_of` is reached; it then waits for the
    /// receiver.
    gate: Mutex<Option<(oneshot::Sender<()>, std_mpsc::Receiver<()>)>>,
}

impl Devices {
    fn online(&self, who: &str) {
        let one = UserPresence {
            devices: 1,
            masters: 1,
        };
        self.users.lock().unwrap().insert(uid(who), one);
    }

    /// The next `presence_of` signals `reached` and waits for `release`.
    fn close_gate(&self) -> (oneshot::Receiver<()>, std_mpsc::Sender<()>) {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = std_mpsc::channel();
        *self.gate.lock().unwrap() = Some((reached_tx, release_rx));
        (reached, release)
    }
}

impl LocalDevices for Devices {
    fn deliver(&self, _: Arc<Message>, _: Arc<[Uid]>) {}

    fn deliver_event(&self, _: Arc<imcore::event::StoredEvent>, _: Arc<[Uid]>) {}

    fn logged_in_elsewhere(&self, _: &Device) {}

    fn kick(&self, _: &Uid, _: Option<DeviceFlag>) -> usize {
        0
    }

    fn presence_of(&self, uid: &Uid) -> UserPresence {
        let gate = self.gate.lock().unwrap().take();
        if let Some((reached, release)) = gate {
            let _ = reached.send(());
            // Blocks the publishing task (a worker of its own: the runtime
            // has several) until the test lets it go.
            let _ = release.recv();
        }
        self.users
            .lock()
            .unwrap()
            .get(uid)
            .copied()
            .unwrap_or_default()
    }

    fn presence(&self) -> Vec<(Uid, UserPresence)> {
        let users = self.users.lock().unwrap();
        users.iter().map(|(u, p)| (u.clone(), *p)).collect()
    }
}

async fn router(nats: &NatsServer, id: u16, queue: usize) -> (NatsRouter, Arc<Devices>) {
    let mut config = NatsConfig::new(nats.url(), id);
    config.prefix = "presence-drop".into();
    config.heartbeat = Duration::from_millis(100);
    config.presence_ttl = Duration::from_secs(5);
    config.queue = queue;
    let router = NatsRouter::connect(config).await.expect("join");
    let devices = Arc::new(Devices::default());
    router.attach(devices.clone());
    (router, devices)
}

/// Waits until `seen` holds, checked at each change `router` knows of.
async fn until(router: &NatsRouter, what: &str, seen: impl Fn() -> bool) {
    let mut changes = router.watch();
    let waited = tokio::time::timeout(WAIT, async {
        while !seen() {
            changes.changed().await.expect("router alive");
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// The publishing queue of node 1 (room for [`QUEUE`]).
const QUEUE: usize = 8;

/// Node 1's publishing task is held in the middle of a change while
/// [`QUEUE`] more are made (or heartbeats take their place) and then
/// dave's: the queue is full, so dave's is dropped. Nothing of dave
/// changes after that, yet node 2 learns he is online.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_presence_change_is_healed_on_the_other_node() {
    let Some(nats) = NatsServer::start("a_dropped_presence_change_is_healed_on_the_other_node")
    else {
        return;
    };
    let (a, devices) = router(&nats, 1, QUEUE).await;
    let (b, _) = router(&nats, 2, 1024).await;
    devices.online("zed");
    a.presence_changed(&uid("zed"), None);
    until(&b, "node 2 knows node 1's users", || {
        b.online_elsewhere(&uid("zed"))
    })
    .await;
    a.flush().await.expect("flush");
    let asked_before = b.stats().snapshots_asked;

    let (reached, release) = devices.close_gate();
    devices.online("alice");
    a.presence_changed(&uid("alice"), None);
    reached
        .await
        .expect("the publishing task reaches alice's change");
    let others: Vec<String> = (0..QUEUE).map(|i| format!("user{i}")).collect();
    for other in &others {
        devices.online(other);
        a.presence_changed(&uid(other), None);
    }
    devices.online("dave");
    a.presence_changed(&uid("dave"), None);
    let dropped = a.stats().presence_dropped;
    assert!(
        dropped >= 1,
        "dave's change (at least) found the queue full"
    );
    release.send(()).unwrap();

    until(&b, "node 2 sees dave online", || {
        b.online_elsewhere(&uid("dave"))
    })
    .await;
    for other in others.iter().map(String::as_str).chain(["alice"]) {
        assert!(b.online_elsewhere(&uid(other)), "{other}");
    }
    assert!(
        b.stats().snapshots_asked > asked_before,
        "healed by a snapshot"
    );
    assert_eq!(a.stats().presence_dropped, dropped, "counted once each");
}
