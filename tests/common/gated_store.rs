//! A memory store with gates, for tests that hold a call inside the store:
//! history writes wait for permits (`gate`), one payload's flush can be
//! held (`hold_flush_of`), and history reads can be watched and held
//! (`watching_reads`). Everything else goes straight to the memory store,
//! which the test may also use directly (as another node sharing it).

// Each test file uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use imcore::store::Page;
use imcore::{Channel, ClientMsgNo, MemoryStore, Message, MessageId, Uid};
use tokio::sync::{mpsc, Semaphore};

/// See the module's documentation.
#[derive(Debug)]
pub struct GatedStore {
    pub inner: Arc<MemoryStore>,
    /// One permit per history write let through.
    pub gate: Semaphore,
    /// Told when a history write reaches the gate.
    pub entered: tokio::sync::Notify,
    /// Where `watch_writes` is told each history write's payloads as it
    /// reaches the gate.
    writes: std::sync::Mutex<Option<mpsc::UnboundedSender<Vec<Vec<u8>>>>>,
    /// The payload whose flush (its append's settle) waits for a permit of
    /// `flush_gate`; empty: none.
    pub hold_flush_of: std::sync::Mutex<Vec<u8>>,
    pub flush_gate: Arc<Semaphore>,
    /// One permit per history read let through.
    pub read_gate: Semaphore,
    /// Told what each history read asks for (channel, first seq), as it
    /// starts, before it waits for its permit.
    reads: Option<mpsc::UnboundedSender<(Channel, u64)>>,
}

impl GatedStore {
    /// A store whose write gate lets nothing through yet; reads go through.
    pub fn closed() -> Self {
        GatedStore {
            inner: Arc::new(MemoryStore::new()),
            gate: Semaphore::new(0),
            entered: tokio::sync::Notify::new(),
            writes: std::sync::Mutex::new(None),
            hold_flush_of: std::sync::Mutex::new(Vec::new()),
            flush_gate: Arc::new(Semaphore::new(0)),
            read_gate: Semaphore::new(Semaphore::MAX_PERMITS / 2),
            reads: None,
        }
    }

    /// A store whose writes go through and whose reads are watched: the
    /// first `permits` go through, then the read gate closes. With the
    /// receiver of what each read asks for.
    pub fn watching_reads(
        permits: usize,
    ) -> (Arc<GatedStore>, mpsc::UnboundedReceiver<(Channel, u64)>) {
        let (reads, asked) = mpsc::unbounded_channel();
        let store = GatedStore {
            gate: Semaphore::new(Semaphore::MAX_PERMITS / 2),
            read_gate: Semaphore::new(permits),
            reads: Some(reads),
            ..GatedStore::closed()
        };
        (Arc::new(store), asked)
    }

    /// From now on, the payloads of each history write as it reaches the
    /// gate, in the order the writes reach it. Unlike `entered`, which
    /// keeps one notification for a later waiter, this tells which write
    /// came.
    pub fn watch_writes(&self) -> mpsc::UnboundedReceiver<Vec<Vec<u8>>> {
        let (tell, told) = mpsc::unbounded_channel();
        *self.writes.lock().unwrap() = Some(tell);
        told
    }

    /// Lets every read through from now on.
    pub fn open_reads(&self) {
        self.read_gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl imcore::store::MessageLog for GatedStore {
    async fn append(&self, messages: Vec<Message>) -> imcore::Result<Vec<imcore::store::Appended>> {
        if let Some(writes) = &*self.writes.lock().unwrap() {
            let _ = writes.send(messages.iter().map(|m| m.payload.to_vec()).collect());
        }
        self.entered.notify_one();
        let _permit = self.gate.acquire().await.unwrap();
        self.inner.append(messages).await
    }
    async fn append_then_settle(
        &self,
        messages: Vec<Message>,
    ) -> imcore::Result<(Vec<imcore::store::Appended>, imcore::store::Settle)> {
        let held = {
            let held = self.hold_flush_of.lock().unwrap();
            !held.is_empty() && messages.iter().any(|m| m.payload.as_ref() == &held[..])
        };
        let appended = self.append(messages).await?;
        let gate = self.flush_gate.clone();
        Ok((
            appended,
            Box::pin(async move {
                if held {
                    let _permit = gate.acquire().await.unwrap();
                }
                Ok(())
            }),
        ))
    }
    async fn read(&self, channel: &Channel, page: Page) -> imcore::Result<Vec<Message>> {
        if let Some(reads) = &self.reads {
            let _ = reads.send((channel.clone(), page.from));
        }
        self.read_gate
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        self.inner.read(channel, page).await
    }
    async fn get(&self, id: MessageId) -> imcore::Result<Option<Message>> {
        self.inner.get(id).await
    }
    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        channel: &Channel,
        client_msg_no: &ClientMsgNo,
    ) -> imcore::Result<Option<Message>> {
        self.inner
            .get_by_client_msg_no(from_uid, channel, client_msg_no)
            .await
    }
    async fn last_seq(&self, channel: &Channel) -> imcore::Result<u64> {
        self.inner.last_seq(channel).await
    }
}

#[async_trait]
impl imcore::store::CommandQueue for GatedStore {
    async fn push_command(
        &self,
        message: &Message,
        recipients: &[Uid],
    ) -> imcore::Result<imcore::store::Pushed> {
        self.inner.push_command(message, recipients).await
    }
    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::QueuedCommand>> {
        self.inner.pending_commands(uid, after, limit).await
    }
    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> imcore::Result<usize> {
        self.inner.ack_commands(uid, up_to).await
    }
    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> imcore::Result<usize> {
        self.inner.remove_commands(uid, ids).await
    }
    async fn is_command(&self, id: MessageId) -> imcore::Result<bool> {
        self.inner.is_command(id).await
    }
}

#[async_trait]
impl imcore::store::ConversationStore for GatedStore {
    async fn stable_version(&self) -> imcore::Result<u64> {
        self.inner.stable_version().await
    }
    async fn conversation(
        &self,
        uid: &Uid,
        channel: &Channel,
    ) -> imcore::Result<Option<imcore::store::Conversation>> {
        self.inner.conversation(uid, channel).await
    }
    async fn person_channels(&self, uid: &Uid) -> imcore::Result<Vec<Channel>> {
        self.inner.person_channels(uid).await
    }
    async fn clear_unread(
        &self,
        uid: &Uid,
        channel: &Channel,
        read_seq: u64,
    ) -> imcore::Result<bool> {
        self.inner.clear_unread(uid, channel, read_seq).await
    }
    async fn hide_conversation(
        &self,
        uid: &Uid,
        channel: &Channel,
        up_to: u64,
    ) -> imcore::Result<()> {
        self.inner.hide_conversation(uid, channel, up_to).await
    }
    async fn hidden_conversations(&self, uid: &Uid) -> imcore::Result<Vec<(Channel, u64)>> {
        self.inner.hidden_conversations(uid).await
    }
}

#[async_trait]
impl imcore::store::Outbox for GatedStore {
    fn enable_outbox(&self) {
        self.inner.enable_outbox()
    }
    async fn outbox(&self, limit: usize) -> imcore::Result<Vec<(u64, imcore::Message)>> {
        self.inner.outbox(limit).await
    }
    async fn claim_outbox(
        &self,
        limit: usize,
        now_ms: i64,
        lease: std::time::Duration,
    ) -> imcore::Result<Option<imcore::store::OutboxBatch>> {
        self.inner.claim_outbox(limit, now_ms, lease).await
    }
    async fn renew_outbox(
        &self,
        held: imcore::store::OutboxLease,
        now_ms: i64,
        lease: std::time::Duration,
    ) -> imcore::Result<Option<imcore::store::OutboxLease>> {
        self.inner.renew_outbox(held, now_ms, lease).await
    }
    async fn outbox_done(&self, entries: &[u64]) -> imcore::Result<()> {
        self.inner.outbox_done(entries).await
    }
}

#[async_trait]
impl imcore::store::RevocationStore for GatedStore {
    async fn record_revocation(
        &self,
        revocation: imcore::store::NewRevocation,
    ) -> imcore::Result<imcore::store::Recorded> {
        self.inner.record_revocation(revocation).await
    }
    async fn lookup_revocations(
        &self,
        ids: &[MessageId],
    ) -> imcore::Result<Vec<Option<imcore::store::Revocation>>> {
        self.inner.lookup_revocations(ids).await
    }
    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> imcore::Result<Vec<imcore::store::Revocation>> {
        self.inner
            .revocations_between(channel, from_seq, to_seq)
            .await
    }
    async fn revocations_after(
        &self,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::Revocation>> {
        self.inner
            .revocations_after(channel, extra_version, limit)
            .await
    }
}

#[async_trait]
impl imcore::store::EventStore for GatedStore {
    async fn append_event(
        &self,
        event: imcore::event::NewEvent,
        now_ms: i64,
    ) -> imcore::Result<imcore::event::EventAppend> {
        self.inner.append_event(event, now_ms).await
    }
    async fn events_after(
        &self,
        channel: &Channel,
        client_msg_no: &imcore::ClientMsgNo,
        after: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::event::StoredEvent>> {
        self.inner
            .events_after(channel, client_msg_no, after, limit)
            .await
    }
    async fn event_states(
        &self,
        channel: &Channel,
        client_msg_nos: &[imcore::ClientMsgNo],
    ) -> imcore::Result<Vec<Vec<imcore::event::EventState>>> {
        self.inner.event_states(channel, client_msg_nos).await
    }
    async fn set_event_snapshot(
        &self,
        channel: &Channel,
        client_msg_no: &imcore::ClientMsgNo,
        key: &imcore::EventKey,
        snapshot: bytes::Bytes,
        seq: u64,
    ) -> imcore::Result<()> {
        self.inner
            .set_event_snapshot(channel, client_msg_no, key, snapshot, seq)
            .await
    }
    async fn stale_streams(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::OpenStream>> {
        self.inner.stale_streams(before_ms, limit).await
    }
}

#[async_trait]
impl imcore::store::ExtraStore for GatedStore {
    async fn record_edit(
        &self,
        edit: imcore::store::NewEdit,
    ) -> imcore::Result<imcore::store::EditRecorded> {
        self.inner.record_edit(edit).await
    }
    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> imcore::Result<()> {
        self.inner
            .open_receipt(message_id, channel, message_seq, audience)
            .await
    }
    async fn record_reads(
        &self,
        reads: imcore::store::NewReads,
    ) -> imcore::Result<Vec<imcore::store::MessageExtra>> {
        self.inner.record_reads(reads).await
    }
    async fn reads_by(
        &self,
        reader: &imcore::Uid,
        ids: &[MessageId],
    ) -> imcore::Result<Vec<Option<i64>>> {
        self.inner.reads_by(reader, ids).await
    }
    async fn lookup_extras(
        &self,
        ids: &[MessageId],
    ) -> imcore::Result<Vec<Option<imcore::store::MessageExtra>>> {
        self.inner.lookup_extras(ids).await
    }
    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> imcore::Result<Vec<imcore::store::MessageExtra>> {
        self.inner.extras_between(channel, from_seq, to_seq).await
    }
    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> imcore::Result<Vec<imcore::store::MessageExtra>> {
        self.inner.extras_after(channel, version, limit).await
    }
}

#[async_trait]
impl imcore::store::RetentionStore for GatedStore {
    async fn delete_through(
        &self,
        channel: &Channel,
        through_seq: u64,
        max_batch: usize,
        now_ms: i64,
        tombstone_since_ms: i64,
    ) -> imcore::Result<imcore::store::DeletedBatch> {
        self.inner
            .delete_through(channel, through_seq, max_batch, now_ms, tombstone_since_ms)
            .await
    }
    async fn history_floor(&self, channel: &Channel) -> imcore::Result<u64> {
        self.inner.history_floor(channel).await
    }
    async fn channels_after(
        &self,
        after: Option<&Channel>,
        limit: usize,
    ) -> imcore::Result<Vec<Channel>> {
        self.inner.channels_after(after, limit).await
    }
    async fn purge_tombstones(&self, deleted_before_ms: i64, limit: usize) -> imcore::Result<u64> {
        self.inner.purge_tombstones(deleted_before_ms, limit).await
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl: std::time::Duration,
    ) -> imcore::Result<bool> {
        self.inner.try_lease(name, holder, now_ms, ttl).await
    }
}
