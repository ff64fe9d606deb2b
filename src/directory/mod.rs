//! Who is in a channel and who may do what: the [`Directory`] the hub asks
//! on every send and history read.
//!
//! - [`Directory`]: the trait. Hosts with membership of their own implement
//!   it over their data.
//! - [`StoredDirectory`]: WuKongIM's model ready made (tokens, channels and
//!   their settings, subscribers, black- and whitelists, system uids), kept
//!   in a [`DirectoryStore`] (every backend of the crate is one), cached
//!   on each node and kept fresh across nodes by a [`ChangeFeed`].
//! - [`MemoryDirectory`]: a small in-memory directory for tests and
//!   examples.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Channel, Uid};
use crate::reason::ReasonCode;

mod cache;
mod feed;
mod memory;
mod rules;
mod store;
mod stored;

pub use feed::{
    ChangeFeed, ChangeKind, DirectoryChange, FeedEvent, FeedSink, MemberDelta, NoFeed, Scope,
};
pub use memory::MemoryDirectory;
pub use store::{ChannelInfo, ChannelSnapshot, DirectoryCounts, DirectoryStore, StoredToken};
pub use stored::{DirectoryConfig, DirectoryStats, StoredDirectory};

/// A directory's answer to "may this user do this?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Allowed.
    Allowed,
    /// Refused, with the WuKongIM reason code the client is told.
    Denied(ReasonCode),
}

/// A member's role in a channel, for rules such as who may revoke whose
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An ordinary member.
    Member,
    /// A manager (administrator) of the channel.
    Manager,
    /// The channel's owner.
    Owner,
}

/// The host's directory: who is in a channel and who may do what.
///
/// The hub asks it on every send and every history read, with the channel in
/// its stored form (a person channel as [`Channel::person`]). The hub itself
/// resolves the two subscribers of a person channel, refuses anyone else
/// (reason 3) before asking, and asks [`Directory::check_send`] for person
/// channels too (blacklists, friends only).
///
/// Answers are expected to be fast (an in-memory or cached look-up): they sit
/// on the send path.
#[async_trait]
pub trait Directory: Send + Sync + Debug + 'static {
    /// The subscribers of a channel that is not a person channel, each uid
    /// once (the hub does not deduplicate them: a uid listed twice would get
    /// every message twice and two unread). An unknown channel has none.
    async fn subscribers(&self, channel: &Channel) -> Result<Arc<[Uid]>>;

    /// Whether `sender` may send to `channel`; refusals carry WuKongIM's
    /// reason code (not a member 3, blacklisted or muted 4, no such channel 5,
    /// not allowed 11, not friends 13, banned 19, unsupported type 23,
    /// disbanded 24, everyone muted 25).
    async fn check_send(&self, sender: &Uid, channel: &Channel) -> Result<Permission>;

    /// Whether `reader` may read `channel`'s history.
    async fn check_read(&self, reader: &Uid, channel: &Channel) -> Result<Permission>;

    /// The channels (not person channels) `uid` subscribes to: the user's
    /// conversation list is assembled from them at sync (read diffusion),
    /// so a channel missing here is missing from the user's list, and a
    /// user removed from a channel stops seeing it there.
    async fn channels_of(&self, uid: &Uid) -> Result<Vec<Channel>>;

    /// Whether `uid` subscribes to each of `channels` (not person
    /// channels), in order: what [`channels_of`](Directory::channels_of)
    /// says of each. An incremental conversation sync asks it of the
    /// channels that changed, not of all the user's: a directory that can
    /// look one membership up (an index, a cache) should answer so. The
    /// default lists the user's channels.
    async fn subscribes_to(&self, uid: &Uid, channels: &[Channel]) -> Result<Vec<bool>> {
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        let mine: std::collections::HashSet<Channel> =
            self.channels_of(uid).await?.into_iter().collect();
        Ok(channels.iter().map(|c| mine.contains(c)).collect())
    }

    /// `uid`'s role in `channel`, `None` when not a member.
    async fn role(&self, channel: &Channel, uid: &Uid) -> Result<Option<Role>>;

    /// A name to show for `uid` (in the revocation tip, for instance);
    /// `None` shows the uid. The default knows no names.
    async fn display_name(&self, uid: &Uid) -> Result<Option<String>> {
        let _ = uid;
        Ok(None)
    }
}

/// Which of a channel's two lists: WuKongIM's blacklist (who may not send,
/// reason 4) or whitelist (when not empty, the only ones who may, reason
/// 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessList {
    /// Uids that may not send.
    Black,
    /// Uids that alone may send, when any are listed.
    White,
}
