#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod directory;
pub mod error;
pub mod event;
pub mod extra;
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
pub use directory::{
    AccessList, Directory, DirectoryConfig, DirectoryCounts, DirectoryStore, MemoryDirectory,
    Permission, Role, StoredDirectory,
};
pub use error::{Error, IdKind, Result, ValidationError};
pub use hub::{
    conversation_deleted_payload, AckingConnection, ConversationView, HistoryMessage, Hub,
    HubBuilder, HubConfig, HubStats, LatencyBuckets, RetentionPolicy, RetentionReport,
    RetentionRule, RetentionStatus, SendAck, SendCounts, SendRate, SendRequest, Target,
    CONVERSATION_DELETED_CMD,
};
pub use id::MessageIdGenerator;
pub use model::{
    Channel, ChannelId, ChannelType, ClientMsgNo, DeviceId, EventId, EventKey, Flags, Limits,
    Message, MessageId, Setting, Uid,
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
