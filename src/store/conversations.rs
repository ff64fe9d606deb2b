//! Conversations by read diffusion: derived at read time from each
//! channel's head and each user's read position, never written per member.
//!
//! A send writes its channel's log once. What a user sees of a channel (the
//! last message, the unread count, the version) comes from two small
//! records: the channel's [`ChannelHead`] (its newest message and a running
//! count of red-dot messages) and the user's [`ReadPosition`] (how far the
//! user has read, moved by [`ConversationStore::clear_unread`] and by the
//! user's own sends). Which channels a user has comes from the host's
//! directory (groups) and from the store (person channels, from their first
//! message).

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::check_limit;
use crate::error::Result;
use crate::model::{Channel, MessageId, Uid};

/// A channel's newest message, as the log has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHead {
    /// The newest message's seq.
    pub last_seq: u64,
    /// The newest message's id.
    pub last_message_id: MessageId,
    /// The newest message's timestamp, in Unix milliseconds.
    pub last_timestamp_ms: i64,
    /// How many messages up to `last_seq` have `red_dot`.
    pub red_dots: u64,
    /// The store version at which the head last moved.
    pub version: u64,
    /// How many messages up to the channel's history floor (the last seq
    /// deleted by retention, see [`RetentionStore`](super::RetentionStore))
    /// have `red_dot`; 0 when nothing was deleted. A reader is taken to
    /// have read at least that far: deleted messages are never unread.
    #[serde(default)]
    pub floor_red_dots: u64,
}

/// How far a user has read a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPosition {
    /// The last seq read.
    pub read_seq: u64,
    /// How many messages up to `read_seq` have `red_dot`.
    pub red_dots: u64,
    /// The store version at which the position last moved.
    pub version: u64,
}

/// An entry of a user's conversation list, derived from the channel's head
/// and the user's read position.
///
/// It names its last message by id and seq; the message itself is read from
/// the [`MessageLog`](super::MessageLog), so that what a reader sees of it
/// (revocation, for instance) is always current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The channel, in its stored form.
    pub channel: Channel,
    /// The last message's id.
    pub last_message_id: MessageId,
    /// The last message's seq.
    pub last_seq: u64,
    /// The last message's timestamp, in Unix milliseconds.
    pub last_timestamp_ms: i64,
    /// Red-dot messages from others after the user's read position.
    pub unread: u64,
    /// The later of the head's and the read position's versions: it rises
    /// whenever either moves.
    pub version: u64,
}

impl Conversation {
    /// What `channel` looks like to a user at `position` (`None`: never
    /// read, never sent).
    ///
    /// Own messages never count: a user's send moves the user's position
    /// to it, so everything after the position is from others. Messages
    /// deleted by retention never count either: the position is taken to
    /// be at least at the channel's floor (the higher red-dot count of the
    /// two).
    pub fn derive(channel: Channel, head: &ChannelHead, position: Option<&ReadPosition>) -> Self {
        let (read_dots, read_version) = position.map_or((0, 0), |p| (p.red_dots, p.version));
        let read_dots = read_dots.max(head.floor_red_dots);
        Conversation {
            channel,
            last_message_id: head.last_message_id,
            last_seq: head.last_seq,
            last_timestamp_ms: head.last_timestamp_ms,
            unread: head.red_dots.saturating_sub(read_dots),
            version: head.version.max(read_version),
        }
    }
}

/// Each user's conversation list, derived from channel heads and read
/// positions.
///
/// # Contract
///
/// - Versions come from one store-wide counter: every head move (an append)
///   and every read-position move takes a higher version than any before.
///   [`stable_version`](ConversationStore::stable_version) is a version up
///   to which every change is visible to readers: a reader that returns
///   only conversations up to it, and is asked again from the highest it
///   returned, misses nothing.
/// - An append moves its sender's read position to the new message (a user
///   has read what they send), with the same version as the head.
/// - A person channel is listed for both parties from its first message.
/// - [`clear_unread`](ConversationStore::clear_unread) never moves a
///   position back: a stale clear changes nothing.
#[async_trait]
pub trait ConversationStore: Send + Sync + Debug + 'static {
    /// A version up to which every change is visible; see the contract.
    async fn stable_version(&self) -> Result<u64>;

    /// The conversation of `uid` in `channel` (stored form), from one
    /// consistent look at the head and the position; `None` when the
    /// channel has no messages.
    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>>;

    /// The person channels (stored form) `uid` is a party to that have
    /// messages.
    async fn person_channels(&self, uid: &Uid) -> Result<Vec<Channel>>;

    /// `uid` has read `channel` up to seq `read_seq` (`u64::MAX`: all of
    /// it). The position moves to `min(read_seq, last seq)` if that is
    /// ahead of it, taking the next version; what arrived after `read_seq`
    /// stays unread. Returns `false` when the channel has no messages.
    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool>;

    /// Hides `uid`'s conversation in `channel` up to seq `up_to`: it is
    /// left out of the user's list until a message with a higher seq
    /// arrives (WuKongIM's conversation delete). A lower `up_to` than one
    /// before changes nothing. The hub clears the unread count too.
    ///
    /// A hide that changes the mark of a channel with messages is a change
    /// of the user's conversation, read or not: the user's read position
    /// takes the next version (its seq unchanged), so that a sync from any
    /// version before it returns the conversation and the user's other
    /// devices can learn of the delete.
    async fn hide_conversation(&self, uid: &Uid, channel: &Channel, up_to: u64) -> Result<()>;

    /// The conversations `uid` has hidden: each channel (stored form) with
    /// the seq it is hidden up to.
    async fn hidden_conversations(&self, uid: &Uid) -> Result<Vec<(Channel, u64)>>;

    /// Up to `limit` of `uid`'s conversations with a version above
    /// `version`, ascending: among `groups` (the host's channels of the
    /// user, stored form) and the user's person channels. Only versions up
    /// to [`stable_version`](ConversationStore::stable_version), read
    /// first, are returned; later ones come with the next call.
    ///
    /// It looks at every channel of the user: the full sync. An
    /// incremental sync can look at fewer, through
    /// [`changed_after`](ConversationStore::changed_after).
    async fn conversations_after(
        &self,
        uid: &Uid,
        groups: &[Channel],
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let ceiling = self.stable_version().await?;
        let mut channels: Vec<Channel> = self.person_channels(uid).await?;
        channels.extend(groups.iter().cloned());
        self.conversations_among(uid, &channels, version, ceiling, limit)
            .await
    }

    /// The channels whose conversation for `uid` may have changed after
    /// `version`, found without looking at each of the user's channels:
    /// `None` when there are more than `most` of them to look at, or when
    /// the store keeps no index to find them by (the default).
    ///
    /// [`Changed::channels`] holds every channel (stored form) in which
    /// `uid`'s conversation has a version in `(version, ceiling]`, where
    /// the ceiling is a [`stable_version`](ConversationStore::stable_version)
    /// read first: every channel whose head moved in that range, whatever
    /// its members or parties (the caller keeps the user's), and every
    /// channel in which `uid`'s read position moved in it. It may hold
    /// others (channels that moved again since, for instance), each once.
    /// What it costs grows with the channels that changed after `version`
    /// (plus a logarithmic term), not with the user's channels or the
    /// store's.
    async fn changed_after(&self, uid: &Uid, version: u64, most: usize) -> Result<Option<Changed>> {
        let _ = (uid, version, most);
        Ok(None)
    }

    /// Up to `limit` of `uid`'s conversations among `channels` (stored
    /// form, any order, duplicates allowed) with a version in `(version,
    /// ceiling]`, ascending. A channel without messages has none.
    ///
    /// With `channels` the user's groups and person channels and `ceiling`
    /// a stable version read first, it is
    /// [`conversations_after`](ConversationStore::conversations_after);
    /// with [`changed_after`](ConversationStore::changed_after)'s channels
    /// (the user's among them) and ceiling, it is the same list found from
    /// what changed.
    async fn conversations_among(
        &self,
        uid: &Uid,
        channels: &[Channel],
        version: u64,
        ceiling: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let mut channels: Vec<&Channel> = channels.iter().collect();
        channels.sort_unstable();
        channels.dedup();
        let mut out = Vec::new();
        for channel in channels {
            if let Some(c) = self.conversation(uid, channel).await? {
                if c.version > version && c.version <= ceiling {
                    out.push(c);
                }
            }
        }
        out.sort_unstable_by_key(|c| c.version);
        out.truncate(limit);
        Ok(out)
    }
}

/// What [`ConversationStore::changed_after`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changed {
    /// The stable version read first: channels that changed above it are
    /// not looked for, and their conversations come with a later sync.
    pub ceiling: u64,
    /// The channels that changed (stored form), each once, any order.
    pub channels: Vec<Channel>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Conversations with the versions a test gives them, and a stable
    /// version the test moves: what a store looks like while a write is
    /// between its head and its version (sled's writer moves the head
    /// first), held still.
    #[derive(Debug, Default)]
    struct Held {
        stable: Mutex<u64>,
        conversations: Mutex<HashMap<Channel, Conversation>>,
    }

    impl Held {
        fn put(&self, channel: &Channel, version: u64) {
            let c = Conversation {
                channel: channel.clone(),
                last_message_id: MessageId(version),
                last_seq: 1,
                last_timestamp_ms: 0,
                unread: 1,
                version,
            };
            self.conversations
                .lock()
                .unwrap()
                .insert(channel.clone(), c);
        }
    }

    #[async_trait]
    impl ConversationStore for Held {
        async fn stable_version(&self) -> Result<u64> {
            Ok(*self.stable.lock().unwrap())
        }

        async fn conversation(&self, _: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
            Ok(self.conversations.lock().unwrap().get(channel).cloned())
        }

        async fn person_channels(&self, _: &Uid) -> Result<Vec<Channel>> {
            Ok(Vec::new())
        }

        async fn clear_unread(&self, _: &Uid, _: &Channel, _: u64) -> Result<bool> {
            unreachable!("not used by conversations_after")
        }

        async fn hide_conversation(&self, _: &Uid, _: &Channel, _: u64) -> Result<()> {
            unreachable!("not used by conversations_after")
        }

        async fn hidden_conversations(&self, _: &Uid) -> Result<Vec<(Channel, u64)>> {
            unreachable!("not used by conversations_after")
        }
    }

    /// The default `conversations_after` (memory's and sled's) returns no
    /// version above the stable one: a conversation whose version is not
    /// yet stable comes with a later call, after every version below it.
    /// Were it returned early, a sync would move past a lower version
    /// still being written and never see it.
    #[tokio::test]
    async fn conversations_after_stops_at_the_stable_version() {
        let store = Held::default();
        let user = Uid::new("u").unwrap();
        let (a, b, c) = (
            Channel::group("a").unwrap(),
            Channel::group("b").unwrap(),
            Channel::group("c").unwrap(),
        );
        let groups = [a.clone(), b.clone(), c.clone()];
        store.put(&a, 1);
        store.put(&c, 3); // its head has moved; version 2 is being written
        *store.stable.lock().unwrap() = 1;
        let first = store
            .conversations_after(&user, &groups, 0, 10)
            .await
            .unwrap();
        let seen: Vec<u64> = first.iter().map(|c| c.version).collect();
        assert_eq!(seen, [1], "3 is above the stable version");
        // Version 2 is written; 3 becomes stable with it.
        store.put(&b, 2);
        *store.stable.lock().unwrap() = 3;
        let next = store
            .conversations_after(&user, &groups, 1, 10)
            .await
            .unwrap();
        let seen: Vec<u64> = next.iter().map(|c| c.version).collect();
        assert_eq!(seen, [2, 3], "nothing skipped");
    }
}
