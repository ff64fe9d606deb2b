//! The PostgreSQL backend (feature `postgres`): one history that many hub
//! processes share.
//!
//! # Model
//!
//! The same read diffusion as the other backends: a send writes its
//! message row, its channel's head row and its sender's read position,
//! whatever the size of the channel; a user's conversations are derived
//! from heads and read positions at read time (see `schema.rs` for the
//! tables).
//!
//! # Writes
//!
//! Appends from every caller of one store go through one writer task that
//! commits whatever is waiting as one transaction (group commit): one
//! fsync, and one round trip, per batch rather than per message (one
//! server-side function decides and writes the whole batch, and stores
//! nothing once its caller's deadline has passed; see `writer.rs`).
//! Each `append` call in a batch stays atomic on its own (a refused call
//! stores nothing and the others go on). Many stores on one database (one
//! per hub process) take turns on one counter row, which orders their
//! batches; see [`PgStore`].

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::model::{
    Channel, ChannelId, ChannelType, ClientMsgNo, Flags, Message, MessageId, Setting, Uid,
};

/// The columns of a message row, in the order [`message_from`] reads them.
macro_rules! message_columns {
    () => {
        "ctype, cid, seq, message_id, from_uid, client_msg_no, ts, flags, payload, setting, topic"
    };
}

mod append_function;
mod commands;
mod conversations;
mod db_error;
mod deadline;
mod directory;
mod events;
mod extras;
mod log;
mod outbox;
#[cfg(test)]
mod plans;
mod retention;
mod revocations;
mod schema;
mod writer;

const BACKEND: &str = "postgres";

/// How to reach PostgreSQL, for [`PgStore::open`].
///
/// ```
/// use std::time::Duration;
/// let mut config = imcore::store::PgConfig::new("postgres://imcore@db.internal/imcore");
/// config.pool_size = 32;
/// config.timeout = Duration::from_secs(2);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// A libpq-style connection URL or key=value string, such as
    /// `postgres://user:password@host:5432/db` (`sslmode=require` needs
    /// the feature `postgres-tls`).
    pub url: String,
    /// The most connections the store opens. Default 16.
    pub pool_size: usize,
    /// How long any one call may wait (for a connection from the pool, for
    /// its turn behind other appends, for a statement or a commit) before
    /// it fails with [`Error::Unavailable`]. Default 5 s.
    pub timeout: Duration,
    /// The most messages the writer commits in one transaction. Default
    /// 1,024.
    pub max_batch: usize,
}

impl PgConfig {
    /// The defaults, for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            pool_size: 16,
            timeout: Duration::from_secs(5),
            max_batch: 1024,
        }
    }
}

/// A [`Store`](super::Store) in PostgreSQL (15 or later).
///
/// Semantics are those of every backend (it passes the same
/// [`conformance`](super::conformance) suite); what this one adds:
///
/// - **Durability**: a call returns after PostgreSQL's commit, so what
///   returned `Ok` survives a crash of the host and of the server (with
///   the server's default `fsync` and `synchronous_commit`).
/// - **Many processes**: any number of stores, in any number of processes,
///   may share one database. Seqs stay gap-free and unique per channel,
///   versions monotone, resends recognised across processes.
/// - **Faults**: while the server is down or slow, calls fail with
///   [`Error::Unavailable`] within [`PgConfig::timeout`], and work again
///   once it is back, with no restart of the host.
///
/// The tables are created (or checked) by [`open`](PgStore::open), which
/// refuses a database written by a newer version of the crate.
///
/// ```no_run
/// # async fn run() -> imcore::Result<()> {
/// use imcore::store::{PgConfig, PgStore};
/// let store = PgStore::open(PgConfig::new("postgres://postgres@127.0.0.1/imcore")).await?;
/// let hub = imcore::Hub::builder().store(std::sync::Arc::new(store)).build()?;
/// # let _ = hub; Ok(()) }
/// ```
pub struct PgStore {
    pool: Pool,
    appends: mpsc::Sender<writer::Request>,
    timeout: Duration,
    /// Whether the writer puts new messages in the outbox.
    outbox: Arc<AtomicBool>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, then creates the tables or checks their version.
    ///
    /// Fails with [`Error::Unavailable`] when the server cannot be reached
    /// within the config's timeout, [`Error::UnsupportedFormat`] when the
    /// database holds tables of another schema or a newer version, and
    /// [`Error::Validation`] for a malformed URL.
    pub async fn open(config: PgConfig) -> Result<PgStore> {
        if config.pool_size == 0 || config.max_batch == 0 {
            return Err(crate::error::ValidationError::OutOfRange(
                "pool_size and max_batch must be at least 1",
            )
            .into());
        }
        let mut pg: tokio_postgres::Config = config.url.parse().map_err(|e| Error::Storage {
            backend: BACKEND,
            source: format!("malformed connection URL: {e}").into(),
        })?;
        pg.connect_timeout(config.timeout);
        let pool = new_pool(pg, config.pool_size, config.timeout)?;
        let timeout = config.timeout;
        within(timeout, async {
            let mut client = pool.get().await?;
            schema::migrate(&mut client).await
        })
        .await?;
        let outbox = Arc::new(AtomicBool::new(false));
        let appends = writer::spawn(
            pool.clone(),
            config.timeout,
            config.max_batch,
            outbox.clone(),
        );
        Ok(PgStore {
            pool,
            appends,
            timeout,
            outbox,
        })
    }

    /// A connection from the pool, within the timeout.
    async fn client(&self) -> Result<Object> {
        within(self.timeout, async { Ok(self.pool.get().await?) }).await
    }
}

/// Run once on each new connection: one 8 MiB allocation in its backend,
/// released at the end of the statement.
///
/// On glibc, a process gives back free memory at the top of its heap once
/// more than 128 KiB is free there. A batch of appends allocates a few
/// hundred KiB in the backend (its executor state and sorts) and frees
/// them at its end, so without this every batch faulted its pages back
/// in: about 33,000 minor page faults a second in the writer's backend
/// with 16 senders, where it took about 360 a second after this statement
/// (`/proc/PID/stat`, 3 s of `cargo bench --bench postgres`), and sends
/// took a quarter less time. glibc raises that threshold to twice the size
/// of the largest block it has mapped and unmapped, here to 16 MiB: each
/// backend may keep up to that much freed memory rather than give it back.
/// With another allocator it is one short-lived allocation and changes
/// nothing.
const RAISE_TRIM_THRESHOLD: &str = "SELECT length(repeat('x', 8388608))";

/// A pool of at most `size` connections to `pg`, each of which has run
/// [`RAISE_TRIM_THRESHOLD`].
fn new_pool(pg: tokio_postgres::Config, size: usize, timeout: Duration) -> Result<Pool> {
    let manager = Manager::from_config(
        pg,
        tls(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
            Box::pin(async move {
                client
                    .simple_query(RAISE_TRIM_THRESHOLD)
                    .await
                    .map_err(deadpool_postgres::HookError::Backend)?;
                Ok(())
            })
        }))
        .build()
        .map_err(|e| Error::Storage {
            backend: BACKEND,
            source: e.to_string().into(),
        })
}

#[cfg(not(feature = "postgres-tls"))]
fn tls() -> tokio_postgres::NoTls {
    tokio_postgres::NoTls
}

#[cfg(feature = "postgres-tls")]
fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// Runs `f`, failing with [`Error::Unavailable`] past `timeout`.
async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, f).await {
        Ok(result) => result,
        Err(_) => Err(Error::Unavailable {
            backend: BACKEND,
            source: format!("no answer within {timeout:?}").into(),
        }),
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError as P;
        match e {
            P::Backend(e) => pg_error(e),
            other => Error::Unavailable {
                backend: BACKEND,
                source: Box::new(other),
            },
        }
    }
}

/// A PostgreSQL error, typed: a lost or refused connection, a server
/// shutting down or starting is [`Error::Unavailable`]; anything else is
/// [`Error::Storage`].
pub(super) fn pg_error(e: tokio_postgres::Error) -> Error {
    let unreachable = e.is_closed()
        || match e.code() {
            // 08: connection exception; 57P01-57P03: shutting down,
            // crashed, starting; 57014: cancelled (an append past its
            // caller's deadline); 53: out of connections or memory.
            Some(code) => ["08", "57P", "57014", "53"]
                .iter()
                .any(|class| code.code().starts_with(class)),
            // No SQLSTATE: the socket failed (refused, reset, timed out).
            None => std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()),
        };
    // tokio-postgres says only "db error"; the server's words are in its
    // DbError (a shutting-down server's "terminating connection due to
    // administrator command", say): shown, the error (and its SQLSTATE)
    // kept beneath them.
    let source: Box<dyn std::error::Error + Send + Sync> = match db_error::DbError::new(e) {
        Ok(words) => Box::new(words),
        Err(e) => Box::new(e),
    };
    if unreachable {
        Error::Unavailable {
            backend: BACKEND,
            source,
        }
    } else {
        Error::Storage {
            backend: BACKEND,
            source,
        }
    }
}

/// A channel's two columns.
fn channel_key(channel: &Channel) -> (i16, &str) {
    (i16::from(channel.kind.as_u8()), channel.id.as_str())
}

/// A stored seq or count as PostgreSQL's int8 (the largest stay the
/// largest: `u64::MAX` asks for "the newest").
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored int8 that holds a seq, a count or a version.
fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::corrupt(format!("{what}: negative ({n})")))
}

/// Message ids are u64 and stored bit for bit in an int8.
fn id_to_i64(id: MessageId) -> i64 {
    i64::from_ne_bytes(id.0.to_ne_bytes())
}

fn id_from_i64(id: i64) -> MessageId {
    MessageId(u64::from_ne_bytes(id.to_ne_bytes()))
}

fn channel_from(ctype: i16, cid: String) -> Result<Channel> {
    let kind = u8::try_from(ctype)
        .ok()
        .and_then(|t| ChannelType::try_from(t).ok())
        .ok_or_else(|| Error::corrupt(format!("channel type {ctype}")))?;
    let id = ChannelId::new(&cid).map_err(|_| Error::corrupt(format!("channel id {cid:?}")))?;
    Ok(Channel::new(id, kind))
}

/// A message from a row selected with `message_columns!()`.
///
/// `channel`: the channel when the caller knows it (a page of one
/// channel), so that its columns are not decoded again for every row.
fn message_from(row: &tokio_postgres::Row, channel: Option<&Channel>) -> Result<Message> {
    let get = |e: tokio_postgres::Error| Error::corrupt(format!("message row: {e}"));
    let from_uid: &str = row.try_get(4).map_err(get)?;
    let client_msg_no: &str = row.try_get(5).map_err(get)?;
    let flags: i16 = row.try_get(7).map_err(get)?;
    let payload: &[u8] = row.try_get(8).map_err(get)?;
    let setting: i16 = row.try_get(9).map_err(get)?;
    let topic: Option<String> = row.try_get(10).map_err(get)?;
    let channel = match channel {
        Some(channel) => channel.clone(),
        None => channel_from(row.try_get(0).map_err(get)?, row.try_get(1).map_err(get)?)?,
    };
    Ok(Message {
        channel,
        message_seq: to_u64(row.try_get(2).map_err(get)?, "seq")?,
        message_id: id_from_i64(row.try_get(3).map_err(get)?),
        from_uid: Uid::new(from_uid).map_err(|_| Error::corrupt(format!("uid {from_uid:?}")))?,
        client_msg_no: ClientMsgNo::new(client_msg_no)
            .map_err(|_| Error::corrupt(format!("client_msg_no {client_msg_no:?}")))?,
        timestamp_ms: row.try_get(6).map_err(get)?,
        flags: Flags::from_bits(u8::try_from(flags).unwrap_or(0)),
        setting: Setting(u8::try_from(setting).unwrap_or(0)),
        topic,
        payload: bytes::Bytes::copy_from_slice(payload),
    })
}

/// Sorts and dedups `channels`, split into the two column arrays.
fn channel_arrays<'a>(channels: impl Iterator<Item = &'a Channel>) -> (Vec<i16>, Vec<&'a str>) {
    let mut keys: Vec<(i16, &str)> = channels.map(channel_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().unzip()
}
