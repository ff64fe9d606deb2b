//! A memory store whose history reads a test can watch and hold: each
//! `MessageLog::read` says which channel and first seq it asks for, then
//! waits for a permit. Everything else goes straight to the memory store,
//! which the test may also use directly (as another node sharing it).

// Each test file uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use async_trait::async_trait;
use imcore::store::{
    Appended, CommandQueue, Conversation, ConversationStore, MessageLog, NewRevocation, Outbox,
    Page, Pushed, QueuedCommand, Recorded, Revocation, RevocationStore,
};
use imcore::{Channel, ClientMsgNo, MemoryStore, Message, MessageId, Uid};
use tokio::sync::{mpsc, Semaphore};

/// See the module's documentation.
#[derive(Debug)]
pub struct WatchedReads {
    /// The store behind it.
    pub inner: Arc<MemoryStore>,
    reads: mpsc::UnboundedSender<(Channel, u64)>,
    /// Permits for reads: one per read let through.
    pub gate: Semaphore,
}

impl WatchedReads {
    /// A store over a new memory store, with `permits` reads let through
    /// before the gate closes, and the receiver of what each read asks
    /// for (sent as the read starts, before it waits for its permit).
    pub fn new(permits: usize) -> (Arc<WatchedReads>, mpsc::UnboundedReceiver<(Channel, u64)>) {
        let (reads, asked) = mpsc::unbounded_channel();
        let store = WatchedReads {
            inner: Arc::new(MemoryStore::new()),
            reads,
            gate: Semaphore::new(permits),
        };
        (Arc::new(store), asked)
    }

    /// Lets every read through from now on.
    pub fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl MessageLog for WatchedReads {
    async fn append(&self, messages: Vec<Message>) -> imcore::Result<Vec<Appended>> {
        self.inner.append(messages).await
    }
    async fn read(&self, channel: &Channel, page: Page) -> imcore::Result<Vec<Message>> {
        let _ = self.reads.send((channel.clone(), page.from));
        self.gate
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
impl CommandQueue for WatchedReads {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> imcore::Result<Pushed> {
        self.inner.push_command(message, recipients).await
    }
    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> imcore::Result<Vec<QueuedCommand>> {
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
impl ConversationStore for WatchedReads {
    async fn stable_version(&self) -> imcore::Result<u64> {
        self.inner.stable_version().await
    }
    async fn conversation(
        &self,
        uid: &Uid,
        channel: &Channel,
    ) -> imcore::Result<Option<Conversation>> {
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
impl Outbox for WatchedReads {
    fn enable_outbox(&self) {
        self.inner.enable_outbox()
    }
    async fn outbox(&self, limit: usize) -> imcore::Result<Vec<(u64, Message)>> {
        self.inner.outbox(limit).await
    }
    async fn outbox_done(&self, entries: &[u64]) -> imcore::Result<()> {
        self.inner.outbox_done(entries).await
    }
}

#[async_trait]
impl RevocationStore for WatchedReads {
    async fn record_revocation(&self, revocation: NewRevocation) -> imcore::Result<Recorded> {
        self.inner.record_revocation(revocation).await
    }
    async fn lookup_revocations(
        &self,
        ids: &[MessageId],
    ) -> imcore::Result<Vec<Option<Revocation>>> {
        self.inner.lookup_revocations(ids).await
    }
    async fn revocations_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> imcore::Result<Vec<Revocation>> {
        self.inner
            .revocations_between(channel, from_seq, to_seq)
            .await
    }
    async fn revocations_after(
        &self,
        channel: &Channel,
        extra_version: u64,
        limit: usize,
    ) -> imcore::Result<Vec<Revocation>> {
        self.inner
            .revocations_after(channel, extra_version, limit)
            .await
    }
}
