//! A Rust client of the wire server over in-memory channels, shared by the
//! wire tests: a world (hub, directory, tokens, server), and clients that
//! log in, send sealed SENDs and open RECVs.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{sink, stream};
use imcore::wire::{
    ConnackPacket, ConnectPacket, KeyExchange, Packet, RecvPacket, SendPacket, SendackPacket,
    SessionCipher, SessionEnd, Setting, TokenTable, WireConfig, WireError, WireServer,
};
use imcore::{
    DeviceFlag, DeviceLevel, Flags, Hub, HubConfig, ManualClock, MemoryDirectory, ReasonCode, Uid,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const NOW_MS: i64 = 1_800_000_000_000;

/// Every client is a device of its own.
static NEXT_DEVICE: AtomicU32 = AtomicU32::new(1);

pub struct World {
    pub hub: Hub,
    pub directory: Arc<MemoryDirectory>,
    pub server: WireServer,
    pub tokens: Arc<TokenTable>,
}

pub fn world_with(config: WireConfig) -> World {
    world_with_hub(config, HubConfig::default())
}

/// A world whose hub has `hub_config` (tests that send in bulk from one
/// uid turn the send rate off).
pub fn world_with_hub(config: WireConfig, hub_config: HubConfig) -> World {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    world_on_store(
        config,
        hub_config,
        Arc::new(imcore::MemoryStore::new()),
        clock,
    )
}

/// A world whose hub has `hub_config`, keeps its messages in `store` and
/// reads the time from `clock`.
pub fn world_on_store(
    config: WireConfig,
    hub_config: HubConfig,
    store: Arc<dyn imcore::store::Store>,
    clock: Arc<dyn imcore::Clock>,
) -> World {
    let directory = Arc::new(MemoryDirectory::new());
    let tokens = Arc::new(TokenTable::new());
    for (uid, flag, level) in [
        ("alice", DeviceFlag::Web, DeviceLevel::Master),
        ("alice", DeviceFlag::Pc, DeviceLevel::Master),
        ("bob", DeviceFlag::Web, DeviceLevel::Master),
        ("bob", DeviceFlag::App, DeviceLevel::Slave),
    ] {
        tokens.set(uid_of(uid), flag, format!("{uid}-token"), level);
    }
    let hub = Hub::builder()
        .store(store)
        .directory(directory.clone())
        .config(hub_config)
        .clock(clock)
        .build()
        .unwrap();
    let server = WireServer::new(hub.clone(), tokens.clone()).with_config(config);
    World {
        hub,
        directory,
        server,
        tokens,
    }
}

impl World {
    /// `n` users (`pusher0`, …) logged in on a connection each, each with
    /// a burst of small SENDs to `to` of at most `bytes` ready to push:
    /// (uid, client, burst, SENDs in it).
    pub async fn pushers(
        &self,
        n: usize,
        to: &str,
        bytes: usize,
    ) -> Vec<(String, Client, Bytes, u32)> {
        let mut pushers = Vec::new();
        for i in 0..n {
            let uid = format!("pusher{i}");
            let token = format!("{uid}-token");
            self.tokens
                .set(uid_of(&uid), DeviceFlag::Web, token, DeviceLevel::Master);
            let mut client = Client::open(&self.server, 1024);
            client.login(&uid, WEB).await;
            let (burst, sends) = client.burst(to, bytes);
            pushers.push((uid, client, burst, sends));
        }
        pushers
    }
}

pub fn world() -> World {
    world_with(WireConfig::default())
}

pub fn uid_of(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// One client: chunks go in through `to_server`, frames come out of
/// `from_server`; the server runs in its own task.
pub struct Client {
    to_server: Option<mpsc::UnboundedSender<Result<Bytes, std::io::Error>>>,
    from_server: mpsc::Receiver<Bytes>,
    pub task: JoinHandle<Result<SessionEnd, WireError>>,
    keys: Option<KeyExchange>,
    cipher: Option<SessionCipher>,
    /// The protocol version it writes and reads (2 unless told).
    version: u8,
}

impl Client {
    /// Starts serving a connection; `out_capacity` bounds the frames the
    /// server may write before the client reads them.
    pub fn open(server: &WireServer, out_capacity: usize) -> Client {
        let (in_tx, in_rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(out_capacity);
        let incoming = Box::pin(stream::unfold(in_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let outgoing = Box::pin(sink::unfold(out_tx, |tx, frame: Bytes| async move {
            tx.send(frame)
                .await
                .map_err(|_| std::io::Error::other("client gone"))?;
            Ok::<_, std::io::Error>(tx)
        }));
        let server = server.clone();
        let task = tokio::spawn(async move { server.serve(incoming, outgoing).await });
        Client::on(in_tx, out_rx, task)
    }

    /// A client of `server` over a real TCP connection on 127.0.0.1 (the
    /// server side served by [`WireServer::serve_stream`]). What the
    /// client sends is cut at random places and what waits together is
    /// written at once, as `seed` decides: packets reach the server split
    /// and coalesced across reads. What comes back is split into packets
    /// wherever the reads end.
    pub async fn tcp(server: &WireServer, seed: u64) -> Client {
        Client::tcp_with(server, Some(seed)).await
    }

    /// A client of `server` over TCP on 127.0.0.1, as [`Client::tcp`], but
    /// each chunk given to it ([`Client::raw`], [`Client::chunk`]) goes out
    /// whole, in one `write_all`, without a copy.
    pub async fn tcp_whole(server: &WireServer) -> Client {
        Client::tcp_with(server, None).await
    }

    /// [`Client::tcp`] with chunks cut as `seed` decides, or sent whole.
    async fn tcp_with(server: &WireServer, seed: Option<u64>) -> Client {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        let (client, (served, _)) = (client.unwrap(), accepted.unwrap());
        client.set_nodelay(true).unwrap();
        served.set_nodelay(true).unwrap();
        let server = server.clone();
        let task = tokio::spawn(async move { server.serve_stream(served).await });
        let (mut read, mut write) = client.into_split();
        let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
        let (out_tx, out_rx) = mpsc::channel::<Bytes>(1024);
        tokio::spawn(async move {
            let Some(seed) = seed else {
                while let Some(Ok(chunk)) = in_rx.recv().await {
                    if write.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                return;
            };
            let mut rng = seed | 1;
            let mut next = move |below: usize| {
                // xorshift64: reproducible cuts, no dependency.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % below as u64) as usize
            };
            while let Some(Ok(first)) = in_rx.recv().await {
                let mut bytes = first.to_vec();
                while next(2) == 0 {
                    match in_rx.try_recv() {
                        Ok(Ok(more)) => bytes.extend_from_slice(&more),
                        _ => break,
                    }
                }
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let (piece, after) = rest.split_at(1 + next(rest.len().min(40)));
                    if write.write_all(piece).await.is_err() {
                        return;
                    }
                    // Let the server read what is there before the rest.
                    tokio::task::yield_now().await;
                    rest = after;
                }
            }
        });
        tokio::spawn(async move {
            let mut buf = bytes::BytesMut::new();
            while read.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                while let Ok(Some(len)) = imcore::wire::frame_len(&buf, 1 << 20) {
                    if out_tx.send(buf.split_to(len).freeze()).await.is_err() {
                        return;
                    }
                }
            }
        });
        Client::on(in_tx, out_rx, task)
    }

    /// A client not yet logged in, on the given channels to and from the
    /// server's task.
    fn on(
        to_server: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
        from_server: mpsc::Receiver<Bytes>,
        task: JoinHandle<Result<SessionEnd, WireError>>,
    ) -> Client {
        Client {
            to_server: Some(to_server),
            from_server,
            task,
            keys: None,
            cipher: None,
            version: 2,
        }
    }

    /// Speaks protocol `version` from now on: its CONNECT asks for it, and
    /// it writes and reads packets as that version lays them out (the
    /// server speaks at most 5: ask for more, then speak 5 after login).
    pub fn speak(&mut self, version: u8) {
        self.version = version;
    }

    pub fn raw(&self, bytes: &[u8]) {
        if let Some(tx) = &self.to_server {
            let _ = tx.send(Ok(Bytes::copy_from_slice(bytes)));
        }
    }

    /// Sends `bytes` as one chunk (one WebSocket message, or one write),
    /// without copying it.
    pub fn chunk(&self, bytes: Bytes) {
        if let Some(tx) = &self.to_server {
            let _ = tx.send(Ok(bytes));
        }
    }

    pub fn packet(&self, packet: &Packet) {
        self.raw(&packet.to_bytes_at(self.version).unwrap());
    }

    /// Ends the client's side of the transport.
    pub fn hang_up(&mut self) {
        self.to_server = None;
    }

    /// The next frame, which must hold exactly one packet; `None` when the
    /// server closed the connection.
    pub async fn next(&mut self) -> Option<Packet> {
        let frame = self.from_server.recv().await?;
        let (packet, used) = Packet::decode_at(&frame, 1 << 20, self.version).unwrap();
        assert_eq!(used, frame.len(), "one packet per frame");
        Some(packet)
    }

    pub fn connect_packet(&mut self, uid: &str, token: &str, flag: u8) -> ConnectPacket {
        let keys = KeyExchange::new();
        let connect = ConnectPacket {
            version: self.version,
            device_flag: flag,
            device_id: format!(
                "{uid}-device-{}",
                NEXT_DEVICE.fetch_add(1, Ordering::Relaxed)
            ),
            uid: uid.into(),
            token: token.into(),
            client_timestamp: NOW_MS - 1500,
            client_key: keys.public_base64(),
        };
        self.keys = Some(keys);
        connect
    }

    pub async fn connack(&mut self) -> ConnackPacket {
        match self.next().await {
            Some(Packet::Connack(c)) => c,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends CONNECT and completes the key exchange.
    pub async fn login(&mut self, uid: &str, flag: u8) -> ConnackPacket {
        let connect = self.connect_packet(uid, &format!("{uid}-token"), flag);
        self.packet(&Packet::Connect(connect));
        let connack = self.connack().await;
        assert_eq!(connack.reason, ReasonCode::SUCCESS);
        let keys = self.keys.take().unwrap();
        self.cipher = Some(keys.agree(&connack.server_key, &connack.salt).unwrap());
        connack
    }

    pub fn cipher(&self) -> &SessionCipher {
        self.cipher.as_ref().expect("logged in")
    }

    /// A SEND as the JavaScript client makes it: payload encrypted, message
    /// key over the verification string.
    pub fn sealed_send(
        &self,
        client_seq: u32,
        channel_id: &str,
        kind: u8,
        plain: &str,
    ) -> SendPacket {
        let mut send = SendPacket {
            flags: Flags::from_bits(0b0010), // red dot, as the SDK sets
            setting: Setting::default(),
            client_seq,
            client_msg_no: format!("cmn-{client_seq}"),
            stream_no: None,
            channel_id: channel_id.into(),
            channel_type: kind,
            expire: 0,
            msg_key: String::new(),
            topic: None,
            payload: Bytes::from(self.cipher().encrypt(plain.as_bytes())),
        };
        send.msg_key = self.cipher().send_msg_key(&send).unwrap();
        send
    }

    /// Small sealed SENDs to the person `to`, client seqs 1, 2, …
    /// (payload `m{seq}`, client_msg_no `cmn-{seq}`), back to back in one
    /// buffer of at most `bytes`: the buffer and how many SENDs it holds.
    pub fn burst(&self, to: &str, bytes: usize) -> (Bytes, u32) {
        let mut buf = bytes::BytesMut::with_capacity(bytes);
        for seq in 1.. {
            let send = self.sealed_send(seq, to, 1, &format!("m{seq}"));
            let frame = Packet::Send(send).to_bytes().unwrap();
            if buf.len() + frame.len() > bytes {
                return (buf.freeze(), seq - 1);
            }
            buf.extend_from_slice(&frame);
        }
        unreachable!()
    }

    /// Expects a SENDACK next and returns it.
    pub async fn sendack(&mut self) -> SendackPacket {
        match self.next().await {
            Some(Packet::Sendack(ack)) => ack,
            other => panic!("expected SENDACK, got {other:?}"),
        }
    }

    pub async fn recv(&mut self) -> RecvPacket {
        match self.next().await {
            Some(Packet::Recv(r)) => r,
            other => panic!("expected RECV, got {other:?}"),
        }
    }

    /// Checks a RECV's message key and returns its decrypted payload.
    pub fn open_recv(&self, recv: &RecvPacket) -> String {
        assert_eq!(recv.msg_key, self.cipher().recv_msg_key(recv).unwrap());
        String::from_utf8(self.cipher().decrypt(&recv.payload).unwrap()).unwrap()
    }

    pub async fn end(self) -> Result<SessionEnd, WireError> {
        self.task.await.unwrap()
    }
}

pub const WEB: u8 = 1;
pub const PC: u8 = 2;
pub const APP: u8 = 0;
