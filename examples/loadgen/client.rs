//! One simulated client: a WebSocket speaking WuKongIM's protocol with the
//! crate's codec and cipher, as the official JavaScript client does (one
//! packet per WebSocket message, RECVACK for every RECV), or the bare
//! substrate's frames (see `substrate`) in the same pattern.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use imcore::wire::{
    ConnectPacket, KeyExchange, Packet, RecvackPacket, SendPacket, SessionCipher, Setting,
};
use imcore::{Flags, ReasonCode};
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::{token_of, Server};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a client waits without any progress before it calls the run
/// stalled.
const STALL: Duration = Duration::from_secs(30);

/// A logged-in client.
pub struct Client {
    uid: String,
    socket: Socket,
    speech: Box<dyn Speech>,
}

/// What a client says and how it reads what it hears.
pub trait Speech: Send {
    /// SEND number `seq` (from 1) of `text` to `channel`.
    fn send(&self, seq: u32, channel: &str, text: String) -> Bytes;
    /// What a frame from the server is.
    fn hear(&self, frame: &[u8]) -> Result<Heard, String>;
}

/// A frame from the server, as a client sees it.
pub enum Heard {
    /// The answer to SEND `seq`.
    Ack { seq: u32, ok: bool },
    /// A message of the channel at `seq`, and the frame acknowledging it.
    Recv { seq: u32, ack: Bytes },
    /// The server says goodbye.
    Disconnect(String),
    /// Anything else (pings).
    Other,
}

/// WuKongIM's protocol with the session's cipher.
struct Wukong(SessionCipher);

/// What one client does.
pub struct Load {
    pub channel: String,
    /// Messages it sends.
    pub sends: usize,
    /// Messages it should receive.
    pub expected: usize,
    /// SENDs without a SENDACK at most.
    pub in_flight: usize,
    /// Sends per second, or as fast as acks allow.
    pub rate: Option<f64>,
}

/// What one client saw.
pub struct Tally {
    pub uid: String,
    pub expected: usize,
    /// The latency of each SENDACK.
    pub acks: Vec<Duration>,
    /// SENDACKs that were not a success.
    pub refused: usize,
    /// RECVs, each new and in seq order.
    pub received: usize,
    pub failure: Option<String>,
}

impl Client {
    /// Connects and logs in as `uid`.
    pub async fn login(server: &Server, uid: &str) -> Result<Self, String> {
        let (socket, cipher) = handshake(server, uid).await?;
        Ok(Client {
            uid: uid.into(),
            socket,
            speech: Box::new(Wukong(cipher)),
        })
    }

    /// A client of the bare substrate, logged in as `uid` on `channel`.
    pub fn bare(uid: &str, socket: Socket, speech: Box<dyn Speech>) -> Self {
        Client {
            uid: uid.into(),
            socket,
            speech,
        }
    }

    /// Sends and receives as `load` says, until everything is sent, acked
    /// and received, or something goes wrong.
    pub async fn drive(mut self, load: Load) -> Tally {
        let mut tally = Tally {
            uid: self.uid.clone(),
            expected: load.expected,
            acks: Vec::with_capacity(load.sends),
            refused: 0,
            received: 0,
            failure: None,
        };
        if let Err(e) = self.exchange(&load, &mut tally).await {
            tally.failure = Some(e);
        }
        self.close().await;
        tally
    }

    async fn exchange(&mut self, load: &Load, tally: &mut Tally) -> Result<(), String> {
        let mut sent = 0;
        let mut waiting: HashMap<u32, Instant> = HashMap::new();
        let mut last_seq = 0u32;
        let gap = load.rate.map(|r| Duration::from_secs_f64(1.0 / r));
        // Paced clients start at phases of their own, spread over one gap,
        // so that they do not send in step (bursts a server could batch).
        let phase = {
            use std::hash::{BuildHasher, RandomState};
            (RandomState::new().hash_one(&self.uid) % 1_000) as f64 / 1_000.0
        };
        let mut next_send = Instant::now() + gap.map_or(Duration::ZERO, |g| g.mul_f64(phase));
        loop {
            let done_sending = sent == load.sends && waiting.is_empty();
            if done_sending && tally.received >= load.expected {
                return Ok(());
            }
            let may_send = sent < load.sends && waiting.len() < load.in_flight;
            let pause = tokio::time::sleep_until(next_send.into());
            tokio::select! {
                () = pause, if may_send => {
                    sent += 1;
                    let seq = sent as u32;
                    let frame = self.speech.send(seq, &load.channel, format!("{}-{seq}", self.uid));
                    waiting.insert(seq, Instant::now());
                    write(&mut self.socket, frame).await?;
                    next_send = gap.map_or(Instant::now(), |g| next_send.max(Instant::now() - g) + g);
                }
                frame = tokio::time::timeout(STALL, next_frame(&mut self.socket)) => {
                    let stalled = |_| format!("nothing for {STALL:?}: {} of {} received", tally.received, load.expected);
                    let Some(frame) = frame.map_err(stalled)?? else {
                        return Err("closed by the server".into());
                    };
                    match self.speech.hear(&frame)? {
                        Heard::Ack { seq, ok } => {
                            let at = waiting.remove(&seq).ok_or("an ack for nothing")?;
                            tally.acks.push(at.elapsed());
                            if !ok {
                                tally.refused += 1;
                            }
                        }
                        Heard::Recv { seq, ack } => {
                            if seq <= last_seq {
                                return Err(format!("seq {seq} after {last_seq}"));
                            }
                            last_seq = seq;
                            tally.received += 1;
                            write(&mut self.socket, ack).await?;
                        }
                        Heard::Disconnect(why) => return Err(format!("disconnected: {why}")),
                        Heard::Other => {}
                    }
                }
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

impl Speech for Wukong {
    /// A SEND as the JavaScript client makes it.
    fn send(&self, client_seq: u32, channel: &str, text: String) -> Bytes {
        let mut packet = SendPacket {
            flags: Flags::from_bits(0b0010),
            setting: Setting::default(),
            client_seq,
            client_msg_no: text.clone(),
            stream_no: None,
            channel_id: channel.into(),
            channel_type: 2,
            expire: 0,
            msg_key: String::new(),
            topic: None,
            payload: Bytes::from(self.0.encrypt(text.as_bytes())),
        };
        packet.msg_key = self.0.send_msg_key(&packet).unwrap_or_default();
        frame(&Packet::Send(packet))
    }

    fn hear(&self, frame: &[u8]) -> Result<Heard, String> {
        let (packet, _) = Packet::decode(frame, 1 << 20).map_err(|e| e.to_string())?;
        Ok(match packet {
            Packet::Sendack(ack) => Heard::Ack {
                seq: ack.client_seq,
                ok: ack.reason == ReasonCode::SUCCESS,
            },
            Packet::Recv(recv) => Heard::Recv {
                seq: recv.message_seq,
                ack: self::frame(&Packet::Recvack(RecvackPacket {
                    flags: recv.flags,
                    message_id: recv.message_id,
                    message_seq: recv.message_seq,
                })),
            },
            Packet::Disconnect(d) => Heard::Disconnect(format!("{d:?}")),
            _ => Heard::Other,
        })
    }
}

/// Connects and logs in to `wukong_server` as `uid`: the socket and the
/// session's cipher.
pub async fn handshake(server: &Server, uid: &str) -> Result<(Socket, SessionCipher), String> {
    let url = format!("ws://127.0.0.1:{}/", server.port);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("{uid}: connect: {e}"))?;
    let keys = KeyExchange::new();
    let connect = Packet::Connect(ConnectPacket {
        version: 2,
        device_flag: 1,
        device_id: format!("{uid}-web"),
        uid: uid.into(),
        token: token_of(uid),
        client_timestamp: 0,
        client_key: keys.public_base64(),
    });
    send(&mut socket, &connect).await?;
    let connack = match next(&mut socket).await? {
        Some(Packet::Connack(c)) if c.reason == ReasonCode::SUCCESS => c,
        other => return Err(format!("{uid}: login refused: {other:?}")),
    };
    let cipher = keys
        .agree(&connack.server_key, &connack.salt)
        .map_err(|e| format!("{uid}: key exchange: {e}"))?;
    Ok((socket, cipher))
}

fn frame(packet: &Packet) -> Bytes {
    packet
        .to_bytes()
        .expect("the load generator's own packets encode")
}

async fn send(socket: &mut Socket, packet: &Packet) -> Result<(), String> {
    write(socket, frame(packet)).await
}

pub async fn write(socket: &mut Socket, frame: Bytes) -> Result<(), String> {
    socket
        .send(Ws::Binary(frame))
        .await
        .map_err(|e| format!("write: {e}"))
}

/// The next binary frame; `None` when the server closed the connection.
pub async fn next_frame(socket: &mut Socket) -> Result<Option<Bytes>, String> {
    loop {
        match socket.next().await {
            None | Some(Ok(Ws::Close(_))) => return Ok(None),
            Some(Err(e)) => return Err(format!("read: {e}")),
            Some(Ok(Ws::Binary(frame))) => return Ok(Some(frame)),
            Some(Ok(_)) => {}
        }
    }
}

/// The next packet; `None` when the server closed the connection.
async fn next(socket: &mut Socket) -> Result<Option<Packet>, String> {
    match next_frame(socket).await? {
        None => Ok(None),
        Some(frame) => Packet::decode(&frame, 1 << 20)
            .map(|(p, _)| Some(p))
            .map_err(|e| e.to_string()),
    }
}
