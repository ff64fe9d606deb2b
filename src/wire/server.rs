//! Serving one client connection: the protocol on one side, the hub on the
//! other.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use crate::error::Error;
use crate::hub::{Hub, SendRequest};
use crate::model::{
    Channel, ChannelId, ChannelType, ClientMsgNo, DeviceId, Flags, Message, MessageId, Uid,
};
use crate::reason::ReasonCode;
use crate::session::{
    in_process, ConnectionId, Device, DeviceFlag, DisconnectReason, InProcessConnection,
    InProcessSink,
};
use crate::wire::auth::{Authenticator, ConnectInfo};
use crate::wire::cipher::{new_salt, KeyExchange, SessionCipher};
use crate::wire::codec::{WireCodec, DEFAULT_MAX_FRAME};
use crate::wire::packet::{
    ConnackPacket, ConnectPacket, DisconnectPacket, Packet, PacketType, RecvPacket, RecvackPacket,
    SendPacket, SendackPacket, Setting, SubPacket, SubackPacket, PROTOCOL_VERSION,
};
use crate::wire::WireError;

/// How many times a login checks its credential when kicks keep landing
/// between its check and its registration.
const LOGIN_ATTEMPTS: usize = 3;

/// How a [`WireServer`] treats its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireConfig {
    /// The largest packet body accepted. Default [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// How many messages may wait for a connection's writer before the hub
    /// disconnects it as a slow consumer. Default 1024.
    pub queue: usize,
    /// How long a new connection has to send CONNECT. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a connection may stay silent (no PING, nothing) before it
    /// is closed; `None` never. Default 180 s, three of the JavaScript
    /// SDK's 60 s heartbeats.
    pub idle_timeout: Option<Duration>,
    /// How long one write (or the final close) may wait for the transport
    /// before the connection is given up: a client that stops reading must
    /// not hold its session, or a kick, forever. Default 10 s.
    pub write_timeout: Duration,
    /// A SEND whose body is longer than `max_frame` but at most this many
    /// bytes is read past (never buffered whole) and refused with a SENDACK
    /// carrying [`ReasonCode::NOT_ALLOW_SEND`], as the hub refuses an
    /// oversized payload: the client then drops it instead of resending it
    /// on every reconnect. Any longer frame, or another packet over
    /// `max_frame`, closes the connection. Default 4 MiB. A transport that
    /// assembles messages (WebSocket) should cap them at about this size.
    pub max_discard: usize,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            max_frame: DEFAULT_MAX_FRAME,
            queue: 1024,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(180)),
            write_timeout: Duration::from_secs(10),
            max_discard: 4 * 1024 * 1024,
        }
    }
}

/// How a served connection ended, when it ended in order. Protocol and
/// transport failures are `Err` from [`WireServer::serve`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed the transport or sent DISCONNECT.
    ClientClosed,
    /// CONNECT was refused; the client was sent a CONNACK with this reason.
    Refused(ReasonCode),
    /// The hub closed the connection (another login, a slow consumer, the
    /// host). Kicks and host closes were told to the client with
    /// DISCONNECT; a slow consumer is just closed, so that it reconnects
    /// and catches up by sync.
    Disconnected(DisconnectReason),
    /// CONNECT did not arrive in time, or the connection was silent for
    /// longer than the idle timeout.
    TimedOut,
}

/// Serves WuKongIM protocol connections on a [`Hub`].
///
/// Give [`WireServer::serve`] a connection as a stream of incoming byte
/// chunks and a sink of outgoing frames: WebSocket binary messages, or
/// reads and writes of a TCP stream. It performs the login (the host's
/// [`Authenticator`], the key exchange), registers the device with the hub,
/// and then:
///
/// - answers PING with PONG;
/// - checks each SEND's message key, decrypts it, sends it through the hub
///   from this connection and answers SENDACK with the hub's ids, or with
///   the reason code of a refusal (8 for a bad message key, 9 for a payload
///   that does not decrypt);
/// - writes every message the hub delivers as an encrypted RECV, with the
///   channel as this user addresses it, one packet per outgoing frame;
/// - passes RECVACK to [`Hub::ack`] (a master's ack consumes a command);
/// - answers SUB with SUBACK reason 23: the hub has no channels to
///   subscribe to.
///
/// See `examples/wukong_server/` for a WebSocket server built on it.
#[derive(Debug, Clone)]
pub struct WireServer {
    hub: Hub,
    auth: Arc<dyn Authenticator>,
    config: WireConfig,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl WireServer {
    /// A server for `hub`, checking logins with `auth`, with
    /// [`WireConfig::default`].
    pub fn new(hub: Hub, auth: Arc<dyn Authenticator>) -> Self {
        WireServer {
            hub,
            auth,
            config: WireConfig::default(),
        }
    }

    /// Replaces the config.
    pub fn with_config(mut self, config: WireConfig) -> Self {
        self.config = config;
        self
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Its config.
    pub fn config(&self) -> &WireConfig {
        &self.config
    }

    /// Serves one connection until it ends. `incoming` yields byte chunks
    /// as they arrive (a chunk may hold several packets or part of one);
    /// every item sent to `outgoing` is exactly one packet, because the
    /// JavaScript client reads one packet per WebSocket message.
    ///
    /// Returns how the connection ended; `Err` for malformed input, a
    /// packet a client may not send, or a transport failure. The device is
    /// unregistered from the hub whichever way it ends.
    pub async fn serve<I, O, E>(
        &self,
        mut incoming: I,
        mut outgoing: O,
    ) -> Result<SessionEnd, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let mut reader = PacketReader::new(&self.config);
        let mut outgoing = Out {
            sink: &mut outgoing,
            timeout: self.config.write_timeout,
        };
        // CONNECT and its check (the host's authenticator included) must be
        // done within the connect timeout.
        let (sink, deliveries) = in_process(self.config.queue);
        // Boxed, like the hub calls below: a future holds room for its
        // largest state for as long as it lives, and an idle connection
        // should not carry the room that a login or a send needs.
        let login = tokio::time::timeout(self.config.connect_timeout, Box::pin(async {
            let connect = match reader.next(&mut incoming).await? {
                None => return Ok(None),
                Some(Inbound::Packet(Packet::Connect(connect))) => connect,
                Some(Inbound::Packet(other)) => {
                    return Err(WireError::Unexpected(other.packet_type()))
                }
                Some(Inbound::TooLarge { .. }) => {
                    return Err(WireError::Unexpected(PacketType::Send))
                }
            };
            Ok(Some(self.login_and_register(&connect, sink).await))
        }))
        .await;
        let (device, connection, cipher, connack) = match login {
            Err(_) => return Ok(SessionEnd::TimedOut),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Ok(SessionEnd::ClientClosed),
            Ok(Ok(Some(Ok(accepted)))) => accepted,
            Ok(Ok(Some(Err(reason)))) => {
                let refusal = Packet::Connack(ConnackPacket {
                    time_diff: 0,
                    reason,
                    server_key: String::new(),
                    salt: String::new(),
                });
                outgoing.send(&refusal).await?;
                outgoing.close().await;
                return Ok(SessionEnd::Refused(reason));
            }
        };
        let uid = device.uid.clone();
        // Unregisters however this ends, even if the caller drops `serve`.
        let registered = Registered {
            hub: &self.hub,
            uid: uid.clone(),
            connection,
        };
        let mut session = Session {
            hub: &self.hub,
            uid,
            connection,
            cipher,
        };
        let result = async {
            outgoing.send(&connack).await?;
            session
                .run(
                    &mut reader,
                    &mut incoming,
                    &mut outgoing,
                    deliveries,
                    self.config.idle_timeout,
                )
                .await
        }
        .await;
        drop(registered);
        outgoing.close().await;
        result
    }

    /// Checks a CONNECT and registers the device with the hub. A kick of
    /// the user between the check and the registration (a logout that
    /// removed the credential, then kicked) sends it back to the check, so
    /// that no session outlives the credential it logged in with.
    async fn login_and_register(
        &self,
        connect: &ConnectPacket,
        sink: Arc<InProcessSink>,
    ) -> Result<(Device, ConnectionId, SessionCipher, Packet), ReasonCode> {
        let uid = Uid::new(&connect.uid).map_err(|_| ReasonCode::AUTH_FAIL)?;
        // A kick of another user in the same stripe also sends a login
        // back; three in a row is a storm of kicks, refused as such.
        for _ in 0..LOGIN_ATTEMPTS {
            let ticket = self.hub.login_ticket(&uid);
            let (device, cipher, connack) = self.login(connect).await?;
            let registered = self
                .hub
                .connect_checked(ticket, device.clone(), sink.clone());
            if let Some(connection) = registered {
                return Ok((device, connection, cipher, connack));
            }
        }
        Err(ReasonCode::AUTH_FAIL)
    }

    /// Checks a CONNECT. On success: the device, the session's cipher and
    /// the CONNACK to send; on refusal, the reason.
    async fn login(
        &self,
        connect: &ConnectPacket,
    ) -> Result<(Device, SessionCipher, Packet), ReasonCode> {
        if connect.version != PROTOCOL_VERSION {
            return Err(ReasonCode::NOT_SUPPORT_HEADER);
        }
        let uid = Uid::new(&connect.uid).map_err(|_| ReasonCode::AUTH_FAIL)?;
        let device_id = DeviceId::new(&connect.device_id).map_err(|_| ReasonCode::AUTH_FAIL)?;
        let device_flag = match DeviceFlag::try_from(connect.device_flag) {
            Ok(DeviceFlag::System) | Err(_) => return Err(ReasonCode::AUTH_FAIL),
            Ok(flag) => flag,
        };
        if connect.client_key.is_empty() {
            return Err(ReasonCode::CLIENT_KEY_IS_EMPTY);
        }
        let info = ConnectInfo {
            uid,
            token: connect.token.clone(),
            device_id,
            device_flag,
            version: connect.version,
        };
        let level = self.auth.authenticate(&info).await?;
        let keys = KeyExchange::new();
        let server_key = keys.public_base64();
        let salt = new_salt();
        let cipher = keys
            .agree(&connect.client_key, &salt)
            .map_err(|_| ReasonCode::AUTH_FAIL)?;
        let connack = Packet::Connack(ConnackPacket {
            time_diff: self
                .hub
                .clock()
                .now_ms()
                .saturating_sub(connect.client_timestamp),
            reason: ReasonCode::SUCCESS,
            server_key,
            salt,
        });
        let device = Device {
            uid: info.uid,
            device_id: info.device_id,
            flag: device_flag,
            level,
        };
        Ok((device, cipher, connack))
    }
}

/// A device registered with the hub, unregistered when dropped.
struct Registered<'a> {
    hub: &'a Hub,
    uid: Uid,
    connection: ConnectionId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.hub.disconnect(&self.uid, self.connection);
    }
}

/// What the reader found in the incoming bytes.
// Short-lived, one per packet: boxing the packet would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Inbound {
    /// A whole packet.
    Packet(Packet),
    /// A SEND over `max_frame` (but within `max_discard`), read past.
    TooLarge {
        /// The SEND's client seq, to answer it.
        client_seq: u32,
    },
}

/// Buffers incoming chunks and splits them into packets.
struct PacketReader {
    codec: WireCodec,
    buf: BytesMut,
    max_discard: usize,
    /// An oversized SEND being read past: bytes still to drop, its seq.
    discarding: Option<(usize, u32)>,
}

impl PacketReader {
    fn new(config: &WireConfig) -> Self {
        PacketReader {
            codec: WireCodec::new(config.max_frame),
            buf: BytesMut::new(),
            max_discard: config.max_discard,
            discarding: None,
        }
    }

    /// What is already buffered, if anything whole.
    fn buffered(&mut self) -> Result<Option<Inbound>, WireError> {
        if let Some((left, client_seq)) = self.discarding {
            let n = left.min(self.buf.len());
            self.buf.advance(n);
            if left > n {
                self.discarding = Some((left - n, client_seq));
                return Ok(None);
            }
            self.discarding = None;
            return Ok(Some(Inbound::TooLarge { client_seq }));
        }
        match self.codec.decode(&mut self.buf) {
            Ok(packet) => Ok(packet.map(Inbound::Packet)),
            Err(WireError::Oversized { len, .. })
                if self.buf[0] >> 4 == PacketType::Send.as_u8() && len <= self.max_discard =>
            {
                // Header, remaining length (already checked to end within
                // four bytes), the setting byte, then the client seq.
                let length_bytes = self.buf[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
                let seq_at = 1 + length_bytes + 1;
                let Some(seq) = self.buf.get(seq_at..seq_at + 4) else {
                    return Ok(None); // wait for the seq
                };
                let client_seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
                self.discarding = Some((1 + length_bytes + len, client_seq));
                self.buffered()
            }
            Err(e) => Err(e),
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if let Some((left, _)) = self.discarding {
            if self.buf.is_empty() && chunk.len() <= left {
                // Dropped without being copied.
                self.discarding = self.discarding.map(|(l, seq)| (l - chunk.len(), seq));
                return;
            }
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next packet, reading chunks as needed; `None` when the stream
    /// ends.
    async fn next<I, E>(&mut self, incoming: &mut I) -> Result<Option<Inbound>, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
    {
        loop {
            if let Some(inbound) = self.buffered()? {
                return Ok(Some(inbound));
            }
            match incoming.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(WireError::Transport(e.into())),
                Some(Ok(chunk)) => self.push(&chunk),
            }
        }
    }
}

/// The outgoing side: one packet per frame, each write bounded in time.
struct Out<'o, O> {
    sink: &'o mut O,
    timeout: Duration,
}

impl<O> Out<'_, O>
where
    O: Sink<Bytes> + Unpin,
    O::Error: Into<BoxError>,
{
    async fn send(&mut self, packet: &Packet) -> Result<(), WireError> {
        let frame = packet.to_bytes()?;
        match tokio::time::timeout(self.timeout, self.sink.send(frame)).await {
            Ok(sent) => sent.map_err(|e| WireError::Transport(e.into())),
            Err(_) => Err(WireError::WriteTimeout),
        }
    }

    /// Closes the transport, giving up after the write timeout.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(self.timeout, self.sink.close()).await;
    }
}

/// A logged-in connection.
struct Session<'a> {
    hub: &'a Hub,
    uid: Uid,
    connection: ConnectionId,
    cipher: SessionCipher,
}

impl Session<'_> {
    async fn run<I, E, O>(
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
        // Packets that came in the same chunk as CONNECT.
        while let Some(packet) = reader.buffered()? {
            if let Some(end) = self.handle(packet, outgoing).await? {
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
                chunk = incoming.next() => {
                    let chunk = match chunk {
                        None => return Ok(SessionEnd::ClientClosed),
                        Some(Err(e)) => return Err(WireError::Transport(e.into())),
                        Some(Ok(chunk)) => chunk,
                    };
                    deadline = Instant::now().checked_add(idle);
                    reader.push(&chunk);
                    while let Some(packet) = reader.buffered()? {
                        if let Some(end) = self.handle(packet, outgoing).await? {
                            return Ok(end);
                        }
                    }
                }
                delivery = deliveries.recv() => match delivery {
                    Some(message) => outgoing.send(&self.recv_packet(&message)?).await?,
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
            Packet::Send(send) => {
                let ack = Box::pin(self.send(send)).await;
                outgoing.send(&Packet::Sendack(ack)).await?;
            }
            Packet::Recvack(ack) => Box::pin(self.recvack(ack)).await?,
            Packet::Sub(sub) => outgoing.send(&Packet::Suback(unsupported_sub(sub))).await?,
            Packet::Disconnect(_) => return Ok(Some(SessionEnd::ClientClosed)),
            other => return Err(WireError::Unexpected(other.packet_type())),
        }
        Ok(None)
    }

    /// Verifies, decrypts and sends a SEND; the SENDACK to answer it.
    async fn send(&self, send: SendPacket) -> SendackPacket {
        let refuse = |reason| refused_send(send.client_seq, reason);
        match self.cipher.send_msg_key(&send) {
            Ok(key) if key == send.msg_key => {}
            Ok(_) => return refuse(ReasonCode::MSG_KEY_ERROR),
            Err(_) => return refuse(ReasonCode::PAYLOAD_DECODE_ERROR),
        }
        let Ok(payload) = self.cipher.decrypt(&send.payload) else {
            return refuse(ReasonCode::PAYLOAD_DECODE_ERROR);
        };
        let request = match self.request(&send, payload) {
            Ok(request) => request,
            Err(e) => return refuse(e.reason_code()),
        };
        match self.hub.send(request).await {
            Ok(ack) => match (
                i64::try_from(ack.message_id.0),
                u32::try_from(ack.message_seq),
            ) {
                (Ok(message_id), Ok(message_seq)) => SendackPacket {
                    message_id,
                    client_seq: send.client_seq,
                    message_seq,
                    reason: ReasonCode::SUCCESS,
                },
                _ => refuse(ReasonCode::SYSTEM_ERROR),
            },
            Err(e) => {
                match e {
                    Error::Storage { .. } | Error::Corrupt { .. } => {
                        tracing::warn!(uid = %self.uid, error = %e, "SEND failed")
                    }
                    _ => tracing::debug!(uid = %self.uid, error = %e, "SEND refused"),
                }
                refuse(e.reason_code())
            }
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

/// The SENDACK refusing the SEND numbered `client_seq`: nothing was stored.
fn refused_send(client_seq: u32, reason: ReasonCode) -> SendackPacket {
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

fn disconnect_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Kicked => "another login of this account took this connection's place",
        DisconnectReason::Replaced => "the same device connected again",
        DisconnectReason::SlowConsumer => "the connection could not keep up",
        DisconnectReason::Closed => "the server closed the connection",
    }
}
