//! [`NatsChangeFeed`]: directory changes between nodes over core NATS, on
//! `<prefix>.directory`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::directory::{ChangeFeed, DirectoryChange, FeedEvent, FeedSink};
use crate::error::{Error, Result};

/// The encoding's version: a version byte, then the change in postcard.
const VERSION: u8 = 1;

/// How long a publish waits for the NATS server to take the change.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable {
        backend: "nats",
        source: Box::new(e),
    }
}

/// What a [`NatsChangeFeed`] has done since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStats {
    /// Changes published.
    pub published: u64,
    /// Changes heard (this node's own included).
    pub received: u64,
    /// Messages on the subject that did not decode.
    pub undecodable: u64,
    /// Times the connection came back (each a resync of the cache).
    pub resyncs: u64,
}

#[derive(Default)]
struct Shared {
    sinks: Mutex<Vec<FeedSink>>,
    published: AtomicU64,
    received: AtomicU64,
    undecodable: AtomicU64,
    resyncs: AtomicU64,
}

impl Shared {
    fn tell(&self, event: FeedEvent) {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for sink in sinks {
            sink(event.clone());
        }
    }
}

/// A [`ChangeFeed`] over core NATS: every node of a cluster connects one
/// with the same prefix, and hands it to its
/// [`StoredDirectory`](crate::StoredDirectory).
///
/// Core NATS delivers at most once; after a reconnect the feed tells its
/// directory to check everything cached ([`FeedEvent::Resync`]), and a
/// silent loss is healed by the directory's revalidation bound.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> imcore::Result<()> {
/// use std::sync::Arc;
/// use imcore::route::NatsChangeFeed;
/// use imcore::store::{PgConfig, PgStore};
/// use imcore::StoredDirectory;
/// let store = Arc::new(PgStore::open(PgConfig::new("postgres://postgres@127.0.0.1/im")).await?);
/// let feed = NatsChangeFeed::connect("nats://127.0.0.1:4222", "imcore").await?;
/// let directory = StoredDirectory::new(store).feed(Arc::new(feed));
/// # let _ = directory; Ok(()) }
/// ```
pub struct NatsChangeFeed {
    client: async_nats::Client,
    subject: String,
    shared: Arc<Shared>,
    /// Dropped with the feed: the listening task stops.
    _stop: watch::Sender<bool>,
}

impl fmt::Debug for NatsChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsChangeFeed")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl NatsChangeFeed {
    /// Connects to the NATS server at `url` and listens on
    /// `<prefix>.directory`. Fails with [`Error::Unavailable`] if the
    /// server cannot be reached; once connected it reconnects by itself.
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsChangeFeed> {
        let shared = Arc::new(Shared::default());
        let events = Arc::downgrade(&shared);
        let client = async_nats::ConnectOptions::new()
            .name("imcore directory feed")
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts.min(10) as u64)
            })
            .event_callback(move |event| {
                let shared = events.upgrade();
                async move {
                    if let (async_nats::Event::Connected, Some(shared)) = (event, shared) {
                        shared.resyncs.fetch_add(1, Ordering::Relaxed);
                        shared.tell(FeedEvent::Resync);
                    }
                }
            })
            .connect(url)
            .await
            .map_err(unavailable)?;
        let subject = format!("{prefix}.directory");
        let mut subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(unavailable)?;
        let (stop, mut stopped) = watch::channel(false);
        let listening = shared.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    m = subscriber.next() => m,
                    _ = stopped.changed() => None,
                };
                let Some(message) = message else { break };
                match decode(&message.payload) {
                    Some(change) => {
                        listening.received.fetch_add(1, Ordering::Relaxed);
                        listening.tell(FeedEvent::Change(change));
                    }
                    None => {
                        listening.undecodable.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(NatsChangeFeed {
            client,
            subject,
            shared,
            _stop: stop,
        })
    }

    /// What it has done since it connected.
    pub fn stats(&self) -> FeedStats {
        let s = &self.shared;
        FeedStats {
            published: s.published.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            undecodable: s.undecodable.load(Ordering::Relaxed),
            resyncs: s.resyncs.load(Ordering::Relaxed),
        }
    }
}

fn decode(bytes: &[u8]) -> Option<DirectoryChange> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => postcard::from_bytes(rest).ok(),
        _ => None,
    }
}

#[async_trait]
impl ChangeFeed for NatsChangeFeed {
    async fn publish(&self, change: &DirectoryChange) -> Result<()> {
        let bytes = postcard::to_extend(change, vec![VERSION]).map_err(|e| Error::Storage {
            backend: "nats",
            source: Box::new(e),
        })?;
        // While NATS is away a flush would wait for it: the change is in
        // the store already, and the other nodes heal by revalidating.
        let sent = tokio::time::timeout(PUBLISH_WAIT, async {
            self.client
                .publish(self.subject.clone(), bytes.into())
                .await
                .map_err(unavailable)?;
            self.client.flush().await.map_err(unavailable)
        })
        .await
        .unwrap_or_else(|_| {
            Err(Error::Unavailable {
                backend: "nats",
                source: format!("not flushed within {PUBLISH_WAIT:?}").into(),
            })
        });
        sent?;
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn subscribe(&self, sink: FeedSink) {
        self.shared
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }
}
