//! Acknowledgements and catching up: commands, history, conversations.

use std::collections::HashMap;

use super::*;

impl Hub {
    /// A device acknowledges a message it received. For a command (seq 0)
    /// acknowledged by a master device, the command is consumed for the
    /// user: removed from the queue, never delivered or synced again. A
    /// slave's acknowledgement, or one of a history message, changes
    /// nothing (history is caught up by seq). Returns whether a command
    /// was consumed.
    pub async fn ack(
        &self,
        uid: &Uid,
        connection: ConnectionId,
        message_id: MessageId,
        message_seq: u64,
    ) -> Result<bool> {
        if message_seq != 0 {
            return Ok(false);
        }
        if self.inner.sessions.level_of(uid, connection) != Some(DeviceLevel::Master) {
            return Ok(false);
        }
        Ok(self.inner.store.remove_commands(uid, &[message_id]).await? > 0)
    }

    /// The user's pending commands with a cursor above `after`.
    pub async fn sync_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        let limit = self.page_limit(limit)?;
        self.inner.store.pending_commands(uid, after, limit).await
    }

    /// The user acknowledges commands up to `cursor` after a command sync:
    /// they are consumed. Returns how many.
    pub async fn ack_commands(&self, uid: &Uid, cursor: u64) -> Result<usize> {
        self.inner.store.ack_commands(uid, cursor).await
    }

    /// A page of a channel's history for `reader`, who must be allowed to
    /// read it. `channel` is as the reader addresses it. Revocation state is
    /// merged with one batch look-up for the page; revoked payloads are
    /// removed unless the config keeps them.
    pub async fn sync_channel(
        &self,
        reader: &Uid,
        channel: &Channel,
        page: Page,
    ) -> Result<Vec<HistoryMessage>> {
        let limit = self.page_limit(page.limit)?;
        let channel = self.readable(reader, channel).await?;
        let mut page = self
            .inner
            .store
            .read_history(&channel, Page { limit, ..page })
            .await?;
        self.merge_events(&channel, &mut page).await?;
        // One range look-up of the page's seqs in the channel's revocations
        // (few), each then found in the page by seq (in order, either way).
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(page);
        };
        let (lo, hi) = (
            first.message_seq.min(last.message_seq),
            first.message_seq.max(last.message_seq),
        );
        let revoked = self
            .inner
            .store
            .revocations_between(&channel, lo, hi)
            .await?;
        let ascending = first.message_seq <= last.message_seq;
        for revocation in revoked {
            let Some(at) = in_page(&page, ascending, revocation.message_seq) else {
                continue;
            };
            if page[at].message_id == revocation.message_id {
                self.mark_revoked(&mut page[at], revocation);
            }
        }
        for extra in self.inner.store.extras_between(&channel, lo, hi).await? {
            let Some(at) = in_page(&page, ascending, extra.message_seq) else {
                continue;
            };
            if page[at].message_id == extra.message_id {
                set_extra(&mut page[at], extra);
            }
        }
        Ok(page)
    }

    /// The stored form of `channel`, if `reader` may read it.
    pub(super) async fn readable(&self, reader: &Uid, channel: &Channel) -> Result<Channel> {
        let channel = channel.stored_for(reader)?;
        party_to(reader, &channel)?;
        let permission = self.inner.directory.check_read(reader, &channel).await?;
        denied(permission, reader, &channel)?;
        Ok(channel)
    }

    /// Marks revoked messages and puts on their extras, with one look-up
    /// each for all of them.
    pub(super) async fn merge_state(&self, messages: Vec<Message>) -> Result<Vec<HistoryMessage>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<MessageId> = messages.iter().map(|m| m.message_id).collect();
        let revocations = self.inner.store.lookup_revocations(&ids).await?;
        let extras = self.inner.store.lookup_extras(&ids).await?;
        Ok(messages
            .into_iter()
            .zip(revocations)
            .zip(extras)
            .map(|((message, revoked), extra)| {
                let mut h = HistoryMessage {
                    message,
                    revoked: None,
                    events: Vec::new(),
                    extra: None,
                };
                if let Some(revocation) = revoked {
                    self.mark_revoked(&mut h, revocation);
                }
                if let Some(extra) = extra {
                    set_extra(&mut h, extra);
                }
                h
            })
            .collect())
    }

    /// Marks `h` revoked, removing its payload unless the config keeps it,
    /// and any edit.
    fn mark_revoked(&self, h: &mut HistoryMessage, revocation: Revocation) {
        if self.inner.config.strip_revoked_payload {
            h.message.payload = Bytes::new();
        }
        h.revoked = Some(Box::new(revocation));
        if let Some(extra) = h.extra.as_mut() {
            extra.edit = None;
        }
    }

    /// A channel's revocations after `extra_version`, ascending: the
    /// incremental sync of revocation state, for a reader who may read the
    /// channel.
    pub async fn sync_revocations(
        &self,
        reader: &Uid,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        let limit = self.page_limit(limit)?;
        let channel = self.readable(reader, channel).await?;
        self.inner
            .store
            .revocations_after(&channel, extra_version, limit)
            .await
    }

    /// The user's conversations changed after `version`, ascending, each
    /// with its last message.
    ///
    /// A conversation the user deleted ([`Hub::delete_conversation`]) is
    /// left out of a full sync (`version` 0) until a newer message; an
    /// incremental sync lists it, if deleted after `version`, with
    /// [`ConversationView::deleted`] set and no last message, so that the
    /// user's other devices learn of the delete whenever they catch up.
    pub async fn sync_conversations(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<ConversationView>> {
        let limit = self.page_limit(limit)?;
        let store = &self.inner.store;
        let hidden: HashMap<Channel, u64> =
            store.hidden_conversations(uid).await?.into_iter().collect();
        let is_deleted = |c: &Conversation| {
            hidden
                .get(&c.channel)
                .is_some_and(|up_to| c.last_seq <= *up_to)
        };
        let full = version == 0;
        // A full sync drops the deleted ones: enough for a full page
        // whatever they take of it.
        let wanted = match full {
            true => limit.saturating_add(hidden.len()),
            false => limit,
        };
        let mut conversations = self.conversations_since(uid, version, wanted).await?;
        if full {
            conversations.retain(|c| !is_deleted(c));
            conversations.truncate(limit);
        }
        let mut last = Vec::with_capacity(conversations.len());
        for c in &conversations {
            if is_deleted(c) {
                last.push(None);
                continue;
            }
            // By channel and seq: one look-up in the channel's log.
            let page = Page::forward(c.last_seq, 1);
            let found = self.inner.store.read(&c.channel, page).await?.pop();
            last.push(found.filter(|m| m.message_id == c.last_message_id));
        }
        // One revocation look-up for the whole page.
        let mut merged = self
            .merge_state(last.iter().flatten().cloned().collect())
            .await?
            .into_iter();
        Ok(conversations
            .into_iter()
            .zip(last)
            .map(|(conversation, found)| ConversationView {
                channel: conversation.channel.as_seen_by(uid),
                deleted: is_deleted(&conversation),
                conversation,
                last_message: found.and_then(|_| merged.next()),
            })
            .collect())
    }

    /// Up to `limit` of the user's conversations changed after `version`
    /// (see [`ConversationStore::conversations_after`]).
    ///
    /// An incremental sync (`version` above 0) looks at the channels that
    /// changed after it, every user's, as the store's index has them
    /// ([`ConversationStore::changed_after`]), and keeps the user's: its
    /// cost grows with what changed, not with the user's channels, which
    /// are not even listed. When more than [`CHANGED_FIRST`] changed, it
    /// lists them, and still looks at what changed if that is fewer. A
    /// full sync, or a store without the index, looks at each channel.
    ///
    /// [`ConversationStore::conversations_after`]: crate::store::ConversationStore::conversations_after
    /// [`ConversationStore::changed_after`]: crate::store::ConversationStore::changed_after
    async fn conversations_since(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let store = &self.inner.store;
        let incremental = version > 0;
        if incremental {
            if let Some(changed) = store.changed_after(uid, version, CHANGED_FIRST).await? {
                return self
                    .changed_conversations(uid, changed, version, limit)
                    .await;
            }
        }
        let groups = self.inner.directory.channels_of(uid).await?;
        if incremental && groups.len() > CHANGED_FIRST {
            if let Some(changed) = store.changed_after(uid, version, groups.len()).await? {
                return self
                    .changed_conversations(uid, changed, version, limit)
                    .await;
            }
        }
        store
            .conversations_after(uid, &groups, version, limit)
            .await
    }

    /// The user's conversations among the channels that `changed`: the
    /// person channels the user is a party to and the groups the directory
    /// says the user subscribes to.
    async fn changed_conversations(
        &self,
        uid: &Uid,
        changed: crate::store::Changed,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        let (persons, groups): (Vec<Channel>, Vec<Channel>) = changed
            .channels
            .into_iter()
            .partition(|c| c.kind == ChannelType::PERSON);
        let mut mine: Vec<Channel> = persons
            .into_iter()
            .filter(|c| {
                c.person_parties()
                    .is_some_and(|(a, b)| a == *uid || b == *uid)
            })
            .collect();
        let subscribed = self.inner.directory.subscribes_to(uid, &groups).await?;
        mine.extend(
            groups
                .into_iter()
                .zip(subscribed)
                .filter_map(|(c, yes)| yes.then_some(c)),
        );
        self.inner
            .store
            .conversations_among(uid, &mine, version, changed.ceiling, limit)
            .await
    }

    /// The user has read `channel` (as the user addresses it) up to seq
    /// `read_seq`, as WuKongIM's `clearUnread` says it: messages after it
    /// stay unread (`u64::MAX` clears everything). Returns `false` when the
    /// user has no such conversation.
    pub async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let channel = channel.stored_for(uid)?;
        self.inner.store.clear_unread(uid, &channel, read_seq).await
    }

    /// Deletes the user's conversation in `channel` (as the user addresses
    /// it), as WuKongIM's `/conversations/delete`: everything in it is read,
    /// and it leaves the user's list until a newer message arrives. The
    /// history stays. Returns `false` when the channel has no messages.
    pub async fn delete_conversation(&self, uid: &Uid, channel: &Channel) -> Result<bool> {
        let channel = channel.stored_for(uid)?;
        let store = &self.inner.store;
        let last = store.last_seq(&channel).await?;
        if last == 0 {
            return Ok(false);
        }
        store.clear_unread(uid, &channel, last).await?;
        store.hide_conversation(uid, &channel, last).await?;
        self.tell_deletion(uid, &channel, last).await?;
        Ok(true)
    }

    /// Sends the `conversationDeleted` command to every device of `uid`.
    /// Its client_msg_no is derived from the seq deleted up to (a command
    /// resend is recognised per sender, channel and number), so a repeated
    /// delete, or a retry after a failure between hiding and telling, sends
    /// it once.
    async fn tell_deletion(&self, uid: &Uid, channel: &Channel, up_to: u64) -> Result<()> {
        let inner = &*self.inner;
        let command = Message {
            message_id: inner.ids.next_id(),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(format!("{HUB_CLIENT_MSG_NO_PREFIX}deleted:{up_to}"))?,
            from_uid: uid.clone(),
            channel: channel.clone(),
            timestamp_ms: inner.clock.now_ms(),
            flags: Flags::command(),
            setting: Setting::default(),
            topic: None,
            payload: conversation_deleted_payload(&channel.as_seen_by(uid), up_to).into(),
        };
        let to: Arc<[Uid]> = Arc::from([uid.clone()]);
        self.dispatch(command, Persistence::Command, to, None, false)
            .await?;
        Ok(())
    }
}

/// The most channels an incremental conversation sync looks at from what
/// changed (every user's, as the store's index has them) before it lists
/// the user's channels to see which are fewer.
const CHANGED_FIRST: usize = 1_000;

/// The payload of the command that tells a user's devices of a deleted
/// conversation: `{"type":99,"cmd":"conversationDeleted","param":
/// {"channel_id":…,"channel_type":…,"message_seq":…}}`, with the channel as
/// the user calls it and the seq it was deleted up to (TangSengDaoDao's
/// clients handle this command by removing the conversation).
pub fn conversation_deleted_payload(channel: &Channel, up_to: u64) -> Vec<u8> {
    serde_json::json!({
        "type": crate::revoke::CMD_CONTENT_TYPE,
        "cmd": CONVERSATION_DELETED_CMD,
        "param": {
            "channel_id": channel.id.as_str(),
            "channel_type": channel.kind.as_u8(),
            "message_seq": up_to,
        }
    })
    .to_string()
    .into_bytes()
}

/// Where the message with `seq` is in a page sorted by seq (ascending or
/// not).
fn in_page(page: &[HistoryMessage], ascending: bool, seq: u64) -> Option<usize> {
    page.binary_search_by(|h| {
        let order = h.message_seq.cmp(&seq);
        if ascending {
            order
        } else {
            order.reverse()
        }
    })
    .ok()
}

/// Puts `extra` on `h`; a revoked message shows no edit.
fn set_extra(h: &mut HistoryMessage, mut extra: crate::store::MessageExtra) {
    if h.revoked.is_some() {
        extra.edit = None;
    }
    h.extra = Some(Box::new(extra));
}
