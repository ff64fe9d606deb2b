//! Edits and read receipts: who may edit what and until when, counting
//! reads, telling devices, and syncing every extra of a channel.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::extra::{
    sync_extra_command_payload, EditContext, EditOutcome, EditRefusal, EditRequest, ExtraView,
    ReadOutcome,
};
use crate::store::{EditRecorded, MessageExtra, NewEdit, NewReads};

impl Hub {
    /// Replaces the content of a history message, keeping the original.
    ///
    /// The order: check the content (not empty, within
    /// [`Limits`](crate::Limits)'s payload size) → find the message
    /// (commands, transient messages and the hub's tips are
    /// [`EditRefusal::NotEditable`]) → ask the [`EditRules`] (by default
    /// only the sender) → refuse a revoked message → check
    /// [`HubConfig::edit_window`] (unless the rules allowed any time) →
    /// record the edit with the channel's next `extra_version` → only then
    /// tell every member's online devices with a `syncMessageExtra`
    /// command. Devices that were offline find the edit by
    /// [`Hub::sync_extras`]; history reads carry it in
    /// [`HistoryMessage::extra`].
    ///
    /// The same content again is [`EditOutcome::Unchanged`] and tells
    /// nobody. Like a send, an edit runs to the end once begun.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> imcore::Result<()> {
    /// use imcore::extra::EditRequest;
    /// use imcore::revoke::RevokeTarget;
    /// use imcore::{Channel, Hub, SendRequest, Uid};
    ///
    /// let hub = Hub::builder().build()?;
    /// let (alice, bob) = (Uid::new("alice")?, Uid::new("bob")?);
    /// let chat = Channel::person(&alice, &bob);
    /// let sent = hub.send(SendRequest::new(alice.clone(), chat.clone(), "helo")).await?;
    /// let target = RevokeTarget::MessageId(sent.message_id);
    /// let edited = hub.edit(EditRequest::new(alice.clone(), target, "hello")).await?;
    /// assert_eq!(edited.extra().extra_version, 1);
    /// let page = hub.sync_channel(&alice, &chat, imcore::store::Page::latest(1)).await?;
    /// let edit = page[0].extra.as_ref().and_then(|x| x.edit.as_ref()).unwrap();
    /// assert_eq!(&edit.content[..], b"hello");
    /// assert_eq!(&page[0].payload[..], b"helo"); // the original is kept
    /// # Ok(()) }
    /// ```
    pub async fn edit(&self, request: EditRequest) -> Result<EditOutcome> {
        let work = self.start_work()?;
        let hub = self.clone();
        run_to_end(async move {
            let _work = work;
            hub.edit_now(request).await
        })
        .await
    }

    async fn edit_now(&self, request: EditRequest) -> Result<EditOutcome> {
        let inner = &*self.inner;
        let refused = |why| Err(Error::EditRefused(why));
        if request.content.is_empty() {
            return Err(ValidationError::EmptyPayload.into());
        }
        inner.config.limits.check_payload(&request.content)?;
        let requester = &request.requester;
        let message = match self.find_in_history(requester, &request.target).await {
            Err(Error::NotFound { .. }) if self.names_a_command(&request.target).await? => {
                return refused(EditRefusal::NotEditable)
            }
            found => found?,
        };
        if revoke::is_revoke_tip(&message) {
            return refused(EditRefusal::NotEditable);
        }
        let channel = &message.channel;
        party_to(requester, channel)?;
        let ctx = EditContext {
            requester,
            message: &message,
            requester_role: inner.directory.role(channel, requester).await?,
        };
        let decision = inner.edit_rules.authorize_edit(&ctx).await?;
        if decision == Decision::Deny {
            return refused(EditRefusal::NotPermitted);
        }
        let now_ms = inner.clock.now_ms();
        if decision != Decision::AllowAnyTime {
            if let Some(window) = inner.config.edit_window {
                let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                let age = now_ms.saturating_sub(message.timestamp_ms);
                if i64::try_from(window_ms).is_ok_and(|w| age > w) {
                    return refused(EditRefusal::WindowExpired {
                        sent_at_ms: message.timestamp_ms,
                        window_ms,
                        now_ms,
                    });
                }
            }
        }
        let recorded = inner
            .store
            .record_edit(NewEdit {
                message_id: message.message_id,
                channel: channel.clone(),
                message_seq: message.message_seq,
                editor: requester.clone(),
                content: request.content,
                edited_at_ms: now_ms,
            })
            .await?;
        match recorded {
            EditRecorded::Revoked => refused(EditRefusal::Revoked),
            EditRecorded::Unchanged(extra) => Ok(EditOutcome::Unchanged(extra)),
            EditRecorded::Edited(extra) => {
                let members = self.recipients_of(channel).await?;
                self.tell_extra(requester, &extra, members).await?;
                Ok(EditOutcome::Edited(extra))
            }
        }
    }

    /// Marks messages of `channel` (as `reader` addresses it) read by
    /// `reader`, who must be allowed to read the channel.
    ///
    /// Only messages sent with read receipts on
    /// ([`Setting::RECEIPT`]) by someone else count, each reader once: the
    /// message's reader count rises with a new `extra_version`, the
    /// reader's read time is kept for [`Hub::sync_extras`], and the
    /// senders' devices (and the reader's other devices) are told with a
    /// `syncMessageExtra` command. Ids that name no such message are
    /// passed over. A send with receipts wrote one small record, never one
    /// per member; a read writes one row per message it counts.
    pub async fn mark_read(
        &self,
        reader: &Uid,
        channel: &Channel,
        message_ids: &[MessageId],
    ) -> Result<ReadOutcome> {
        let work = self.start_work()?;
        let hub = self.clone();
        let (reader, channel, ids) = (reader.clone(), channel.clone(), message_ids.to_vec());
        run_to_end(async move {
            let _work = work;
            hub.mark_read_now(&reader, &channel, &ids).await
        })
        .await
    }

    async fn mark_read_now(
        &self,
        reader: &Uid,
        channel: &Channel,
        ids: &[MessageId],
    ) -> Result<ReadOutcome> {
        let inner = &*self.inner;
        if ids.len() > inner.config.max_page {
            return Err(ValidationError::OutOfRange("more message ids than max_page").into());
        }
        let channel = self.readable(reader, channel).await?;
        let mut senders: HashMap<MessageId, Uid> = HashMap::new();
        let mut reads = Vec::new();
        let extras = inner.store.lookup_extras(ids).await?;
        for (id, extra) in ids.iter().zip(extras) {
            let opened = extra.as_ref().is_some_and(|x| x.receipt.is_some());
            let Some(m) = inner.store.get(*id).await? else {
                continue;
            };
            if m.channel != channel || m.from_uid == *reader || !m.setting.receipt() {
                continue;
            }
            if !opened {
                // The send stored the message but did not get to open its
                // receipt (a crash in between): open it now.
                let members = self.recipients_of(&channel).await?;
                self.open_receipt_for(&m, &members).await?;
            }
            reads.push((m.message_id, m.message_seq));
            senders.insert(m.message_id, m.from_uid);
        }
        if reads.is_empty() {
            return Ok(ReadOutcome {
                counted: Vec::new(),
            });
        }
        let counted = inner
            .store
            .record_reads(NewReads {
                reader: reader.clone(),
                channel: channel.clone(),
                messages: reads,
                read_at_ms: inner.clock.now_ms(),
            })
            .await?;
        let mut by_sender: BTreeMap<&Uid, &MessageExtra> = BTreeMap::new();
        for extra in &counted {
            if let Some(sender) = senders.get(&extra.message_id) {
                let last = by_sender.entry(sender).or_insert(extra);
                if extra.extra_version > last.extra_version {
                    *last = extra;
                }
            }
        }
        for (sender, extra) in by_sender {
            let told: Arc<[Uid]> = Arc::from([sender.clone(), reader.clone()]);
            self.tell_extra(reader, extra, told).await?;
        }
        Ok(ReadOutcome { counted })
    }

    /// Opens the receipt of a history message sent with receipts on: its
    /// audience is `recipients` but the sender. Called once the send is
    /// durable and before it is delivered, so that a read never comes
    /// before it; if it fails, [`Hub::mark_read`] opens it later.
    pub(super) async fn open_receipt(&self, message: &Message, recipients: &[Uid]) {
        if let Err(e) = self.open_receipt_for(message, recipients).await {
            tracing_receipt_failure(message, &e);
        }
    }

    async fn open_receipt_for(&self, message: &Message, recipients: &[Uid]) -> Result<()> {
        let audience = recipients
            .iter()
            .filter(|u| **u != message.from_uid)
            .count() as u64;
        self.inner
            .store
            .open_receipt(
                message.message_id,
                &message.channel,
                message.message_seq,
                audience,
            )
            .await
    }

    /// Tells `to`'s online devices that `extra`'s channel has a change to
    /// sync: a transient `syncMessageExtra` command, one per change (its
    /// client_msg_no names the message and version).
    async fn tell_extra(&self, from: &Uid, extra: &MessageExtra, to: Arc<[Uid]>) -> Result<()> {
        let inner = &*self.inner;
        let command = Message {
            message_id: inner.ids.next_id(),
            message_seq: 0,
            client_msg_no: ClientMsgNo::new(format!(
                "{HUB_CLIENT_MSG_NO_PREFIX}extra:{}:{}",
                extra.message_id, extra.extra_version
            ))?,
            from_uid: from.clone(),
            channel: extra.channel.clone(),
            timestamp_ms: inner.clock.now_ms(),
            flags: Flags {
                no_persist: true,
                ..Flags::command()
            },
            setting: Setting::default(),
            topic: None,
            payload: sync_extra_command_payload(&extra.channel, extra).into(),
        };
        self.dispatch(command, Persistence::Transient, to, None, true)
            .await?;
        Ok(())
    }

    /// A channel's extras after `extra_version`, as `reader` sees them:
    /// revocations, edits and receipt counts with the reader's own read
    /// times, one entry per message at its highest version, ascending by
    /// version. The reader must be allowed to read the channel (addressed
    /// as the reader addresses it). A device keeps the highest version it
    /// was given and asks from there.
    pub async fn sync_extras(
        &self,
        reader: &Uid,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> Result<Vec<ExtraView>> {
        let limit = self.page_limit(limit)?;
        let channel = self.readable(reader, channel).await?;
        let store = &self.inner.store;
        let revoked = store
            .revocations_after(&channel, extra_version, limit)
            .await?;
        let changed = store.extras_after(&channel, extra_version, limit).await?;
        // The first `limit` versions of the union are within the first
        // `limit` of each list.
        let mut versions: Vec<(u64, MessageId)> = revoked
            .iter()
            .map(|r| (r.extra_version, r.message_id))
            .chain(changed.iter().map(|x| (x.extra_version, x.message_id)))
            .collect();
        versions.sort_unstable();
        versions.truncate(limit);
        let mut order: Vec<MessageId> = Vec::new();
        let mut highest: HashMap<MessageId, u64> = HashMap::new();
        for (version, id) in versions {
            if highest.insert(id, version).is_some() {
                order.retain(|o| *o != id);
            }
            order.push(id);
        }
        let revocations = store.lookup_revocations(&order).await?;
        let extras = store.lookup_extras(&order).await?;
        let reads = store.reads_by(reader, &order).await?;
        let mut views = Vec::with_capacity(order.len());
        for (((id, revocation), extra), read_at_ms) in
            order.iter().zip(revocations).zip(extras).zip(reads)
        {
            let message_seq = revocation
                .as_ref()
                .map(|r| r.message_seq)
                .or(extra.as_ref().map(|x| x.message_seq))
                .unwrap_or(0);
            let (edit, receipt) = extra.map_or((None, None), |x| (x.edit, x.receipt));
            views.push(ExtraView {
                message_id: *id,
                message_seq,
                edit: edit.filter(|_| revocation.is_none()),
                revocation,
                receipt,
                read_at_ms,
                extra_version: highest.get(id).copied().unwrap_or(0),
            });
        }
        Ok(views)
    }
}

fn tracing_receipt_failure(message: &Message, e: &Error) {
    tracing::warn!(
        message_id = %message.message_id,
        error = %e,
        "could not open the read receipt; the first read opens it"
    );
}
