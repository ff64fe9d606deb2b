//! Serving one client connection: the protocol on one side, the hub on the
//! other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

use crate::hub::Hub;
use crate::model::{DeviceId, Uid};
use crate::reason::ReasonCode;
use crate::session::{ConnectionId, Device, DeviceFlag, DisconnectReason};
use crate::wire::auth::{Authenticator, ConnectInfo};
use crate::wire::cipher::{new_salt, KeyExchange, SessionCipher};
use crate::wire::codec::DEFAULT_MAX_FRAME;
use crate::wire::conns::{
    ConnPage, ConnSort, ConnTable, CountedSink, CountedStream, Meter, Traffic,
};
use crate::wire::packet::{
    connack_has_server_version, negotiate_version, ConnackPacket, ConnectPacket, Packet,
    PacketType, PROTOCOL_VERSION,
};
use crate::wire::queue::{queue, WireSink};
use crate::wire::session::Session;
use crate::wire::stats::{WireCounters, WireStats};
use crate::wire::transport::{BoxError, Inbound, Out, PacketReader};
use crate::wire::WireError;

/// How many times a login checks its credential when kicks keep landing
/// between its check and its registration.
const LOGIN_ATTEMPTS: usize = 3;

/// How a [`WireServer`] treats its connections.
///
/// ```
/// use std::time::Duration;
/// use imcore::wire::WireConfig;
///
/// let config = WireConfig::default().connect_timeout(Duration::from_secs(2));
/// assert_eq!(config.connect_timeout, Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireConfig {
    /// The largest packet body accepted. Default [`DEFAULT_MAX_FRAME`].
    pub max_frame: usize,
    /// How many messages may wait for a connection's writer before the hub
    /// disconnects it as a slow consumer. Default 16,384: room for a burst
    /// while the server as a whole is behind, so that a client that reads
    /// its socket is not taken for a slow one. A client whose socket stops
    /// draining is closed by the write timeout long before (the queue holds
    /// shared messages, 8 bytes each, allocated as it fills).
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
            queue: 16_384,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(180)),
            write_timeout: Duration::from_secs(10),
            max_discard: 4 * 1024 * 1024,
        }
    }
}

impl WireConfig {
    /// Sets [`WireConfig::max_frame`].
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`WireConfig::queue`].
    pub fn queue(mut self, messages: usize) -> Self {
        self.queue = messages;
        self
    }

    /// Sets [`WireConfig::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`WireConfig::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`WireConfig::write_timeout`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`WireConfig::max_discard`].
    pub fn max_discard(mut self, bytes: usize) -> Self {
        self.max_discard = bytes;
        self
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
    /// host, a shutdown). Kicks and host closes were told to the client
    /// with DISCONNECT; a slow consumer and a shutdown are just closed, so
    /// that the client reconnects by itself
    /// ([`DisconnectReason::expects_reconnect`]).
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
/// - speaks, for the whole session, the protocol version the CONNECT asked
///   for, or [`LATEST_VERSION`](crate::wire::LATEST_VERSION) (5) when it
///   asked for a newer one, as WuKongIM's server does: the CONNACK (with
///   the server version first when the client asked for a version above
///   3, and the hub's node id from version 4), every RECV and every other
///   packet are laid out as that version says;
/// - decodes what the client sends only as fast as its SENDs are
///   answered, however it is framed: at most 64 SENDs (and about 128 KiB
///   of them) decoded and not yet answered per connection, the rest of a
///   chunk (a 4 MiB WebSocket message, say) left undecoded until there is
///   room; and it lets other tasks run every 16 packets;
/// - answers PING with PONG;
/// - checks each SEND's message key, decrypts it, sends it through the hub
///   from this connection and answers SENDACK with the hub's ids, or with
///   the reason code of a refusal (8 for a bad message key, 9 for a payload
///   that does not decrypt); a SEND refused because the hub is closing
///   ([`Error::Closed`](crate::Error::Closed)) is not answered, so that
///   the client keeps it and sends it again once reconnected;
/// - writes every message the hub delivers as an encrypted RECV, with the
///   channel as this user addresses it, one packet per outgoing frame;
/// - passes RECVACK to [`Hub::ack`] (a master's ack consumes a command);
/// - answers SUB with SUBACK reason 23: the hub has no channels to
///   subscribe to;
/// - when the hub closes the connection, writes what was queued for it and
///   the answers to the SENDs the hub had taken, then sends DISCONNECT for
///   a kick or a host's close, and nothing for a slow consumer or a
///   [`Hub::shutdown`]: WuKongIM's clients reconnect after a plain close,
///   and stop for good after a DISCONNECT.
///
/// See `examples/wukong_server/` for a WebSocket server built on it.
#[derive(Debug, Clone)]
pub struct WireServer {
    hub: Hub,
    auth: Arc<dyn Authenticator>,
    config: WireConfig,
    counters: Arc<WireCounters>,
    conns: Arc<ConnTable>,
}

impl WireServer {
    /// A server for `hub`, checking logins with `auth`, with
    /// [`WireConfig::default`].
    pub fn new(hub: Hub, auth: Arc<dyn Authenticator>) -> Self {
        WireServer {
            hub,
            auth,
            config: WireConfig::default(),
            counters: Arc::default(),
            conns: Arc::default(),
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
    pub async fn serve<I, O, E>(&self, incoming: I, outgoing: O) -> Result<SessionEnd, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        self.serve_from(None, incoming, outgoing).await
    }

    /// [`WireServer::serve`] for a client at `address`, which
    /// [`WireServer::connections`] then shows.
    pub async fn serve_from<I, O, E>(
        &self,
        address: Option<SocketAddr>,
        incoming: I,
        outgoing: O,
    ) -> Result<SessionEnd, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let meter = self.conns.meter(self.hub.clock().clone());
        let incoming = CountedStream::new(incoming, meter.clone());
        let outgoing = CountedSink {
            inner: outgoing,
            meter: meter.clone(),
        };
        let end = self
            .serve_counted((address, meter), incoming, outgoing)
            .await;
        self.counters.ended(&end);
        end
    }

    /// Serves one connection over a byte stream, such as a TCP or TLS
    /// stream, until it ends: what WuKongIM's native SDKs speak (its port
    /// 5100). Packets arrive split and coalesced however the stream reads
    /// them; the answers are written back to back, the deliveries waiting
    /// together in one write.
    ///
    /// ```no_run
    /// # async fn run(server: imcore::wire::WireServer) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:5100").await?;
    /// loop {
    ///     let (tcp, _) = listener.accept().await?;
    ///     tcp.set_nodelay(true)?;
    ///     let server = server.clone();
    ///     tokio::spawn(async move { server.serve_stream(tcp).await });
    /// }
    /// # }
    /// ```
    pub async fn serve_stream<S>(&self, stream: S) -> Result<SessionEnd, WireError>
    where
        S: AsyncRead + AsyncWrite,
    {
        self.serve_stream_from(None, stream).await
    }

    /// [`WireServer::serve_stream`] for a client at `address`, which
    /// [`WireServer::connections`] then shows.
    pub async fn serve_stream_from<S>(
        &self,
        address: Option<SocketAddr>,
        stream: S,
    ) -> Result<SessionEnd, WireError>
    where
        S: AsyncRead + AsyncWrite,
    {
        let (read, write) = tokio::io::split(stream);
        let incoming = FramedRead::new(read, BytesCodec::new()).map_ok(BytesMut::freeze);
        let outgoing = FramedWrite::new(write, BytesCodec::new());
        self.serve_from(address, Box::pin(incoming), Box::pin(outgoing))
            .await
    }

    /// What the server's connections have done: logins, refusals,
    /// timeouts, connections now; shared by its clones, for a host's
    /// metrics.
    pub fn stats(&self) -> WireStats {
        self.counters.snapshot()
    }

    /// The packets, messages and bytes every connection of this server
    /// (and its clones) has read and written since it was made, logged in
    /// or not.
    pub fn traffic(&self) -> Traffic {
        self.conns.totals()
    }

    /// A page of the logged-in connections, as WuKongIM's `connz` lists
    /// them: those whose uid contains `uid` (all when it is empty), sorted
    /// by `sort` (descending when its flag says so; ties by id), from
    /// `offset`, at most `limit`; with how many there are in all.
    pub fn connections(
        &self,
        uid: &str,
        sort: (ConnSort, bool),
        offset: usize,
        limit: usize,
    ) -> ConnPage {
        self.conns.page(uid, sort, offset, limit)
    }

    /// [`WireServer::serve`], before its end is counted.
    async fn serve_counted<I, O, E>(
        &self,
        (address, meter): (Option<SocketAddr>, Arc<Meter>),
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
            version: PROTOCOL_VERSION,
        };
        let (sink, deliveries) = queue(self.config.queue);
        // The login is a future of its own, boxed and gone once it ends: a
        // future keeps room for its largest state for as long as it lives,
        // and a logged-in session (most of them idle) should not carry the
        // room that its login took.
        let login = Box::pin(self.log_in(&mut reader, &mut incoming, &mut outgoing, sink));
        let LoggedIn {
            device,
            connection,
            cipher,
            connack,
            version,
        } = match login.await? {
            Ok(logged_in) => logged_in,
            Err(end) => return Ok(end),
        };
        let uid = device.uid.clone();
        // Unregisters however this ends, even if the caller drops `serve`.
        self.counters.logged_in();
        self.conns.add(connection, device, address, version, meter);
        let registered = Registered {
            hub: &self.hub,
            counters: &self.counters,
            conns: &self.conns,
            uid: uid.clone(),
            connection,
        };
        let mut session = Session {
            hub: &self.hub,
            uid,
            connection,
            cipher,
            version,
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

    /// CONNECT and its check (the host's authenticator included), within
    /// the connect timeout; a refusal is answered here. The logged-in
    /// device, or how the session ended.
    async fn log_in<I, O, E>(
        &self,
        reader: &mut PacketReader,
        incoming: &mut I,
        outgoing: &mut Out<'_, O>,
        sink: Arc<WireSink>,
    ) -> Result<Result<LoggedIn, SessionEnd>, WireError>
    where
        I: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<BoxError>,
        O: Sink<Bytes> + Unpin,
        O::Error: Into<BoxError>,
    {
        let mut version = 0;
        let login = tokio::time::timeout(self.config.connect_timeout, async {
            let connect = match reader.next(incoming).await? {
                None => return Ok(None),
                Some(Inbound::Packet(Packet::Connect(connect))) => {
                    version = connect.version;
                    connect
                }
                Some(Inbound::Packet(other)) => {
                    return Err(WireError::Unexpected(other.packet_type()))
                }
                Some(Inbound::TooLarge { .. }) => {
                    return Err(WireError::Unexpected(PacketType::Send))
                }
            };
            let login = self.login_and_register(&connect, sink).await;
            Ok(Some((connect.version, login)))
        })
        .await;
        let (requested, login) = match login {
            Err(_) => return Ok(Err(SessionEnd::TimedOut)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Ok(Err(SessionEnd::ClientClosed)),
            Ok(Ok(Some(login))) => login,
        };
        // Everything from here on, a refusal included, is written at the
        // version the session speaks.
        let version = negotiate_version(requested);
        outgoing.version = version;
        reader.set_version(version);
        let (device, connection, cipher, connack) = match login {
            Ok(accepted) => accepted,
            Err(reason) => {
                self.counters.refused(reason);
                let refusal = Packet::Connack(ConnackPacket {
                    server_version: connack_has_server_version(requested).then_some(version),
                    node_id: u64::from(self.hub.config().node_id),
                    ..ConnackPacket::refusal(reason)
                });
                outgoing.send(&refusal).await?;
                outgoing.close().await;
                return Ok(Err(SessionEnd::Refused(reason)));
            }
        };
        Ok(Ok(LoggedIn {
            device,
            connection,
            cipher,
            connack: Box::new(connack),
            version,
        }))
    }

    /// Checks a CONNECT and registers the device with the hub. A kick of
    /// the user between the check and the registration (a logout that
    /// removed the credential, then kicked) sends it back to the check, so
    /// that no session outlives the credential it logged in with.
    async fn login_and_register(
        &self,
        connect: &ConnectPacket,
        sink: Arc<WireSink>,
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
        // Every version is served: the session speaks the client's, or the
        // newest if the client's is newer, as WuKongIM's server does.
        let version = negotiate_version(connect.version);
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
            server_version: connack_has_server_version(connect.version).then_some(version),
            node_id: u64::from(self.hub.config().node_id),
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

/// A device that logged in: what the session goes on with.
struct LoggedIn {
    device: Device,
    connection: ConnectionId,
    cipher: SessionCipher,
    /// Boxed: it is written once, and held until the session ends.
    connack: Box<Packet>,
    version: u8,
}

/// A device registered with the hub, unregistered when dropped.
struct Registered<'a> {
    hub: &'a Hub,
    counters: &'a WireCounters,
    conns: &'a ConnTable,
    uid: Uid,
    connection: ConnectionId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.hub.disconnect(&self.uid, self.connection);
        self.conns.remove(self.connection);
        self.counters.closed();
    }
}
