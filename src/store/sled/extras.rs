//! Edits and read receipts on sled.
//!
//! A message's extra is one record in `extras` (by message id), indexed by
//! its channel and seq in `extras_by_seq` (written once, when the record is
//! created) and by its channel and current version in `extras_by_version`
//! (moved when the version moves: the old key is removed, so that a
//! message appears once in a sync). A reader's read of a message is a key
//! in `reads` (message id ++ uid), whose value is when.
//!
//! Versions come from the channel's revocation counter (`counters`, tag
//! `R`) inside the change's transaction, and every write runs on the
//! store's write thread: edits, reads and revocations of a channel take
//! versions one after another, and an edit reads `revocations` in the same
//! transaction, so a revoked message is never edited. A receipt is opened
//! with its audience as a number: nothing is written per member.

use async_trait::async_trait;
use sled::transaction::TransactionalTree;
use sled::{Transactional, Tree};

use super::keys::{
    be_u64, channel_key, counter_key, decode, encode, key, key_suffix_u64, next_counter, seq_key,
    uid_key,
};
use super::{abort, storage, tx_error, unabortable, SledStore, TxResult, TAG_REVOCATION_VERSION};
use crate::error::{Error, Result};
use crate::model::{Channel, MessageId, Uid};
use crate::store::{
    check_limit, Edit, EditRecorded, ExtraStore, MessageExtra, NewEdit, NewReads, Receipt,
};

/// The trees of extras and reads.
#[derive(Debug, Clone)]
pub(super) struct ExtraTrees {
    /// Message id → [`MessageExtra`].
    extras: Tree,
    /// Channel ++ version → message id: each extra at its current version.
    by_version: Tree,
    /// Channel ++ seq → message id.
    by_seq: Tree,
    /// Message id ++ uid → when the user read it (Unix ms).
    reads: Tree,
}

impl ExtraTrees {
    /// Opens (or creates, empty) the trees.
    pub(super) fn open(db: &sled::Db) -> Result<Self> {
        let tree = |name: &str| db.open_tree(name).map_err(storage);
        Ok(ExtraTrees {
            extras: tree("extras")?,
            by_version: tree("extras_by_version")?,
            by_seq: tree("extras_by_seq")?,
            reads: tree("reads")?,
        })
    }
}

impl ExtraTrees {
    /// Removes the extras and reads of the messages `ids` of `channel`
    /// (retention; on the write thread, in the deleting batch's turn).
    pub(super) fn delete(&self, channel: &Channel, ids: &[u64]) -> Result<()> {
        let chan = key(|k| channel_key(k, channel));
        let mut extras = sled::Batch::default();
        let mut by_version = sled::Batch::default();
        let mut by_seq = sled::Batch::default();
        let mut reads = sled::Batch::default();
        for id in ids {
            let Some(v) = self.extras.get(id.to_be_bytes()).map_err(storage)? else {
                continue;
            };
            let x: MessageExtra = decode(&v, "message extra")?;
            if x.extra_version > 0 {
                by_version.remove(seq_key(&chan, x.extra_version));
            }
            by_seq.remove(seq_key(&chan, x.message_seq));
            for kv in self.reads.scan_prefix(id.to_be_bytes()) {
                reads.remove(kv.map_err(storage)?.0);
            }
            extras.remove(&id.to_be_bytes());
        }
        // Indexes first, the record last: an index never names a record
        // that is gone.
        self.by_version.apply_batch(by_version).map_err(storage)?;
        self.by_seq.apply_batch(by_seq).map_err(storage)?;
        self.reads.apply_batch(reads).map_err(storage)?;
        self.extras.apply_batch(extras).map_err(storage)
    }
}

fn read_key(id: MessageId, reader: &Uid) -> Vec<u8> {
    key(|k| {
        k.extend_from_slice(&id.0.to_be_bytes());
        uid_key(k, reader);
    })
}

fn blank(message_id: MessageId, channel: &Channel, message_seq: u64) -> MessageExtra {
    MessageExtra {
        message_id,
        channel: channel.clone(),
        message_seq,
        edit: None,
        receipt: None,
        extra_version: 0,
    }
}

/// A message's extra inside a transaction.
fn stored(extras: &TransactionalTree, id: MessageId) -> TxResult<Option<MessageExtra>> {
    match extras.get(id.0.to_be_bytes()).map_err(unabortable)? {
        Some(v) => match decode(&v, "message extra") {
            Ok(x) => Ok(Some(x)),
            Err(e) => abort(e),
        },
        None => Ok(None),
    }
}

/// Writes `extra` at `version` (its channel's key `chan`), moving its
/// version index entry from its old version.
fn put(
    extras: &TransactionalTree,
    by_version: &TransactionalTree,
    chan: &[u8],
    mut extra: MessageExtra,
    version: u64,
) -> TxResult<MessageExtra> {
    let id = extra.message_id.0.to_be_bytes();
    if extra.extra_version > 0 {
        by_version
            .remove(seq_key(chan, extra.extra_version))
            .map_err(unabortable)?;
    }
    by_version
        .insert(seq_key(chan, version), &id)
        .map_err(unabortable)?;
    extra.extra_version = version;
    let value = match encode(&extra) {
        Ok(v) => v,
        Err(e) => return abort(e),
    };
    extras.insert(&id, value).map_err(unabortable)?;
    Ok(extra)
}

fn version_counter(chan: &[u8]) -> Vec<u8> {
    counter_key(TAG_REVOCATION_VERSION, |k| k.extend_from_slice(chan))
}

#[async_trait]
impl ExtraStore for SledStore {
    async fn record_edit(&self, e: NewEdit) -> Result<EditRecorded> {
        let trees = (
            self.revocations.clone(),
            self.counters.clone(),
            self.extra_trees.clone(),
        );
        // On the store's write thread.
        let record = move || {
            let (revocations, counters, x) = &trees;
            (revocations, counters, &x.extras, &x.by_version, &x.by_seq)
                .transaction(|(revs, counters, extras, by_version, by_seq)| {
                    if revs.get(e.message_id.0.to_be_bytes())?.is_some() {
                        return Ok(EditRecorded::Revoked);
                    }
                    let (mut extra, new) = match stored(extras, e.message_id)? {
                        Some(x) if x.channel != e.channel => {
                            return abort(crate::store::extras::other_channel())
                        }
                        Some(x) => (x, false),
                        None => (blank(e.message_id, &e.channel, e.message_seq), true),
                    };
                    if extra.edit.as_ref().is_some_and(|d| d.content == e.content) {
                        return Ok(EditRecorded::Unchanged(extra));
                    }
                    extra.edit = Some(Edit {
                        content: e.content.clone(),
                        editor: e.editor.clone(),
                        edited_at_ms: e.edited_at_ms,
                    });
                    let chan = key(|k| channel_key(k, &e.channel));
                    if new {
                        by_seq.insert(
                            seq_key(&chan, extra.message_seq),
                            &e.message_id.0.to_be_bytes(),
                        )?;
                    }
                    let version = next_counter(counters, &version_counter(&chan))?;
                    put(extras, by_version, &chan, extra, version).map(EditRecorded::Edited)
                })
                .map_err(tx_error)
        };
        let recorded = self.thread.run(record).await?;
        if let EditRecorded::Edited(_) = &recorded {
            self.settle().await?;
        }
        Ok(recorded)
    }

    async fn open_receipt(
        &self,
        message_id: MessageId,
        channel: &Channel,
        message_seq: u64,
        audience: u64,
    ) -> Result<()> {
        let x = self.extra_trees.clone();
        let channel = channel.clone();
        let open = move || {
            (&x.extras, &x.by_seq)
                .transaction(|(extras, by_seq)| {
                    let mut extra = match stored(extras, message_id)? {
                        Some(x) if x.receipt.is_some() => return Ok(false),
                        Some(x) => x,
                        None => {
                            let chan = key(|k| channel_key(k, &channel));
                            by_seq
                                .insert(seq_key(&chan, message_seq), &message_id.0.to_be_bytes())?;
                            blank(message_id, &channel, message_seq)
                        }
                    };
                    extra.receipt = Some(Receipt {
                        audience,
                        readers: 0,
                    });
                    // No version: nothing a client syncs has changed.
                    let value = match encode(&extra) {
                        Ok(v) => v,
                        Err(e) => return abort(e),
                    };
                    extras.insert(&message_id.0.to_be_bytes(), value)?;
                    Ok(true)
                })
                .map_err(tx_error)
        };
        if self.thread.run(open).await? {
            self.settle().await?;
        }
        Ok(())
    }

    async fn record_reads(&self, reads: NewReads) -> Result<Vec<MessageExtra>> {
        if reads.messages.is_empty() {
            return Ok(Vec::new());
        }
        let trees = (self.counters.clone(), self.extra_trees.clone());
        let record = move || {
            let (counters, x) = &trees;
            let chan = key(|k| channel_key(k, &reads.channel));
            let counter = version_counter(&chan);
            (counters, &x.extras, &x.by_version, &x.reads)
                .transaction(|(counters, extras, by_version, read)| {
                    let mut changed = Vec::new();
                    for (id, _) in &reads.messages {
                        let Some(mut extra) = stored(extras, *id)? else {
                            continue;
                        };
                        if extra.channel != reads.channel {
                            continue;
                        }
                        let Some(receipt) = extra.receipt.as_mut() else {
                            continue;
                        };
                        let at = read_key(*id, &reads.reader);
                        if read.get(&at)?.is_some() {
                            continue;
                        }
                        receipt.readers += 1;
                        let when = match encode(&reads.read_at_ms) {
                            Ok(v) => v,
                            Err(e) => return abort(e),
                        };
                        read.insert(at, when)?;
                        let version = next_counter(counters, &counter)?;
                        changed.push(put(extras, by_version, &chan, extra, version)?);
                    }
                    Ok(changed)
                })
                .map_err(tx_error)
        };
        let changed = self.thread.run(record).await?;
        if !changed.is_empty() {
            self.settle().await?;
        }
        Ok(changed)
    }

    async fn reads_by(&self, reader: &Uid, ids: &[MessageId]) -> Result<Vec<Option<i64>>> {
        ids.iter()
            .map(|id| {
                match self
                    .extra_trees
                    .reads
                    .get(read_key(*id, reader))
                    .map_err(storage)?
                {
                    Some(v) => decode(&v, "read").map(Some),
                    None => Ok(None),
                }
            })
            .collect()
    }

    async fn lookup_extras(&self, ids: &[MessageId]) -> Result<Vec<Option<MessageExtra>>> {
        ids.iter().map(|id| self.extra(id.0)).collect()
    }

    async fn extras_between(
        &self,
        channel: &Channel,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<MessageExtra>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let chan = key(|k| channel_key(k, channel));
        self.extra_trees
            .by_seq
            .range(seq_key(&chan, from_seq)..=seq_key(&chan, to_seq))
            .map(|kv| {
                let (_, id) = kv.map_err(storage)?;
                let id = be_u64(&id, "extra index")?;
                self.extra(id)?.ok_or_else(|| missing(id))
            })
            .collect()
    }

    async fn extras_after(
        &self,
        channel: &Channel,
        version: u64,
        limit: usize,
    ) -> Result<Vec<MessageExtra>> {
        check_limit(limit)?;
        let chan = key(|k| channel_key(k, channel));
        let Some(first) = version.checked_add(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let index = self
            .extra_trees
            .by_version
            .range(seq_key(&chan, first)..=seq_key(&chan, u64::MAX));
        for kv in index {
            let (k, id) = kv.map_err(storage)?;
            let id = be_u64(&id, "extra index")?;
            let at = key_suffix_u64(&k, "extra index")?;
            // An entry whose record has moved on since this scan began
            // (a change in between): the record shows at its new version,
            // further on.
            match self.extra(id)? {
                Some(x) if x.extra_version == at => out.push(x),
                Some(_) => continue,
                None => return Err(missing(id)),
            }
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}

fn missing(id: u64) -> Error {
    Error::corrupt(format!("extra index points at a missing record ({id})"))
}

impl SledStore {
    /// The extra of message `id`, if any.
    fn extra(&self, id: u64) -> Result<Option<MessageExtra>> {
        match self
            .extra_trees
            .extras
            .get(id.to_be_bytes())
            .map_err(storage)?
        {
            Some(v) => decode(&v, "message extra").map(Some),
            None => Ok(None),
        }
    }
}
