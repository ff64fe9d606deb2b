//! WuKongIM's webhook, fed by the store's outbox so that a crash loses
//! nothing: `POST {url}?event=msg.notify` with the committed messages (a
//! JSON array, as WuKongIM's), then `POST {url}?event=msg.offline` with
//! each message and its recipients not online on any node (`to_uids`, in
//! chunks).
//!
//! Only HTTP 200 counts as delivered. A request is tried up to
//! [`ATTEMPTS`] times with a doubling backoff; if it still fails, the
//! batch stays in the outbox and is tried again, whole, after a pause:
//! nothing is dropped, and a receiver down for an hour gets everything
//! when it is back.
//!
//! In a cluster every node runs this, on one store: each batch is claimed
//! by one node ([`Outbox::claim_outbox`](imcore::store::Outbox)), under a
//! lease of [`LEASE`] that the node renews while it tells the batch. A node
//! that dies mid-batch stops renewing, and once the lease has run out
//! another node takes the batch over, whole (as does a single server
//! restarted after a crash: its batch waits out the lease).
//!
//! Delivery is at least once (a batch told but not yet removed when its
//! node died is told again by the next), so every request carries an
//! idempotency key in `X-Idempotency-Key`, the same for the same event
//! every time it is sent, by any node: `msg.notify:<first>-<last message
//! id>` for a batch (a batch never changes once claimed: the same
//! messages on every retry and after a takeover), and `msg.offline:<message
//! id>:<chunk>`. A receiver deduplicates by that key (or, for messages, by
//! each one's `message_id`). Offline recipients are those not online when
//! the event is sent. Batches claimed by different nodes may arrive in
//! any order; a channel's messages are ordered by `message_seq`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use imcore::store::{OutboxBatch, OutboxLease, Store};
use imcore::{Hub, Message, Uid};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};

use crate::api::message_json;

/// Messages claimed from the outbox and told at once.
const BATCH: usize = 100;
/// Tries of one request before the batch waits.
pub const ATTEMPTS: u32 = 4;
/// The first backoff between tries; it doubles.
const BACKOFF: Duration = Duration::from_millis(100);
/// The wait before a batch that failed every try is tried again.
const PAUSE: Duration = Duration::from_secs(1);
/// How often an empty outbox is looked at again.
const IDLE: Duration = Duration::from_millis(100);
/// Recipients per `msg.offline` request.
const CHUNK: usize = 1000;
/// `msg.offline` requests in flight at once.
const CONCURRENCY: usize = 4;
/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed batch is this node's without a renewal: how long
/// the batch of a node that died waits before another node takes it over.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a held lease is renewed.
const RENEW: Duration = Duration::from_secs(3);

/// Milliseconds since the Unix epoch, on this host's clock (the nodes'
/// clocks must agree to well within [`LEASE`]).
fn now_ms() -> i64 {
    imcore::Clock::now_ms(&imcore::SystemClock)
}

/// The webhook's receiver: `http://host:port/path`.
#[derive(Clone)]
pub struct Webhook {
    uri: Uri,
    authority: String,
}

impl Webhook {
    /// From `--webhook URL`; only `http://` (put TLS in a proxy).
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("bad webhook URL {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("webhook URL {url}: only http:// is supported"));
        }
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or(format!("webhook URL {url} names no host"))?;
        Ok(Webhook { uri, authority })
    }

    /// Tells the outbox's messages for ever.
    pub async fn run(self, store: Arc<dyn Store>, hub: Hub) {
        let limit = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            match store.claim_outbox(BATCH, now_ms(), LEASE).await {
                Ok(Some(batch)) => self.deliver(&store, batch, &hub, &limit).await,
                Ok(None) => tokio::time::sleep(IDLE).await,
                Err(e) => {
                    tracing::warn!("webhook: claiming from the outbox failed: {e}");
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// Tells a claimed batch until it is told (then removes it), or until
    /// its lease is lost to another node.
    async fn deliver(
        &self,
        store: &Arc<dyn Store>,
        batch: OutboxBatch,
        hub: &Hub,
        limit: &Arc<Semaphore>,
    ) {
        // Renewed on a task of its own, never cut off mid-renewal; it ends
        // when this does.
        let (lost_tx, mut lost) = oneshot::channel();
        let _renewing = AbortOnDrop(tokio::spawn(keep(store.clone(), batch.lease, lost_tx)));
        // Events of the batch already accepted: a retry skips them.
        let mut accepted = HashSet::new();
        loop {
            let told = tokio::select! {
                told = self.tell(&batch.entries, hub, limit, &mut accepted) => told,
                _ = &mut lost => return,
            };
            let Err(e) = told else {
                if let Err(e) = store.outbox_done(&batch.numbers()).await {
                    tracing::warn!("webhook: removing told entries failed: {e}");
                }
                return;
            };
            tracing::warn!("webhook: {e}; the batch waits and is tried again");
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                _ = &mut lost => return,
            }
        }
    }

    /// Tells one batch: `msg.notify`, then each message's `msg.offline`;
    /// those in `accepted` were told already and are skipped.
    async fn tell(
        &self,
        batch: &[(u64, Message)],
        hub: &Hub,
        limit: &Arc<Semaphore>,
        accepted: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (Some((_, first)), Some((_, last))) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let key = format!("msg.notify:{}-{}", first.message_id.0, last.message_id.0);
        if !accepted.contains(&key) {
            let messages: Vec<Value> = batch
                .iter()
                .map(|(_, m)| message_json(m, &m.from_uid))
                .collect();
            self.post("msg.notify", &key, &Value::Array(messages))
                .await?;
            accepted.insert(key);
        }
        let mut posts = tokio::task::JoinSet::new();
        for (_, m) in batch {
            let offline = offline(m, hub).await?;
            for (i, chunk) in offline.chunks(CHUNK).enumerate() {
                let key = format!("msg.offline:{}:{i}", m.message_id.0);
                if accepted.contains(&key) {
                    continue;
                }
                let mut body = message_json(m, &m.from_uid);
                body["to_uids"] = json!(chunk.iter().map(Uid::as_str).collect::<Vec<_>>());
                let (hook, limit) = (self.clone(), limit.clone());
                posts.spawn(async move {
                    let _slot = limit.acquire_owned().await;
                    hook.post("msg.offline", &key, &body).await.map(|()| key)
                });
            }
        }
        let mut failed = None;
        while let Some(done) = posts.join_next().await {
            match done {
                Ok(Ok(key)) => {
                    accepted.insert(key);
                }
                Ok(Err(e)) => failed = Some(e),
                Err(e) => failed = Some(format!("a msg.offline request failed: {e}")),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// POSTs one event, trying up to [`ATTEMPTS`] times.
    pub async fn post(&self, event: &str, key: &str, body: &Value) -> Result<(), String> {
        let body = Bytes::from(body.to_string());
        let mut backoff = BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match tokio::time::timeout(REQUEST_TIMEOUT, self.send(event, key, body.clone())).await {
                Ok(Ok(200)) => return Ok(()),
                Ok(Ok(status)) => last = format!("{event}: HTTP {status}"),
                Ok(Err(e)) => last = format!("{event}: {e}"),
                Err(_) => last = format!("{event}: no answer within {REQUEST_TIMEOUT:?}"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(last)
    }

    /// One request on a connection of its own; the answer's status.
    async fn send(&self, event: &str, key: &str, body: Bytes) -> Result<u16, String> {
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", self.authority))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = self.uri.path();
        let query = match self.uri.query() {
            Some(q) => format!("{q}&event={event}"),
            None => format!("event={event}"),
        };
        let request = Request::post(format!("{path}?{query}"))
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("x-idempotency-key", key)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        // Read the answer through, so the receiver sees a clean close.
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

/// The message's recipients, but its sender, with no master device online
/// on any node.
async fn offline(m: &Message, hub: &Hub) -> Result<Vec<Uid>, String> {
    let recipients = hub
        .recipients_of(&m.channel)
        .await
        .map_err(|e| e.to_string())?;
    Ok(recipients
        .iter()
        .filter(|u| **u != m.from_uid && !hub.is_online(u))
        .cloned()
        .collect())
}

/// Renews `lease` every [`RENEW`]; says so on `lost` once it is lost:
/// taken over, or run out while the store could not be reached.
async fn keep(store: Arc<dyn Store>, mut lease: OutboxLease, lost: oneshot::Sender<()>) {
    loop {
        tokio::time::sleep(RENEW).await;
        match store.renew_outbox(lease, now_ms(), LEASE).await {
            Ok(Some(renewed)) => lease = renewed,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("webhook: renewing the lease failed: {e}");
                if now_ms() >= lease.until_ms {
                    break;
                }
            }
        }
    }
    tracing::warn!(
        "webhook: the lease on batch {} was lost; another node tells it",
        lease.batch
    );
    let _ = lost.send(());
}

/// A task that ends when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
