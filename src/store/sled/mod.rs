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
//! | `log` | `m` ++ channel ++ seq | message, with the channel's running red-dot count and the append's version |
//! | `history` | `i` ++ message id | the record's key |
//! | `history` | `r` ++ from uid ++ channel ++ client_msg_no | message id ++ the record's key (++ deletion time: a tombstone, once retention deleted the record) |
//! | `positions` | `p` ++ uid ++ channel | read position (seq, red-dot count, version) |
//! | `positions` | `c` ++ uid ++ channel | (empty): the user's person channels |
//! | `history` | `v` | the highest version reserved |
//! | `counters` | tag ++ uid or channel | command cursors, revocation (and extra) versions |
//! | `commands` | uid ++ cursor | message |
//! | `command_ids` | uid ++ message id | cursor |
//! | `command_dedup` | from uid ++ client_msg_no | message id |
//! | `command_dedup` | 0 ++ message id | (empty): a command was pushed |
//! | `history` | `t` ++ deletion time ++ channel ++ floor | the resend keys one retention batch left tombstones under |
//! | `floors` | `m` ++ channel | the channel's history floor: the last message retention deleted (seq, red-dot count, id, time, version, sender) |
//! | `changed` | `h` ++ version | the log prefix of the channel whose head is at that version (see `changed.rs`) |
//! | `changed` | `p` ++ uid ++ version | the log prefix of the channel in which a clear or hide moved the user's read position to it |
//! | `changed` | `q` ++ uid ++ channel | the version of the user's `p` entry for the channel |
//! | `revocations` | message id | revocation |
//! | `revocations_by_channel` | channel ++ version | message id |
//! | `revocations_by_seq` | channel ++ seq | message id |
//! | `extras` | message id | its edit and read receipt, at its last version |
//! | `extras_by_version` | channel ++ version | message id (its current version only) |
//! | `extras_by_seq` | channel ++ seq | message id |
//! | `reads` | message id ++ uid | when the user read it |
//! | `directory` | see `directory.rs` | tokens, channels, subscribers, lists |
//! | `events` | see `events.rs` | message events and their streams' states |
//!
//! where channel = type (1 byte) ++ id length (1 byte) ++ id, and uid = length
//! (1 byte) ++ uid. Values are a format byte followed by postcard.
//!
//! Conversations are not stored per member (read diffusion): a channel's
//! head is its last record, and a user's conversation is derived from it
//! and the user's read position. A history append writes four keys whatever
//! the size of its channel: the record, the id index, the resend index and
//! the channel's `h` entry under its new version (removing the one under
//! the old), plus the previous sender's read position when the sender
//! changes, and, once per person channel, its two parties' `c` entries. Appends and
//! read-position moves take turns in
//! one writer (`writer.rs`, which says how a single append stays
//! crash-safe without a transaction); commands and revocations are
//! transactions of their own, and so are edits and read receipts, which
//! take their versions from the revocations' counter.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, UnabortableTransactionError,
};
use sled::{Db, Tree};

use crate::error::{Error, Result};

mod changed;
mod commands;
mod directory;
mod events;
mod extras;
mod flush;
mod heads;
mod hide;
mod keys;
mod log;
mod marker;
mod migrate;
mod outbox;
mod record;
mod retention;
mod revocations;
mod thread;
mod writer;

use flush::GroupFlush;
use writer::Writer;

const BACKEND: &str = "sled";
/// Stored in the default tree; tells an imcore database from anything else.
const FORMAT_KEY: &[u8] = b"imcore.format";
const FORMAT_VALUE: &[u8] = b"imcore-sled-5";
/// Formats this version cannot read, with why.
const OLD_FORMATS: &[(&[u8], &str)] = &[
    (
        b"imcore-sled-1",
        "it keeps a conversation row per member (write diffusion); this version derives \
         conversations from channel heads (read diffusion) and cannot read it",
    ),
    (
        b"imcore-sled-2",
        "it keeps read positions among the message indexes; this version keeps them in \
         a tree of their own and cannot read it",
    ),
];

const TAG_COMMAND_CURSOR: u8 = b'C';
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
    /// it to disk in the background every `flush_every`. A
    /// crash loses at most the writes of that last interval and never an
    /// older write: the database comes back at a consistent earlier point
    /// (a message comes back whole with its indexes, or not at all; see
    /// the writer's docs for why without a transaction).
    Background {
        /// The background flush interval (at least a millisecond).
        flush_every: Duration,
    },
}

/// How to open a [`SledStore`].
#[derive(Debug, Clone)]
#[non_exhaustive]
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

    /// Sets sled's page cache size in bytes.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
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
    /// The writer of history and read positions.
    writer: Arc<Writer>,
    /// Where every write runs (see `thread.rs`).
    thread: thread::WriteThread,
    commands: Tree,
    command_ids: Tree,
    command_dedup: Tree,
    counters: Tree,
    revocations: Tree,
    revocations_by_channel: Tree,
    revocations_by_seq: Tree,
    /// Edits and read receipts (see `extras.rs`).
    extra_trees: extras::ExtraTrees,
    /// The directory's tree (see `directory.rs`).
    directory: Tree,
    /// Message events (see `events.rs`).
    events: Tree,
    /// The channels (keys) with message events, read at open: a page of a
    /// channel without any looks none up.
    event_channels: Arc<std::sync::RwLock<std::collections::HashSet<Vec<u8>>>>,
    /// Directory changes take turns.
    directory_turn: Arc<tokio::sync::Mutex<()>>,
    /// Leases ([`RetentionStore::try_lease`](crate::store::RetentionStore::try_lease)):
    /// one process has the database.
    leases: Arc<crate::store::Leases>,
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
    /// path that is a file; [`Error::InUse`] for a directory another
    /// process has open); it never panics.
    ///
    /// A directory written by the previous formats (`imcore-sled-3` and
    /// `imcore-sled-4`) is brought up to date in place as it opens; older ones give
    /// [`Error::UnsupportedFormat`], saying why, and are left unchanged.
    ///
    /// A limit of sled 0.34 to know: its recovery cannot tell damage near the
    /// end of its log from a write torn by a crash, so such damage comes back
    /// as an earlier consistent state of the database, not as an error.
    pub fn open_with(config: SledConfig) -> Result<Self> {
        let claim = marker::claim_directory(&config.path)?;
        let sled_config = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_capacity);
        let store =
            Self::from_sled_config(sled_config, config.durability).map_err(|e| match e {
                Error::InUse { .. } => Error::InUse {
                    what: format!("the sled directory {}", config.path.display()),
                },
                e => e,
            })?;
        // The database is current now (`check_format` migrated it).
        if claim == marker::Claim::Migrate {
            marker::mark_current(&config.path)?;
        }
        Ok(store)
    }

    /// A fresh store in a temporary directory that is deleted when the last
    /// clone of the store is dropped, with background durability (nothing
    /// temporary needs to survive a crash).
    pub fn temporary() -> Result<Self> {
        Self::temporary_with(Durability::Background {
            flush_every: Duration::from_millis(500),
        })
    }

    /// [`SledStore::temporary`] with the given durability.
    pub fn temporary_with(durability: Durability) -> Result<Self> {
        Self::from_sled_config(sled::Config::new().temporary(true), durability)
    }

    fn from_sled_config(sled_config: sled::Config, durability: Durability) -> Result<Self> {
        let flush_every_ms = match durability {
            Durability::Flush => 500,
            Durability::Background { flush_every } => u64::try_from(flush_every.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        };
        let sled_config = sled_config.flush_every_ms(Some(flush_every_ms));
        let db = open_retrying_lock(&sled_config)?;
        Self::check_format(&db)?;
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        let events = tree("events")?;
        let thread = thread::WriteThread::start()?;
        let flusher = Arc::new(GroupFlush::default());
        let flush = durability == Durability::Flush;
        let writer = Writer::open(db.clone(), flush, flusher.clone())?;
        Ok(SledStore {
            durability,
            writer: Arc::new(writer),
            thread,
            flusher,
            commands: tree("commands")?,
            command_ids: tree("command_ids")?,
            command_dedup: tree("command_dedup")?,
            counters: tree("counters")?,
            revocations: tree("revocations")?,
            revocations_by_channel: tree("revocations_by_channel")?,
            revocations_by_seq: tree("revocations_by_seq")?,
            extra_trees: extras::ExtraTrees::open(&db)?,
            directory: tree("directory")?,
            event_channels: Arc::new(std::sync::RwLock::new(events::channels_with_events(
                &events,
            )?)),
            events,
            directory_turn: Arc::new(tokio::sync::Mutex::new(())),
            leases: Arc::default(),
            db,
        })
    }

    fn check_format(db: &Db) -> Result<()> {
        match db.get(FORMAT_KEY).map_err(storage)? {
            Some(v) if v.as_ref() == FORMAT_VALUE => Ok(()),
            Some(v) if migrate::MIGRATED.contains(&v.as_ref()) => {
                if v.as_ref() == migrate::FORMAT_3 {
                    migrate::from_format_3(db)?;
                }
                migrate::from_format_4(db)?;
                db.insert(FORMAT_KEY, FORMAT_VALUE).map_err(storage)?;
                db.flush().map_err(storage)?;
                Ok(())
            }
            Some(v) => Err(old_format(&v).unwrap_or_else(|| {
                Error::corrupt(format!(
                    "database format {:?}, expected {:?}",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT_VALUE)
                ))
            })),
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

    /// How many flushes (each an fsync) the store's writes have waited
    /// for so far, shared by concurrent writes with
    /// [`Durability::Flush`]: sends divided by this is the group commit's
    /// batch.
    pub fn flushes(&self) -> u64 {
        self.flusher.flushes()
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

    /// How many keys the store holds, across all its trees. It scans every
    /// tree: for tests and diagnostics (for instance, to see that a send
    /// writes the same number of keys whatever the size of its group).
    pub fn key_count(&self) -> Result<u64> {
        let mut count = 0;
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name).map_err(storage)?;
            count += tree.len() as u64;
        }
        Ok(count)
    }

    /// The size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(storage)
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
            Ok(Err(e)) if is_lock_error(&e) => {
                return Err(Error::InUse {
                    what: "the sled directory".into(),
                })
            }
            Ok(Err(e)) => return Err(storage(e)),
        }
    }
}

/// Whether sled failed to take the database's file lock.
fn is_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The error for a database in a format an earlier version wrote.
fn old_format(found: &[u8]) -> Option<Error> {
    OLD_FORMATS
        .iter()
        .find(|(format, _)| *format == found)
        .map(|(format, why)| Error::UnsupportedFormat {
            found: String::from_utf8_lossy(format).into_owned(),
            why,
        })
}
