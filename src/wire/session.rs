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
use crate::hub::{Hub, SendRequest};
use crate::model::{Channel, ChannelId, ChannelType, ClientMsgNo, Flags, Message, MessageId, Uid};
use crate::reason::ReasonCode;
use crate::session::{ConnectionId, DisconnectReason, InProcessConnection};
use crate::wire::cipher::SessionCipher;
use crate::wire::packet::{
    DisconnectPacket, Packet, RecvPacket, RecvackPacket, SendPacket, SendackPacket, Setting,
    SubPacket, SubackPacket,
};
use crate::wire::server::SessionEnd;
use crate::wire::transport::{BoxError, Inbound, Out, PacketReader};
use crate::wire::WireError;

/// SENDs read ahead of their answers at most: past this the connection
/// stops reading, and the client's own window (and TCP) hold it back.
const MAX_QUEUED_SENDS: usize = 64;

/// Deliveries written to the transport at once at most (each its own
/// frame, one flush).
const WRITE_BATCH: usize = 64;

type SendFuture = Pin<Box<dyn Future<Output = SendackPacket> + Send>>;

/// SENDs read and verified but not yet answered. They go through the hub
/// one at a time, in the order the client sent them (so that its messages
/// to a channel take seqs in that order), while the connection goes on
/// writing deliveries: a connection waiting for its own sends to be stored
/// never stops draining what others send it.
#[derive(Default)]
struct Sends {
    queued: VecDeque<SendFuture>,
    current: Option<SendFuture>,
}

impl Sends {
    fn full(&self) -> bool {
        self.queued.len() >= MAX_QUEUED_SENDS
    }

    fn push(&mut self, send: SendFuture) {
        match self.current {
            None => self.current = Some(send),
            Some(_) => self.queued.push_back(send),
        }
    }

    /// The answer to the SEND in progress; never ready when there is none.
    /// Cancel-safe: the SEND stays in progress.
    async fn answered(&mut self) -> SendackPacket {
        let Some(current) = self.current.as_mut() else {
            return std::future::pending().await;
        };
        let ack = current.await;
        self.current = self.queued.pop_front();
        ack
    }
}

/// A logged-in connection.
pub(super) struct Session<'a> {
    pub(super) hub: &'a Hub,
    pub(super) uid: Uid,
    pub(super) connection: ConnectionId,
    pub(super) cipher: SessionCipher,
}

impl Session<'_> {
    pub(super) async fn run<I, E, O>(
        &mut self,
        reader: &mut PacketReader,
        incoming: &mut I,
        outgoing: &mut Out<'_, O>,
        mut deliveries: InProcessConnection,
        idle_timeout: Option<Duration>,
    ) -> Result<SessionEnd, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let mut sends = Sends::default();
        // Packets that came in the same chunk as CONNECT.
        while let Some(packet) = reader.buffered()? {
            if let Some(end) = self.handle(packet, outgoing, &mut sends).await? {
                return Ok(end);
            }
        }
        let idle = idle_timeout.unwrap_or(Duration::MAX);
        let mut deadline = Instant::now().checked_add(idle);
        loop {
            let silence = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                chunk = incoming.next(), if !sends.full() => {
                    let chunk = match chunk {
                        None => return Ok(SessionEnd::ClientClosed),
                        Some(Err(e)) => return Err(WireError::Transport(e.into())),
                        Some(Ok(chunk)) => chunk,
                    };
                    deadline = Instant::now().checked_add(idle);
                    reader.push(&chunk);
                    while let Some(packet) = reader.buffered()? {
                        if let Some(end) = self.handle(packet, outgoing, &mut sends).await? {
                            return Ok(end);
                        }
                    }
                }
                ack = sends.answered() => outgoing.send(&Packet::Sendack(ack)).await?,
                delivery = deliveries.recv() => match delivery {
                    Some(message) => {
                        // Let the tasks already waiting run first: under
                        // load, they are sends fanning out, and what they
                        // queue for this connection joins this write.
                        tokio::task::yield_now().await;
                        // Whatever else is queued goes in the same write.
                        let mut batch = vec![self.recv_packet(&message)?];
                        while batch.len() < WRITE_BATCH {
                            let Some(next) = deliveries.try_recv() else { break };
                            batch.push(self.recv_packet(&next)?);
                        }
                        outgoing.send_all(batch).await?;
                    }
                    None => {
                        let reason = deliveries.closed_reason().unwrap_or(DisconnectReason::Closed);
                        if reason != DisconnectReason::SlowConsumer {
                            let packet = Packet::Disconnect(DisconnectPacket {
                                reason: reason.reason_code(),
                                reason_text: disconnect_text(reason).into(),
                            });
                            outgoing.send(&packet).await?;
                        }
                        return Ok(SessionEnd::Disconnected(reason));
                    }
                },
                () = silence => return Ok(SessionEnd::TimedOut),
            }
        }
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
            Inbound::TooLarge { client_seq } => {
                let refusal = refused_send(client_seq, ReasonCode::NOT_ALLOW_SEND);
                outgoing.send(&Packet::Sendack(refusal)).await?;
                return Ok(None);
            }
        };
        match packet {
            Packet::Ping => outgoing.send(&Packet::Pong).await?,
            Packet::Send(send) => sends.push(self.send(send)),
            Packet::Recvack(ack) => Box::pin(self.recvack(ack)).await?,
            Packet::Sub(sub) => outgoing.send(&Packet::Suback(unsupported_sub(sub))).await?,
            Packet::Disconnect(_) => return Ok(Some(SessionEnd::ClientClosed)),
            other => return Err(WireError::Unexpected(other.packet_type())),
        }
        Ok(None)
    }

    /// Verifies and decrypts a SEND now; the hub's send and the SENDACK
    /// answering it, to run in turn.
    fn send(&self, send: SendPacket) -> SendFuture {
        let client_seq = send.client_seq;
        let refuse = move |reason| -> SendFuture {
            Box::pin(std::future::ready(refused_send(client_seq, reason)))
        };
        match self.cipher.send_msg_key(&send) {
            Ok(key) if key == send.msg_key => {}
            Ok(_) => return refuse(ReasonCode::MSG_KEY_ERROR),
            Err(_) => return refuse(ReasonCode::PAYLOAD_DECODE_ERROR),
        }
        let Ok(payload) = self.cipher.decrypt(&send.payload) else {
            return refuse(ReasonCode::PAYLOAD_DECODE_ERROR);
        };
        match self.request(&send, payload) {
            Ok(request) => Box::pin(hub_send(self.hub.clone(), client_seq, request)),
            Err(e) => refuse(e.reason_code()),
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
        Ok(SendRequest::new(self.uid.clone(), channel, payload)
            .flags(flags)
            .client_msg_no(ClientMsgNo::new(&send.client_msg_no)?)
            .from_connection(self.connection))
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

    /// The RECV carrying `message` to this user, encrypted for this session.
    fn recv_packet(&self, message: &Message) -> Result<Packet, WireError> {
        let channel = message.channel.as_seen_by(&self.uid);
        let mut recv = RecvPacket {
            flags: Flags {
                dup: false,
                ..message.flags
            },
            setting: Setting::default(),
            msg_key: String::new(),
            from_uid: message.from_uid.as_str().into(),
            channel_id: channel.id.as_str().into(),
            channel_type: channel.kind.as_u8(),
            client_msg_no: message.client_msg_no.as_str().into(),
            stream: None,
            message_id: i64::try_from(message.message_id.0)
                .map_err(|_| WireError::OutOfRange("message id"))?,
            message_seq: u32::try_from(message.message_seq)
                .map_err(|_| WireError::OutOfRange("message seq"))?,
            timestamp: i32::try_from(message.timestamp_secs())
                .map_err(|_| WireError::OutOfRange("timestamp"))?,
            topic: None,
            payload: Bytes::from(self.cipher.encrypt(&message.payload)),
        };
        recv.msg_key = self.cipher.recv_msg_key(&recv)?;
        Ok(Packet::Recv(recv))
    }
}

/// Sends through the hub; the SENDACK answering the SEND numbered
/// `client_seq`.
async fn hub_send(hub: Hub, client_seq: u32, request: SendRequest) -> SendackPacket {
    let from = request.from_uid.clone();
    match hub.send(request).await {
        Ok(ack) => match (
            i64::try_from(ack.message_id.0),
            u32::try_from(ack.message_seq),
        ) {
            (Ok(message_id), Ok(message_seq)) => SendackPacket {
                message_id,
                client_seq,
                message_seq,
                reason: ReasonCode::SUCCESS,
            },
            _ => refused_send(client_seq, ReasonCode::SYSTEM_ERROR),
        },
        Err(e) => {
            match e {
                Error::Storage { .. } | Error::Corrupt { .. } => {
                    tracing::warn!(uid = %from, error = %e, "SEND failed")
                }
                _ => tracing::debug!(uid = %from, error = %e, "SEND refused"),
            }
            refused_send(client_seq, e.reason_code())
        }
    }
}

/// The SENDACK refusing the SEND numbered `client_seq`: nothing was stored.
pub(super) fn refused_send(client_seq: u32, reason: ReasonCode) -> SendackPacket {
    SendackPacket {
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
    }
}
