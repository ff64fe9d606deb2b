//! A logged-in connection: packets from the client, deliveries from the
//! hub, and SENDs answered in order while deliveries go on being written.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use tokio::time::Instant;

use crate::error::Error;
use crate::hub::{Hub, SendAck, SendRequest};
use crate::model::{Channel, ChannelId, ChannelType, ClientMsgNo, Flags, Message, MessageId, Uid};
use crate::reason::ReasonCode;
use crate::session::{ConnectionId, DisconnectReason};
use crate::wire::cipher::SessionCipher;
use crate::wire::packet::{
    has_events, DisconnectPacket, EventPacket, Packet, RecvPacket, RecvackPacket, SendPacket,
    SendackPacket, SubPacket, SubackPacket,
};
use crate::wire::queue::{Delivery, WireQueue};
use crate::wire::server::SessionEnd;
use crate::wire::transport::{BoxError, Inbound, Out, PacketReader};
use crate::wire::WireError;

/// SENDs decoded ahead of their answers at most: past this the connection
/// stops decoding what it has read, and stops reading, and the client's
/// own window (and TCP) hold it back.
const MAX_QUEUED_SENDS: usize = 64;

/// Bytes of SENDs (their payloads and fields as sent) decoded ahead of
/// their answers at most, whatever their number: past this, as past
/// [`MAX_QUEUED_SENDS`]. With the SEND that crosses it (at most a frame),
/// what a connection holds decoded stays under 1 MiB with the default
/// frame limit (256 KiB).
const MAX_QUEUED_SEND_BYTES: usize = 128 * 1024;

/// Packets a session handles between two yields to the runtime. A small
/// SEND's check and decryption take microseconds: sixteen of them keep the
/// time a worker spends on one connection to a fraction of a millisecond,
/// so that other connections (a PING) are not kept waiting behind one
/// client's burst, while the cost of yielding (a reschedule) stays a small
/// part of the work; and a full queue ([`MAX_QUEUED_SENDS`]) is filled in
/// four turns.
const YIELD_EVERY: usize = 16;

/// Deliveries written to the transport at once at most (each its own
/// frame, one flush).
const WRITE_BATCH: usize = 64;

/// SENDs passed to the hub at once, answered together.
type Batch = Pin<Box<dyn Future<Output = Vec<SendackPacket>> + Send>>;

/// A SEND read and verified: refused on the spot, or a request for the hub
/// with the SEND's client seq and header flags (its SENDACK carries them).
enum Queued {
    Refused(SendackPacket),
    Request(u32, Flags, SendRequest),
}

/// SENDs read and verified but not yet answered. Those read while a batch
/// is in the hub go to it together as the next batch
/// ([`Hub::send_all`]): they take seqs in the order the client sent them
/// and share the store's flushes. Meanwhile the connection goes on writing
/// deliveries: a connection waiting for its own sends to be stored never
/// stops draining what others send it.
#[derive(Default)]
struct Sends {
    queued: VecDeque<Queued>,
    /// The bytes of the SENDs queued ([`send_bytes`]).
    queued_bytes: usize,
    /// The batch in the hub, its size and its bytes.
    current: Option<(usize, usize, Batch)>,
}

impl Sends {
    /// No room for another SEND until answers come.
    fn full(&self) -> bool {
        let (n, bytes) = self.current.as_ref().map_or((0, 0), |(n, b, _)| (*n, *b));
        self.queued.len() + n >= MAX_QUEUED_SENDS
            || self.queued_bytes + bytes >= MAX_QUEUED_SEND_BYTES
    }

    fn push(&mut self, send: Queued, bytes: usize) {
        self.queued.push_back(send);
        self.queued_bytes += bytes;
    }

    /// The answers to the batch in the hub, starting one with every SEND
    /// queued if there is none; never ready when nothing is queued.
    /// Cancel-safe: the batch stays in the hub.
    async fn answered(&mut self, hub: &Hub) -> Vec<SendackPacket> {
        if self.current.is_none() && !self.queued.is_empty() {
            let batch: Vec<Queued> = self.queued.drain(..).collect();
            let bytes = std::mem::take(&mut self.queued_bytes);
            self.current = Some((batch.len(), bytes, Box::pin(hub_send(hub.clone(), batch))));
        }
        let Some((_, _, current)) = self.current.as_mut() else {
            return std::future::pending().await;
        };
        let acks = current.await;
        self.current = None;
        acks
    }
}

/// A logged-in connection.
pub(super) struct Session<'a> {
    pub(super) hub: &'a Hub,
    pub(super) uid: Uid,
    pub(super) connection: ConnectionId,
    pub(super) cipher: SessionCipher,
    /// The protocol version the session speaks (negotiated at login): the
    /// transport writes every packet at it.
    pub(super) version: u8,
}

impl Session<'_> {
    pub(super) async fn run<I, E, O>(
        &mut self,
        reader: &mut PacketReader,
        incoming: &mut I,
        outgoing: &mut Out<'_, O>,
        mut deliveries: WireQueue,
        idle_timeout: Option<Duration>,
    ) -> Result<SessionEnd, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let mut sends = Sends::default();
        let idle = idle_timeout.unwrap_or(Duration::MAX);
        let mut deadline = Instant::now().checked_add(idle);
        // Packets handled since the session last yielded.
        let mut handled = 0;
        loop {
            let silence = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // What only runs for a moment is boxed (handling a packet,
            // writing): a future keeps room for its largest state for as
            // long as it lives, and a session spends most of its life
            // idle, in this select.
            // What is read is decoded a packet at a time, while there is
            // room for SENDs; new chunks are read once nothing whole is
            // left (the packets that came with CONNECT first). A chunk of
            // any size thus holds no more SENDs decoded at once than one
            // packet per chunk would.
            tokio::select! {
                () = std::future::ready(()), if reader.ready() && !sends.full() => {
                    // The client is behind its own packets, not silent.
                    deadline = Instant::now().checked_add(idle);
                    while handled < YIELD_EVERY && !sends.full() {
                        let Some(packet) = reader.buffered()? else { break };
                        handled += 1;
                        if let Some(end) = Box::pin(self.handle(packet, outgoing, &mut sends)).await? {
                            return Ok(end);
                        }
                    }
                }
                chunk = incoming.next(), if !reader.ready() && !sends.full() => {
                    let chunk = match chunk {
                        None => return Ok(SessionEnd::ClientClosed),
                        Some(Err(e)) => return Err(WireError::Transport(e.into())),
                        Some(Ok(chunk)) => chunk,
                    };
                    deadline = Instant::now().checked_add(idle);
                    reader.push(chunk);
                }
                acks = sends.answered(self.hub) => {
                    Box::pin(outgoing.send_all(acks.into_iter().map(Packet::Sendack).collect::<Vec<_>>())).await?;
                }
                queued = deliveries.recv() => match queued {
                    // Below version 5 the client has no EVENT packet: it
                    // reads the folded message from history.
                    Some(Delivery::Event(event)) => {
                        let packet = super::events::event_packet(&event, &self.uid);
                        Box::pin(self.write_event(packet, outgoing)).await?;
                    }
                    Some(Delivery::Message(message)) => {
                        // Let the tasks already waiting run first: under
                        // load, they are sends fanning out, and what they
                        // queue for this connection joins this write.
                        tokio::task::yield_now().await;
                        // Whatever else is queued goes in the same write; an
                        // event met on the way goes right after it.
                        let mut batch = vec![self.recv_packet(&message)?];
                        let mut event = None;
                        while batch.len() < WRITE_BATCH {
                            match deliveries.try_recv() {
                                Some(Delivery::Message(next)) => batch.push(self.recv_packet(&next)?),
                                Some(Delivery::Event(next)) => {
                                    event = Some(next);
                                    break;
                                }
                                None => break,
                            }
                        }
                        Box::pin(outgoing.send_all(batch)).await?;
                        if let Some(event) = event {
                            let packet = super::events::event_packet(&event, &self.uid);
                            Box::pin(self.write_event(packet, outgoing)).await?;
                        }
                    }
                    None => {
                        let reason = deliveries.closed_reason().unwrap_or(DisconnectReason::Closed);
                        return Box::pin(self.closed_by_hub(reason, outgoing, &mut sends)).await;
                    }
                },
                () = silence => return Ok(SessionEnd::TimedOut),
            }
            if handled >= YIELD_EVERY {
                // Checking and decrypting SENDs never waits: without this,
                // a client's burst would hold a worker thread until done.
                handled = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    /// The hub closed the connection, every delivery queued for it
    /// written. The batch of SENDs in the hub is answered first (a slow
    /// consumer's excepted: it could not take them), waiting for it at
    /// most the write timeout: a kicked client would not learn otherwise
    /// that they were stored. SENDs not yet passed to the hub stay
    /// unanswered, as those it refused for closing: a client that
    /// reconnects sends them again.
    ///
    /// Then a kick, a replacement or a host's close is told with a
    /// DISCONNECT; a slow consumer and a shutdown are just closed, so that
    /// the client reconnects by itself
    /// ([`DisconnectReason::expects_reconnect`]).
    async fn closed_by_hub<O>(
        &self,
        reason: DisconnectReason,
        outgoing: &mut Out<'_, O>,
        sends: &mut Sends,
    ) -> Result<SessionEnd, WireError>
    where
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        if reason != DisconnectReason::SlowConsumer && sends.current.is_some() {
            // Past the bound the batch still finishes, in the background.
            if let Ok(acks) = tokio::time::timeout(outgoing.timeout, sends.answered(self.hub)).await
            {
                outgoing
                    .send_all(acks.into_iter().map(Packet::Sendack).collect::<Vec<_>>())
                    .await?;
            }
        }
        if !reason.expects_reconnect() {
            let packet = Packet::Disconnect(DisconnectPacket {
                reason: reason.reason_code(),
                reason_text: disconnect_text(reason).into(),
            });
            outgoing.send(&packet).await?;
        }
        Ok(SessionEnd::Disconnected(reason))
    }

    /// Handles one packet from the client; `Some` when it ends the session.
    async fn handle<O>(
        &mut self,
        inbound: Inbound,
        outgoing: &mut Out<'_, O>,
        sends: &mut Sends,
    ) -> Result<Option<SessionEnd>, WireError>
    where
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let packet = match inbound {
            Inbound::Packet(packet) => packet,
            Inbound::TooLarge { flags, client_seq } => {
                let refusal = refused_send(client_seq, flags, ReasonCode::NOT_ALLOW_SEND);
                outgoing.send(&Packet::Sendack(refusal)).await?;
                return Ok(None);
            }
        };
        match packet {
            Packet::Ping => outgoing.send(&Packet::Pong).await?,
            Packet::Send(send) => {
                let bytes = send_bytes(&send);
                sends.push(self.send(send), bytes);
            }
            Packet::Recvack(ack) => Box::pin(self.recvack(ack)).await?,
            Packet::Sub(sub) => outgoing.send(&Packet::Suback(unsupported_sub(sub))).await?,
            Packet::Disconnect(_) => return Ok(Some(SessionEnd::ClientClosed)),
            other => return Err(WireError::Unexpected(other.packet_type())),
        }
        Ok(None)
    }

    /// Verifies and decrypts a SEND now: refused, or a request for the hub.
    /// A message key that does not verify is a payload that does not
    /// decode (reason 9), as WuKongIM's server answers it.
    fn send(&self, send: SendPacket) -> Queued {
        let (client_seq, flags) = (send.client_seq, send.flags);
        let refuse = move |reason| Queued::Refused(refused_send(client_seq, flags, reason));
        match self.cipher.send_msg_key(&send) {
            Ok(key) if key == send.msg_key => {}
            _ => return refuse(ReasonCode::PAYLOAD_DECODE_ERROR),
        }
        let Ok(payload) = self.cipher.decrypt(&send.payload) else {
            return refuse(ReasonCode::PAYLOAD_DECODE_ERROR);
        };
        match self.request(&send, payload) {
            Ok(request) => Queued::Request(client_seq, flags, request),
            Err(e) => refuse(e.reason_code().unwrap_or(ReasonCode::SYSTEM_ERROR)),
        }
    }

    fn request(&self, send: &SendPacket, payload: Vec<u8>) -> crate::Result<SendRequest> {
        let channel = Channel::new(
            ChannelId::new(&send.channel_id)?,
            ChannelType::try_from(send.channel_type)?,
        );
        let flags = Flags {
            dup: false,
            ..send.flags
        };
        let mut request = SendRequest::new(self.uid.clone(), channel, payload)
            .flags(flags)
            .setting(send.setting)
            .client_msg_no(ClientMsgNo::new(&send.client_msg_no)?)
            .from_connection(self.connection);
        request.topic = send.topic.clone();
        Ok(request)
    }

    async fn recvack(&self, ack: RecvackPacket) -> Result<(), WireError> {
        let Ok(id) = u64::try_from(ack.message_id) else {
            return Ok(());
        };
        self.hub
            .ack(
                &self.uid,
                self.connection,
                MessageId(id),
                u64::from(ack.message_seq),
            )
            .await
            .map_err(WireError::Hub)?;
        Ok(())
    }

    /// The RECV carrying `message` to this user, encrypted for this session:
    /// the message's setting and topic as sent, and no red dot on the
    /// sender's own other devices (as WuKongIM does: nothing is unread
    /// for whoever wrote it).
    fn recv_packet(&self, message: &Message) -> Result<Packet, WireError> {
        let channel = message.channel.as_seen_by(&self.uid);
        let mut recv = RecvPacket {
            flags: Flags {
                dup: false,
                red_dot: message.flags.red_dot && message.from_uid != self.uid,
                ..message.flags
            },
            setting: message.setting.with_topic(message.topic.is_some()),
            msg_key: String::new(),
            from_uid: message.from_uid.as_str().into(),
            channel_id: channel.id.as_str().into(),
            channel_type: channel.kind.as_u8(),
            // The hub keeps no expiry: a message lives for ever.
            expire: 0,
            client_msg_no: message.client_msg_no.as_str().into(),
            stream: None,
            message_id: i64::try_from(message.message_id.0)
                .map_err(|_| WireError::OutOfRange("message id"))?,
            message_seq: u32::try_from(message.message_seq)
                .map_err(|_| WireError::OutOfRange("message seq"))?,
            timestamp: i32::try_from(message.timestamp_secs())
                .map_err(|_| WireError::OutOfRange("timestamp"))?,
            topic: message.topic.clone(),
            payload: Bytes::from(self.cipher.encrypt(&message.payload)),
        };
        recv.msg_key = self.cipher.recv_msg_key(&recv)?;
        Ok(Packet::Recv(recv))
    }
}

impl Session<'_> {
    /// The packet carrying `event` to this session's client: `None` below
    /// protocol version 5, which has no EVENT packet (such a client is
    /// never sent one).
    pub(super) fn event_packet(&self, event: EventPacket) -> Option<Packet> {
        has_events(self.version).then_some(Packet::Event(event))
    }

    /// Writes `event` to the client if its version has EVENT packets;
    /// `false` (nothing written) below version 5.
    pub(super) async fn write_event<O>(
        &self,
        event: EventPacket,
        outgoing: &mut Out<'_, O>,
    ) -> Result<bool, WireError>
    where
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        match self.event_packet(event) {
            Some(packet) => outgoing.send(&packet).await.map(|()| true),
            None => Ok(false),
        }
    }
}

/// What a SEND weighs against [`MAX_QUEUED_SEND_BYTES`]: its payload and
/// fields, about its size as sent (and, decrypted, as held).
fn send_bytes(send: &SendPacket) -> usize {
    send.payload.len()
        + send.channel_id.len()
        + send.client_msg_no.len()
        + send.msg_key.len()
        + send.topic.as_ref().map_or(0, String::len)
        + send.stream_no.as_ref().map_or(0, String::len)
}

/// Sends a batch through the hub; the SENDACKs answering it, in order,
/// but none for a SEND the hub refused because it is closing.
async fn hub_send(hub: Hub, batch: Vec<Queued>) -> Vec<SendackPacket> {
    let mut requests = Vec::with_capacity(batch.len());
    // Each SEND's answer, or who sent it, to answer once the hub has.
    let slots: Vec<Result<(u32, Flags, Uid), SendackPacket>> = batch
        .into_iter()
        .map(|q| match q {
            Queued::Refused(ack) => Err(ack),
            Queued::Request(client_seq, flags, request) => {
                let from = request.from_uid.clone();
                requests.push(request);
                Ok((client_seq, flags, from))
            }
        })
        .collect();
    let mut results = hub.send_all(requests).await.into_iter();
    slots
        .into_iter()
        .filter_map(|slot| match slot {
            Err(ack) => Some(ack),
            Ok((client_seq, flags, from)) => {
                let result = results.next().unwrap_or_else(|| {
                    Err(Error::corrupt(
                        "the hub answered fewer sends than it was given",
                    ))
                });
                sendack(client_seq, flags, &from, result)
            }
        })
        .collect()
}

/// The SENDACK answering the SEND numbered `client_seq` from `from`, with
/// the SEND's header flags; `None` when the hub is closing
/// ([`Error::Closed`]): nothing was stored, and the connection is about to
/// close. WuKongIM's clients keep what was not answered and send it again
/// when they have reconnected (the JavaScript SDK on every CONNACK);
/// answering with a refusal would make them drop it.
fn sendack(
    client_seq: u32,
    flags: Flags,
    from: &Uid,
    result: crate::Result<SendAck>,
) -> Option<SendackPacket> {
    Some(match result {
        Ok(ack) => match (
            i64::try_from(ack.message_id.0),
            u32::try_from(ack.message_seq),
        ) {
            (Ok(message_id), Ok(message_seq)) => SendackPacket {
                flags,
                message_id,
                client_seq,
                message_seq,
                reason: ReasonCode::SUCCESS,
            },
            _ => refused_send(client_seq, flags, ReasonCode::SYSTEM_ERROR),
        },
        Err(Error::Closed) => {
            tracing::debug!(uid = %from, "SEND left unanswered: the hub is closing");
            return None;
        }
        Err(e) => {
            match e {
                Error::Storage { .. }
                | Error::Corrupt { .. }
                | Error::Unconfirmed { .. }
                | Error::Unavailable { .. } => {
                    tracing::warn!(uid = %from, error = %e, "SEND failed")
                }
                _ => tracing::debug!(uid = %from, error = %e, "SEND refused"),
            }
            let reason = e.reason_code().unwrap_or(ReasonCode::SYSTEM_ERROR);
            refused_send(client_seq, flags, reason)
        }
    })
}

/// The SENDACK refusing the SEND numbered `client_seq` (whose header flags
/// were `flags`): nothing was stored.
pub(super) fn refused_send(client_seq: u32, flags: Flags, reason: ReasonCode) -> SendackPacket {
    SendackPacket {
        flags,
        message_id: 0,
        client_seq,
        message_seq: 0,
        reason,
    }
}

fn unsupported_sub(sub: SubPacket) -> SubackPacket {
    SubackPacket {
        client_msg_no: sub.client_msg_no,
        channel_id: sub.channel_id,
        channel_type: sub.channel_type,
        action: sub.action,
        reason: ReasonCode::NOT_SUPPORT_CHANNEL_TYPE,
    }
}

pub(super) fn disconnect_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Kicked => "another login of this account took this connection's place",
        DisconnectReason::Replaced => "the same device connected again",
        DisconnectReason::SlowConsumer => "the connection could not keep up",
        DisconnectReason::Closed => "the server closed the connection",
        DisconnectReason::Shutdown => "the server is shutting down",
    }
}
