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
//! when it is back. Delivery is at least once, so every request carries
//! an idempotency key in `X-Idempotency-Key` (the same key for the same
//! event every time it is sent): `msg.notify:<first>-<last message id>`
//! for a batch (and each message's `message_id` is unique), and
//! `msg.offline:<message id>:<chunk>`. Offline recipients are those not
//! online when the event is sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Uri};
use imcore::store::Store;
use imcore::{Hub, Message, Uid};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::api::message_json;

/// Messages read from the outbox and told at once.
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
            let batch = match store.outbox(BATCH).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!("webhook: reading the outbox failed: {e}");
                    tokio::time::sleep(PAUSE).await;
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::time::sleep(IDLE).await;
                continue;
            }
            let told = self.tell(&batch, &hub, &limit).await;
            let done: Vec<u64> = batch.iter().map(|(n, _)| *n).collect();
            match told {
                Ok(()) => {
                    if let Err(e) = store.outbox_done(&done).await {
                        tracing::warn!("webhook: removing told entries failed: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!("webhook: {e}; the batch waits and is tried again");
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    /// Tells one batch: `msg.notify`, then each message's `msg.offline`.
    async fn tell(
        &self,
        batch: &[(u64, Message)],
        hub: &Hub,
        limit: &Arc<Semaphore>,
    ) -> Result<(), String> {
        let messages: Vec<Value> = batch
            .iter()
            .map(|(_, m)| message_json(m, &m.from_uid))
            .collect();
        let (first, last) = (&batch[0].1, &batch[batch.len() - 1].1);
        let key = format!("msg.notify:{}-{}", first.message_id.0, last.message_id.0);
        self.post("msg.notify", &key, &Value::Array(messages))
            .await?;
        let mut posts = tokio::task::JoinSet::new();
        for (_, m) in batch {
            let offline = offline(m, hub).await?;
            for (i, chunk) in offline.chunks(CHUNK).enumerate() {
                let mut body = message_json(m, &m.from_uid);
                body["to_uids"] = json!(chunk.iter().map(Uid::as_str).collect::<Vec<_>>());
                let key = format!("msg.offline:{}:{i}", m.message_id.0);
                let (hook, limit) = (self.clone(), limit.clone());
                posts.spawn(async move {
                    let _slot = limit.acquire_owned().await;
                    hook.post("msg.offline", &key, &body).await
                });
            }
        }
        while let Some(done) = posts.join_next().await {
            done.map_err(|e| format!("a msg.offline request failed: {e}"))??;
        }
        Ok(())
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
