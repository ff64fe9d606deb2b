//! The transport: one WebSocket is one device of one user.
//!
//! How it maps onto the crate's traits:
//!
//! - **Login** registers the socket with [`Hub::connect`], handing the hub
//!   a [`WsSink`]: the crate's [`DeviceSink`] trait is the whole contract
//!   between the hub and a transport. The hub calls
//!   [`DeviceSink::deliver`] for every message to this device, in seq
//!   order per group, and [`DeviceSink::close`] when it drops the device
//!   (another tab logged in as the same user, a shutdown).
//! - `deliver` must neither block nor call back into the hub: [`WsSink`]
//!   only queues the message on a bounded channel and returns
//!   [`SinkError::Full`] when the page cannot keep up (the hub then drops
//!   the device as a slow consumer; the page catches up by history).
//! - The socket's task, [`serve`], reads the queue and the socket in turn:
//!   a delivered message becomes a `message` frame (with the user's unread
//!   count, read back from the hub); a revocation command the hub sends
//!   every member becomes a `revoked` frame, acknowledged with
//!   [`Hub::ack`] so that it is consumed; a frame from the page becomes
//!   calls on the hub ([`crate::requests`]).
//! - When the socket ends, [`Hub::disconnect`] forgets the device.

use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use imcore::revoke::REVOKE_CMD;
use imcore::session::{ConnectionId, SinkError};
use imcore::{DeviceSink, DisconnectReason, Hub, Message, Uid};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::protocol::{error, ClientFrame, MessageView, ServerFrame};
use crate::requests::Session;
use crate::App;

/// Deliveries queued for one page at most; past it the page is a slow
/// consumer.
const QUEUE: usize = 256;

/// The hub's end of one page: a bounded queue the socket's task reads.
#[derive(Debug)]
pub struct WsSink {
    queue: mpsc::Sender<Arc<Message>>,
    closed: watch::Sender<Option<DisconnectReason>>,
}

/// The socket task's end of a [`WsSink`].
pub struct Inbox {
    queue: mpsc::Receiver<Arc<Message>>,
    closed: watch::Receiver<Option<DisconnectReason>>,
}

/// A sink and the inbox it fills.
pub fn ws_sink() -> (Arc<WsSink>, Inbox) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (closed_tx, closed_rx) = watch::channel(None);
    let sink = WsSink {
        queue: tx,
        closed: closed_tx,
    };
    let inbox = Inbox {
        queue: rx,
        closed: closed_rx,
    };
    (Arc::new(sink), inbox)
}

impl DeviceSink for WsSink {
    fn deliver(&self, message: Arc<Message>) -> Result<(), SinkError> {
        self.queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        })
    }

    fn close(&self, reason: DisconnectReason) {
        self.closed.send_replace(Some(reason));
    }

    fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Serves one WebSocket until the page or the hub closes it.
pub async fn serve(app: App, socket: WebSocket) {
    let (mut out, mut incoming) = socket.split();
    let mut session = Session::new(app.clone());
    // Before login there is no inbox: only frames from the page.
    let mut inbox: Option<(Uid, ConnectionId, Inbox)> = None;
    loop {
        let frames = tokio::select! {
            read = incoming.next() => match read {
                Some(Ok(WsMessage::Text(text))) => {
                    let (frames, login) = on_text(&mut session, &text).await;
                    if let Some(logged_in) = login {
                        inbox = Some(logged_in);
                    }
                    frames
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    vec![error("bad_request", "frames are JSON text", None)]
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue, // pings: axum answers them
            },
            delivered = next_delivery(&mut inbox) => match delivered {
                Delivery::Message(m) => on_delivered(&app.hub, &inbox, &m).await,
                Delivery::Closed(reason) => {
                    let frame = ServerFrame::Closed { reason: reason_name(reason) };
                    let _ = send(&mut out, &frame).await;
                    inbox = None; // the hub has forgotten the device already
                    break;
                }
            },
        };
        let mut written = true;
        for frame in frames {
            written = written && send(&mut out, &frame).await.is_ok();
        }
        if !written {
            break;
        }
    }
    if let Some((uid, connection, _)) = inbox {
        app.hub.disconnect(&uid, connection);
    }
    let _ = out.close().await;
}

/// A text frame from the page: its answers, and the new inbox on login.
async fn on_text(
    session: &mut Session,
    text: &str,
) -> (Vec<ServerFrame>, Option<(Uid, ConnectionId, Inbox)>) {
    match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => session.handle(frame).await,
        Err(e) => (vec![error("bad_request", e.to_string(), None)], None),
    }
}

enum Delivery {
    Message(Arc<Message>),
    Closed(DisconnectReason),
}

/// The next message the hub delivered, or the hub's close; pending for
/// ever before login.
async fn next_delivery(inbox: &mut Option<(Uid, ConnectionId, Inbox)>) -> Delivery {
    let Some((_, _, inbox)) = inbox.as_mut() else {
        return std::future::pending().await;
    };
    tokio::select! {
        // Queued messages first: a close comes after what was delivered.
        biased;
        m = inbox.queue.recv() => match m {
            Some(m) => Delivery::Message(m),
            None => Delivery::Closed(DisconnectReason::Closed),
        },
        closed = inbox.closed.wait_for(Option::is_some) => {
            Delivery::Closed(closed.ok().and_then(|r| *r).unwrap_or(DisconnectReason::Closed))
        }
    }
}

/// The parameters of the hub's revocation command
/// (`{"type":99,"cmd":"messageRevoke","param":{…}}`).
#[derive(Deserialize)]
struct Command {
    cmd: String,
    #[serde(default)]
    param: Option<RevokeParam>,
}

#[derive(Deserialize)]
struct RevokeParam {
    message_id: String,
    channel_id: String,
    message_seq: u64,
    revoker: String,
}

/// The frames for a message the hub delivered to this device.
async fn on_delivered(
    hub: &Hub,
    inbox: &Option<(Uid, ConnectionId, Inbox)>,
    m: &Message,
) -> Vec<ServerFrame> {
    let Some((uid, connection, _)) = inbox else {
        return Vec::new();
    };
    if m.flags.sync_once {
        // A command (the hub's revocation notice, or another host's):
        // acknowledged by this master device, so consumed for the user.
        let _ = hub.ack(uid, *connection, m.message_id, m.message_seq).await;
        return match serde_json::from_slice::<Command>(&m.payload) {
            Ok(Command {
                cmd,
                param: Some(p),
            }) if cmd == REVOKE_CMD => vec![ServerFrame::Revoked {
                channel: p.channel_id,
                message_id: p.message_id,
                seq: p.message_seq,
                revoker: p.revoker,
            }],
            _ => Vec::new(),
        };
    }
    let unread = match hub.conversation(uid, &m.channel).await {
        Ok(c) => c.map_or(0, |c| c.unread),
        Err(_) => 0,
    };
    vec![ServerFrame::Message {
        message: MessageView::live(m),
        unread,
    }]
}

/// The page's word for why the hub closed it.
fn reason_name(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Kicked => "kicked",
        DisconnectReason::Replaced => "replaced",
        DisconnectReason::SlowConsumer => "slow_consumer",
        DisconnectReason::Closed => "closed",
        DisconnectReason::Shutdown => "shutdown",
    }
}

/// Writes one frame as a JSON text message.
async fn send<S>(out: &mut S, frame: &ServerFrame) -> Result<(), axum::Error>
where
    S: futures_util::Sink<WsMessage, Error = axum::Error> + Unpin,
{
    let json = serde_json::to_string(frame).unwrap_or_default();
    out.send(WsMessage::Text(Utf8Bytes::from(json))).await
}
