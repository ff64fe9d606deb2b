//! Each connection's traffic and who it is, for a host's `connz` and
//! `varz`: packets and bytes in and out (SENDs in and RECVs out counted as
//! messages too), when it connected and when it last sent anything; and
//! the same traffic summed over every connection the server has served.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Sink, Stream};

use crate::clock::Clock;
use crate::session::{ConnectionId, Device};

/// A packet type's number in a header's top four bits: SEND and RECV, the
/// packets that carry messages; PING and PONG, one byte with no length.
const SEND: u8 = 3;
const RECV: u8 = 5;
const PING: u8 = 9;
const PONG: u8 = 10;

/// Traffic figures: packets and bytes each way, and of them the messages
/// (SENDs from the client, RECVs to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Traffic {
    /// Packets read from the client.
    pub in_packets: u64,
    /// Their bytes.
    pub in_packet_bytes: u64,
    /// SEND packets read (messages in).
    pub in_msgs: u64,
    /// Their bytes.
    pub in_msg_bytes: u64,
    /// Packets written to the client.
    pub out_packets: u64,
    /// Their bytes.
    pub out_packet_bytes: u64,
    /// RECV packets written (messages out).
    pub out_msgs: u64,
    /// Their bytes.
    pub out_msg_bytes: u64,
}

/// The live counters behind a [`Traffic`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    in_packets: AtomicU64,
    in_packet_bytes: AtomicU64,
    in_msgs: AtomicU64,
    in_msg_bytes: AtomicU64,
    out_packets: AtomicU64,
    out_packet_bytes: AtomicU64,
    out_msgs: AtomicU64,
    out_msg_bytes: AtomicU64,
}

impl Counters {
    fn add_in(&self, kind: u8, len: u64) {
        self.in_packets.fetch_add(1, Ordering::Relaxed);
        self.in_packet_bytes.fetch_add(len, Ordering::Relaxed);
        if kind == SEND {
            self.in_msgs.fetch_add(1, Ordering::Relaxed);
            self.in_msg_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn add_out(&self, kind: u8, len: u64) {
        self.out_packets.fetch_add(1, Ordering::Relaxed);
        self.out_packet_bytes.fetch_add(len, Ordering::Relaxed);
        if kind == RECV {
            self.out_msgs.fetch_add(1, Ordering::Relaxed);
            self.out_msg_bytes.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Traffic {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Traffic {
            in_packets: load(&self.in_packets),
            in_packet_bytes: load(&self.in_packet_bytes),
            in_msgs: load(&self.in_msgs),
            in_msg_bytes: load(&self.in_msg_bytes),
            out_packets: load(&self.out_packets),
            out_packet_bytes: load(&self.out_packet_bytes),
            out_msgs: load(&self.out_msgs),
            out_msg_bytes: load(&self.out_msg_bytes),
        }
    }
}

/// One connection's counters, and the server's, which it adds to too.
#[derive(Debug)]
pub(super) struct Meter {
    own: Counters,
    totals: Arc<Counters>,
    clock: Arc<dyn Clock>,
    connected_ms: i64,
    last_activity_ms: AtomicI64,
}

impl Meter {
    fn read(&self, kind: u8, len: u64) {
        self.own.add_in(kind, len);
        self.totals.add_in(kind, len);
    }

    fn wrote(&self, kind: u8, len: u64) {
        self.own.add_out(kind, len);
        self.totals.add_out(kind, len);
    }
}

/// A logged-in connection, as [`WireServer::connections`] lists it.
///
/// [`WireServer::connections`]: crate::wire::WireServer::connections
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireConnection {
    /// Its id in the hub's session table.
    pub id: ConnectionId,
    /// Who logged in, from what device.
    pub device: Device,
    /// The client's address, when the transport gave it.
    pub address: Option<SocketAddr>,
    /// The protocol version its CONNECT named.
    pub version: u8,
    /// When it connected, in Unix milliseconds (the hub's clock).
    pub connected_ms: i64,
    /// When it last sent anything, in Unix milliseconds.
    pub last_activity_ms: i64,
    /// What it sent and was sent.
    pub traffic: Traffic,
}

/// The order [`WireServer::connections`] lists connections in: WuKongIM's
/// `connz` sorts, ascending or (`…Desc`) descending. `Uptime` sorts by
/// the time of connecting (so the longest connected come first), and
/// `Idle` by the time of the last activity (so the longest idle come
/// first), as WuKongIM's do.
///
/// [`WireServer::connections`]: crate::wire::WireServer::connections
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnSort {
    /// By connection id.
    Id,
    /// By messages in.
    InMsgs,
    /// By messages out.
    OutMsgs,
    /// By message bytes in.
    InMsgBytes,
    /// By message bytes out.
    OutMsgBytes,
    /// By packets in.
    InPackets,
    /// By packets out.
    OutPackets,
    /// By packet bytes in.
    InPacketBytes,
    /// By packet bytes out.
    OutPacketBytes,
    /// By the time of connecting.
    Uptime,
    /// By the time of the last activity.
    Idle,
    /// By protocol version.
    Version,
}

impl ConnSort {
    /// WuKongIM's name of a sort (`id`, `inMsgDesc`, `idle`, …) as the sort
    /// and whether it is descending; `None` for a name it does not have.
    /// `pendingBytes` (no such figure here) sorts by id.
    pub fn parse(name: &str) -> Option<(ConnSort, bool)> {
        let (base, desc) = match name.strip_suffix("Desc") {
            Some(base) => (base, true),
            None => (name, false),
        };
        let sort = match base {
            "id" | "pendingBytes" => ConnSort::Id,
            "inMsg" => ConnSort::InMsgs,
            "outMsg" => ConnSort::OutMsgs,
            "inMsgBytes" => ConnSort::InMsgBytes,
            "outMsgBytes" => ConnSort::OutMsgBytes,
            "inPacket" => ConnSort::InPackets,
            "outPacket" => ConnSort::OutPackets,
            "inPacketBytes" => ConnSort::InPacketBytes,
            "outPacketBytes" => ConnSort::OutPacketBytes,
            "uptime" => ConnSort::Uptime,
            "idle" => ConnSort::Idle,
            "protoVersion" => ConnSort::Version,
            _ => return None,
        };
        Some((sort, desc))
    }

    fn key(self, c: &WireConnection) -> i128 {
        let t = &c.traffic;
        i128::from(match self {
            ConnSort::Id => c.id.get(),
            ConnSort::InMsgs => t.in_msgs,
            ConnSort::OutMsgs => t.out_msgs,
            ConnSort::InMsgBytes => t.in_msg_bytes,
            ConnSort::OutMsgBytes => t.out_msg_bytes,
            ConnSort::InPackets => t.in_packets,
            ConnSort::OutPackets => t.out_packets,
            ConnSort::InPacketBytes => t.in_packet_bytes,
            ConnSort::OutPacketBytes => t.out_packet_bytes,
            ConnSort::Uptime => return i128::from(c.connected_ms),
            ConnSort::Idle => return i128::from(c.last_activity_ms),
            ConnSort::Version => u64::from(c.version),
        })
    }
}

/// A page of connections, and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnPage {
    /// Every logged-in connection of this server, whatever the filter.
    pub total: usize,
    /// The page.
    pub connections: Vec<WireConnection>,
}

/// Who a logged-in connection is.
#[derive(Debug)]
struct Entry {
    device: Device,
    address: Option<SocketAddr>,
    version: u8,
    meter: Arc<Meter>,
}

/// The server's logged-in connections, and its traffic totals.
#[derive(Debug, Default)]
pub(super) struct ConnTable {
    entries: Mutex<HashMap<ConnectionId, Entry>>,
    totals: Arc<Counters>,
}

impl ConnTable {
    /// A meter for a new connection, counting into the totals too.
    pub(super) fn meter(&self, clock: Arc<dyn Clock>) -> Arc<Meter> {
        let now = clock.now_ms();
        Arc::new(Meter {
            own: Counters::default(),
            totals: self.totals.clone(),
            clock,
            connected_ms: now,
            last_activity_ms: AtomicI64::new(now),
        })
    }

    pub(super) fn add(
        &self,
        id: ConnectionId,
        device: Device,
        address: Option<SocketAddr>,
        version: u8,
        meter: Arc<Meter>,
    ) {
        let entry = Entry {
            device,
            address,
            version,
            meter,
        };
        self.lock().insert(id, entry);
    }

    pub(super) fn remove(&self, id: ConnectionId) {
        self.lock().remove(&id);
    }

    pub(super) fn totals(&self) -> Traffic {
        self.totals.snapshot()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connections whose uid contains `uid` (all when empty), sorted,
    /// from `offset`, at most `limit`.
    pub(super) fn page(
        &self,
        uid: &str,
        (sort, desc): (ConnSort, bool),
        offset: usize,
        limit: usize,
    ) -> ConnPage {
        let (total, mut all) = {
            let entries = self.lock();
            let listed: Vec<WireConnection> = entries
                .iter()
                .filter(|(_, e)| e.device.uid.as_str().contains(uid))
                .map(|(id, e)| WireConnection {
                    id: *id,
                    device: e.device.clone(),
                    address: e.address,
                    version: e.version,
                    connected_ms: e.meter.connected_ms,
                    last_activity_ms: e.meter.last_activity_ms.load(Ordering::Relaxed),
                    traffic: e.meter.own.snapshot(),
                })
                .collect();
            (entries.len(), listed)
        };
        // Ties in id order, so that pages do not overlap.
        all.sort_by(|a, b| {
            let order = sort.key(a).cmp(&sort.key(b));
            let order = if desc { order.reverse() } else { order };
            order.then(a.id.cmp(&b.id))
        });
        let connections = all.into_iter().skip(offset).take(limit).collect();
        ConnPage { total, connections }
    }
}

/// Finds packet boundaries in a stream of chunks, however they split
/// packets: the header byte, then (except for PING and PONG) a length of
/// one to four bytes, then that many bytes.
#[derive(Debug, Default)]
struct Scanner {
    /// Bytes of the current packet still to come, once its length is known.
    rest: usize,
    /// The current packet's header and length bytes so far.
    head: Vec<u8>,
    /// The current packet's body length, once known.
    body: u64,
}

impl Scanner {
    /// Counts each packet that ends in `chunk` into `meter`.
    fn scan(&mut self, mut chunk: &[u8], meter: &Meter) {
        while !chunk.is_empty() {
            if self.rest > 0 {
                let n = self.rest.min(chunk.len());
                self.rest -= n;
                chunk = &chunk[n..];
                if self.rest == 0 {
                    self.done(meter);
                }
                continue;
            }
            self.head.push(chunk[0]);
            chunk = &chunk[1..];
            let kind = self.head[0] >> 4;
            if matches!(kind, PING | PONG) {
                self.done(meter);
                continue;
            }
            let lengths = &self.head[1..];
            if lengths.last().is_some_and(|b| b & 0x80 == 0) || lengths.len() == 4 {
                let len = lengths
                    .iter()
                    .enumerate()
                    .fold(0usize, |n, (i, b)| n | (usize::from(b & 0x7F) << (7 * i)));
                self.rest = len;
                self.body = len as u64;
                if len == 0 {
                    self.done(meter);
                }
            }
        }
    }

    fn done(&mut self, meter: &Meter) {
        let kind = self.head[0] >> 4;
        let len = self.head.len() as u64;
        meter.read(kind, len + self.body);
        self.head.clear();
        self.body = 0;
    }
}

/// Incoming chunks, counted as they are read.
pub(super) struct CountedStream<I> {
    pub(super) inner: I,
    pub(super) meter: Arc<Meter>,
    scanner: Scanner,
}

impl<I> CountedStream<I> {
    pub(super) fn new(inner: I, meter: Arc<Meter>) -> Self {
        CountedStream {
            inner,
            meter,
            scanner: Scanner::default(),
        }
    }
}

impl<I, E> Stream for CountedStream<I>
where
    I: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let this = &mut *self;
            let now = this.meter.clock.now_ms();
            this.meter.last_activity_ms.store(now, Ordering::Relaxed);
            this.scanner.scan(chunk, &this.meter);
        }
        polled
    }
}

/// Outgoing packets (one an item), counted as they are sent.
pub(super) struct CountedSink<O> {
    pub(super) inner: O,
    pub(super) meter: Arc<Meter>,
}

impl<O> Sink<Bytes> for CountedSink<O>
where
    O: Sink<Bytes> + Unpin,
{
    type Error = O::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), O::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), O::Error> {
        let kind = item.first().map_or(0, |h| h >> 4);
        self.meter.wrote(kind, item.len() as u64);
        Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), O::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), O::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
