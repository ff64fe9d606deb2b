//! Edits and read receipts in memory.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{HashMap, Inner, MemoryStore};
use crate::error::Result;
use crate::model::{Channel, MessageId, Uid};
use crate::store::{
    check_limit, EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads, Receipt,
};

/// The extras, with their indexes by version and by seq, and the reads.
#[derive(Debug, Default)]
pub(super) struct Extras {
    records: HashMap<MessageId, MessageExtra>,
    by_version: HashMap<Channel, BTreeMap<u64, MessageId>>,
    by_seq: HashMap<Channel, BTreeMap<u64, MessageId>>,
    reads: HashMap<(MessageId, Uid), i64>,
}

impl Extras {
    /// Removes the extras and reads of the messages `ids` of `channel`
    /// (retention).
    pub(super) fn delete(&mut self, channel: &Channel, ids: &super::HashSet<MessageId>) {
        for id in ids {
            let Some(x) = self.records.remove(id) else {
                continue;
            };
            if let Some(by_version) = self.by_version.get_mut(channel) {
                by_version.remove(&x.extra_version);
            }
            if let Some(by_seq) = self.by_seq.get_mut(channel) {
                by_seq.remove(&x.message_seq);
            }
        }
        self.reads.retain(|(id, _), _| !ids.contains(id));
    }
}

impl Inner {
    /// The channel's next extra version (shared with revocations).
    fn next_extra_version(&mut self, channel: &Channel) -> u64 {
        let (version, _) = self
            .revocations_by_channel
            .entry(channel.clone())
            .or_default();
        *version += 1;
        *version
    }

    /// Stores `extra` under `version`, moving it from its old version.
    fn put_extra(&mut self, mut extra: MessageExtra, version: u64) -> MessageExtra {
        let x = &mut self.extras;
        let by_version = x.by_version.entry(extra.channel.clone()).or_default();
        if extra.extra_version > 0 {
            by_version.remove(&extra.extra_version);
        }
        if version > 0 {
            by_version.insert(version, extra.message_id);
        }
        extra.extra_version = version;
        x.by_seq
            .entry(extra.channel.clone())
            .or_default()
            .insert(extra.message_seq, extra.message_id);
        x.records.insert(extra.message_id, extra.clone());
        extra
    }
}

#[async_trait]
impl ExtraStore for MemoryStore {
    async fn record_edit(&self, e: NewEdit) -> Result<EditRecorded> {
        let mut inner = self.lock();
        if inner.revocations.contains_key(&e.message_id) {
            return Ok(EditRecorded::Revoked);
        }
        let mut extra = inner
            .extras
            .records
            .get(&e.message_id)
            .cloned()
            .unwrap_or_else(|| MessageExtra::blank(e.message_id, &e.channel, e.message_seq));
        if !e.apply_to(&mut extra)? {
            return Ok(EditRecorded::Unchanged(extra));
        }
        let version = inner.next_extra_version(&extra.channel);
        Ok(EditRecorded::Edited(inner.put_extra(extra, version)))
    }

    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> Result<()> {
        let mut inner = self.lock();
        let mut extra = inner
            .extras
            .records
            .get(&message_id)
            .cloned()
            .unwrap_or_else(|| MessageExtra::blank(message_id, channel, message_seq));
        if extra.receipt.is_none() {
            extra.receipt = Some(Receipt {
                audience,
                readers: 0,
            });
            let version = extra.extra_version;
            inner.put_extra(extra, version);
        }
        Ok(())
    }

    async fn record_reads(&self, reads: NewReads) -> Result<Vec<MessageExtra>> {
        let mut inner = self.lock();
        let mut changed = Vec::new();
        for (id, _) in reads.messages {
            let Some(mut extra) = inner.extras.records.get(&id).cloned() else {
                continue;
            };
            let key = (id, reads.reader.clone());
            if extra.channel != reads.channel || inner.extras.reads.contains_key(&key) {
                continue;
            }
            let Some(receipt) = extra.receipt.as_mut() else {
                continue;
            };
            receipt.readers += 1;
            inner.extras.reads.insert(key, reads.read_at_ms);
            let version = inner.next_extra_version(&reads.channel);
            changed.push(inner.put_extra(extra, version));
        }
        Ok(changed)
    }

    async fn reads_by(&self, reader: &Uid, ids: &[MessageId]) -> Result<Vec<Option<i64>>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .map(|id| inner.extras.reads.get(&(*id, reader.clone())).copied())
            .collect())
    }

    async fn lookup_extras(&self, ids: &[MessageId]) -> Result<Vec<Option<MessageExtra>>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .map(|id| inner.extras.records.get(id).cloned())
            .collect())
    }

    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<MessageExtra>> {
        let inner = self.lock();
        let x = &inner.extras;
        let Some(by_seq) = x.by_seq.get(channel).filter(|_| from_seq <= to_seq) else {
            return Ok(Vec::new());
        };
        Ok(by_seq
            .range(from_seq..=to_seq)
            .filter_map(|(_, id)| x.records.get(id).cloned())
            .collect())
    }

    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<MessageExtra>> {
        check_limit(limit)?;
        let inner = self.lock();
        let x = &inner.extras;
        let Some(by_version) = x.by_version.get(channel) else {
            return Ok(Vec::new());
        };
        Ok(by_version
            .range(version.saturating_add(1)..)
            .take(limit)
            .filter_map(|(_, id)| x.records.get(id).cloned())
            .collect())
    }
}
