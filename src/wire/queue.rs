//! What the hub queues for one WuKongIM connection: its messages and
//! message events in one bounded queue, and why the hub closed it.
//!
//! [`in_process`](crate::session::in_process) would serve, but keeps
//! messages and events in two tokio channels and the close in a watch
//! channel: about 2.3 KiB for every connection, most of them idle (a tokio
//! channel is 512 bytes, padded against false sharing, and its first block
//! of 32 slots more). Here one queue of futures' unbounded channel (a
//! node per item, a few dozen bytes when empty) is bounded by a count of
//! its own, beside the reason in one small shared cell.

use std::fmt::{self, Debug};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_channel::mpsc;
use futures_util::StreamExt;

use crate::event::StoredEvent;
use crate::model::Message;
use crate::session::{DeviceSink, DisconnectReason, SinkError};

/// One delivery for the connection's writer.
pub(super) enum Delivery {
    /// A message, written as a RECV.
    Message(Arc<Message>),
    /// A message event, written as an EVENT (from version 5).
    Event(Arc<StoredEvent>),
}

/// What both ends share.
struct Shared {
    /// Items queued and not yet taken.
    queued: AtomicUsize,
    capacity: usize,
    closed: OnceLock<DisconnectReason>,
}

/// Creates the hub's end and the session's end of a queue of at most
/// `capacity` items.
pub(super) fn queue(capacity: usize) -> (Arc<WireSink>, WireQueue) {
    let (tx, rx) = mpsc::unbounded();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        capacity: capacity.max(1),
        closed: OnceLock::new(),
    });
    (
        Arc::new(WireSink {
            tx,
            shared: shared.clone(),
        }),
        WireQueue { rx, shared },
    )
}

/// The hub's end: a [`DeviceSink`].
pub(super) struct WireSink {
    tx: mpsc::UnboundedSender<Delivery>,
    shared: Arc<Shared>,
}

impl Debug for WireSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireSink")
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

impl WireSink {
    fn put(&self, item: Delivery) -> Result<(), SinkError> {
        // A place is taken before the item goes in: never more than the
        // bound, however many deliver at once.
        if self.shared.queued.fetch_add(1, Ordering::AcqRel) >= self.shared.capacity {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SinkError::Full);
        }
        self.tx.unbounded_send(item).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            SinkError::Closed
        })
    }
}

impl DeviceSink for WireSink {
    fn deliver(&self, message: Arc<Message>) -> Result<(), SinkError> {
        self.put(Delivery::Message(message))
    }

    fn deliver_event(&self, event: Arc<StoredEvent>) -> Result<(), SinkError> {
        self.put(Delivery::Event(event))
    }

    fn close(&self, reason: DisconnectReason) {
        // Called once; the hub then drops the sink, which ends the queue.
        let _ = self.shared.closed.set(reason);
    }

    fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

/// The session's end.
pub(super) struct WireQueue {
    rx: mpsc::UnboundedReceiver<Delivery>,
    shared: Arc<Shared>,
}

impl WireQueue {
    /// The next item, or `None` once the hub has dropped the sink and
    /// every queued item has been read. Cancel-safe.
    pub(super) async fn recv(&mut self) -> Option<Delivery> {
        let item = self.rx.next().await;
        self.took(item)
    }

    /// The next item if one is queued now.
    pub(super) fn try_recv(&mut self) -> Option<Delivery> {
        let item = self.rx.try_recv().ok();
        self.took(item)
    }

    fn took(&self, item: Option<Delivery>) -> Option<Delivery> {
        if item.is_some() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }

    /// Why the hub closed the connection, if it said.
    pub(super) fn closed_reason(&self) -> Option<DisconnectReason> {
        self.shared.closed.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Channel, ClientMsgNo, MessageId, Uid};

    #[tokio::test]
    async fn items_come_in_order_and_the_reason_after_the_last() {
        let (sink, mut queue) = queue(2);
        let alice = Uid::new("alice").unwrap();
        let channel = Channel::person(&alice, &Uid::new("bob").unwrap());
        let no = ClientMsgNo::new("c-1").unwrap();
        let message = Arc::new(Message::new(MessageId(1), no, alice, channel, 0, "hi"));
        sink.deliver(message.clone()).unwrap();
        assert_eq!(sink.queued(), 1);
        sink.deliver(message.clone()).unwrap();
        assert_eq!(sink.deliver(message.clone()), Err(SinkError::Full));
        // Taking one makes room for one.
        assert!(matches!(queue.recv().await, Some(Delivery::Message(_))));
        assert_eq!(sink.queued(), 1);
        sink.deliver(message.clone()).unwrap();
        assert_eq!(sink.deliver(message), Err(SinkError::Full));
        sink.close(DisconnectReason::Kicked);
        drop(sink);
        assert!(matches!(queue.recv().await, Some(Delivery::Message(_))));
        assert!(matches!(queue.try_recv(), Some(Delivery::Message(_))));
        assert!(queue.try_recv().is_none());
        assert!(queue.recv().await.is_none());
        assert_eq!(queue.closed_reason(), Some(DisconnectReason::Kicked));
    }
}
