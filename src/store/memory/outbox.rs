//! The outbox in memory: entry number → message id, and the batches
//! claimed from it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{Inner, MemoryStore};
use crate::error::Result;
use crate::model::Message;
use crate::store::{check_limit, lease_end, renewal_end, Outbox, OutboxBatch, OutboxLease};

/// The batches claimed and not done: first entry number → lease end and
/// entry numbers.
pub(super) type Batches = BTreeMap<u64, (i64, Vec<u64>)>;

impl Inner {
    /// Entry `n`'s message, if it is still in the outbox and stored.
    fn outbox_message(&self, n: u64) -> Option<Message> {
        let id = self.outbox.as_ref()?.get(&n)?;
        let (channel, seq) = self.by_id.get(id)?;
        let (message, _) = self.logs.get(channel)?.messages.get(seq)?;
        Some(message.clone())
    }

    fn batch(&self, batch: u64, until_ms: i64, numbers: &[u64]) -> OutboxBatch {
        OutboxBatch {
            lease: OutboxLease { batch, until_ms },
            entries: numbers
                .iter()
                .filter_map(|n| Some((*n, self.outbox_message(*n)?)))
                .collect(),
        }
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    fn enable_outbox(&self) {
        let mut inner = self.lock();
        inner.outbox.get_or_insert_with(BTreeMap::new);
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<(u64, Message)>> {
        check_limit(limit)?;
        let inner = self.lock();
        let Some(outbox) = &inner.outbox else {
            return Ok(Vec::new());
        };
        Ok(outbox
            .keys()
            .filter_map(|n| Some((*n, inner.outbox_message(*n)?)))
            .take(limit)
            .collect())
    }

    async fn claim_outbox(
        &self,
        limit: usize,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxBatch>> {
        check_limit(limit)?;
        let until = lease_end(now_ms, lease)?;
        let mut inner = self.lock();
        let expired = inner
            .outbox_batches
            .iter_mut()
            .find(|(_, (held_until, _))| *held_until <= now_ms);
        if let Some((batch, (held_until, numbers))) = expired {
            *held_until = until;
            let (batch, numbers) = (*batch, numbers.clone());
            return Ok(Some(inner.batch(batch, until, &numbers)));
        }
        let claimed: std::collections::HashSet<u64> = inner
            .outbox_batches
            .values()
            .flat_map(|(_, numbers)| numbers.iter().copied())
            .collect();
        let Some(outbox) = &inner.outbox else {
            return Ok(None);
        };
        let numbers: Vec<u64> = outbox
            .keys()
            .filter(|n| !claimed.contains(n) && inner.outbox_message(**n).is_some())
            .take(limit)
            .copied()
            .collect();
        let Some(&first) = numbers.first() else {
            return Ok(None);
        };
        let batch = inner.batch(first, until, &numbers);
        inner.outbox_batches.insert(first, (until, numbers));
        Ok(Some(batch))
    }

    async fn renew_outbox(
        &self,
        held: OutboxLease,
        now_ms: i64,
        lease: Duration,
    ) -> Result<Option<OutboxLease>> {
        let renewed = renewal_end(&held, now_ms, lease)?;
        let mut inner = self.lock();
        match inner.outbox_batches.get_mut(&held.batch) {
            Some((until, _)) if *until == held.until_ms => {
                *until = renewed;
                Ok(Some(OutboxLease {
                    batch: held.batch,
                    until_ms: *until,
                }))
            }
            _ => Ok(None),
        }
    }

    async fn outbox_done(&self, entries: &[u64]) -> Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(outbox) = &mut inner.outbox {
            for entry in entries {
                outbox.remove(entry);
            }
            inner
                .outbox_batches
                .retain(|_, (_, numbers)| numbers.iter().any(|n| outbox.contains_key(n)));
        }
        Ok(())
    }
}
