//! Reads a host's API makes by key rather than by page: messages by seq,
//! id or client number, a channel's last message and seq, recent messages
//! of several channels, one conversation; and closing one connection.
//!
//! Every channel here is in its stored form (see
//! [`Channel::stored_for`]): these are the business server's reads, which
//! WuKongIM answers without asking whether anyone may read the channel.

use super::*;

/// How many of a channel's newest messages [`Hub::message_by_client_msg_no`]
/// reads through, at most, when the number's sender is not known.
const CLIENT_MSG_NO_SCAN: usize = 10_000;

/// The fewest subscribers whose own index entries
/// [`Hub::message_by_client_msg_no`] tries before reading the channel.
const INDEX_TRIES: usize = 200;

impl Hub {
    /// The messages of `channel` with these seqs, in the order asked; seqs
    /// with no message are left out. Revocations, extras and event states
    /// are merged in.
    pub async fn messages_by_seqs(
        &self,
        channel: &Channel,
        seqs: &[u64],
    ) -> Result<Vec<HistoryMessage>> {
        check_limit(seqs.len().max(1))?;
        let mut found = Vec::with_capacity(seqs.len());
        for &seq in seqs.iter().filter(|s| **s > 0) {
            let page = Page::forward(seq, 1);
            let read = self.inner.store.read(channel, page).await?.pop();
            found.extend(read.filter(|m| m.message_seq == seq));
        }
        self.merged(channel, found).await
    }

    /// The message with this id, if it is in `channel`'s history.
    pub async fn message_by_id(
        &self,
        channel: &Channel,
        id: MessageId,
    ) -> Result<Option<HistoryMessage>> {
        let found = self.inner.store.get(id).await?;
        let found = found.filter(|m| m.channel == *channel && m.message_seq > 0);
        Ok(self
            .merged(channel, found.into_iter().collect())
            .await?
            .pop())
    }

    /// The message of `channel` with this client number, whoever sent it:
    /// looked up in the store's index under each party of a person
    /// channel, or under each subscriber of a small channel; failing that,
    /// found among the channel's newest 10,000 messages
    /// (the index is keyed by sender too, and a channel may hear from
    /// anyone its directory lets send).
    pub async fn message_by_client_msg_no(
        &self,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<HistoryMessage>> {
        let senders: Vec<Uid> = match channel.person_parties() {
            Some((a, b)) => vec![a, b],
            None => {
                let subscribers = self.inner.directory.subscribers(channel).await?;
                match subscribers.len() <= INDEX_TRIES {
                    true => subscribers.to_vec(),
                    false => Vec::new(),
                }
            }
        };
        let store = &self.inner.store;
        for sender in &senders {
            let found = store
                .get_by_client_msg_no(sender, channel, client_msg_no)
                .await?;
            if let Some(m) = found.filter(|m| m.message_seq > 0) {
                return Ok(self.merged(channel, vec![m]).await?.pop());
            }
        }
        if channel.person_parties().is_some() {
            return Ok(None);
        }
        let page_size = self.inner.config.max_page;
        let mut before = 0;
        let mut read = 0;
        while read < CLIENT_MSG_NO_SCAN {
            let page = match before {
                0 => Page::latest(page_size),
                seq => Page::backward(seq, page_size),
            };
            let messages = store.read(channel, page).await?;
            if let Some(m) = messages.iter().find(|m| m.client_msg_no == *client_msg_no) {
                return Ok(self.merged(channel, vec![m.clone()]).await?.pop());
            }
            let oldest = messages.iter().map(|m| m.message_seq).min().unwrap_or(0);
            if messages.len() < page_size || oldest <= 1 {
                break;
            }
            read += messages.len();
            before = oldest - 1;
        }
        Ok(None)
    }

    /// `channel`'s last assigned seq; 0 when it has no messages.
    pub async fn max_message_seq(&self, channel: &Channel) -> Result<u64> {
        self.inner.store.last_seq(channel).await
    }

    /// `channel`'s newest message, if it has any.
    pub async fn last_message(&self, channel: &Channel) -> Result<Option<HistoryMessage>> {
        let found = self.inner.store.read(channel, Page::latest(1)).await?;
        Ok(self.merged(channel, found).await?.pop())
    }

    /// Up to `limit` recent messages of `channel` with a seq from
    /// `from_seq` on (0: from the first), as WuKongIM's recent-message
    /// reads give them: with `newest_first`, the newest `limit` of them,
    /// newest first; otherwise the first `limit` of them, oldest first.
    pub async fn recent_messages(
        &self,
        channel: &Channel,
        from_seq: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<HistoryMessage>> {
        let limit = self.page_limit(limit)?;
        let page = match newest_first {
            true => Page::latest(limit),
            false => Page::forward(from_seq.max(1), limit),
        };
        let mut found = self.inner.store.read(channel, page).await?;
        found.retain(|m| m.message_seq >= from_seq);
        found.sort_by_key(|m| m.message_seq);
        if newest_first {
            found.reverse();
        }
        self.merged(channel, found).await
    }

    /// `found` (messages of `channel`) with their revocations, extras and
    /// event states merged in, as a page of history has them.
    async fn merged(&self, channel: &Channel, found: Vec<Message>) -> Result<Vec<HistoryMessage>> {
        let mut merged = self.merge_state(found).await?;
        self.merge_events(channel, &mut merged).await?;
        Ok(merged)
    }

    /// `uid`'s conversation in `channel` (stored form), if the user has one.
    pub async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        self.inner.store.conversation(uid, channel).await
    }

    /// Closes one connection of `uid` on this node with `reason` (the
    /// transport then says so, or not, as [`DisconnectReason`] tells).
    /// Returns whether it was registered.
    pub fn close_connection(
        &self,
        uid: &Uid,
        connection: ConnectionId,
        reason: DisconnectReason,
    ) -> bool {
        let closed = self
            .inner
            .sessions
            .disconnect(uid, connection, Some(reason));
        if closed {
            self.inner.router.presence_changed(uid, None);
        }
        closed
    }

    /// How many users have a device connected to this node.
    pub fn online_users(&self) -> usize {
        self.inner.sessions.presence().len()
    }
}
