//! # imcore
//!
//! The core of an instant-messaging server, to embed in a Rust backend:
//! message routing, persistence policy (history, pass-through commands,
//! transient messages) and revocation, compatible in meaning with
//! [WuKongIM](https://github.com/WuKongIM/WuKongIM) so that its clients can
//! talk to a Rust backend.
//!
//! Everything the host owns is a trait: storage ([`store`]), its
//! membership directory ([`Directory`]), its offline push
//! ([`OfflineNotifier`]), the path to other hub nodes ([`Router`]) and the
//! devices' transport ([`DeviceSink`]; feature `wire` serves WuKongIM's
//! protocol over any byte transport). The traits are
//! [`async_trait`](macro@async_trait)s, re-exported here so that a host
//! implements them without adding the crate itself. The crate ships real
//! defaults: an embedded [sled](https://docs.rs/sled) store ([`SledStore`],
//! feature `sled`, on by default), PostgreSQL (`PgStore`, feature
//! `postgres`), an in-memory store ([`MemoryStore`]), an in-memory
//! directory ([`MemoryDirectory`]) and NATS between nodes (feature
//! `nats`).
//!
//! ## Runtime
//!
//! The crate runs on [tokio]: call the hub and the stores from within a
//! tokio runtime (the multi-thread flavour for servers). The sled store's
//! group commit and the hub's offline notifications run as spawned tasks.
//!
//! ## The model
//!
//! - Identifiers are validated newtypes: [`Uid`], [`DeviceId`],
//!   [`ClientMsgNo`], [`ChannelId`], [`MessageId`].
//! - A [`Channel`] is an id and a [`ChannelType`] with WuKongIM's numbers. A
//!   person channel is stored under one id derived from both uids
//!   ([`Channel::person`]).
//! - [`Flags`] are the header bits `dup`, `sync_once`, `red_dot`,
//!   `no_persist`, convertible to and from WuKongIM's header byte.
//! - A [`PersistencePolicy`] classifies each [`Message`] as
//!   [`Persistence::History`], [`Persistence::Command`] or
//!   [`Persistence::Transient`]; [`WuKongPolicy`] is WuKongIM's rule.
//!
//! ## Example
//!
//! ```
//! use imcore::store::{MessageLog, MemoryStore, Page};
//! use imcore::{Channel, ClientMsgNo, Flags, Message, MessageIdGenerator, Setting, Uid};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> imcore::Result<()> {
//! let store = MemoryStore::new();
//! let ids = MessageIdGenerator::new(1)?;
//! let alice = Uid::new("alice")?;
//! let message = Message {
//!     message_id: ids.next_id(),
//!     message_seq: 0, // assigned by the log
//!     client_msg_no: ClientMsgNo::new("c-1")?,
//!     from_uid: alice.clone(),
//!     channel: Channel::person(&alice, &Uid::new("bob")?),
//!     timestamp_ms: 1_700_000_000_000,
//!     flags: Flags::normal(),
//!     setting: Setting::default(),
//!     topic: None,
//!     payload: r#"{"type":1,"content":"hi"}"#.into(),
//! };
//! let appended = store.append(vec![message.clone()]).await?;
//! assert_eq!(appended[0].message_seq, 1);
//! let history = store.read(&message.channel, Page::forward(1, 10)).await?;
//! assert_eq!(history[0].payload, message.payload);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod directory;
pub mod error;
pub mod hub;
pub mod id;
pub mod model;
pub mod notify;
pub mod policy;
pub mod reason;
pub mod revoke;
pub mod route;
pub mod session;
pub mod store;
#[cfg(feature = "wire")]
pub mod wire;

/// The attribute the crate's async traits are written with, for hosts
/// implementing them.
pub use async_trait::async_trait;
pub use clock::{Clock, ManualClock, SystemClock};
pub use directory::{AccessList, Directory, MemoryDirectory, Permission, Role};
pub use error::{Error, IdKind, Result, ValidationError};
pub use hub::{
    ConversationView, HistoryMessage, Hub, HubBuilder, HubConfig, HubStats, SendAck, SendCounts,
    SendRequest, Target,
};
pub use id::MessageIdGenerator;
pub use model::{
    Channel, ChannelId, ChannelType, ClientMsgNo, DeviceId, Flags, Limits, Message, MessageId,
    Setting, Uid,
};
pub use notify::{NoPush, OfflineNotifier};
pub use policy::{Persistence, PersistencePolicy, WuKongPolicy};
pub use reason::ReasonCode;
pub use revoke::{
    Authorizer, Decision, DefaultRevokeRules, RevokeOutcome, RevokeRefusal, RevokeRequest,
    RevokeTarget,
};
#[cfg(feature = "nats")]
pub use route::{NatsConfig, NatsRouter};
pub use route::{Router, SingleNode};
pub use session::{Device, DeviceFlag, DeviceLevel, DeviceSink, DisconnectReason, LoginTicket};
pub use store::MemoryStore;
#[cfg(feature = "sled")]
pub use store::SledStore;
