//! The embedded sled backend.
//!
//! # Layout
//!
//! Keys are big-endian composites, so that a prefix scan of one channel (or
//! one user) comes out in seq (or cursor, or version) order. Variable-length
//! parts are length-prefixed so that no channel's prefix is a prefix of
//! another's.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `messages` | channel ++ seq | message |
//! | `message_ids` | message id | channel ++ seq |
//! | `dedup` | from uid ++ client_msg_no | message id ++ seq |
//! | `counters` | tag ++ channel or uid | last seq / cursor / version |
//! | `commands` | uid ++ cursor | message |
//! | `command_ids` | uid ++ message id | cursor |
//! | `command_dedup` | from uid ++ client_msg_no | message id |
//! | `command_dedup` | 0 ++ message id | (empty): a command was pushed |
//! | `conversations` | uid ++ channel | conversation |
//! | `conversation_versions` | uid ++ version | channel |
//! | `revocations` | message id | revocation |
//! | `revocations_by_channel` | channel ++ version | message id |
//!
//! where channel = type (1 byte) ++ id length (1 byte) ++ id, and uid = length
//! (1 byte) ++ uid. Values are a format byte followed by postcard. Each write
//! (a seq and its message and indexes, for instance) is one sled
//! transaction, which sled retries on conflict: concurrent writers never
//! see each other's partial state and never get the same seq.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::{Db, Transactional, Tree};

use super::{
    check_limit, conversation_updates, id_in_use, unread_after, Appended, CommandQueue,
    Conversation, ConversationStore, ConversationUpdate, Direction, HistoryAppend, MessageLog,
    NewRevocation, Page, Pushed, QueuedCommand, Recorded, Revocation, RevocationStore,
};
use crate::error::{Error, Result};
use crate::model::{Channel, ClientMsgNo, Message, MessageId, Uid};

const BACKEND: &str = "sled";
/// A file in the database directory that marks it as the crate's. sled
/// itself happily starts a new database over files it does not recognise,
/// which would destroy them.
const MARKER_FILE: &str = "imcore.format";
/// Stored in the default tree; tells an imcore database from anything else.
const FORMAT_KEY: &[u8] = b"imcore.format";
const FORMAT_VALUE: &[u8] = b"imcore-sled-1";
/// First byte of every encoded value.
const VALUE_FORMAT: u8 = 1;

const TAG_CHANNEL_SEQ: u8 = b'S';
const TAG_COMMAND_CURSOR: u8 = b'C';
const TAG_CONVERSATION_VERSION: u8 = b'V';
const TAG_REVOCATION_VERSION: u8 = b'R';

/// When a write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Every write is flushed and fsynced before it returns: an `Ok` means
    /// the data survives a crash of the process or the machine. Concurrent
    /// writers share flushes (group commit), so throughput grows with
    /// concurrency. The default.
    Flush,
    /// Writes return once they are in sled's in-memory log; sled flushes
    /// it to disk in the background every `flush_every_ms` milliseconds. A
    /// crash loses at most the writes of that last interval, never part of
    /// a write (each is a transaction) and never an older write: the
    /// database comes back at a consistent earlier point.
    Background {
        /// The background flush interval in milliseconds (at least 1).
        flush_every_ms: u64,
    },
}

/// How to open a [`SledStore`].
#[derive(Debug, Clone)]
pub struct SledConfig {
    /// The database directory (created if missing).
    pub path: PathBuf,
    /// When writes are on disk. Default [`Durability::Flush`].
    pub durability: Durability,
    /// sled's page cache size in bytes. Default 256 MiB.
    pub cache_capacity: u64,
}

impl SledConfig {
    /// The defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledConfig {
            path: path.into(),
            durability: Durability::Flush,
            cache_capacity: 256 * 1024 * 1024,
        }
    }

    /// Sets the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// The embedded default [`Store`](super::Store), on
/// [sled](https://docs.rs/sled/0.34).
///
/// ```
/// use imcore::store::{SledStore, MessageLog};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> imcore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = SledStore::open(dir.path())?;
/// let channel = imcore::Channel::group("g1")?;
/// assert_eq!(store.last_seq(&channel).await?, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SledStore {
    db: Db,
    durability: Durability,
    flusher: Arc<GroupFlush>,
    /// The thread that writes history, batching concurrent sends.
    writer: Arc<HistoryWriter>,
    /// The ids of every revoked message, so that a history page with no
    /// revoked message costs no look-up at all. Loaded at open, updated
    /// after each recorded revocation commits.
    revoked_ids: Arc<std::sync::RwLock<std::collections::HashSet<u64>>>,
    messages: Tree,
    message_ids: Tree,
    dedup: Tree,
    counters: Tree,
    commands: Tree,
    command_ids: Tree,
    command_dedup: Tree,
    conversations: Tree,
    conversation_versions: Tree,
    revocations: Tree,
    revocations_by_channel: Tree,
}

fn storage(e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => Error::corrupt(format!("sled reports: {e}")),
        other => Error::Storage {
            backend: BACKEND,
            source: Box::new(other),
        },
    }
}

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => storage(e),
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

fn abort<T>(e: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn unabortable(e: UnabortableTransactionError) -> ConflictableTransactionError<Error> {
    e.into()
}

// ---- key and value encoding ----

fn uid_key(out: &mut Vec<u8>, uid: &Uid) {
    let s = uid.as_str().as_bytes();
    // Uids are at most MAX_ID_LEN (64) bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn channel_key(out: &mut Vec<u8>, channel: &Channel) {
    let s = channel.id.as_str().as_bytes();
    out.push(channel.kind.as_u8());
    // Channel ids are at most MAX_CHANNEL_ID_LEN (129) bytes.
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

fn key(parts: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut k = Vec::with_capacity(96);
    parts(&mut k);
    k
}

#[cfg(test)]
fn decode_channel_key(bytes: &[u8]) -> Result<Channel> {
    use crate::model::{ChannelId, ChannelType};
    let bad = || Error::corrupt("channel key");
    let (&kind, rest) = bytes.split_first().ok_or_else(bad)?;
    let (&len, rest) = rest.split_first().ok_or_else(bad)?;
    let id = rest.get(..usize::from(len)).ok_or_else(bad)?;
    let id = std::str::from_utf8(id).map_err(|_| bad())?;
    Ok(Channel::new(
        ChannelId::new(id).map_err(|_| bad())?,
        ChannelType::try_from(kind).map_err(|_| bad())?,
    ))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let out = vec![VALUE_FORMAT];
    postcard::to_extend(value, out).map_err(|e| Error::Storage {
        backend: BACKEND,
        source: Box::new(e),
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::corrupt(format!("{what}: {e}")))
        }
        _ => Err(Error::corrupt(format!("{what}: unknown value format"))),
    }
}

fn be_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| Error::corrupt(format!("{what}: expected 8 bytes")))?;
    Ok(u64::from_be_bytes(arr))
}

/// The u64 at the end of a key.
fn key_suffix_u64(key: &[u8], what: &str) -> Result<u64> {
    let start = key
        .len()
        .checked_sub(8)
        .ok_or_else(|| Error::corrupt(format!("{what}: key too short")))?;
    be_u64(&key[start..], what)
}

/// Reads a counter inside a transaction, adds one, writes it back.
fn next_counter(counters: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    let current = match counters.get(key).map_err(unabortable)? {
        Some(v) => match be_u64(&v, "counter") {
            Ok(n) => n,
            Err(e) => return abort(e),
        },
        None => 0,
    };
    let next = current + 1;
    counters
        .insert(key, &next.to_be_bytes())
        .map_err(unabortable)?;
    Ok(next)
}

fn counter_key(tag: u8, rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    key(|k| {
        k.push(tag);
        rest(k);
    })
}

impl SledStore {
    /// Opens (or creates) the database at `path` with the default settings.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(SledConfig::new(path.as_ref()))
    }

    /// Opens (or creates) a database as `config` says.
    ///
    /// Opening a non-empty directory that this crate did not create (it
    /// marks its directories with an `imcore.format` file), a database not
    /// written by this crate, or files sled cannot read, gives
    /// [`Error::Corrupt`] ([`Error::Storage`] for I/O failures such as a
    /// path that is a file, or a database already open); it never panics.
    ///
    /// A limit of sled 0.34 to know: its recovery cannot tell damage near the
    /// end of its log from a write torn by a crash, so such damage comes back
    /// as an earlier consistent state of the database, not as an error.
    pub fn open_with(config: SledConfig) -> Result<Self> {
        claim_directory(&config.path)?;
        let sled_config = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity);
        Self::from_sled_config(sled_config, config.durability)
    }

    /// A fresh store in a temporary directory that is deleted when the last
    /// clone of the store is dropped, with background durability (nothing
    /// temporary needs to survive a crash).
    pub fn temporary() -> Result<Self> {
        Self::temporary_with(Durability::Background {
            flush_every_ms: 500,
        })
    }

    /// [`SledStore::temporary`] with the given durability.
    pub fn temporary_with(durability: Durability) -> Result<Self> {
        Self::from_sled_config(sled::Config::new().temporary(true), durability)
    }

    fn from_sled_config(sled_config: sled::Config, durability: Durability) -> Result<Self> {
        let flush_every_ms = match durability {
            Durability::Flush => 500,
            Durability::Background { flush_every_ms } => flush_every_ms.max(1),
        };
        let sled_config = sled_config.flush_every_ms(Some(flush_every_ms));
        let db = open_retrying_lock(&sled_config)?;
        Self::check_format(&db)?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let revocations = tree("revocations")?;
        let mut revoked_ids = std::collections::HashSet::new();
        for key in revocations.iter().keys() {
            revoked_ids.insert(be_u64(&key.map_err(storage)?, "revocation key")?);
        }
        let flusher = Arc::new(GroupFlush::default());
        let writer = HistoryWriter::new(HistoryTrees {
            flush: durability == Durability::Flush,
            flusher: flusher.clone(),
            db: db.clone(),
            messages: tree("messages")?,
            message_ids: tree("message_ids")?,
            dedup: tree("dedup")?,
            counters: tree("counters")?,
            conversations: tree("conversations")?,
            conversation_versions: tree("conversation_versions")?,
        });
        Ok(SledStore {
            durability,
            writer: Arc::new(writer),
            flusher,
            revoked_ids: Arc::new(std::sync::RwLock::new(revoked_ids)),
            messages: tree("messages")?,
            message_ids: tree("message_ids")?,
            dedup: tree("dedup")?,
            counters: tree("counters")?,
            commands: tree("commands")?,
            command_ids: tree("command_ids")?,
            command_dedup: tree("command_dedup")?,
            conversations: tree("conversations")?,
            conversation_versions: tree("conversation_versions")?,
            revocations,
            revocations_by_channel: tree("revocations_by_channel")?,
            db,
        })
    }

    fn check_format(db: &Db) -> Result<()> {
        match db.get(FORMAT_KEY).map_err(storage)? {
            Some(v) if v.as_ref() == FORMAT_VALUE => Ok(()),
            Some(v) => Err(Error::corrupt(format!(
                "database format {:?}, expected {:?}",
                String::from_utf8_lossy(&v),
                String::from_utf8_lossy(FORMAT_VALUE)
            ))),
            None => {
                let default_tree_empty = db.is_empty();
                let only_default_tree = db.tree_names().len() <= 1;
                if !(default_tree_empty && only_default_tree) {
                    return Err(Error::corrupt("not an imcore database"));
                }
                db.insert(FORMAT_KEY, FORMAT_VALUE).map_err(storage)?;
                db.flush().map_err(storage)?;
                Ok(())
            }
        }
    }

    /// Flushes everything written so far to disk.
    pub async fn flush(&self) -> Result<()> {
        self.flusher.flush(&self.db, self.flusher.committed()).await
    }

    /// Makes a completed write as durable as the configuration says. Called
    /// after the write's transaction has committed.
    async fn settle(&self) -> Result<()> {
        let ticket = self.flusher.commit();
        match self.durability {
            Durability::Flush => self.flusher.flush(&self.db, ticket).await,
            Durability::Background { .. } => Ok(()),
        }
    }

    /// The size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(storage)
    }

    fn channel_page_bounds(channel: &Channel, page: &Page) -> (Vec<u8>, Vec<u8>) {
        let prefix = key(|k| channel_key(k, channel));
        let at = |seq: u64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&seq.to_be_bytes());
            k
        };
        match page.direction {
            Direction::Forward => (at(page.from), at(u64::MAX)),
            Direction::Backward => (at(0), at(page.from)),
        }
    }
}

/// How long `open` waits for a database lock that another handle in this
/// process is about to release.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the database, waiting up to [`LOCK_WAIT`] for its file lock.
///
/// sled's background threads can hold the lock for a few milliseconds after
/// the last handle is dropped, so reopening a directory at once (a restart
/// inside one process, a test) would fail now and then. A lock still held
/// after the wait (the database is open elsewhere) is an error.
fn open_retrying_lock(config: &sled::Config) -> Result<Db> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        // sled 0.34 can panic on some kinds of damaged files instead of
        // returning an error; a damaged database must give an error here.
        // The closure only reads a clone of the config.
        let attempt = config.clone();
        let open = std::panic::AssertUnwindSafe(move || attempt.open());
        match std::panic::catch_unwind(open) {
            Err(_) => return Err(Error::corrupt("sled could not read the database files")),
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) if is_lock_error(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Ok(Err(e)) => return Err(storage(e)),
        }
    }
}

/// Whether sled failed to take the database's file lock.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// Checks that `path` is missing, empty, or marked as an imcore database,
/// and marks it when it is new.
fn claim_directory(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Storage {
        backend: BACKEND,
        source: Box::new(e),
    };
    let fresh = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io(e)),
    };
    let marker = path.join(MARKER_FILE);
    if fresh {
        std::fs::create_dir_all(path).map_err(io)?;
        let mut expected = FORMAT_VALUE.to_vec();
        expected.push(b'\n');
        return std::fs::write(&marker, expected).map_err(io);
    }
    match std::fs::read(&marker) {
        Ok(v) if v.trim_ascii_end() == FORMAT_VALUE => Ok(()),
        Ok(v) => Err(Error::corrupt(format!(
            "{} says {:?}, expected {:?}",
            marker.display(),
            String::from_utf8_lossy(&v),
            String::from_utf8_lossy(FORMAT_VALUE)
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::corrupt(format!(
            "{} is not empty and has no {MARKER_FILE}: not an imcore database",
            path.display()
        ))),
        Err(e) => Err(io(e)),
    }
}

/// The most send requests one history transaction takes.
const MAX_HISTORY_BATCH: usize = 256;

/// One caller's [`Store::append_history`](super::Store::append_history).
struct HistoryJob {
    messages: Vec<Message>,
    recipients: Vec<Vec<Uid>>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Appended>>>,
}

/// The trees the history writer touches.
struct HistoryTrees {
    db: Db,
    flush: bool,
    flusher: Arc<GroupFlush>,
    messages: Tree,
    message_ids: Tree,
    dedup: Tree,
    counters: Tree,
    conversations: Tree,
    conversation_versions: Tree,
}

impl HistoryTrees {
    /// Writes every job's messages and conversation updates in one
    /// transaction (the leader flushes after, if the durability says so).
    fn write(&self, jobs: &[HistoryJob]) -> Result<Vec<Vec<Appended>>> {
        let prepared = jobs
            .iter()
            .map(|j| prepare_append(&j.messages))
            .collect::<Result<Vec<_>>>()?;
        let out = (
            &self.messages,
            &self.message_ids,
            &self.dedup,
            &self.counters,
            &self.conversations,
            &self.conversation_versions,
        )
            .transaction(|(log, ids, dedup, counters, convs, versions)| {
                let mut out = Vec::with_capacity(jobs.len());
                for (job, prepared) in jobs.iter().zip(&prepared) {
                    let appended = append_tx(log, ids, dedup, counters, &job.messages, prepared)?;
                    let updates: Vec<ConversationUpdate> = job
                        .messages
                        .iter()
                        .zip(&job.recipients)
                        .zip(&appended)
                        .filter(|(_, a)| !a.duplicate)
                        .flat_map(|((m, r), a)| {
                            conversation_updates(m, r, a.message_id, a.message_seq)
                        })
                        .collect();
                    conversations_tx(convs, versions, counters, &updates)?;
                    out.push(appended);
                }
                Ok(out)
            })
            .map_err(tx_error)?;
        Ok(out)
    }
}

/// Group commit for the send path. The first caller with nothing in
/// flight starts a leader task; every send queued while the leader is busy
/// goes into its next transaction and (with [`Durability::Flush`]) its next
/// flush. sled seals an I/O buffer per commit and its flush blocks all
/// transactions, so batching both is what lets throughput grow with
/// concurrent senders, while a lone sender pays one transaction and no
/// hand-off to another thread. The leader is a spawned task, so a caller
/// that stops waiting never strands the queue.
struct HistoryWriter {
    trees: Arc<HistoryTrees>,
    state: Arc<std::sync::Mutex<WriterState>>,
}

#[derive(Default)]
struct WriterState {
    queue: Vec<HistoryJob>,
    leading: bool,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter").finish_non_exhaustive()
    }
}

fn lock_state(state: &std::sync::Mutex<WriterState>) -> std::sync::MutexGuard<'_, WriterState> {
    // No code path panics while holding the lock.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl HistoryWriter {
    fn new(trees: HistoryTrees) -> Self {
        HistoryWriter {
            trees: Arc::new(trees),
            state: Arc::default(),
        }
    }

    async fn write(&self, batch: Vec<HistoryAppend>) -> Result<Vec<Appended>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let (messages, recipients) = batch.into_iter().map(|h| (h.message, h.recipients)).unzip();
        let lead = {
            let mut state = lock_state(&self.state);
            state.queue.push(HistoryJob {
                messages,
                recipients,
                reply,
            });
            !std::mem::replace(&mut state.leading, true)
        };
        if lead {
            tokio::spawn(Self::lead(self.trees.clone(), self.state.clone()));
        }
        answer.await.map_err(|_| Error::Storage {
            backend: BACKEND,
            source: "the history writer stopped before answering".into(),
        })?
    }

    /// Writes batches until the queue is empty, then steps down.
    ///
    /// It steps down, and lets go of the database, before it answers its
    /// last batch: once a caller has its answer, dropping the store closes
    /// the database at once and the directory can be opened again.
    async fn lead(trees: Arc<HistoryTrees>, state: Arc<std::sync::Mutex<WriterState>>) {
        let _guard = StepDownOnPanic(state.clone());
        let mut batch = Self::take(&state);
        let mut trees = Some(trees);
        while let Some(writer) = trees.as_ref() {
            let mut result = writer.write(&batch);
            if result.is_ok() {
                // Registered, so that `SledStore::flush` covers it.
                let ticket = writer.flusher.commit();
                if writer.flush {
                    if let Err(e) = writer.flusher.flush(&writer.db, ticket).await {
                        result = Err(Error::Unconfirmed {
                            backend: BACKEND,
                            source: Box::new(e),
                        });
                    }
                }
            }
            let next = Self::take(&state);
            if next.is_empty() {
                trees = None; // stepped down in `take`
            }
            match result {
                Ok(results) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for job in batch {
                        let _ = job.reply.send(Err(shared_error(&e)));
                    }
                }
            }
            batch = next;
        }
    }

    /// The next batch; an empty one means the leader has stepped down.
    fn take(state: &std::sync::Mutex<WriterState>) -> Vec<HistoryJob> {
        let mut state = lock_state(state);
        if state.queue.is_empty() {
            state.leading = false;
            return Vec::new();
        }
        let take = state.queue.len().min(MAX_HISTORY_BATCH);
        state.queue.drain(..take).collect()
    }
}

/// If a leader panics (sled 0.34 has internal panics), it steps down and
/// fails the queued jobs (their callers get an error), so that the next
/// write elects a new leader instead of queueing behind a dead one forever.
struct StepDownOnPanic(Arc<std::sync::Mutex<WriterState>>);

impl Drop for StepDownOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = lock_state(&self.0);
            state.leading = false;
            state.queue.clear();
        }
    }
}

/// A copy of `e` for each caller of a failed batch.
fn shared_error(e: &Error) -> Error {
    match e {
        Error::Corrupt { what } => Error::Corrupt { what: what.clone() },
        Error::Unconfirmed { source, .. } => Error::Unconfirmed {
            backend: BACKEND,
            source: source.to_string().into(),
        },
        other => Error::Storage {
            backend: BACKEND,
            source: other.to_string().into(),
        },
    }
}

/// Group commit: one flush at a time, each covering every write committed
/// before it started.
///
/// Writers take a ticket after their transaction commits and wait until a
/// flush that started after that point has finished. Concurrent writers
/// therefore share flushes instead of queueing one each.
///
/// Running one flush at a time, on a tokio blocking thread, also avoids a
/// deadlock in sled 0.34: `Tree::flush_async` runs each flush on sled's
/// small I/O pool while holding sled's global read guard, and with several
/// concurrent flushes and a transaction waiting for the write guard the pool
/// can fill with flushes that wait for one another.
#[derive(Debug, Default)]
struct GroupFlush {
    /// Tickets handed out: writes committed so far.
    committed: AtomicU64,
    /// The highest ticket known to be on disk. Guarded by the mutex so that
    /// only one flush runs at a time.
    durable: tokio::sync::Mutex<u64>,
}

impl GroupFlush {
    /// Takes a ticket for a write that has just committed.
    fn commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The latest ticket handed out.
    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Returns once every write up to `ticket` is on disk.
    async fn flush(&self, db: &Db, ticket: u64) -> Result<()> {
        let mut durable = self.durable.lock().await;
        if *durable >= ticket {
            return Ok(()); // a flush that started after our commit covered us
        }
        // Every ticket up to `target` belongs to a committed write, so this
        // flush makes all of them durable.
        let target = self.committed();
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| Error::Storage {
                backend: BACKEND,
                source: Box::new(e),
            })?
            .map_err(storage)?;
        *durable = target;
        Ok(())
    }
}

fn seq_key(prefix: &[u8], n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// Marks a command id in the `command_dedup` tree. Sender keys start with a
/// uid length of 1 to 64; this starts with 0, so the two never collide.
fn command_id_key(id: MessageId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

fn sender_key(from_uid: &Uid, client_msg_no: &ClientMsgNo) -> Vec<u8> {
    key(|k| {
        uid_key(k, from_uid);
        k.extend_from_slice(client_msg_no.as_str().as_bytes());
    })
}

/// Decodes a stored message; its seq is the last 8 bytes of its key.
fn decode_message(key: &[u8], value: &[u8]) -> Result<Message> {
    let mut message: Message = decode(value, "message")?;
    message.message_seq = key_suffix_u64(key, "message key")?;
    Ok(message)
}

/// A message id and seq, as the dedup index stores them.
fn id_and_seq(value: &[u8]) -> Result<(MessageId, u64)> {
    if value.len() != 16 {
        return Err(Error::corrupt("dedup entry: expected 16 bytes"));
    }
    Ok((
        MessageId(be_u64(&value[..8], "dedup entry")?),
        be_u64(&value[8..], "dedup entry")?,
    ))
}

/// Computes the keys and encoded values of `messages`, outside any
/// transaction (which may run more than once).
fn prepare_append(messages: &[Message]) -> Result<Vec<AppendKeys>> {
    messages
        .iter()
        .map(|m| {
            let channel = key(|k| channel_key(k, &m.channel));
            Ok(AppendKeys {
                counter: counter_key(TAG_CHANNEL_SEQ, |k| k.extend_from_slice(&channel)),
                channel,
                sender: sender_key(&m.from_uid, &m.client_msg_no),
                // The seq lives in the key; the stored value carries 0.
                value: encode(&Message {
                    message_seq: 0,
                    ..m.clone()
                })?,
            })
        })
        .collect()
}

/// The message log's part of a transaction: seqs, messages, indexes.
fn append_tx(
    log: &TransactionalTree,
    ids: &TransactionalTree,
    dedup: &TransactionalTree,
    counters: &TransactionalTree,
    messages: &[Message],
    prepared: &[AppendKeys],
) -> TxResult<Vec<Appended>> {
    let mut out = Vec::with_capacity(prepared.len());
    for (m, p) in messages.iter().zip(prepared) {
        if let Some(v) = dedup.get(&p.sender)? {
            let (message_id, message_seq) = match id_and_seq(&v) {
                Ok(x) => x,
                Err(e) => return abort(e),
            };
            out.push(Appended {
                message_id,
                message_seq,
                duplicate: true,
            });
            continue;
        }
        let id = m.message_id.0.to_be_bytes();
        if ids.get(id)?.is_some() {
            return abort(id_in_use(BACKEND, m.message_id));
        }
        let seq = next_counter(counters, &p.counter)?;
        let location = seq_key(&p.channel, seq);
        log.insert(location.as_slice(), p.value.as_slice())?;
        ids.insert(&id, location)?;
        let mut id_seq = id.to_vec();
        id_seq.extend_from_slice(&seq.to_be_bytes());
        dedup.insert(p.sender.as_slice(), id_seq)?;
        out.push(Appended {
            message_id: m.message_id,
            message_seq: seq,
            duplicate: false,
        });
    }
    Ok(out)
}

/// The conversations' part of a transaction.
fn conversations_tx(
    convs: &TransactionalTree,
    versions: &TransactionalTree,
    counters: &TransactionalTree,
    updates: &[ConversationUpdate],
) -> TxResult<()> {
    for u in updates {
        let (user, conv_key) = SledStore::conversation_key(&u.uid, &u.channel);
        let existing = decode_conversation(convs.get(&conv_key)?)?;
        let previous_version = existing.as_ref().map(|c| c.version);
        let mut conv = existing.unwrap_or_else(|| Conversation::empty_for(u));
        conv.apply(u);
        SledStore::store_conversation(
            convs,
            versions,
            counters,
            &user,
            &conv_key,
            conv,
            previous_version,
        )?;
    }
    Ok(())
}

/// Keys computed once per message, outside the transaction.
struct AppendKeys {
    channel: Vec<u8>,
    counter: Vec<u8>,
    sender: Vec<u8>,
    value: Vec<u8>,
}

#[async_trait]
impl super::Store for SledStore {
    /// One transaction, and one flush with [`Durability::Flush`], for every
    /// send queued at the same time: the messages and their conversation
    /// updates are stored atomically.
    async fn append_history(&self, batch: Vec<HistoryAppend>) -> Result<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.write(batch).await
    }
}

#[async_trait]
impl MessageLog for SledStore {
    async fn append(&self, messages: Vec<Message>) -> Result<Vec<Appended>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = prepare_append(&messages)?;
        let out = (
            &self.messages,
            &self.message_ids,
            &self.dedup,
            &self.counters,
        )
            .transaction(|(log, ids, dedup, counters)| {
                append_tx(log, ids, dedup, counters, &messages, &prepared)
            })
            .map_err(tx_error)?;
        self.settle().await?;
        Ok(out)
    }

    async fn read(&self, channel: &Channel, page: Page) -> Result<Vec<Message>> {
        page.validate()?;
        let (lo, hi) = Self::channel_page_bounds(channel, &page);
        let range = self.messages.range(lo..=hi);
        let decode_kv = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Message> {
            let (k, v) = kv.map_err(storage)?;
            decode_message(&k, &v)
        };
        match page.direction {
            Direction::Forward => range.take(page.limit).map(decode_kv).collect(),
            Direction::Backward => range.rev().take(page.limit).map(decode_kv).collect(),
        }
    }

    async fn get(&self, id: MessageId) -> Result<Option<Message>> {
        let Some(location) = self.message_ids.get(id.0.to_be_bytes()).map_err(storage)? else {
            return Ok(None);
        };
        match self.messages.get(&location).map_err(storage)? {
            Some(v) => decode_message(&location, &v).map(Some),
            None => Err(Error::corrupt(format!(
                "message index points at a missing message ({id})"
            ))),
        }
    }

    async fn get_by_client_msg_no(
        &self,
        from_uid: &Uid,
        client_msg_no: &ClientMsgNo,
    ) -> Result<Option<Message>> {
        match self
            .dedup
            .get(sender_key(from_uid, client_msg_no))
            .map_err(storage)?
        {
            Some(v) => self.get(id_and_seq(&v)?.0).await,
            None => Ok(None),
        }
    }

    async fn last_seq(&self, channel: &Channel) -> Result<u64> {
        let k = counter_key(TAG_CHANNEL_SEQ, |k| channel_key(k, channel));
        match self.counters.get(k).map_err(storage)? {
            Some(v) => be_u64(&v, "channel seq"),
            None => Ok(0),
        }
    }
}

#[async_trait]
impl CommandQueue for SledStore {
    async fn push_command(&self, message: &Message, recipients: &[Uid]) -> Result<Pushed> {
        let value = encode(message)?;
        let sender = sender_key(&message.from_uid, &message.client_msg_no);
        let id = message.message_id.0.to_be_bytes();
        let mut seen = std::collections::HashSet::with_capacity(recipients.len());
        // (uid prefix, counter key) per distinct recipient.
        let users: Vec<(Vec<u8>, Vec<u8>)> = recipients
            .iter()
            .filter(|uid| seen.insert(*uid))
            .map(|uid| {
                let prefix = key(|k| uid_key(k, uid));
                let counter = counter_key(TAG_COMMAND_CURSOR, |k| k.extend_from_slice(&prefix));
                (prefix, counter)
            })
            .collect();
        let duplicate = (
            &self.commands,
            &self.command_ids,
            &self.command_dedup,
            &self.counters,
        )
            .transaction(|(queue, ids, dedup, counters)| {
                if let Some(v) = dedup.get(&sender)? {
                    return match be_u64(&v, "command dedup entry") {
                        Ok(first) => Ok(Some(MessageId(first))),
                        Err(e) => abort(e),
                    };
                }
                for (prefix, counter) in &users {
                    let cursor = next_counter(counters, counter)?;
                    queue.insert(seq_key(prefix, cursor), value.as_slice())?;
                    ids.insert(seq_key(prefix, message.message_id.0), &cursor.to_be_bytes())?;
                }
                // The dedup value is the command's id; keyed by id too, so
                // that `is_command` is one look-up.
                dedup.insert(sender.as_slice(), &id)?;
                dedup.insert(&command_id_key(message.message_id), &[])?;
                Ok(None)
            })
            .map_err(tx_error)?;
        // A resend is acknowledged only once the first push is durable too
        // (it may still be in the flush another caller is waiting for).
        self.settle().await?;
        Ok(match duplicate {
            Some(message_id) => Pushed {
                message_id,
                duplicate: true,
            },
            None => Pushed {
                message_id: message.message_id,
                duplicate: false,
            },
        })
    }

    async fn pending_commands(
        &self,
        uid: &Uid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedCommand>> {
        check_limit(limit)?;
        let prefix = key(|k| uid_key(k, uid));
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.commands
            .range(seq_key(&prefix, first)..=seq_key(&prefix, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(storage)?;
                Ok(QueuedCommand {
                    cursor: key_suffix_u64(&k, "command key")?,
                    message: decode(&v, "command")?,
                })
            })
            .collect()
    }

    async fn ack_commands(&self, uid: &Uid, up_to: u64) -> Result<usize> {
        let prefix = key(|k| uid_key(k, uid));
        // Collect the entries first (transactions cannot scan); entries
        // pushed meanwhile get cursors above every existing one.
        let mut doomed = Vec::new();
        for kv in self
            .commands
            .range(seq_key(&prefix, 0)..=seq_key(&prefix, up_to))
        {
            let (k, v) = kv.map_err(storage)?;
            let message: Message = decode(&v, "command")?;
            doomed.push((k, seq_key(&prefix, message.message_id.0)));
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let removed = (&self.commands, &self.command_ids)
            .transaction(|(queue, ids)| {
                let mut removed = 0;
                for (entry, index) in &doomed {
                    if queue.remove(entry)?.is_some() {
                        removed += 1;
                    }
                    ids.remove(index.as_slice())?;
                }
                Ok(removed)
            })
            .map_err(tx_error)?;
        self.settle().await?;
        Ok(removed)
    }

    async fn is_command(&self, id: MessageId) -> Result<bool> {
        self.command_dedup
            .contains_key(command_id_key(id))
            .map_err(storage)
    }

    async fn remove_commands(&self, uid: &Uid, ids: &[MessageId]) -> Result<usize> {
        let prefix = key(|k| uid_key(k, uid));
        let index_keys: Vec<Vec<u8>> = ids.iter().map(|id| seq_key(&prefix, id.0)).collect();
        let removed = (&self.commands, &self.command_ids)
            .transaction(|(queue, index)| {
                let mut removed = 0;
                for k in &index_keys {
                    if let Some(cursor) = index.remove(k.as_slice())? {
                        let cursor = match be_u64(&cursor, "command index") {
                            Ok(c) => c,
                            Err(e) => return abort(e),
                        };
                        if queue.remove(seq_key(&prefix, cursor))?.is_some() {
                            removed += 1;
                        }
                    }
                }
                Ok(removed)
            })
            .map_err(tx_error)?;
        if removed > 0 {
            self.settle().await?;
        }
        Ok(removed)
    }
}

impl SledStore {
    /// Gives the conversation at `conv_key` the user's next version,
    /// replacing its entry in the version index.
    fn store_conversation(
        convs: &TransactionalTree,
        versions: &TransactionalTree,
        counters: &TransactionalTree,
        user: &[u8],
        conv_key: &[u8],
        mut conv: Conversation,
        previous_version: Option<u64>,
    ) -> TxResult<()> {
        if let Some(v) = previous_version {
            versions.remove(seq_key(user, v))?;
        }
        let counter = counter_key(TAG_CONVERSATION_VERSION, |k| k.extend_from_slice(user));
        conv.version = next_counter(counters, &counter)?;
        let value = match encode(&conv) {
            Ok(v) => v,
            Err(e) => return abort(e),
        };
        versions.insert(
            seq_key(user, conv.version),
            key(|k| channel_key(k, &conv.channel)),
        )?;
        convs.insert(conv_key, value)?;
        Ok(())
    }

    fn conversation_key(uid: &Uid, channel: &Channel) -> (Vec<u8>, Vec<u8>) {
        let user = key(|k| uid_key(k, uid));
        let mut conv_key = user.clone();
        channel_key(&mut conv_key, channel);
        (user, conv_key)
    }
}

fn decode_conversation(v: Option<sled::IVec>) -> TxResult<Option<Conversation>> {
    match v.map(|v| decode::<Conversation>(&v, "conversation")) {
        None => Ok(None),
        Some(Ok(c)) => Ok(Some(c)),
        Some(Err(e)) => abort(e),
    }
}

#[async_trait]
impl ConversationStore for SledStore {
    async fn update_conversations(&self, updates: &[ConversationUpdate]) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        (
            &self.conversations,
            &self.conversation_versions,
            &self.counters,
        )
            .transaction(|(convs, versions, counters)| {
                conversations_tx(convs, versions, counters, updates)
            })
            .map_err(tx_error)?;
        self.settle().await
    }

    async fn conversations_after(
        &self,
        uid: &Uid,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Conversation>> {
        check_limit(limit)?;
        let user = key(|k| uid_key(k, uid));
        let Some(first) = version.checked_add(1) else {
            return Ok(Vec::new());
        };
        // The scan below is not atomic: a conversation may move to a new
        // version while it runs. Return only entries still at the version
        // the index gave and not newer than the user's version before the
        // scan; anything skipped has moved above that and is returned by
        // a later call, so a client that continues after the highest
        // version it received misses nothing.
        let counter = counter_key(TAG_CONVERSATION_VERSION, |k| k.extend_from_slice(&user));
        let ceiling = match self.counters.get(&counter).map_err(storage)? {
            Some(v) => be_u64(&v, "conversation version")?,
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for kv in self
            .conversation_versions
            .range(seq_key(&user, first)..=seq_key(&user, ceiling))
        {
            let (k, channel) = kv.map_err(storage)?;
            let indexed_version = key_suffix_u64(&k, "conversation version key")?;
            let mut conv_key = user.clone();
            conv_key.extend_from_slice(&channel);
            let Some(v) = self.conversations.get(&conv_key).map_err(storage)? else {
                continue;
            };
            let conv: Conversation = decode(&v, "conversation")?;
            if conv.version == indexed_version {
                out.push(conv);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn conversation(&self, uid: &Uid, channel: &Channel) -> Result<Option<Conversation>> {
        let (_, conv_key) = Self::conversation_key(uid, channel);
        match self.conversations.get(conv_key).map_err(storage)? {
            Some(v) => decode(&v, "conversation").map(Some),
            None => Ok(None),
        }
    }

    async fn clear_unread(&self, uid: &Uid, channel: &Channel, read_seq: u64) -> Result<bool> {
        let (user, conv_key) = Self::conversation_key(uid, channel);
        let found = (
            &self.conversations,
            &self.conversation_versions,
            &self.counters,
        )
            .transaction(|(convs, versions, counters)| {
                let Some(mut conv) = decode_conversation(convs.get(&conv_key)?)? else {
                    return Ok(false);
                };
                let previous_version = Some(conv.version);
                conv.unread = unread_after(&conv, read_seq);
                Self::store_conversation(
                    convs,
                    versions,
                    counters,
                    &user,
                    &conv_key,
                    conv,
                    previous_version,
                )?;
                Ok(true)
            })
            .map_err(tx_error)?;
        if found {
            self.settle().await?;
        }
        Ok(found)
    }
}

#[async_trait]
impl RevocationStore for SledStore {
    async fn record_revocation(&self, r: NewRevocation) -> Result<Recorded> {
        let id = r.message_id.0.to_be_bytes();
        let chan = key(|k| channel_key(k, &r.channel));
        let counter = counter_key(TAG_REVOCATION_VERSION, |k| k.extend_from_slice(&chan));
        let recorded = (
            &self.revocations,
            &self.revocations_by_channel,
            &self.counters,
        )
            .transaction(|(revs, by_channel, counters)| {
                if let Some(v) = revs.get(id)? {
                    return match decode::<Revocation>(&v, "revocation") {
                        Ok(existing) => Ok(Recorded::Existing(existing)),
                        Err(e) => abort(e),
                    };
                }
                let extra_version = next_counter(counters, &counter)?;
                let record = Revocation {
                    message_id: r.message_id,
                    channel: r.channel.clone(),
                    message_seq: r.message_seq,
                    revoker: r.revoker.clone(),
                    revoked_at_ms: r.revoked_at_ms,
                    extra_version,
                };
                let value = match encode(&record) {
                    Ok(v) => v,
                    Err(e) => return abort(e),
                };
                revs.insert(&id, value)?;
                by_channel.insert(seq_key(&chan, extra_version), &id)?;
                Ok(Recorded::New(record))
            })
            .map_err(tx_error)?;
        if let Recorded::New(r) = &recorded {
            self.revoked_ids
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(r.message_id.0);
            self.settle().await?;
        }
        Ok(recorded)
    }

    async fn lookup_revocations(&self, ids: &[MessageId]) -> Result<Vec<Option<Revocation>>> {
        let revoked: Vec<bool> = {
            // No code path panics while holding the lock.
            let set = self.revoked_ids.read().unwrap_or_else(|e| e.into_inner());
            ids.iter().map(|id| set.contains(&id.0)).collect()
        };
        ids.iter()
            .zip(revoked)
            .map(|(id, revoked)| {
                if !revoked {
                    return Ok(None);
                }
                match self.revocations.get(id.0.to_be_bytes()).map_err(storage)? {
                    Some(v) => decode(&v, "revocation").map(Some),
                    None => Ok(None),
                }
            })
            .collect()
    }

    async fn revocations_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<Revocation>> {
        check_limit(limit)?;
        let chan = key(|k| channel_key(k, channel));
        let Some(first) = version.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.revocations_by_channel
            .range(seq_key(&chan, first)..=seq_key(&chan, u64::MAX))
            .take(limit)
            .map(|kv| {
                let (_, id) = kv.map_err(storage)?;
                let id = be_u64(&id, "revocation index")?;
                match self.revocations.get(id.to_be_bytes()).map_err(storage)? {
                    Some(v) => decode(&v, "revocation"),
                    None => Err(Error::corrupt(format!(
                        "revocation index points at a missing record ({id})"
                    ))),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_round_trip_and_do_not_prefix_each_other() {
        let a = Channel::group("ab").unwrap();
        let b = Channel::group("abc").unwrap();
        let (ka, kb) = (key(|k| channel_key(k, &a)), key(|k| channel_key(k, &b)));
        assert!(!kb.starts_with(&ka));
        assert_eq!(decode_channel_key(&ka).unwrap(), a);
        assert!(decode_channel_key(&ka[..3]).is_err());
        assert!(decode_channel_key(&[0, 1, b'x']).is_err());
    }

    #[test]
    fn garbage_values_are_corrupt_not_panics() {
        assert!(matches!(
            decode::<Message>(&[], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Message>(&[VALUE_FORMAT, 0xff, 0xff], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Message>(&[9, 1, 2], "m"),
            Err(Error::Corrupt { .. })
        ));
        assert!(be_u64(&[1, 2, 3], "x").is_err());
    }
}
