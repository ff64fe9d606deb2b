//! The in-process transport: a [`DeviceSink`] on a bounded tokio channel,
//! for devices that live in the host's own process (bots, bridges,
//! tests).

use std::fmt::{self, Debug};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{DeviceSink, DisconnectReason, SinkError};
use crate::event::StoredEvent;
use crate::model::Message;

/// Creates an in-process connection: a [`DeviceSink`] for the hub and the
/// [`InProcessConnection`] the client side reads, with a queue of
/// `capacity` messages (and one of as many message events).
///
/// ```
/// # use std::sync::Arc;
/// let (sink, mut conn) = imcore::session::in_process(16);
/// # let _ = (sink, &mut conn);
/// ```
pub fn in_process(capacity: usize) -> (Arc<InProcessSink>, InProcessConnection) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (events_tx, events) = mpsc::channel(capacity.max(1));
    let (closed_tx, closed_rx) = watch::channel(None);
    (
        Arc::new(InProcessSink {
            tx,
            events: events_tx,
            closed: closed_tx,
        }),
        InProcessConnection {
            rx,
            events: InProcessEvents(Some(events)),
            closed: closed_rx,
        },
    )
}

/// The hub's end of an in-process connection; see [`in_process`].
pub struct InProcessSink {
    tx: mpsc::Sender<Arc<Message>>,
    events: mpsc::Sender<Arc<StoredEvent>>,
    closed: watch::Sender<Option<DisconnectReason>>,
}

impl Debug for InProcessSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessSink")
            .field("capacity", &self.tx.max_capacity())
            .finish()
    }
}

impl DeviceSink for InProcessSink {
    fn deliver(&self, message: Arc<Message>) -> std::result::Result<(), SinkError> {
        self.tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn deliver_event(&self, event: Arc<StoredEvent>) -> std::result::Result<(), SinkError> {
        self.events.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn close(&self, reason: DisconnectReason) {
        self.closed.send_replace(Some(reason));
    }

    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// The client's end of an in-process connection; see [`in_process`].
#[derive(Debug)]
pub struct InProcessConnection {
    rx: mpsc::Receiver<Arc<Message>>,
    events: InProcessEvents,
    closed: watch::Receiver<Option<DisconnectReason>>,
}

/// The message events of an in-process connection, readable apart from
/// its messages ([`InProcessConnection::take_events`]).
///
/// `None` once taken: a connection whose events were taken reads none
/// (a closed channel in its place would cost as much as the queue).
#[derive(Debug)]
pub struct InProcessEvents(Option<mpsc::Receiver<Arc<StoredEvent>>>);

impl InProcessEvents {
    /// The next message event, or `None` once the hub has closed the
    /// connection and every queued event has been read.
    pub async fn recv(&mut self) -> Option<Arc<StoredEvent>> {
        self.0.as_mut()?.recv().await
    }

    /// Every message event queued now.
    pub fn drain(&mut self) -> Vec<Arc<StoredEvent>> {
        let Some(rx) = self.0.as_mut() else {
            return Vec::new();
        };
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }
}

impl InProcessConnection {
    /// The next message, or `None` once the hub has closed the connection
    /// and every queued message has been read.
    pub async fn recv(&mut self) -> Option<Arc<Message>> {
        self.rx.recv().await
    }

    /// The next message if one is queued now.
    pub fn try_recv(&mut self) -> Option<Arc<Message>> {
        self.rx.try_recv().ok()
    }

    /// Everything queued now.
    pub fn drain(&mut self) -> Vec<Arc<Message>> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }

    /// The next message event, or `None` once the hub has closed the
    /// connection and every queued event has been read.
    pub async fn recv_event(&mut self) -> Option<Arc<StoredEvent>> {
        self.events.recv().await
    }

    /// Every message event queued now.
    pub fn drain_events(&mut self) -> Vec<Arc<StoredEvent>> {
        self.events.drain()
    }

    /// The connection's message events, to read apart from its messages
    /// (in a `select!` with [`recv`](Self::recv)); this connection's own
    /// event methods then see none.
    pub fn take_events(&mut self) -> InProcessEvents {
        InProcessEvents(self.events.0.take())
    }

    /// Why the hub closed this connection, if it has.
    pub fn closed_reason(&self) -> Option<DisconnectReason> {
        *self.closed.borrow()
    }

    /// Waits until the hub closes this connection, and says why.
    pub async fn closed(&mut self) -> DisconnectReason {
        match self.closed.wait_for(Option::is_some).await {
            Ok(r) => r.unwrap_or(DisconnectReason::Closed),
            // The sink is gone without a word: treat it as a plain close.
            Err(_) => DisconnectReason::Closed,
        }
    }
}
