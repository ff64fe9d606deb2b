//! WuKongIM's `user.onlinestatus` webhook event: who came and went.
//!
//! [`PresenceTap`] wraps the hub's router and notes each user whose devices
//! changed; [`run`] compares the user's connections with the last it saw
//! and POSTs `uid-flag-online-connid-flagcount-totalcount` strings, as
//! WuKongIM's, batched. These events live in memory, as WuKongIM's do: a
//! server that dies takes its connections with it, and after a restart
//! they log in again, which is told anew.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use imcore::route::LocalDevices;
use imcore::session::ConnectionId;
use imcore::{Device, DeviceFlag, Hub, Message, Router, Uid};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::webhook::Webhook;

/// Users with changes waiting to be looked at, at most; past it changes
/// are dropped (and said so).
const QUEUE: usize = 65_536;
/// The wait before events that failed every try are tried again.
const PAUSE: Duration = Duration::from_secs(1);

/// A router that also tells [`run`] whose devices changed.
#[derive(Debug)]
pub struct PresenceTap {
    inner: Arc<dyn Router>,
    changed: mpsc::Sender<Uid>,
}

impl PresenceTap {
    /// Wraps `inner`; the receiver is for [`run`].
    pub fn new(inner: Arc<dyn Router>) -> (Self, mpsc::Receiver<Uid>) {
        let (changed, rx) = mpsc::channel(QUEUE);
        (PresenceTap { inner, changed }, rx)
    }
}

impl Router for PresenceTap {
    fn attach(&self, local: Arc<dyn LocalDevices>) {
        self.inner.attach(local);
    }

    fn deliver(&self, message: &Arc<Message>, recipients: &[Uid]) {
        self.inner.deliver(message, recipients);
    }

    fn presence_changed(&self, uid: &Uid, login: Option<&Device>) {
        if self.changed.try_send(uid.clone()).is_err() {
            tracing::warn!("webhook: presence queue full, a change of {uid} is not told");
        }
        self.inner.presence_changed(uid, login);
    }

    fn kick(&self, uid: &Uid, flag: Option<DeviceFlag>) {
        self.inner.kick(uid, flag);
    }

    fn online_elsewhere(&self, uid: &Uid) -> bool {
        self.inner.online_elsewhere(uid)
    }

    fn reorder_wait(&self) -> Option<Duration> {
        self.inner.reorder_wait()
    }
}

/// Tells `user.onlinestatus` events for ever.
pub async fn run(hook: Webhook, hub: Hub, mut changed: mpsc::Receiver<Uid>) {
    let mut known: HashMap<Uid, Vec<(ConnectionId, Device)>> = HashMap::new();
    let mut told = 0u64;
    while let Some(first) = changed.recv().await {
        let mut uids = vec![first];
        while let Ok(more) = changed.try_recv() {
            uids.push(more);
        }
        let mut pending: Vec<String> = Vec::new();
        for uid in uids {
            let now = hub.online_connections(&uid);
            let before = known.remove(&uid).unwrap_or_default();
            pending.extend(events(&uid, &before, &now));
            if !now.is_empty() {
                known.insert(uid, now);
            }
        }
        if pending.is_empty() {
            continue;
        }
        // The same events keep their key however often they are tried.
        told += 1;
        let key = format!("user.onlinestatus:{}:{told}", std::process::id());
        let body = Value::from(pending);
        while let Err(e) = hook.post("user.onlinestatus", &key, &body).await {
            tracing::warn!("webhook: {e}; the events wait and are tried again");
            tokio::time::sleep(PAUSE).await;
        }
    }
}

/// The events between two looks at a user's connections: each connection
/// gone (online 0), then each new one (online 1), with the counts after.
fn events(
    uid: &Uid,
    before: &[(ConnectionId, Device)],
    now: &[(ConnectionId, Device)],
) -> Vec<String> {
    let total = now.len();
    let of_flag = |flag: DeviceFlag| now.iter().filter(|(_, d)| d.flag == flag).count();
    let gone = before
        .iter()
        .filter(|(c, _)| !now.iter().any(|(n, _)| n == c));
    let came = now
        .iter()
        .filter(|(c, _)| !before.iter().any(|(b, _)| b == c));
    let line = |(c, d): &(ConnectionId, Device), online: u8| {
        let flag = d.flag;
        format!(
            "{uid}-{}-{online}-{}-{}-{total}",
            u8::from(flag),
            c.get(),
            of_flag(flag)
        )
    };
    gone.map(|e| line(e, 0))
        .chain(came.map(|e| line(e, 1)))
        .collect()
}
