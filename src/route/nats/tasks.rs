//! A [`NatsRouter`](super::NatsRouter)'s tasks: one publishes everything
//! the node says, in order; one hands other nodes' messages to this node's
//! devices; one follows the other nodes (heartbeats, presence, kicks,
//! snapshots); one says this node is alive and forgets the silent ones.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Subject, Subscriber};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::event::{Event, Mark};
use super::{Notice, Outgoing, Shared};
use crate::error::{Error, Result};
use crate::model::{Message, Uid};

/// Users per snapshot part (NATS' default payload limit is 1 MiB).
const SNAPSHOT_PART: usize = 4_000;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable {
        backend: "nats",
        source: Box::new(e),
    }
}

/// Subscribes, then starts the tasks.
pub(super) async fn start(
    shared: Arc<Shared>,
    outgoing: mpsc::Receiver<Outgoing>,
    reconnected: mpsc::UnboundedReceiver<()>,
) -> Result<()> {
    let client = &shared.client;
    let node = shared.config.node_id;
    let subscribe =
        |subject: String| async move { client.subscribe(subject).await.map_err(unavailable) };
    let deliveries = subscribe(shared.subject(&format!("node.{node}"))).await?;
    let presence = subscribe(shared.subject("presence")).await?;
    let snapshots = subscribe(shared.subject(&format!("snapshot.{node}"))).await?;
    let inbox = subscribe(shared.inbox.clone()).await?;
    tokio::spawn(publish(shared.clone(), outgoing));
    tokio::spawn(deliver(shared.clone(), deliveries));
    tokio::spawn(follow(shared.clone(), presence, snapshots, inbox));
    tokio::spawn(heartbeat(shared, reconnected));
    Ok(())
}

/// Resolves once the router is dropped.
async fn stopped(shared: &Shared) {
    let mut stop = shared.stop.subscribe();
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Publishes what the node says, in the order it said it: the presence
/// numbering is given here, so that it follows the publishing order.
/// Messages for one node that wait together go as one NATS message.
async fn publish(shared: Arc<Shared>, mut outgoing: mpsc::Receiver<Outgoing>) {
    let mut counter = 0u64;
    let mut waiting = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            item = outgoing.recv() => item,
            () = stopped(&shared) => None,
        };
        let Some(first) = first else {
            return;
        };
        waiting.push(first);
        while waiting.len() < BATCH {
            match outgoing.try_recv() {
                Ok(item) => waiting.push(item),
                Err(_) => break,
            }
        }
        // Messages per node, in order, sent before anything else that
        // waited after them.
        let mut batches: Batches = Vec::new();
        for item in waiting.drain(..) {
            match item {
                Outgoing::Deliver {
                    node,
                    message,
                    recipients,
                } => match batches.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, batch)) => batch.push((message, recipients)),
                    None => batches.push((node, vec![(message, recipients)])),
                },
                Outgoing::DeliverEvent {
                    node,
                    event,
                    recipients,
                } => {
                    // After the messages before it: an event follows its
                    // message.
                    send_batches(&shared, &mut batches).await;
                    let subject = shared.subject(&format!("node.{node}"));
                    put(&shared, subject, &Event::Stream(event, recipients)).await;
                }
                Outgoing::Notice(notice) => {
                    send_batches(&shared, &mut batches).await;
                    say(&shared, notice, &mut counter).await;
                }
            }
        }
        send_batches(&shared, &mut batches).await;
    }
}

/// Messages waiting for each node, in order, with their recipients there.
type Batches = Vec<(u16, Vec<(Arc<Message>, Vec<Uid>)>)>;

/// Events per NATS message at most, and items taken from the queue at once.
const BATCH: usize = 64;

async fn send_batches(shared: &Shared, batches: &mut Batches) {
    for (node, batch) in batches.drain(..) {
        let subject = shared.subject(&format!("node.{node}"));
        put(shared, subject, &Event::Deliver(batch)).await;
    }
}

/// Encodes and publishes one event, counting it.
async fn put(shared: &Shared, subject: String, event: &Event) {
    let sent = match event.encode() {
        Ok(bytes) => shared.client.publish(subject, bytes).await.is_ok(),
        Err(_) => false,
    };
    count(shared, sent);
}

/// Publishes what is not a delivery.
async fn say(shared: &Shared, notice: Notice, counter: &mut u64) {
    // The numbers of the changes dropped before they were queued are
    // skipped: what says this node's count next (a change, a heartbeat, a
    // snapshot) shows the others a gap. Taken before the state is read,
    // so that a snapshot numbered past a dropped change holds it.
    if matches!(
        notice,
        Notice::Presence { .. } | Notice::Beat { .. } | Notice::Snapshot { .. }
    ) {
        *counter += shared.presence_lost.swap(0, Ordering::AcqRel);
    }
    let me = shared.config.node_id;
    let mark = |counter| Mark {
        node: me,
        incarnation: shared.incarnation,
        counter,
    };
    let presence = shared.subject("presence");
    match notice {
        Notice::Presence { uid, login } => {
            let Some(local) = shared.local.get() else {
                return;
            };
            *counter += 1;
            // The state now, not when the change was queued: the last
            // change published for a user is its latest state.
            let event = Event::Presence {
                mark: mark(*counter),
                presence: local.presence_of(&uid),
                uid,
                login,
            };
            put(shared, presence, &event).await;
        }
        Notice::Kick { uid, flag } => {
            put(
                shared,
                presence,
                &Event::Kick {
                    node: me,
                    uid,
                    flag,
                },
            )
            .await;
        }
        Notice::Beat { hello } => {
            let event = Event::Beat {
                mark: mark(*counter),
                hello,
            };
            put(shared, presence, &event).await;
        }
        Notice::AskSnapshot { node } => {
            shared
                .counters
                .snapshots_asked
                .fetch_add(1, Ordering::Relaxed);
            let subject = shared.subject(&format!("snapshot.{node}"));
            let inbox = Subject::from(shared.inbox.as_str());
            let sent = shared
                .client
                .publish_with_reply(subject, inbox, Default::default())
                .await;
            count(shared, sent.is_ok());
        }
        Notice::Snapshot { reply } => {
            let users = shared.local.get().map(|l| l.presence()).unwrap_or_default();
            let chunks: Vec<_> = users.chunks(SNAPSHOT_PART).collect();
            let parts = u32::try_from(chunks.len().max(1)).unwrap_or(u32::MAX);
            for part in 0..parts {
                let users = chunks
                    .get(part as usize)
                    .map_or_else(Vec::new, |c| c.to_vec());
                let event = Event::Snapshot {
                    mark: mark(*counter),
                    part,
                    parts,
                    users,
                };
                put(shared, reply.to_string(), &event).await;
            }
        }
        Notice::Flush(done) => {
            let _ = done.send(shared.client.flush().await.map_err(unavailable));
        }
    }
}

fn count(shared: &Shared, sent: bool) {
    let counter = match sent {
        true => &shared.counters.published,
        false => &shared.counters.dropped,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Decodes one event, counting it.
fn decode(shared: &Shared, message: &async_nats::Message) -> Option<Event> {
    shared.counters.received.fetch_add(1, Ordering::Relaxed);
    match Event::decode(&message.payload) {
        Ok(event) => Some(event),
        Err(e) => {
            shared.counters.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(subject = %message.subject, error = %e, "an event from another node does not decode");
            None
        }
    }
}

/// Hands other nodes' messages to this node's devices.
async fn deliver(shared: Arc<Shared>, mut deliveries: Subscriber) {
    loop {
        let message = tokio::select! {
            message = deliveries.next() => message,
            () = stopped(&shared) => None,
        };
        let Some(message) = message else {
            return;
        };
        let Some(local) = shared.local.get() else {
            continue;
        };
        match decode(&shared, &message) {
            Some(Event::Deliver(batch)) => {
                for (message, recipients) in batch {
                    local.deliver(message, recipients.into());
                }
            }
            Some(Event::Stream(event, recipients)) => {
                local.deliver_event(event, recipients.into());
            }
            _ => {}
        }
    }
}

/// Follows the other nodes: heartbeats, presence changes, kicks, snapshot
/// requests and answers.
async fn follow(
    shared: Arc<Shared>,
    mut presence: Subscriber,
    mut snapshots: Subscriber,
    mut inbox: Subscriber,
) {
    loop {
        tokio::select! {
            message = presence.next() => match message {
                Some(m) => if let Some(event) = decode(&shared, &m) { on_event(&shared, event) },
                None => return,
            },
            message = inbox.next() => match message {
                Some(m) => if let Some(event) = decode(&shared, &m) { on_event(&shared, event) },
                None => return,
            },
            message = snapshots.next() => match message {
                Some(m) => if let Some(reply) = m.reply { shared.notify(Notice::Snapshot { reply }) },
                None => return,
            },
            () = stopped(&shared) => return,
        }
    }
}

fn on_event(shared: &Shared, event: Event) {
    let me = shared.config.node_id;
    let now = Instant::now();
    let ask = |node| shared.notify(Notice::AskSnapshot { node });
    match event {
        Event::Beat { mark, hello } => {
            if mark.node == me {
                if mark.incarnation != shared.incarnation {
                    tracing::error!(node = me, "another live node has this node's id");
                }
                return;
            }
            let asking = shared.views_mut().beat(&mark, now);
            if hello {
                shared.notify(Notice::Beat { hello: false });
            }
            if asking {
                ask(mark.node);
            }
            shared.changed();
        }
        Event::Presence {
            mark,
            uid,
            presence,
            login,
        } => {
            if mark.node == me {
                return;
            }
            if let (Some(device), Some(local)) = (login, shared.local.get()) {
                local.logged_in_elsewhere(&device);
            }
            if shared.views_mut().change(&mark, &uid, presence, now) {
                ask(mark.node);
            }
            shared.changed();
        }
        Event::Kick { node, uid, flag } => {
            if let (true, Some(local)) = (node != me, shared.local.get()) {
                local.kick(&uid, flag);
            }
        }
        Event::Snapshot {
            mark,
            part,
            parts,
            users,
        } => {
            if shared
                .views_mut()
                .snapshot_part(&mark, part, parts, users, now)
            {
                ask(mark.node);
            }
            shared.changed();
        }
        Event::Deliver(_) | Event::Stream(..) => {}
    }
}

/// Says this node is alive every heartbeat (and at once after a
/// reconnection, asking the others to answer), and forgets silent nodes.
async fn heartbeat(shared: Arc<Shared>, mut reconnected: mpsc::UnboundedReceiver<()>) {
    let mut ticks = tokio::time::interval(shared.config.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                shared.notify(Notice::Beat { hello: false });
                if shared.views_mut().expire(Instant::now()) {
                    shared.changed();
                }
            }
            Some(()) = reconnected.recv() => shared.notify(Notice::Beat { hello: true }),
            () = stopped(&shared) => return,
        }
    }
}
