//! Online devices and the transport that reaches them.
//!
//! A host connects each device to the hub with a [`DeviceSink`]: the hub
//! hands it messages and, when it must, closes it. The crate ships an
//! in-process transport on tokio channels ([`in_process`]).

use std::fmt::{self, Debug};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::error::{Result, ValidationError};
use crate::model::{DeviceId, Message, Uid};
use crate::reason::ReasonCode;

mod in_process;
pub use in_process::{in_process, InProcessConnection, InProcessEvents, InProcessSink};

/// The kind of device, with WuKongIM's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum DeviceFlag {
    /// 0: a mobile app.
    App,
    /// 1: a web client.
    Web,
    /// 2: a desktop client.
    Pc,
    /// 99: a system (server-side) connection.
    System,
}

impl TryFrom<u8> for DeviceFlag {
    type Error = crate::Error;
    fn try_from(n: u8) -> Result<Self> {
        Ok(match n {
            0 => DeviceFlag::App,
            1 => DeviceFlag::Web,
            2 => DeviceFlag::Pc,
            99 => DeviceFlag::System,
            _ => {
                return Err(ValidationError::OutOfRange("device flag is not 0, 1, 2 or 99").into())
            }
        })
    }
}

impl From<DeviceFlag> for u8 {
    fn from(f: DeviceFlag) -> u8 {
        match f {
            DeviceFlag::App => 0,
            DeviceFlag::Web => 1,
            DeviceFlag::Pc => 2,
            DeviceFlag::System => 99,
        }
    }
}

/// A device's level, with WuKongIM's numbers. A user with no master device
/// online counts as offline for push, and only a master device's
/// acknowledgement consumes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum DeviceLevel {
    /// 0: a secondary device.
    Slave,
    /// 1: a primary device.
    Master,
}

impl TryFrom<u8> for DeviceLevel {
    type Error = crate::Error;
    fn try_from(n: u8) -> Result<Self> {
        match n {
            0 => Ok(DeviceLevel::Slave),
            1 => Ok(DeviceLevel::Master),
            _ => Err(ValidationError::OutOfRange("device level is not 0 or 1").into()),
        }
    }
}

impl From<DeviceLevel> for u8 {
    fn from(l: DeviceLevel) -> u8 {
        match l {
            DeviceLevel::Slave => 0,
            DeviceLevel::Master => 1,
        }
    }
}

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    /// The user.
    pub uid: Uid,
    /// The device's own id.
    pub device_id: DeviceId,
    /// Its kind.
    pub flag: DeviceFlag,
    /// Its level.
    pub level: DeviceLevel,
}

impl Device {
    /// A master device.
    pub fn master(uid: Uid, device_id: DeviceId, flag: DeviceFlag) -> Self {
        Device {
            uid,
            device_id,
            flag,
            level: DeviceLevel::Master,
        }
    }

    /// A slave device.
    pub fn slave(uid: Uid, device_id: DeviceId, flag: DeviceFlag) -> Self {
        Device {
            uid,
            device_id,
            flag,
            level: DeviceLevel::Slave,
        }
    }
}

/// Why the hub closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DisconnectReason {
    /// A new master login of the same device flag took its place.
    Kicked,
    /// The same device connected again; the new connection replaces this one.
    Replaced,
    /// Its queue was full: it could not keep up. Nothing is lost; it catches
    /// up by sync when it reconnects.
    SlowConsumer,
    /// The host asked the hub to close it.
    Closed,
    /// The hub is shutting down ([`Hub::shutdown`](crate::Hub::shutdown)):
    /// a restart, or a node leaving its cluster. The device is expected to
    /// reconnect by itself, to the restarted server or to another node:
    /// what it was acknowledged is stored, and what it was not it sends
    /// again.
    Shutdown,
}

impl DisconnectReason {
    /// The WuKongIM reason code a DISCONNECT packet carries:
    /// [`ReasonCode::CONNECT_KICK`] (12) for a kick or a replacement,
    /// [`ReasonCode::RATE_LIMIT`] (22) for a slow consumer (WuKongIM has no
    /// closer code), [`ReasonCode::SUCCESS`] for a plain close or a
    /// shutdown. The wire server sends no DISCONNECT when
    /// [`DisconnectReason::expects_reconnect`] says so.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            DisconnectReason::Kicked | DisconnectReason::Replaced => ReasonCode::CONNECT_KICK,
            DisconnectReason::SlowConsumer => ReasonCode::RATE_LIMIT,
            DisconnectReason::Closed | DisconnectReason::Shutdown => ReasonCode::SUCCESS,
        }
    }

    /// Whether the client is expected to reconnect by itself: `true` for a
    /// slow consumer (it catches up by sync) and a shutdown (it comes back
    /// to the restarted server or another node), `false` for a kick, a
    /// replacement or a host's close.
    ///
    /// A transport closes the first kind without telling the client why:
    /// WuKongIM's clients stop reconnecting after a DISCONNECT packet (the
    /// JavaScript SDK whatever its reason code) and reconnect after a plain
    /// close, as WuKongIM's own server closes its connections when it
    /// stops. The wire server does so.
    ///
    /// ```
    /// use imcore::DisconnectReason;
    /// assert!(DisconnectReason::Shutdown.expects_reconnect());
    /// assert!(!DisconnectReason::Kicked.expects_reconnect());
    /// ```
    pub fn expects_reconnect(self) -> bool {
        matches!(
            self,
            DisconnectReason::SlowConsumer | DisconnectReason::Shutdown
        )
    }
}

/// Why a [`DeviceSink`] did not take a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The connection's queue is full. The hub disconnects the device as a
    /// slow consumer.
    #[error("the device's queue is full")]
    Full,
    /// The connection is gone. The hub forgets the device.
    #[error("the device's connection is closed")]
    Closed,
}

/// The transport's end of one device connection.
///
/// `deliver` must not block or await, and must not call back into the hub
/// (the hub holds its session table while it delivers): it queues the
/// message for the connection's writer and returns, or says why it cannot.
/// The hub calls it
/// in channel seq order for each device; messages from one send are handed
/// to every device before the next send in the same channel.
pub trait DeviceSink: Send + Sync + Debug + 'static {
    /// Queues `message` for the device.
    fn deliver(&self, message: Arc<Message>) -> std::result::Result<(), SinkError>;

    /// Queues a message event ([`crate::event`]) for the device, in
    /// `msg_event_seq` order per message. Default: the device does not take
    /// events (a client of WuKongIM's protocol before version 5); it reads
    /// each message's folded state from history instead.
    fn deliver_event(
        &self,
        event: Arc<crate::event::StoredEvent>,
    ) -> std::result::Result<(), SinkError> {
        let _ = event;
        Ok(())
    }

    /// Tells the device it is being disconnected, and why. Called once; the
    /// hub forgets the sink right after.
    fn close(&self, reason: DisconnectReason);

    /// How many messages wait in its queue now, for metrics. Default 0 (a
    /// sink without a queue of its own).
    fn queued(&self) -> usize {
        0
    }
}

/// Identifies one connection of a device, so that a late disconnect of an
/// old connection never removes its replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number, unique among this hub's connections (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A connection id from its number ([`ConnectionId::get`]), as a host's
/// API names one (WuKongIM's `conn_id`): it matches the connection that
/// has it, if any is registered.
impl From<u64> for ConnectionId {
    fn from(n: u64) -> Self {
        ConnectionId(n)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

pub(crate) struct Online {
    pub(crate) device_id: DeviceId,
    pub(crate) flag: DeviceFlag,
    pub(crate) level: DeviceLevel,
    pub(crate) connection: ConnectionId,
    pub(crate) sink: Arc<dyn DeviceSink>,
}

/// A user's online devices. Most users have one: it sits in the map's own
/// slot, saving a pointer chase per recipient on every fan-out.
type Devices = smallvec::SmallVec<[Online; 1]>;

type OnlineMap = std::collections::HashMap<Uid, Devices, ahash::RandomState>;

/// The online devices of every user. Keyed with aHash (randomly keyed, so
/// still resistant to crafted collisions): uids are looked up once per
/// recipient on every fan-out, where SipHash's cost showed.
pub(crate) struct Sessions {
    users: RwLock<OnlineMap>,
    next_connection: AtomicU64,
    /// Kick epochs, striped by uid: a kick raises its user's stripe before
    /// it removes connections, so that a login that authenticated before
    /// the kick can tell, when it registers, that it must check again.
    kicks: Box<[AtomicU64]>,
    stripe_hasher: ahash::RandomState,
}

/// A user's devices on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    /// Devices connected.
    pub devices: u32,
    /// Of which master devices (a user with none online anywhere is offline
    /// for push).
    pub masters: u32,
}

/// A user's devices, counted.
fn count(devices: &Devices) -> UserPresence {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    let masters = devices
        .iter()
        .filter(|d| d.level == DeviceLevel::Master)
        .count();
    UserPresence {
        devices: n(devices.len()),
        masters: n(masters),
    }
}

/// Why a login of `device` closes the connection `d` of the same user, if
/// it does: the same device id is replaced; a master login kicks the other
/// devices of its flag.
fn displaced_by(device: &Device, d: &Online) -> Option<DisconnectReason> {
    if d.device_id == device.device_id {
        Some(DisconnectReason::Replaced)
    } else if device.level == DeviceLevel::Master && d.flag == device.flag {
        Some(DisconnectReason::Kicked)
    } else {
        None
    }
}

/// Stripes of kick epochs. A kick of one user makes a concurrent login of
/// another user in the same stripe authenticate once more, nothing worse.
const KICK_STRIPES: usize = 1024;

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            users: RwLock::default(),
            next_connection: AtomicU64::new(0),
            kicks: (0..KICK_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            stripe_hasher: ahash::RandomState::new(),
        }
    }
}

/// Taken before a login checks its credential, and handed back when it
/// registers the connection: see [`Hub::login_ticket`](crate::Hub::login_ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginTicket {
    stripe: usize,
    epoch: u64,
}

impl Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("users", &self.read().len())
            .finish()
    }
}

impl Sessions {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, OnlineMap> {
        // No code path panics while holding the lock.
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, OnlineMap> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    fn kick_stripe(&self, uid: &Uid) -> usize {
        self.stripe_hasher.hash_one(uid) as usize % KICK_STRIPES
    }

    /// A ticket for a login of `uid` that is about to check its credential.
    pub(crate) fn login_ticket(&self, uid: &Uid) -> LoginTicket {
        let stripe = self.kick_stripe(uid);
        LoginTicket {
            stripe,
            epoch: self.kicks[stripe].load(Ordering::SeqCst),
        }
    }

    /// Registers a connection. The same device id replaces its old
    /// connection; a master login kicks the other devices of its flag.
    /// Returns the connection's id; closes the displaced sinks after
    /// releasing the lock.
    pub(crate) fn connect(&self, device: Device, sink: Arc<dyn DeviceSink>) -> ConnectionId {
        self.register(self.write(), device, sink)
    }

    /// [`Sessions::connect`] only if no kick of the ticket's stripe
    /// happened since it was taken; `None` otherwise.
    pub(crate) fn connect_checked(
        &self,
        ticket: LoginTicket,
        device: Device,
        sink: Arc<dyn DeviceSink>,
    ) -> Option<ConnectionId> {
        let users = self.write();
        // Checked under the write lock that a kick's removal also takes:
        // either this sees the kick's raised epoch, or the kick removes
        // what this registers.
        if self.kicks[ticket.stripe].load(Ordering::SeqCst) != ticket.epoch {
            return None;
        }
        Some(self.register(users, device, sink))
    }

    /// Adds the connection to the locked table, releases the lock, then
    /// closes the sinks it displaced.
    fn register(
        &self,
        mut users: RwLockWriteGuard<'_, OnlineMap>,
        device: Device,
        sink: Arc<dyn DeviceSink>,
    ) -> ConnectionId {
        let connection = ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed) + 1);
        let mut displaced = Vec::new();
        let devices = users.entry(device.uid.clone()).or_default();
        devices.retain(|d| match displaced_by(&device, d) {
            Some(r) => {
                displaced.push((d.sink.clone(), r));
                false
            }
            None => true,
        });
        devices.push(Online {
            device_id: device.device_id,
            flag: device.flag,
            level: device.level,
            connection,
            sink,
        });
        drop(users);
        for (sink, reason) in displaced {
            sink.close(reason);
        }
        connection
    }

    /// A device logged in on another node: removes this node's connection
    /// of the same device id (replaced) and, for a master, the same flag's
    /// (kicked), closing them. Returns how many.
    pub(crate) fn displace(&self, device: &Device) -> usize {
        self.remove(&device.uid, |d| displaced_by(device, d).map(Some))
    }

    /// Removes one connection if it is still registered, closing its sink
    /// with `reason` when given. Returns whether it was registered.
    pub(crate) fn disconnect(
        &self,
        uid: &Uid,
        connection: ConnectionId,
        reason: Option<DisconnectReason>,
    ) -> bool {
        self.remove_where(uid, |d| d.connection == connection, reason) > 0
    }

    /// Removes every connection of `uid` (of one device flag, or all),
    /// closing each with `reason`. Returns how many.
    pub(crate) fn disconnect_user(
        &self,
        uid: &Uid,
        flag: Option<DeviceFlag>,
        reason: DisconnectReason,
    ) -> usize {
        // Raised before removing: a login that checked its credential
        // before this kick finds the epoch moved when it registers.
        self.kicks[self.kick_stripe(uid)].fetch_add(1, Ordering::SeqCst);
        self.remove_where(uid, |d| flag.is_none_or(|f| d.flag == f), Some(reason))
    }

    /// Removes the connections of `uid` that match, then (with the lock
    /// released) closes their sinks with `reason` when given. Returns how
    /// many were removed.
    fn remove_where(
        &self,
        uid: &Uid,
        matches: impl Fn(&Online) -> bool,
        reason: Option<DisconnectReason>,
    ) -> usize {
        self.remove(uid, |d| matches(d).then_some(reason))
    }

    /// Removes the connections of `uid` for which `decide` says
    /// `Some(reason)`, then (with the lock released) closes each with its
    /// reason when there is one. Returns how many were removed.
    fn remove(
        &self,
        uid: &Uid,
        decide: impl Fn(&Online) -> Option<Option<DisconnectReason>>,
    ) -> usize {
        let mut removed = Vec::new();
        {
            let mut users = self.write();
            let Some(devices) = users.get_mut(uid) else {
                return 0;
            };
            devices.retain(|d| match decide(d) {
                Some(reason) => {
                    removed.push((d.sink.clone(), reason));
                    false
                }
                None => true,
            });
            if devices.is_empty() {
                users.remove(uid);
            }
        }
        for (sink, reason) in &removed {
            if let Some(reason) = reason {
                sink.close(*reason);
            }
        }
        removed.len()
    }

    /// The level of a registered connection.
    pub(crate) fn level_of(&self, uid: &Uid, connection: ConnectionId) -> Option<DeviceLevel> {
        self.read()
            .get(uid)?
            .iter()
            .find(|d| d.connection == connection)
            .map(|d| d.level)
    }

    /// The online devices of `uid`.
    pub(crate) fn connections_of(&self, uid: &Uid) -> Vec<(ConnectionId, Device)> {
        self.read().get(uid).map_or_else(Vec::new, |devices| {
            devices
                .iter()
                .map(|d| {
                    let device = Device {
                        uid: uid.clone(),
                        device_id: d.device_id.clone(),
                        flag: d.flag,
                        level: d.level,
                    };
                    (d.connection, device)
                })
                .collect()
        })
    }

    /// The user's devices here.
    pub(crate) fn presence_of(&self, uid: &Uid) -> UserPresence {
        self.read()
            .get(uid)
            .map_or_else(UserPresence::default, count)
    }

    /// Every user with a device here, with [`Sessions::presence_of`]'s
    /// figures.
    pub(crate) fn presence(&self) -> Vec<(Uid, UserPresence)> {
        self.read()
            .iter()
            .map(|(uid, devices)| (uid.clone(), count(devices)))
            .collect()
    }

    /// How many connections are registered.
    pub(crate) fn connection_count(&self) -> usize {
        self.read().values().map(|d| d.len()).sum()
    }

    /// Connections, messages queued for them in all, and the most queued
    /// for one.
    pub(crate) fn queues(&self) -> (usize, usize, usize) {
        let users = self.read();
        let mut connections = 0;
        let (mut queued, mut deepest) = (0, 0);
        for d in users.values().flat_map(|d| d.iter()) {
            let n = d.sink.queued();
            connections += 1;
            queued += n;
            deepest = deepest.max(n);
        }
        (connections, queued, deepest)
    }
}
