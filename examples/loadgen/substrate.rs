//! The bare substrate of the served path: a WebSocket fan-out server with
//! no IM in it, for the load generator to measure beside `wukong_server`
//! in the same run. It does what the machine must do for each delivery
//! whatever the server (write a frame to the member's socket, read the
//! member's acknowledgement) and nothing else: no protocol, no cipher, no
//! store, no directory.
//!
//! Frames, all binary, the first byte saying which:
//!
//! | frame | bytes |
//! |---|---|
//! | join a channel (client) | `0`, channel name |
//! | joined (server) | `0` |
//! | send (client) | `1`, client seq (4, big-endian), text |
//! | deliver (server) | `2`, channel seq (4), text |
//! | send acknowledged (server) | `3`, client seq (4) |
//! | delivery acknowledged (client) | `4`, channel seq (4) |
//!
//! Each connection is one task, writing what is queued for it (up to 64
//! frames, one flush) and reading its socket, as `WireServer` does.
//!
//! With a store (`--store DIR`), each send is also written to a raw sled
//! tree (one key: the channel and its seq; the text) and its
//! acknowledgement waits for sled's flush, as `wukong_server`'s does: the
//! bare substrate of a durable send. One thread flushes, each flush
//! covering every write before it (sled's own `flush_async`, one per
//! write, stalls under this load).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::client::{next_frame, write, Client, Heard, Speech};

/// Frames written per flush at most, as `WireServer` batches deliveries.
const BATCH: usize = 64;

#[derive(Default)]
struct Channel {
    seq: u32,
    members: Vec<(u64, mpsc::UnboundedSender<Bytes>)>,
}

type Channels = Arc<Mutex<HashMap<Bytes, Channel>>>;

/// Serves on a free 127.0.0.1 port, printing `listening on 127.0.0.1:PORT`
/// as `wukong_server` does, until killed; with `store`, sends are written
/// to a sled database there, flushed before they are acknowledged.
pub async fn serve(store: Option<std::path::PathBuf>) -> std::io::Result<()> {
    let log = match store {
        Some(dir) => {
            let tree = sled::open(dir)
                .and_then(|db| db.open_tree("log"))
                .map_err(std::io::Error::other)?;
            let flusher = Arc::new(Flusher::default());
            let (t, f) = (tree.clone(), flusher.clone());
            std::thread::spawn(move || f.run(&t));
            Some(Log { tree, flusher })
        }
        None => None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let channels = Channels::default();
    for id in 0u64.. {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(connection(tcp, id, channels.clone(), log.clone()));
    }
    Ok(())
}

fn frame(kind: u8, seq: u32, rest: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + rest.len());
    b.put_u8(kind);
    b.put_u32(seq);
    b.put_slice(rest);
    b.freeze()
}

/// The raw sled store: the tree, and the thread that flushes it.
#[derive(Clone)]
struct Log {
    tree: sled::Tree,
    flusher: Arc<Flusher>,
}

/// Acknowledgements waiting for the next flush, and the flushing thread's
/// wake-up.
#[derive(Default)]
struct Flusher {
    waiting: Mutex<Vec<(mpsc::UnboundedSender<Bytes>, Bytes)>>,
    wake: std::sync::Condvar,
}

impl Flusher {
    /// Sends `ack` once a flush has covered what was written before now.
    fn ack_after_flush(&self, to: &mpsc::UnboundedSender<Bytes>, ack: Bytes) {
        self.waiting.lock().unwrap().push((to.clone(), ack));
        self.wake.notify_one();
    }

    /// Flushes while anyone waits, then answers them all.
    fn run(&self, tree: &sled::Tree) {
        loop {
            let due = {
                let mut waiting = self.waiting.lock().unwrap();
                while waiting.is_empty() {
                    waiting = self.wake.wait(waiting).unwrap();
                }
                std::mem::take(&mut *waiting)
            };
            if tree.flush().is_err() {
                return;
            }
            for (to, ack) in due {
                let _ = to.send(ack);
            }
        }
    }
}

async fn connection(tcp: TcpStream, id: u64, channels: Channels, log: Option<Log>) {
    // The example server's read buffer, for the same memory per connection.
    let config = WebSocketConfig::default().read_buffer_size(512);
    let Ok(socket) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let mut joined: Option<Bytes> = None;
    loop {
        tokio::select! {
            queued = rx.recv() => {
                let Some(first) = queued else { break };
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                let mut all = futures_util::stream::iter(batch.into_iter().map(|f| Ok(Ws::Binary(f))));
                if sink.send_all(&mut all).await.is_err() {
                    break;
                }
            }
            read = stream.next() => {
                let Some(Ok(Ws::Binary(f))) = read else {
                    match read {
                        Some(Ok(_)) => continue,
                        _ => break,
                    }
                };
                match f.first() {
                    Some(0) => {
                        let name = f.slice(1..);
                        channels.lock().unwrap().entry(name.clone()).or_default().members.push((id, tx.clone()));
                        joined = Some(name);
                        let _ = tx.send(Bytes::from_static(&[0]));
                    }
                    Some(1) if f.len() >= 5 => {
                        let Some(name) = &joined else { break };
                        let client_seq = u32::from_be_bytes([f[1], f[2], f[3], f[4]]);
                        let seq = {
                            let mut channels = channels.lock().unwrap();
                            let channel = channels.entry(name.clone()).or_default();
                            channel.seq += 1;
                            let deliver = frame(2, channel.seq, &f[5..]);
                            for (member, to) in &channel.members {
                                if *member != id {
                                    let _ = to.send(deliver.clone());
                                }
                            }
                            channel.seq
                        };
                        let ack = frame(3, client_seq, &[]);
                        match &log {
                            None => {
                                let _ = tx.send(ack);
                            }
                            Some(log) => {
                                let key = [name.as_ref(), &seq.to_be_bytes()].concat();
                                if log.tree.insert(key, &f[5..]).is_err() {
                                    break;
                                }
                                // Acknowledged once flushed; the connection
                                // reads on meanwhile, as the example's does.
                                log.flusher.ack_after_flush(&tx, ack);
                            }
                        }
                    }
                    _ => {} // an acknowledgement: read, and nothing to do
                }
            }
        }
    }
    if let Some(name) = joined {
        if let Some(channel) = channels.lock().unwrap().get_mut(&name) {
            channel.members.retain(|(member, _)| *member != id);
        }
    }
}

/// The client side of the substrate's frames.
struct Bare;

impl Speech for Bare {
    fn send(&self, seq: u32, _channel: &str, text: String) -> Bytes {
        frame(1, seq, text.as_bytes())
    }

    fn hear(&self, f: &[u8]) -> Result<Heard, String> {
        let seq = || {
            f.get(1..5)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("a short frame: {f:?}"))
        };
        Ok(match f.first() {
            Some(2) => Heard::Recv {
                seq: seq()?,
                ack: frame(4, seq()?, &[]),
            },
            Some(3) => Heard::Ack {
                seq: seq()?,
                ok: true,
            },
            _ => Heard::Other,
        })
    }
}

/// Connects to the substrate on `port` as `uid` and joins `channel`.
pub async fn login(port: u16, uid: &str, channel: &str) -> Result<Client, String> {
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("{uid}: connect: {e}"))?;
    let mut join = vec![0];
    join.extend_from_slice(channel.as_bytes());
    write(&mut socket, join.into()).await?;
    match next_frame(&mut socket).await? {
        Some(f) if f.as_ref() == [0] => Ok(Client::bare(uid, socket, Box::new(Bare))),
        other => Err(format!("{uid}: join refused: {other:?}")),
    }
}
